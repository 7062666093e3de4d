"""Pattern assessment on hand-built measurements: each pattern's textbook evidence gives its label.

Oracles: the MRI hallmarks of clinical.md section 2 (TOH diffuse homogeneous BME of
head and neck, no segment; AVN demarcated segment with a band; SIF subchondral line
with BME centred under it), the report schema (report-1.0.0.json) for the output
shape, and arithmetic for the bilateral figures.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from bmepipe.patterns import DISCLAIMER, PatternParams, assess_patterns, bilateral_comparison
from bmepipe.quantify import QuantifyParams
from bmepipe.quantify.types import AvnResult, BmeResult, HipMeasurements, SideMeasurements, SifResult
from bmepipe.report.schema import load_schema

REGIONS = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")


def _dist(coverage, neck_to_head=None, sparing=None):
    return {"pattern": "diffuse" if coverage >= 0.4 else "focal" if coverage > 0 else "none",
            "head_neck_coverage": coverage, "neck_to_head_ratio": neck_to_head, "medial_sparing": sparing}


def _side(name, *, bme_ml=0.0, coverage=0.0, n2h=None, sparing=None, inter=0.0, segment=False, line=None):
    fr = dict.fromkeys(REGIONS, 0.0)
    fr.update(femoral_head=coverage, femoral_neck=coverage, intertrochanteric=inter)
    s = SideMeasurements(side=name, head_center_lps_mm=(0.0, 0.0, 0.0), head_radius_mm=24.0,
                         region_volumes_ml=dict.fromkeys(REGIONS, 50.0))
    s.bme = BmeResult(present=bme_ml >= 1.0, volume_ml=bme_ml, fraction=fr, mean_intensity=2.0 if bme_ml else None,
                      peak_intensity=3.0 if bme_ml else None, distribution=_dist(coverage, n2h, sparing))
    s.avn = AvnResult(present=segment, necrotic_extent_pct=25.0 if segment else 0.0, collapse_mm=0.0,
                      jic_type="C1" if segment else None, kerboul_angle_deg=220.0 if segment else None,
                      kerboul_grade=2 if segment else None, double_line=True if segment else None,
                      arco_extent_group="B" if segment else None, arco_stage_hint="I" if segment else None)
    if line:
        length, thick = line
        s.sif = SifResult(present=True, line_length_mm=length, line_thickness_mm=thick,
                          line_exceeds_vande_berg=thick > 4 or length > 12.5, line_shape="convex",
                          band_depth_ratio=0.05)
    else:
        s.sif = SifResult(present=False)
    s.effusion_ml = 5.0
    return s


def _hips(right, left):
    return HipMeasurements(sides={"right": right, "left": left}, params=QuantifyParams())


TOH = dict(bme_ml=90.0, coverage=0.9, n2h=1.0, sparing=True, inter=0.3)
SIF = dict(bme_ml=40.0, coverage=0.5, n2h=0.2, line=(15.0, 1.5))
AVN = dict(segment=True)


@pytest.mark.parametrize("spec, label", [(TOH, "toh_like"), (SIF, "sif_like"), (AVN, "avn_like"), ({}, "normal")])
def test_textbook_evidence_gives_its_label(spec, label):
    out = assess_patterns(_hips(_side("right", **spec), _side("left")))
    assert out["right"].label == label
    assert out["right"].score == max(out["right"].scores.values())
    assert out["left"].label == "normal"


def test_avn_with_secondary_bme_is_never_toh_like():
    # a segment with diffuse, homogeneous BME around it (BME appears with subchondral fracture, clinical.md)
    side = _side("right", **TOH, segment=True)
    assert assess_patterns(_hips(side, _side("left")))["right"].label == "avn_like"


def test_failed_side_is_indeterminate_and_qc_lowers_confidence():
    failed = SideMeasurements(side="left", status="failed", reason="no femoral head inside the field of view")
    out = assess_patterns(_hips(_side("right", **AVN), failed))
    assert out["left"].label == "indeterminate" and out["left"].score is None
    good = assess_patterns(_hips(_side("right", **AVN), _side("left")))["right"].confidence
    bad = assess_patterns(_hips(_side("right", **AVN), _side("left")),
                          {"flags": [{"name": "fat_suppression", "passed": False}]})["right"]
    order = ("low", "moderate", "high")
    assert order.index(bad.confidence) == max(order.index(good) - 1, 0)
    assert "fat_suppression" in bad.summary


def test_output_follows_the_report_schema_and_says_research_use_only():
    schema = load_schema()
    validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/side", "$defs": schema["$defs"]})
    m = _hips(_side("right", **SIF), _side("left", **TOH))
    out = assess_patterns(m)
    for name, side in m.sides.items():
        d = side.to_dict()
        d["pattern"] = out[name].to_dict()
        validator.validate(json.loads(json.dumps(d)))
        assert DISCLAIMER in out[name].summary and out[name].disclaimer == "research use only; not a diagnosis"
        for ev in d["pattern"]["evidence"]:
            assert ev["source"] and ev["favours"] in ("toh_like", "avn_like", "sif_like", "normal")
    vb = [e for e in out["right"].evidence if e.feature == "sif.line_exceeds_vande_berg"]
    assert vb and "Radiology 1999;212:527" in vb[0].source and vb[0].value is True  # 15 mm > 12.5 mm
    bil = bilateral_comparison(m, out)
    jsonschema.Draft202012Validator({"$ref": "#/$defs/bilateral", "$defs": schema["$defs"]}).validate(bil)


def test_bilateral_figures():
    m = _hips(_side("right", **TOH), _side("left", bme_ml=30.0, coverage=0.3, n2h=0.2))
    bil = bilateral_comparison(m, assess_patterns(m))
    assert bil["bme_both_sides"] is True
    assert bil["bme_volume_difference_ml"] == pytest.approx(60.0)
    assert bil["bme_asymmetry_index"] == pytest.approx(60.0 / 120.0)
    assert "research use only" in bil["note"]


def test_pattern_params_round_trip():
    p = PatternParams(min_margin=0.2)
    assert PatternParams.from_dict(p.to_dict()) == p
