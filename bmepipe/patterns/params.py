"""Thresholds and weights of the pattern assessment (serializable, TOML-loadable).

Weights are relative importances, not literature figures: a demarcated necrotic
segment (JIC diagnostic criterion) weighs most, single supportive features less.
Values marked [tuned] were chosen on the tuning suite (bmepipe.quantify.TUNING_SUITE).
"""

from __future__ import annotations

from dataclasses import dataclass

from bmepipe._params import NumericParams

__all__ = ["PatternParams"]


@dataclass(frozen=True)
class PatternParams(NumericParams):
    """Parameters of :func:`bmepipe.patterns.assess_patterns`.

    Parameters
    ----------
    normal_max_coverage : float
        Head+neck BME share below which the hip counts as without BME [tuned].
    toh_min_coverage : float
        Head+neck BME share from which the BME is "diffuse" (TOH) [tuned].
    toh_min_neck_to_head : float
        Neck-to-weight-bearing-head signal excess ratio from which the BME is
        homogeneous (TOH); below it the BME is centred subchondrally (SIF) [tuned].
    toh_min_intertrochanteric : float
        Intertrochanteric BME share counted as extension (TOH) [tuned].
    band_depth_ratio_cutoff : float
        Band depth / head diameter separating SIF (shallow) from AVN (deep): 0.22
        on the mid-coronal slice (depth-of-band study of 35 collapsed hips,
        clinical.md section 3) [src].
    min_score, min_margin : float
        Below either (best score; best minus second) the label is indeterminate [tuned].
    high_confidence_margin : float
        Margin from which confidence is high (before QC) [tuned].
    toh_with_segment_factor : float
        TOH and SIF score multiplier when a necrotic segment is present (neither has
        a necrotic core: clinical.md section 2; Yamamoto 2012).
    w_* : float
        Evidence weights.
    """

    normal_max_coverage: float = 0.05
    toh_min_coverage: float = 0.6
    toh_min_neck_to_head: float = 0.5
    toh_min_intertrochanteric: float = 0.1
    band_depth_ratio_cutoff: float = 0.22
    min_score: float = 0.4
    min_margin: float = 0.1
    high_confidence_margin: float = 0.3
    toh_with_segment_factor: float = 0.25
    w_normal: float = 3.0
    w_normal_minor: float = 1.0
    w_segment: float = 4.0
    w_double_line: float = 1.0
    w_bilateral: float = 0.5
    w_diffuse: float = 2.0
    w_homogeneous: float = 3.0
    w_intertrochanteric: float = 0.5
    w_medial_sparing: float = 0.5
    w_unilateral: float = 0.5
    w_line: float = 2.0
    w_focal: float = 3.0
    w_no_segment_sif: float = 1.0
    w_vande_berg: float = 0.5
    w_band_depth: float = 0.5
    w_bme_present: float = 1.0

    _kind = "pattern"
    _non_negative = True
