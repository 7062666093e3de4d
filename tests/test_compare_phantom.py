"""bmepipe compare on a phantom baseline / follow-up pair generated here (truth from the phantom, not compare)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from bmepipe.compare import compare, load_compare_schema, trajectory
from bmepipe.errors import DifferentPatientError, FollowupOrderError
from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_followup, generate_study, write_study

SHIFT_MM = (6.0, -4.0, 5.0)
pytestmark = pytest.mark.slow  # the module's phantom pair takes about 30 s (two analyses, outputs)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    acq = AcquisitionSpec(matrix=160, acquired_matrix=(160, 160), slices=16)
    base = generate_study(PhantomSpec.random(1, right="toh", left="avn", acquisition=acq))
    fu = generate_followup(base, days=120, shift_lps_mm=SHIFT_MM, rotation_deg=6.0, toh_bme_factor=0.3,
                           noise_seed=7)
    write_study(base, root / "base")
    write_study(fu, root / "fu")
    result = compare(root / "base", root / "fu", root / "out")
    return root, base, fu, result


def test_registration_head_centre_error_within_1mm(pair):
    _, base, fu, result = pair
    import SimpleITK as sitk

    for side in ("right", "left"):
        reg = result.sides[side]["registration"]
        tx = sitk.Euler3DTransform()
        c_then = np.asarray(base.truth["sides"][side]["head_center_lps_mm"])
        c_now = np.asarray(fu.truth["sides"][side]["head_center_lps_mm"])
        # rebuild the transform from the reported parameters (centre = baseline fitted head centre)
        tx.SetCenter(tuple(result.baseline.segmentation.sides[side].head_center_lps_mm))
        tx.SetRotation(*np.radians(reg["rotation_deg"]))
        tx.SetTranslation(reg["translation_mm"])
        err = np.linalg.norm(np.asarray(tx.TransformPoint(tuple(c_then))) - c_now)
        assert err <= 1.0, (side, err)


def test_bme_change_within_15_percent_of_baseline_volume(pair):
    _, base, fu, result = pair
    checked = 0
    for side in ("right", "left"):
        v_then = base.truth["sides"][side]["bme"]["volume_ml"]
        if v_then <= 2.0:
            continue
        truth_change = fu.truth["sides"][side]["bme"]["volume_ml"] - v_then
        measured = result.sides[side]["bme"]["volume_ml"]["change"]
        assert abs(measured - truth_change) <= 0.15 * v_then, (side, measured, truth_change)
        checked += 1
    assert checked >= 1


def test_trajectory_labels(pair):
    _, _, _, result = pair
    # TOH shrunk to below the edema threshold -> resolving; AVN with unchanged segment and collapse -> stable
    assert result.sides["right"]["trajectory"]["label"] == "resolving"
    assert result.sides["left"]["trajectory"]["label"] == "stable"


def test_outputs_and_change_maps(pair):
    root, _, _, result = pair
    import jsonschema
    import SimpleITK as sitk

    report = json.loads((root / "out" / "compare.json").read_text())
    jsonschema.Draft202012Validator(load_compare_schema()).validate(report)
    assert report["interval_days"] == 120
    html = (root / "out" / "compare.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and "http" not in html.split("$id")[0]
    base_bme = result.baseline.masks["right"]["bme"]
    for kind in ("resolved", "persisted", "new"):
        img = sitk.ReadImage(str(root / "out" / "labels" / f"right_bme_{kind}.nii.gz"))
        assert img.GetSize() == result.baseline.normalized.fluid.GetSize()
        arr = sitk.GetArrayFromImage(img).astype(bool)
        if kind != "new":
            assert not (arr & ~base_bme).any()  # resolved and persisted lie inside the baseline BME
    resolved = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "out/labels/right_bme_resolved.nii.gz"))).astype(bool)
    persisted = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "out/labels/right_bme_persisted.nii.gz"))).astype(bool)
    np.testing.assert_array_equal(resolved | persisted, base_bme)


def test_html_panels_labelled_baseline_and_followup_with_dates(pair):
    root, base, fu, result = pair
    html = (root / "out" / "compare.html").read_text()
    # phantom baseline 2026-01-01, follow-up 120 days later
    assert result.report["studies"]["baseline"]["study_date"] == "2026-01-01"
    assert result.report["studies"]["followup"]["study_date"] == "2026-05-01"
    pairs = html.count('<div class="pair">')
    assert pairs >= 2  # at least one slice per compared hip
    assert html.count("<figcaption><b>Baseline, 2026-01-01</b>") == pairs
    assert html.count("<figcaption><b>Follow-up, 2026-05-01</b> (registered onto the baseline grid)") == pairs
    assert ">T1<" not in html and "T1:" not in html


def test_validate_report_recognises_compare_json(pair, tmp_path, capsys):
    from bmepipe.cli import main

    root, *_ = pair
    good = root / "out" / "compare.json"
    assert main(["validate-report", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: ok (compare schema 1.1.0)"
    broken = json.loads(good.read_text())
    broken["sides"]["right"]["trajectory"]["label"] = "better"
    bad = tmp_path / "compare.json"
    bad.write_text(json.dumps(broken))
    assert main(["validate-report", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{bad}: $.sides.right") and "\n" not in err
    # a compare 1.0.0 file (no 'kind') is still recognised by its content and checked against 1.0.0
    old = json.loads(good.read_text())
    for key in ("kind", "studies"):
        old.pop(key)
    for side in old["sides"].values():
        side.get("avn", {}).pop("surface_deepening_mm", None)
    old["schema_version"] = "1.0.0"
    legacy = tmp_path / "legacy.json"
    legacy.write_text(json.dumps(old))
    assert main(["validate-report", str(legacy)]) == 0
    assert "ok (compare schema 1.0.0)" in capsys.readouterr().out
    assert main(["validate-report", "--schema", "compare"]) == 0
    assert json.loads(capsys.readouterr().out)["properties"]["kind"]["const"] == "bmepipe-compare"


def test_refuses_followup_older_than_baseline(pair):
    root, *_ = pair
    with pytest.raises(FollowupOrderError, match="earlier"):
        compare(root / "fu", root / "base")


def test_refuses_different_patient(pair, tmp_path):
    root, base, fu, _ = pair
    other = dataclasses.replace(fu.study_info, patient_id="OTHER0002", patient_name="OTHER^PATIENT")
    write_study(dataclasses.replace(fu, study_info=other), tmp_path / "other")
    with pytest.raises(DifferentPatientError) as info:
        compare(root / "base", tmp_path / "other")
    assert "OTHER" not in str(info.value) and "PHANTOM0001" not in str(info.value)  # no identifiers in messages


def test_trajectory_rules_on_stated_changes():
    def side(v0, v1, c0=0.0, c1=0.0, n0=0.0, n1=0.0):
        p = lambda a, b: {"then": a, "now": b}  # noqa: E731
        return {"bme": {"volume_ml": p(v0, v1)}, "avn": {"collapse_mm": p(c0, c1), "necrotic_extent_pct": p(n0, n1)},
                "sif": {"line_length_mm": p(0.0, 0.0)}}

    assert trajectory(side(0.0, 5.0))[0] == "new"
    assert trajectory(side(10.0, 3.0))[0] == "resolving"
    assert trajectory(side(10.0, 9.0))[0] == "stable"
    assert trajectory(side(10.0, 9.0, c0=0.0, c1=2.0, n0=20, n1=20))[0] == "progressing"
    assert trajectory(side(1.0, 0.0))[0] == "stable"  # below the 2 ml floor then and now
    # the registered collapse change, when present, decides (independent measurements may even decrease)
    s = side(10.0, 9.0, c0=4.8, c1=2.1, n0=20, n1=20)
    s["avn"]["surface_deepening_mm"] = 3.0
    assert trajectory(s)[0] == "progressing"
    s["avn"]["surface_deepening_mm"] = 0.4
    assert trajectory(s)[0] == "stable"
    # a new subchondral line counts when the follow-up's pattern assessment takes it as a finding
    s = side(50.0, 48.0)
    s["sif"]["line_length_mm"] = {"then": 0.0, "now": 8.0}
    s["pattern"] = {"then": "toh_like", "now": "sif_like"}
    assert trajectory(s)[0] == "progressing"
    s["pattern"]["now"] = "toh_like"
    label, evidence = trajectory(s)
    assert label == "stable" and any(e["feature"] == "line_length_mm" for e in evidence)


def test_hip_registration_is_deterministic(pair):
    """Same images, same transform: the metric's random sampling is seeded (SimpleITK seed 0 = wall clock)."""
    from bmepipe.compare.registration import register_hip

    _, base, _, result = pair
    image = result.baseline.normalized.fluid
    centre = result.baseline.segmentation.sides["right"].head_center_lps_mm
    moved = tuple(np.add(centre, (1.0, 0.5, 0.0)))
    params = [register_hip(image, image, centre, moved)[0].GetParameters() for _ in range(3)]
    assert params[0] == params[1] == params[2]


