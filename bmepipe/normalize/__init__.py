"""Normalization: bias correction, one grid, intensity standardization and input QC.

Stage 2 of the pipeline (after :mod:`bmepipe.io`). Each step is a flat module:
:mod:`~bmepipe.normalize.bias` (:func:`correct_bias`, :func:`body_mask`),
:mod:`~bmepipe.normalize.grid` (:func:`resample_to_reference`).
"""

from .bias import BIAS_METHODS, body_mask, correct_bias
from .grid import GridResult, overlap_fraction, resample_to_reference

__all__ = [
    "BIAS_METHODS",
    "body_mask",
    "correct_bias",
    "GridResult",
    "overlap_fraction",
    "resample_to_reference",
]
