"""Follow-up phantoms (bmepipe.phantom.generate_followup) and the compare / phantom --followup command lines."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest

from bmepipe.errors import ConfigError
from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_followup, generate_study

ACQ = AcquisitionSpec(matrix=160, acquired_matrix=(160, 160), slices=16)


@pytest.fixture(scope="module")
def base():
    return generate_study(PhantomSpec.random(4, right="toh", left="sif", acquisition=ACQ))


def test_followup_same_anatomy_evolved_pattern(base):
    fu = generate_followup(base, days=60, shift_lps_mm=(10, -20, 3), toh_bme_factor=0.5, sif_line="healed")
    for side in ("right", "left"):
        shift = np.subtract(fu.truth["sides"][side]["head_center_lps_mm"], base.truth["sides"][side]["head_center_lps_mm"])
        np.testing.assert_allclose(shift, (10, -20, 3), atol=1e-3)  # rigid shift of the whole patient
        assert fu.truth["sides"][side]["head_radius_mm"] == pytest.approx(base.truth["sides"][side]["head_radius_mm"])
    assert fu.spec.right.bme_peak == pytest.approx(0.5 * base.spec.right.bme_peak)
    assert fu.spec.left.line_length_mm == 0 and base.spec.left.line_length_mm > 0
    assert fu.study_info.patient_id == base.study_info.patient_id
    assert fu.study_info.study_instance_uid != base.study_info.study_instance_uid
    assert fu.study_info.study_date == "20260302"  # 2026-01-01 + 60 days
    assert not np.array_equal(fu.fluid.signal, base.fluid.signal)


def _centroid_lps(mask, geometry):
    k, j, i = np.nonzero(mask)
    index = np.stack([i, j, k], axis=1).mean(axis=0) * np.asarray(geometry.spacing_mm)
    return np.asarray(geometry.origin_lps_mm) + np.reshape(geometry.direction, (3, 3)) @ index


def test_followup_pose_moves_the_patient_not_the_stack():
    # enough slices that both heads stay inside the slab after the move (centroids of whole heads)
    acq = AcquisitionSpec(matrix=160, acquired_matrix=(160, 160), slices=26, obliquity_deg=3.0)
    base = generate_study(PhantomSpec.random(4, right="toh", left="normal", acquisition=acq))
    shift, angle = np.array([10.0, -8.0, 3.0]), -8.0
    fu = generate_followup(base, days=30, shift_lps_mm=shift, rotation_deg=angle)
    # the stack is the baseline's plain coronal stack (the scanner did not move)
    assert fu.geometry == base.geometry and fu.series[1].geometry == base.series[1].geometry
    # the expected pose, built here: shift, then rotation about S-I through the stack centre
    a = np.radians(angle)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    g = base.geometry
    centre = np.asarray(g.origin_lps_mm) + np.reshape(g.direction, (3, 3)) @ (
        (np.asarray(g.size) - 1) / 2 * np.asarray(g.spacing_mm))
    pose = lambda p: centre + rot @ (np.asarray(p) + shift - centre)  # noqa: E731
    for side in ("right", "left"):
        c0 = base.truth["sides"][side]["head_center_lps_mm"]
        np.testing.assert_allclose(fu.truth["sides"][side]["head_center_lps_mm"], pose(c0), atol=1e-3)
        # the pixels agree: the follow-up's rendered head mask sits where the pose puts the baseline's
        moved = _centroid_lps(fu.labels[f"{side}_femoral_head"], g)
        expected = pose(_centroid_lps(base.labels[f"{side}_femoral_head"], g))
        assert np.linalg.norm(moved - expected) < 0.5, (side, moved, expected)
        assert np.linalg.norm(moved - _centroid_lps(base.labels[f"{side}_femoral_head"], g)) > 8.0
    m = np.reshape(fu.truth["followup_pose"]["matrix"], (3, 3))
    np.testing.assert_allclose(m, rot, atol=1e-6)


def test_rotated_followup_refuses_axial_series():
    acq = AcquisitionSpec(matrix=96, acquired_matrix=(96, 96), slices=8, with_axial=True)
    base = generate_study(PhantomSpec.random(4, acquisition=acq))
    with pytest.raises(ConfigError, match="axial"):
        generate_followup(base, rotation_deg=5.0)


@pytest.mark.parametrize("kwargs", [dict(shift_lps_mm=(0, 21, 0)), dict(rotation_deg=10.5), dict(days=0)])
def test_followup_pose_limits(base, kwargs):
    with pytest.raises(ConfigError):
        generate_followup(base, **kwargs)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "bmepipe", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_cli_phantom_followup_then_compare_refuses_reversed_order(tmp_path):
    r = _cli("phantom", tmp_path / "a", "--right", "toh", "--matrix", 160, "--acquired-matrix", "160x160",
             "--slices", 16, "--followup", tmp_path / "b", "--followup-days", 30, "--followup-shift", "5,0,-3")
    assert r.returncode == 0, r.stderr
    dates = [pydicom.dcmread(next(p for p in (tmp_path / d / "dicom").rglob("*") if p.is_file()),
                             stop_before_pixels=True).StudyDate
             for d in ("a", "b")]
    assert dates == ["20260101", "20260131"]
    r = _cli("compare", tmp_path / "b", tmp_path / "a", "-o", tmp_path / "out")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "earlier than the baseline" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "compare.json").exists()
