"""Quantification: bone marrow edema, AVN and SIF evidence, effusion (issue 7).

Stage 4 of the pipeline, after :mod:`bmepipe.normalize` and :mod:`bmepipe.segment`.
Definitions follow ``shared/reference/regions.md``; every threshold is a named
parameter of :class:`QuantifyParams` with its source.

- :mod:`~bmepipe.quantify.bme`: BME mask, volume, fractions, intensity, distribution
- :mod:`~bmepipe.quantify.necrosis`: necrotic segment, extent, JIC type, Kerboul angle, collapse
- :mod:`~bmepipe.quantify.subchondral_line`: subchondral low-signal line length and thickness
- :mod:`~bmepipe.quantify.effusion`: joint effusion volume
- :mod:`~bmepipe.quantify.calibration`: expected edema and fluid signal from the sequence
- :mod:`~bmepipe.quantify.headframe`: rays from the femoral-head centre
- :mod:`~bmepipe.quantify.hips`: :func:`quantify_hips` chaining them

>>> from bmepipe.quantify import quantify_hips, QuantifyParams  # doctest: +SKIP
>>> m = quantify_hips(normalized, segmentation, fluid_protocol=meta)  # doctest: +SKIP
>>> m.sides["right"].bme.volume_ml  # doctest: +SKIP
"""

from .hips import quantify_arrays, quantify_hips
from .params import TUNING_SUITE, QuantifyParams
from .types import MASK_NAMES, AvnResult, BmeResult, HipMeasurements, SideMeasurements, SifResult

__all__ = [
    "quantify_hips",
    "quantify_arrays",
    "QuantifyParams",
    "TUNING_SUITE",
    "HipMeasurements",
    "SideMeasurements",
    "BmeResult",
    "AvnResult",
    "SifResult",
    "MASK_NAMES",
]
