"""segment_hips against phantom truth: issue 6 accuracy thresholds, landmarks, failures that say why.

The suite (seed 731953) was never used while tuning the segmentation (see segment_cases.py); it spans
1.5/3 T, STIR / PD-FS / T2-FS, bias 0-0.5, SNR 12-40, obliquity up to 10 degrees with tilt, head radii
21-28 mm, and normal, TOH, AVN (with collapse and effusion) and SIF hips. Truth comes from the phantom's
analytic anatomy (labels rasterized from implicit shapes), never from the segmentation code.
Runtime: about 25-50 s on 2 cores (phantom generation and normalization included), hence ``slow``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from bmepipe.errors import ConfigError, InputError
from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study
from bmepipe.segment import REGIONS, segment_hips, segment_hips_images
from segment_cases import collapse_depth_mm, dice, evaluate, normalized, segment_specs

TEST_SEED = 731953  # session 2's held-out seed (session 1 used 424242, since looked at)
N_CASES = 6  # 12 hips, every pattern on each side at least once


@pytest.fixture(scope="module")
def suite():
    out = []
    for spec in segment_specs(N_CASES, TEST_SEED, matrix=256, slices=24):
        study = generate_study(spec)
        seg = segment_hips(normalized(study))
        out.append((spec, study, seg))
    return out


def _failures(suite, keyword):
    out = []
    for spec, study, seg in suite:
        for row in evaluate(study, seg):
            out += [f"case seed {spec.seed}: {f}" for f in row["failures"] if keyword in f or "not analysed" in f]
    return out


@pytest.mark.slow
def test_every_hip_is_analysed_and_head_meets_issue_thresholds(suite):
    # Dice >= 0.92 femoral head, centre error <= 1.5 mm, radius error <= 1 mm on every hip
    failures = _failures(suite, "femoral_head") + _failures(suite, "head centre") + _failures(suite, "head radius")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_intertrochanteric_meets_issue_threshold(suite):
    failures = _failures(suite, "intertrochanteric")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_neck_meets_issue_threshold(suite):
    failures = _failures(suite, "femoral_neck")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_landmarks_and_zones_are_consistent(suite):
    for spec, study, seg in suite:
        for side, s in seg.sides.items():
            truth = study.truth["sides"][side]
            assert s.ok and set(s.regions) == set(REGIONS)
            head = s.regions["femoral_head"]
            # zones lie in the head; the subchondral zone is the shell under the surface
            assert not (s.subchondral_zone & ~head).any() and not (s.weight_bearing & ~head).any()
            assert 0.2 < s.subchondral_zone.sum() / head.sum() < 0.7
            # laterality from LPS: the right hip at negative x
            assert (s.head_center_lps_mm[0] < 0) == (side == "right")
            # axes point the anatomical way and agree with the phantom's analytic axes
            assert math.degrees(math.acos(np.dot(s.neck_axis, truth["neck_axis_lps"]))) < 8.0
            assert math.degrees(math.acos(np.dot(s.shaft_axis, truth["shaft_axis_lps"]))) < 5.0
            assert abs(s.neck_radius_mm - truth["neck_radius_mm"]) < 2.5
            # pathology never leaks the femur into the acetabulum
            femur = np.logical_or.reduce([s.regions[r] for r in REGIONS if r != "acetabulum"])
            assert (femur & study.labels[f"{side}_acetabulum"]).sum() < 0.02 * head.sum()
            # most of the effusion lies in the joint space handed to quantification (the rest lies in the
            # femur's partial-volume rim of tangentially cut slices: a known weakness)
            eff = study.labels[f"{side}_effusion"]
            if eff.sum() > 50:
                assert (eff & s.joint_space).sum() >= 0.6 * eff.sum()
            # without a lesion the articular surface points lie on the fitted sphere
            assert len(s.surface_deviation_mm) > 200
            if truth["collapse_mm"] <= 0 and truth["necrosis"]["present"] is False:
                assert np.median(np.abs(s.surface_deviation_mm)) < 0.5


@pytest.mark.slow
def test_collapse_depth_within_1mm(suite):
    # regions.md: largest inward deviation from the (dent-free) head sphere in the weight-bearing portion
    errors = []
    for spec, study, seg in suite:
        for side, s in seg.sides.items():
            truth = study.truth["sides"][side]
            if truth["collapse_mm"] >= 1.5:
                errors.append(round(abs(collapse_depth_mm(s) - truth["collapse_mm"]), 2))
    assert errors and max(errors) < 1.0, errors


@pytest.mark.slow
def test_fluid_sensitive_series_alone_meets_issue_thresholds(suite):
    # every hip of the suite again, segmented from the fluid-sensitive series alone (bmepipe.segment.fluid_only)
    failures = []
    for spec, study, _ in suite:
        seg = segment_hips(normalized(study), use_t1=False)
        failures += [f"case seed {spec.seed}: {f}" for row in evaluate(study, seg) for f in row["failures"]]
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_side_outside_the_field_of_view_fails_with_reason_other_side_analysed():
    # FOV centred 100 mm to the patient's left: the right hip (x ~ -85 mm) is outside
    acq = AcquisitionSpec(matrix=192, acquired_matrix=(176, 160), fov_mm=280.0, slices=22, snr=25.0,
                          center_offset_lps_mm=(110.0, 0.0, 0.0))
    # seeds 424300 and 903100 were looked at while fixing the head choice (session 2); 903200 never was
    study = generate_study(PhantomSpec.random(903200, right="normal", left="toh", acquisition=acq))
    seg = segment_hips(normalized(study))
    right, left = seg.sides["right"], seg.sides["left"]
    assert right.status == "failed" and ("femoral head" in right.reason or "field of view" in right.reason)
    assert right.regions == {} and right.head_center_lps_mm is None
    assert left.ok
    err = np.linalg.norm(np.subtract(left.head_center_lps_mm, study.truth["sides"]["left"]["head_center_lps_mm"]))
    assert err <= 1.5
    # without T1 the femur is segmented from the fluid-sensitive series alone, and says so
    fluid_only = segment_hips(normalized(study), use_t1=False).sides["left"]
    assert fluid_only.ok and any("T1" in w for w in fluid_only.extras["warnings"])
    err = np.linalg.norm(np.subtract(fluid_only.head_center_lps_mm, study.truth["sides"]["left"]["head_center_lps_mm"]))
    assert err <= 1.5
    assert dice(fluid_only.regions["femoral_head"], study.labels["left_femoral_head"]) >= 0.92


def _image(array, spacing=(1.5, 1.5, 4.0)):
    img = sitk.GetImageFromArray(array.astype(np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin((-float(array.shape[2]) * spacing[0] / 2, 0.0, 100.0))
    img.SetDirection((1, 0, 0, 0, 0, 1, 0, -1, 0))  # coronal
    return img


def test_non_hip_input_fails_both_sides_with_reasons():
    # a soft-tissue cylinder (muscle inside fat) with noise and no bone: nothing is a femoral head
    rng = np.random.default_rng(3)
    z, y, x = np.indices((24, 200, 200))
    r = np.hypot(x - 100, y - 100)
    t1 = np.where(r < 60, 1.0, np.where(r < 90, 2.8, 0.0)) + rng.normal(0, 0.05, r.shape)
    fluid = np.where(r < 60, 1.0, np.where(r < 90, 0.2, 0.0)) + rng.normal(0, 0.08, r.shape)
    seg = segment_hips_images(_image(np.abs(fluid)), _image(np.abs(t1)))
    for side in ("right", "left"):
        s = seg.sides[side]
        assert s.status == "failed" and s.reason and not s.ok


def test_degenerate_input_and_bad_parameters():
    flat = _image(np.ones((2, 50, 50)))
    seg = segment_hips_images(flat)
    assert all(s.status == "failed" and "volume" in s.reason for s in seg.sides.values())
    with pytest.raises(ConfigError):
        segment_hips_images(_image(np.ones((5, 50, 50))), subchondral_depth_mm=0)
    with pytest.raises(InputError):
        segment_hips_images(_image(np.ones((5, 50, 50))), _image(np.ones((5, 40, 50))))
