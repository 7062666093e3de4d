"""Pattern assessment per hip: the measured evidence for TOH-like, AVN-like, SIF-like or normal.

Research use only; not a diagnosis. Each feature of clinical.md section 3 (decision
evidence) that was measured becomes an :class:`EvidenceItem` (feature, value,
threshold, direction, which pattern it favours, weight, whether it held, source).
A label's score is the weight of its met items over the weight of all items
that could have supported it (0-1); the label is the best-scoring one, or
``indeterminate`` when the best score is low or a second label is close. QC
flags (low SNR, failed fat suppression, ...) lower the confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .params import PatternParams

__all__ = ["EvidenceItem", "PatternAssessment", "assess_patterns", "bilateral_comparison", "DISCLAIMER", "LABELS"]

DISCLAIMER = "research use only; not a diagnosis"
LABELS = ("toh_like", "avn_like", "sif_like", "normal")
_CONF = ("low", "moderate", "high")


@dataclass
class EvidenceItem:
    """One measured feature and how it compares with its threshold (report ``pattern.evidence``)."""

    feature: str
    value: object
    unit: Optional[str]
    threshold: object
    direction: Optional[str]
    favours: str
    source: str
    weight: float = 1.0
    met: Optional[bool] = None

    def to_dict(self) -> dict:
        v = self.value
        if isinstance(v, float):
            v = round(v, 4)
        return {"feature": self.feature, "value": v, "unit": self.unit, "threshold": self.threshold,
                "direction": self.direction, "favours": self.favours, "weight": self.weight, "met": self.met,
                "source": self.source}


@dataclass
class PatternAssessment:
    """Label, score (0-1), confidence and evidence of one hip."""

    label: str
    score: Optional[float]
    confidence: Optional[str]
    evidence: list = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    follow_up_advised: Optional[bool] = None
    summary: Optional[str] = None
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict:
        """report.json ``sides.<side>.pattern``."""
        return {"label": self.label, "score": None if self.score is None else round(self.score, 4),
                "confidence": self.confidence, "evidence": [e.to_dict() for e in self.evidence],
                "scores": {k: round(v, 4) for k, v in self.scores.items()},
                "follow_up_advised": self.follow_up_advised, "summary": self.summary}


def _cmp(value, threshold, direction: str) -> Optional[bool]:
    if value is None:
        return None
    return {">": value > threshold, ">=": value >= threshold, "<": value < threshold, "<=": value <= threshold,
            "==": value == threshold}[direction]


def _item(items: list, feature, value, unit, threshold, direction, favours, source, weight):
    if direction in ("present", "absent"):
        met = None if value is None else (bool(value) if direction == "present" else not bool(value))
    else:
        met = _cmp(value, threshold, direction)
    items.append(EvidenceItem(feature, value, unit, threshold, direction, favours, source, weight, met))


def _evidence(side, other, p: PatternParams, qparams) -> list:
    """Evidence items of one hip (``side``, ``other``: SideMeasurements; ``other`` may be None)."""
    items: list = []
    bme, avn, sif = side.bme, side.avn, side.sif
    dist = bme.distribution or {}
    cov = dist.get("head_neck_coverage")
    # normal: nothing measured
    _item(items, "bme.distribution.head_neck_coverage", cov, "1", p.normal_max_coverage, "<", "normal",
          "parameter normal_max_coverage [tuned]: BME share of head+neck marrow", p.w_normal)
    _item(items, "avn.present", avn.present, None, None, "absent", "normal", "necrotic segment (see avn.present)",
          p.w_normal_minor)
    _item(items, "sif.present", sif.present, None, None, "absent", "normal", "subchondral line (see sif.present)",
          p.w_normal_minor)
    # AVN
    _item(items, "avn.present", avn.present, None, None, "present", "avn_like",
          "demarcated subchondral segment with a low-signal T1 band: JIC criterion (Sugano et al., J Orthop Sci "
          "2002;7:601); Mitchell et al., Radiology 1987;162:709", p.w_segment)
    _item(items, "avn.double_line", avn.double_line, None, None, "present", "avn_like",
          "double-line sign in 80 % of lesions (Mitchell et al., Radiology 1987;162:709)", p.w_double_line)
    if other is not None and other.ok:
        _item(items, "contralateral avn.present", other.avn.present, None, None, "present", "avn_like",
              "AVN often bilateral, about 40-75 % (clinical.md section 1: Runge; Kuroda et al., Bone Joint Res "
              "2019;8:451)", p.w_bilateral)
    # TOH
    _item(items, "bme.distribution.head_neck_coverage", cov, "1", p.toh_min_coverage, ">=", "toh_like",
          "diffuse BME of head and neck in TOH (Radiopaedia 'Transient osteoporosis of the hip'; clinical.md "
          "section 2) [threshold tuned]", p.w_diffuse)
    _item(items, "bme.distribution.neck_to_head_ratio", dist.get("neck_to_head_ratio"), "1", p.toh_min_neck_to_head,
          ">=", "toh_like", "TOH BME homogeneous from head to neck; SIF BME centred under the subchondral line "
          "(clinical.md section 3) [threshold tuned]", p.w_homogeneous)
    _item(items, "bme.fraction.intertrochanteric", bme.fraction.get("intertrochanteric"), "1",
          p.toh_min_intertrochanteric, ">=", "toh_like",
          "TOH BME often reaches the intertrochanteric region (Radiopaedia; clinical.md section 2) [threshold tuned]",
          p.w_intertrochanteric)
    _item(items, "bme.distribution.medial_sparing", dist.get("medial_sparing"), None, None, "present", "toh_like",
          "medial head spared in about 88 % of early TOH (Radiopaedia 'Transient osteoporosis', its ref. 3)",
          p.w_medial_sparing)
    if other is not None and other.ok:
        ocov = (other.bme.distribution or {}).get("head_neck_coverage")
        _item(items, "contralateral bme.distribution.head_neck_coverage", ocov, "1", p.normal_max_coverage, "<",
              "toh_like", "TOH usually affects one hip at a time (Radiopaedia; clinical.md section 1)", p.w_unilateral)
    # SIF
    _item(items, "avn.present", avn.present, None, None, "absent", "sif_like",
          "no necrotic segment in SIF (histology: fracture callus and granulation tissue; Yamamoto 2012; "
          "Zhao et al., Skeletal Radiol 2010;39:185)", p.w_no_segment_sif)
    _item(items, "sif.present", sif.present, None, None, "present", "sif_like",
          "subchondral low-signal line parallel/convex to the surface (Yamamoto, Clin Orthop Surg 2012;4:173)",
          p.w_line)
    _item(items, "bme.distribution.neck_to_head_ratio", dist.get("neck_to_head_ratio"), "1", p.toh_min_neck_to_head,
          "<", "sif_like", "SIF BME centred under the subchondral weight-bearing area (clinical.md section 3) "
          "[threshold tuned]", p.w_focal)
    if sif.present:
        vb = f"> {qparams.vande_berg_thickness_mm} mm thick or > {qparams.vande_berg_length_mm} mm long"
        src = ("Vande Berg et al., Radiology 1999;212:527 (thresholds to be checked against the original, "
               "clinical.md section 4)")
        _item(items, "sif.line_exceeds_vande_berg", sif.line_exceeds_vande_berg, None, vb, "present", "sif_like",
              src + ": irreversible lesion", p.w_vande_berg)
        _item(items, "sif.line_exceeds_vande_berg", sif.line_exceeds_vande_berg, None, vb, "absent", "toh_like",
              src + ": thin short lines with BME suggest a transient process", p.w_vande_berg)
    if sif.band_depth_ratio is not None:
        _item(items, "sif.band_depth_ratio", sif.band_depth_ratio, "1", p.band_depth_ratio_cutoff, "<", "sif_like",
              "band depth ratio SIF 0.16 vs AVN 0.42, cut-off 0.22 mid-coronal (depth-of-band study, clinical.md "
              "section 3)", p.w_band_depth)
        _item(items, "sif.band_depth_ratio", sif.band_depth_ratio, "1", p.band_depth_ratio_cutoff, ">=", "avn_like",
              "band depth ratio SIF 0.16 vs AVN 0.42, cut-off 0.22 mid-coronal (depth-of-band study, clinical.md "
              "section 3)", p.w_band_depth)
    # BME in head and neck is needed for TOH and SIF
    for lab, src in (("toh_like", "TOH is a bone marrow edema pattern (clinical.md section 2)"),
                     ("sif_like", "extensive BME around the line in SIF (radiologykey SIF chapter; clinical.md "
                                  "section 2)")):
        _item(items, "bme.distribution.head_neck_coverage", cov, "1", p.normal_max_coverage, ">=", lab,
              src + " [threshold tuned]", p.w_bme_present)
    return items


def _scores(items: list) -> dict:
    out = {}
    for lab in LABELS:
        mine = [e for e in items if e.favours == lab and e.met is not None]
        total = sum(e.weight for e in mine)
        out[lab] = sum(e.weight for e in mine if e.met) / total if total > 0 else 0.0
    return out


def _veto(label_scores: dict, side, p: PatternParams) -> dict:
    """Hard exclusions that keep the scores honest (a segment is never 'normal', etc.)."""
    s = dict(label_scores)
    if side.avn.present:
        s["normal"] = 0.0
        s["toh_like"] *= p.toh_with_segment_factor  # TOH has no necrotic core (clinical.md section 2)
        s["sif_like"] *= p.toh_with_segment_factor  # nor has SIF (Yamamoto 2012)
    cov = (side.bme.distribution or {}).get("head_neck_coverage") or 0.0
    if cov >= p.normal_max_coverage:
        s["normal"] = min(s["normal"], 0.5)
    else:
        s["toh_like"] = 0.0
        s["sif_like"] *= 0.5
    return s


def assess_side(side, other=None, quality=None, *, params: PatternParams = PatternParams(), qparams=None) -> PatternAssessment:
    """Pattern assessment of one hip (see :func:`assess_patterns`)."""
    if qparams is None:
        from bmepipe.quantify import QuantifyParams

        qparams = QuantifyParams()
    if not side.ok:
        return PatternAssessment("indeterminate", None, None, [], {}, True, f"not analysed: {side.reason}")
    items = _evidence(side, other, params, qparams)
    scores = _veto(_scores(items), side, params)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    (best, s1), (_, s2) = ranked[0], ranked[1]
    margin = s1 - s2
    label = best if s1 >= params.min_score and margin >= params.min_margin else "indeterminate"
    level = 2 if margin >= params.high_confidence_margin else 1 if margin >= params.min_margin else 0
    flags = _failed_flags(quality)
    if flags:
        level -= 1
    confidence = _CONF[max(level, 0)]
    follow_up = label == "indeterminate" or confidence == "low" or label in ("toh_like", "sif_like")
    text = (f"measured evidence favours {best.replace('_', '-')} (score {s1:.2f}, next {s2:.2f})"
            + (f"; QC: {', '.join(flags)}" if flags else "") + f"; {DISCLAIMER}")
    return PatternAssessment(label, s1, confidence, items, scores, follow_up, text)


def _failed_flags(quality) -> list:
    if quality is None:
        return []
    flags = getattr(quality, "flags", None)
    if flags is None and isinstance(quality, dict):
        flags = quality.get("flags", [])
    out = []
    for f in flags or []:
        name = f.get("name") if isinstance(f, dict) else getattr(f, "name", None)
        passed = f.get("passed") if isinstance(f, dict) else getattr(f, "passed", None)
        if passed is False:
            out.append(str(name))
    return out


def assess_patterns(measurements, quality=None, *, params: PatternParams = PatternParams()) -> dict:
    """Pattern assessment of both hips.

    Parameters
    ----------
    measurements : bmepipe.quantify.HipMeasurements
    quality : bmepipe.normalize.QualityReport or its dict, optional
        Failed QC flags lower the confidence by one level.
    params : PatternParams

    Returns
    -------
    dict side -> PatternAssessment
        ``label`` in ``toh_like``, ``avn_like``, ``sif_like``, ``normal``,
        ``indeterminate``; research use only, not a diagnosis.
    """
    sides = measurements.sides
    out = {}
    for name, side in sides.items():
        other = next((s for n, s in sides.items() if n != name), None)
        out[name] = assess_side(side, other, quality, params=params, qparams=measurements.params)
    return out


def bilateral_comparison(measurements, assessments: dict) -> dict:
    """report.json ``bilateral``: BME on both sides, right-minus-left volume, asymmetry index, labels, note."""
    r, l_ = measurements.sides.get("right"), measurements.sides.get("left")
    vr = r.bme.volume_ml if r is not None and r.ok else None
    vl = l_.bme.volume_ml if l_ is not None and l_.ok else None
    both = None if vr is None or vl is None else bool(r.bme.present and l_.bme.present)
    diff = None if both is None else round(vr - vl, 4)
    asym = None if both is None or vr + vl <= 0 else round(abs(vr - vl) / (vr + vl), 4)
    labels = {s: assessments[s].label if s in assessments else "indeterminate" for s in ("right", "left")}
    notes = []
    if both is not None:
        if labels["right"] == labels["left"] == "avn_like":
            notes.append("necrotic-segment evidence on both hips (AVN is often bilateral)")
        elif both:
            notes.append("BME on both hips (TOH is usually one-sided; bilateral mainly in pregnancy)")
        elif r.bme.present or l_.bme.present:
            notes.append("BME on one hip only")
    notes.append(DISCLAIMER)
    return {"bme_both_sides": both, "bme_volume_difference_ml": diff, "bme_asymmetry_index": asym,
            "labels": labels, "note": "; ".join(notes)}
