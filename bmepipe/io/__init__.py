"""DICOM input: study discovery, series grouping, geometry, sequence recognition, series selection.

>>> import bmepipe.io as bio
>>> study = bio.load_study("sample_data/case02_toh_right")   # doctest: +SKIP
>>> sel = bio.select_series(study)                    # doctest: +SKIP
>>> sel.fluid_sensitive.image.GetSpacing()           # doctest: +SKIP
"""

from .atomic import atomic_path, atomic_write_bytes, atomic_write_text
from .loader import load_series, load_study
from .select import SeriesSelection, select_series
from .sequences import SequenceInfo, classify_sequence, plane_of
from .types import Skipped, Study, Volume, VolumeMeta

__all__ = [
    "load_study",
    "load_series",
    "select_series",
    "SeriesSelection",
    "classify_sequence",
    "SequenceInfo",
    "plane_of",
    "Study",
    "Volume",
    "VolumeMeta",
    "Skipped",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
]
