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


def test_followup_same_anatomy_new_pose_evolved_pattern(base):
    fu = generate_followup(base, days=60, shift_lps_mm=(10, -20, 3), rotation_deg=-8, toh_bme_factor=0.5,
                           sif_line="healed")
    for side in ("right", "left"):
        shift = np.subtract(fu.truth["sides"][side]["head_center_lps_mm"], base.truth["sides"][side]["head_center_lps_mm"])
        np.testing.assert_allclose(shift, (10, -20, 3), atol=1e-3)  # rigid shift of the whole patient
        assert fu.truth["sides"][side]["head_radius_mm"] == pytest.approx(base.truth["sides"][side]["head_radius_mm"])
    assert fu.spec.right.bme_peak == pytest.approx(0.5 * base.spec.right.bme_peak)
    assert fu.spec.left.line_length_mm == 0 and base.spec.left.line_length_mm > 0
    assert fu.spec.acquisition.obliquity_deg == pytest.approx(base.spec.acquisition.obliquity_deg - 8)
    assert fu.study_info.patient_id == base.study_info.patient_id
    assert fu.study_info.study_instance_uid != base.study_info.study_instance_uid
    assert fu.study_info.study_date == "20260302"  # 2026-01-01 + 60 days
    assert not np.array_equal(fu.fluid.signal, base.fluid.signal)


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
