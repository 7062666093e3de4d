"""Follow-up comparison of two studies of one patient: per hip registration, BME change and trajectory.

>>> from bmepipe.compare import compare
>>> result = compare("study_2026_01", "study_2026_04", "out/compare")  # doctest: +SKIP
>>> result.sides["right"]["trajectory"]["label"]  # doctest: +SKIP
'resolving'
"""

from .core import (COMPARE_KIND, COMPARE_SCHEMA_VERSION, CompareParams, CompareResult, StudyOutputs, check_pair,
                   compare, compare_outputs, study_identity, trajectory)
from .output import load_compare_schema, validate_compare, write_compare
from .registration import label_image, register_hip, resample_mask, surface_deepening_mm

__all__ = ["COMPARE_KIND", "COMPARE_SCHEMA_VERSION", "CompareParams", "CompareResult", "StudyOutputs", "check_pair",
           "compare", "compare_outputs", "study_identity", "trajectory", "load_compare_schema", "validate_compare",
           "write_compare", "label_image", "register_hip", "resample_mask", "surface_deepening_mm"]