@pytest.mark.parametrize("where", ["inside", "at the grid edge"])
def test_resample_mask_matches_a_whole_grid_resampling(where):
    """The box-wise resampling gives what SimpleITK gives resampling the whole grids (the oracle)."""
    import SimpleITK as sitk

    from bmepipe.compare.registration import resample_mask

    rng = np.random.default_rng(3)
    moving = sitk.Image(96, 80, 18, sitk.sitkFloat32)
    moving.SetSpacing((0.9, 0.9, 4.0))
    moving.SetOrigin((-40.0, -30.0, -35.0))
    fixed = sitk.Image(100, 90, 20, sitk.sitkFloat32)
    fixed.SetSpacing((0.8, 0.8, 3.5))
    fixed.SetOrigin((-45.0, -38.0, -36.0))
    mask = np.zeros(moving.GetSize()[::-1], bool)
    zz, yy, xx = np.indices(mask.shape)
    if where == "inside":
        mask |= ((xx - 50) ** 2 + (yy - 40) ** 2) / 400.0 + ((zz - 9) ** 2) / 16.0 < 1
    else:
        mask[:4, :10, 85:] = True
    for _ in range(3):
        tx = sitk.Euler3DTransform()
        tx.SetCenter((0.0, 0.0, 0.0))
        tx.SetRotation(*rng.uniform(-0.2, 0.2, 3))
        tx.SetTranslation(tuple(rng.uniform(-6, 6, 3)))
        img = sitk.GetImageFromArray(mask.astype(np.float32))
        img.CopyInformation(moving)
        expected = sitk.GetArrayFromImage(sitk.Resample(img, fixed, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)) > 0.5
        assert expected.any()
        assert np.array_equal(resample_mask(mask, moving, fixed, tx), expected)
