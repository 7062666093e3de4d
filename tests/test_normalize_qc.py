"""Input QC (bmepipe.normalize.qc) on analytic objects with known SNR, fat suppression, FOV and ghosts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

import normalize_synth as ns
from bmepipe.normalize import assess_quality, coverage_flag

CORONAL = ns.CORONAL
FAT, MARROW = ns.TISSUES["fat"][0], ns.TISSUES["marrow"][0]


def grid(size=(192, 192, 24), origin=None):
    return ns.make_grid(size, (2.0, 2.0, 5.0), origin=origin, direction=CORONAL)


def study(g, snr=20.0, fat_leak=None, ghost=0.0):
    """STIR + T1 of the object; ``fat_leak(points)`` adds unsuppressed fat signal (muscle STIR = 0.30)."""
    fluid = ns.series(g, "stir", sigma=0.30 / snr, seed=1)
    t1 = ns.series(g, "t1", sigma=0.35 / snr, seed=2)
    a = sitk.GetArrayFromImage(fluid)
    if fat_leak is not None:
        p = ns.physical_points(g)
        lab = ns.labels_at(p)
        a = a + np.where(np.isin(lab, (FAT, MARROW)), fat_leak(p), 0).astype(np.float32)
    if ghost:
        a = a + ghost * np.roll(a, a.shape[1] // 3, axis=1)  # a replica along the phase direction
    out = sitk.GetImageFromArray(a.astype(np.float32))
    out.CopyInformation(fluid)
    return out, t1


@pytest.mark.parametrize("snr", [12.0, 40.0])
def test_snr_matches_the_known_noise(snr):
    q = assess_quality(*study(grid(), snr=snr))
    for name in ("snr_fluid", "snr_t1"):
        assert abs(q.flag(name).value / snr - 1) < 0.15
    assert q.flag("snr_fluid").passed


def test_low_snr_is_flagged():
    assert assess_quality(*study(grid(), snr=5.0)).flag("snr_fluid").passed is False


def test_working_fat_suppression_passes():
    q = assess_quality(*study(grid()))
    fs = q.flag("fat_suppression")
    # STIR fat/muscle of the object is 0.06/0.30 = 0.2
    assert fs.passed and abs(fs.value - 0.2) < 0.05
    assert q.flag("fat_suppression_homogeneity").passed
    assert q.passed


def test_failed_fat_suppression_is_flagged():
    q = assess_quality(*study(grid(), fat_leak=lambda p: 0.8))  # fat ~0.86 vs muscle 0.30
    assert q.flag("fat_suppression").passed is False
    assert q.flag("fat_suppression").value > 2.0
    assert "failed" in q.flag("fat_suppression").message


def test_one_sided_fat_suppression_failure_is_inhomogeneous():
    # suppression fails only over the patient's left (x > 60 mm)
    q = assess_quality(*study(grid(), fat_leak=lambda p: 0.8 * (p[..., 0] > 60)))
    h = q.flag("fat_suppression_homogeneity")
    assert h.passed is False
    regions = h.details["regions"]
    assert max(regions, key=regions.get).startswith("left")
    assert min(regions[k] for k in regions if k.startswith("right")) < 0.5


def test_cropped_field_of_view_is_flagged():
    # FOV starts at x = -80 mm: the patient's right hip (head centre x = -90) is cut off
    q = assess_quality(*study(grid((150, 192, 24), origin=(-80.0, -23.0, 191.0))))
    c = q.flag("coverage")
    assert c.passed is False and "right" in c.message
    assert assess_quality(*study(grid())).flag("coverage").passed


def test_coverage_from_head_spheres_is_exact():
    g = grid()  # FOV faces (outer voxel edges): x, z at +-192 mm, y (slab) at +-60 mm
    ok = coverage_flag(g, [(-90, 0, 40), (90, 0, 40)], [24, 24])
    assert ok.passed and abs(ok.value - (60 - 24)) < 1e-6  # the thin slab is the tightest direction
    cut = coverage_flag(g, [(-180, 0, 40), (90, 0, 40)], [24, 24])
    assert cut.passed is False and abs(cut.value - (192 - 180 - 24)) < 1e-6
    assert coverage_flag(g, [(90, 0, 40)], [24]).passed is False


def test_ghosting_is_flagged():
    assert assess_quality(*study(grid(), ghost=0.1)).flag("ghosting").passed is False
    assert assess_quality(*study(grid())).flag("ghosting").passed


def test_report_serializes_to_json():
    d = assess_quality(*study(grid())).to_dict()
    text = json.dumps(d)
    names = [f["name"] for f in json.loads(text)["flags"]]
    assert names == ["snr_fluid", "snr_t1", "fat_suppression", "fat_suppression_homogeneity", "coverage", "ghosting"]
    assert all({"value", "threshold", "passed", "message"} <= set(f) for f in d["flags"])


def test_without_t1_fat_checks_are_not_assessable_rather_than_false_alarms():
    fluid, _ = study(grid())
    q = assess_quality(fluid)
    for name in ("fat_suppression", "fat_suppression_homogeneity", "ghosting"):
        assert q.flag(name).passed is None and "T1" in q.flag(name).message
    assert abs(q.flag("snr_fluid").value / 20.0 - 1) < 0.15
    assert q.passed  # not assessable is not a failure


@pytest.mark.parametrize("spacing_mm", [2.0, 0.7])  # 0.7 mm: columns binned by 3 first
def test_midline_is_the_best_mirror_correlation(spacing_mm):
    """The midline search gives the shift a direct Pearson correlation of every overlap picks."""
    from bmepipe.normalize.qc import _midline_x_mm

    rng = np.random.default_rng(6)
    rows, cols = 40, 270
    x = np.arange(cols) * spacing_mm
    centre = 0.45 * cols * spacing_mm
    prof = np.exp(-((x - centre + 20) / 18) ** 2) + 0.8 * np.exp(-((x - centre - 20) / 18) ** 2)  # two "hips"
    arr = (prof[None, None, :] * (1 + 0.1 * rng.random((3, rows, 1))) + 0.05 * rng.random((3, rows, cols)))
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing((spacing_mm, spacing_mm, 5.0))
    got = _midline_x_mm(img, arr)
    step = max(1, int(round(2.0 / spacing_mm)))
    proj = arr.mean(axis=0)
    proj = proj[:, : cols - cols % step].reshape(rows, -1, step).mean(axis=2)
    n = proj.shape[1]
    best, best_shift = -np.inf, None
    for shift in range(-n + 1, n):
        lo, hi = max(0, -shift), min(n, n - shift)
        if hi - lo < 0.4 * n:
            continue
        r = np.corrcoef(proj[:, lo:hi].ravel(), proj[:, ::-1][:, lo + shift:hi + shift].ravel())[0, 1]
        if r > best:
            best, best_shift = r, shift
    expected_index = ((n - 1 - best_shift) / 2 + 0.5) * step - 0.5
    assert got == pytest.approx(expected_index * spacing_mm)
    assert abs(got - centre) < 2 * step * spacing_mm
