"""Pattern assessment: measured evidence for TOH-like, AVN-like and SIF-like hips (issue 7).

Research use only; not a diagnosis. :func:`assess_patterns` turns
:class:`bmepipe.quantify.HipMeasurements` into one :class:`PatternAssessment` per
hip (label, score, confidence, evidence items with their thresholds and
sources); :func:`bilateral_comparison` gives the report's right-left summary.
"""

from .assess import (DISCLAIMER, LABELS, EvidenceItem, PatternAssessment, assess_patterns, assess_side,
                     bilateral_comparison)
from .params import PatternParams

__all__ = ["assess_patterns", "assess_side", "bilateral_comparison", "PatternAssessment", "EvidenceItem",
           "PatternParams", "DISCLAIMER", "LABELS"]
