"""Normalization: bias correction, one grid, intensity standardization and input QC.

Stage 2 of the pipeline (after :mod:`bmepipe.io`); later stages call
:func:`normalize_study`. Each step is a flat module readable on its own:

- :mod:`~bmepipe.normalize.bias`: :func:`correct_bias` (fast coarse-grid N4), :func:`body_mask`
- :mod:`~bmepipe.normalize.grid`: :func:`resample_to_reference` (header geometry or rigid MI registration)
- :mod:`~bmepipe.normalize.standardize`: :func:`standardize` (signal relative to skeletal muscle)
- :mod:`~bmepipe.normalize.landmarks`: :func:`find_landmarks` (fat / muscle / fluid scale, comparable
  across field strengths)
- :mod:`~bmepipe.normalize.qc`: :func:`assess_quality` (SNR, fat suppression, coverage, ghosting)
- :mod:`~bmepipe.normalize.noise`: noise sigma and Rician-bias-free means
- :mod:`~bmepipe.normalize.study`: :func:`normalize_study` chaining them
"""

from .bias import BIAS_METHODS, body_mask, correct_bias
from .grid import GridResult, overlap_fraction, resample_to_reference
from .landmarks import LandmarkScale, find_landmarks
from .noise import noise_sigma_background, noise_sigma_local, rician_mean
from .qc import (
    QCFlag,
    QualityReport,
    assess_quality,
    coverage_flag,
    fat_suppression_flags,
    ghosting_flag,
    lateral_coverage_flag,
    snr_flag,
)
from .standardize import Standardized, find_reference_tissue, standardize
from .study import NormalizedStudy, normalize_study

__all__ = [
    "BIAS_METHODS",
    "body_mask",
    "correct_bias",
    "GridResult",
    "overlap_fraction",
    "resample_to_reference",
    "LandmarkScale",
    "find_landmarks",
    "noise_sigma_background",
    "noise_sigma_local",
    "rician_mean",
    "QCFlag",
    "QualityReport",
    "assess_quality",
    "coverage_flag",
    "fat_suppression_flags",
    "ghosting_flag",
    "lateral_coverage_flag",
    "snr_flag",
    "Standardized",
    "find_reference_tissue",
    "standardize",
    "NormalizedStudy",
    "normalize_study",
]
