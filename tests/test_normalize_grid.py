"""One grid (bmepipe.normalize.grid): header geometry, rigid registration, overlap errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import normalize_synth as ns
from bmepipe.errors import ConfigError, NoOverlapError
from bmepipe.normalize import resample_to_reference

CORONAL = ns.CORONAL


def volume(image, frame, kind="t1"):
    return ns.volume(image, kind, frame)


def rigid(rx_deg, ry_deg, rz_deg, t_mm):
    tx = sitk.Euler3DTransform()
    tx.SetRotation(*np.deg2rad([rx_deg, ry_deg, rz_deg]))
    tx.SetTranslation(t_mm)
    return tx


@pytest.fixture(scope="module")
def stir_ref():
    grid = ns.make_grid((160, 120, 22), (2.4, 2.4, 5.0), direction=CORONAL)  # coronal slab
    return ns.series(grid, "stir", sigma=0.025, seed=1)


def test_geometry_resampling_is_exact_for_a_linear_ramp():
    # Linear interpolation reproduces a linear function exactly: any error is a geometry error.
    ref = ns.make_grid((60, 50, 12), (3.0, 3.0, 5.0), direction=CORONAL)
    mov_grid = ns.make_grid((70, 70, 40), (2.7, 2.7, 4.0), origin=(-95.0, -90.0, -80.0))  # axial, other spacing
    ramp = lambda p: 100 + 0.5 * p[..., 0] - 0.3 * p[..., 1] + 0.2 * p[..., 2]  # noqa: E731
    moving = sitk.GetImageFromArray(ramp(ns.physical_points(mov_grid)).astype(np.float32))
    moving.CopyInformation(mov_grid)
    res = resample_to_reference(moving, ref, register="never")
    inside = sitk.GetArrayFromImage(res.inside) > 0
    got = sitk.GetArrayFromImage(res.image)[inside]
    expected = ramp(ns.physical_points(ref))[inside]
    assert inside.mean() > 0.5
    assert res.method == "geometry" and res.metric is None
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert res.image.GetSize() == ref.GetSize() and np.allclose(res.image.GetDirection(), ref.GetDirection())


def test_rigid_registration_recovers_a_known_motion_across_frames(stir_ref):
    true = rigid(3.0, -2.0, 3.0, (5.0, -3.0, 2.0))  # reference point -> where the moved anatomy shows it
    t1_grid = ns.make_grid((180, 140, 26), (2.0, 2.0, 4.5), direction=CORONAL)
    t1 = ns.series(t1_grid, "t1", transform=true.GetInverse(), sigma=0.025, seed=2)
    res = resample_to_reference(volume(t1, "1.2.3.9", "t1"), volume(stir_ref, "1.2.3.7", "stir"))
    assert res.method == "rigid" and "frames of reference differ" in res.reason
    pts = ns.physical_points(stir_ref)[::3, ::10, ::10].reshape(-1, 3)
    pts = pts[ns.labels_at(pts) > 0]
    err = np.linalg.norm(ns.apply_rigid(res.transform, pts) - ns.apply_rigid(true, pts), axis=1)
    assert err.mean() < 1.0 and err.max() < 1.5, (err.mean(), err.max())
    # the reported residual is the size of the correction the headers missed
    moved = np.linalg.norm(ns.apply_rigid(true, pts) - pts, axis=1).mean()
    assert abs(res.residual_mm - moved) < 1.5


@pytest.fixture
def levels_run(monkeypatch):
    """The registrations run, in order: ``"check"`` (the motion check's one level) or ``"full"``."""
    import bmepipe.normalize.grid as grid

    runs = []

    def recorded(name, original):
        def run(*args, **kwargs):
            runs.append(name)
            return original(*args, **kwargs)
        return run

    monkeypatch.setattr(grid, "_register_check", recorded("check", grid._register_check))
    monkeypatch.setattr(grid, "_register_rigid", recorded("full", grid._register_rigid))
    return runs


def test_auto_keeps_header_geometry_without_motion(stir_ref, levels_run):
    t1_grid = ns.make_grid((180, 140, 26), (2.0, 2.0, 4.5), direction=CORONAL)
    t1 = ns.series(t1_grid, "t1", sigma=0.025, seed=2)
    res = resample_to_reference(volume(t1, "1.2.3.7"), volume(stir_ref, "1.2.3.7", "stir"))
    assert res.method == "geometry"
    assert res.residual_mm < 1.5
    assert sitk.Euler3DTransform(res.transform).GetParameters() == (0.0,) * 6
    assert levels_run == ["check"]  # the check found no motion: no full registration


@pytest.mark.parametrize("shift_mm", [1.0, 3.0])
def test_auto_checks_small_and_large_motion_with_the_full_registration(stir_ref, levels_run, shift_mm):
    true = rigid(0.0, 0.0, 0.0, (shift_mm, 0.0, 0.0))  # 1 mm: above the check's cut, below the threshold
    t1_grid = ns.make_grid((180, 140, 26), (2.0, 2.0, 4.5), direction=CORONAL)
    t1 = ns.series(t1_grid, "t1", transform=true.GetInverse(), sigma=0.025, seed=5)
    res = resample_to_reference(volume(t1, "1.2.3.7"), volume(stir_ref, "1.2.3.7", "stir"))
    assert levels_run == ["check", "full"]
    assert abs(res.residual_mm - shift_mm) < 0.5
    assert res.method == ("rigid" if shift_mm > 1.5 else "geometry")


def test_auto_registers_a_same_frame_pair_when_the_patient_moved(stir_ref):
    true = rigid(0.0, 0.0, 2.0, (4.0, 0.0, -3.0))
    t1_grid = ns.make_grid((180, 140, 26), (2.0, 2.0, 4.5), direction=CORONAL)
    t1 = ns.series(t1_grid, "t1", transform=true.GetInverse(), sigma=0.025, seed=5)
    res = resample_to_reference(volume(t1, "1.2.3.7"), volume(stir_ref, "1.2.3.7", "stir"))
    assert res.method == "rigid" and "motion" in res.reason


def test_never_register_uses_headers_even_across_frames(stir_ref):
    res = resample_to_reference(volume(stir_ref, "1.2.3.8"), volume(stir_ref, "1.2.3.7", "stir"), register="never")
    assert res.method == "geometry" and "differ" in res.reason
    np.testing.assert_allclose(sitk.GetArrayFromImage(res.image), sitk.GetArrayFromImage(stir_ref), atol=1e-5)


def test_disjoint_volumes_raise_no_overlap(stir_ref):
    far = ns.make_grid((40, 40, 10), (2.0, 2.0, 4.0), origin=(600.0, 600.0, 600.0))
    with pytest.raises(NoOverlapError, match="do not overlap"):
        resample_to_reference(far, stir_ref)


def test_unknown_register_mode(stir_ref):
    with pytest.raises(ConfigError):
        resample_to_reference(stir_ref, stir_ref, register="sometimes")


def test_thin_same_frame_overlap_keeps_header_geometry():
    ref = ns.make_grid((100, 100, 20), (3.0, 3.0, 5.0))
    mov = ns.make_grid((100, 100, 20), (3.0, 3.0, 5.0), origin=(120.0, -150.0, -50.0))  # ~6 % overlap, no motion
    res = resample_to_reference(ns.series(mov, "t1", sigma=0.02, seed=2), ns.series(ref, "stir", sigma=0.02, seed=1))
    assert res.method == "geometry" and "too small" in res.reason
    assert 0.05 < res.overlap < 0.1


def test_registration_is_deterministic(stir_ref):
    """Same input, same transform (ITK's multithreaded metric sums would otherwise vary in the last digits)."""
    true = rigid(2.0, 0.0, -1.0, (3.0, 2.0, 0.0))
    t1_grid = ns.make_grid((180, 140, 26), (2.0, 2.0, 4.5), direction=CORONAL)
    t1 = ns.series(t1_grid, "t1", transform=true.GetInverse(), sigma=0.025, seed=6)
    runs = [resample_to_reference(volume(t1, "1.2.3.9", "t1"), volume(stir_ref, "1.2.3.7", "stir"))
            for _ in range(3)]
    assert all(r.method == "rigid" for r in runs)
    params = {sitk.Euler3DTransform(r.transform).GetParameters() for r in runs}
    assert len(params) == 1 and len({r.residual_mm for r in runs}) == 1


def test_resampling_onto_the_same_grid_is_a_copy_and_agrees_with_itk(stir_ref):
    from bmepipe.normalize.grid import resample_images, resample_label, same_grid

    moving = sitk.Cast(stir_ref, sitk.sitkFloat32)
    identity = sitk.Euler3DTransform()
    image, inside = resample_images(moving, stir_ref, identity)
    itk = sitk.Resample(moving, stir_ref, identity, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(itk), rtol=1e-6)
    assert np.all(sitk.GetArrayViewFromImage(inside) == 1)
    assert same_grid(image, stir_ref) and same_grid(inside, stir_ref)
    mask = sitk.Cast(stir_ref > float(np.median(sitk.GetArrayViewFromImage(stir_ref))), sitk.sitkUInt8)
    itk_mask = sitk.Resample(mask, stir_ref, identity, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resample_label(mask, stir_ref, identity)),
                                  sitk.GetArrayFromImage(itk_mask))
    # a shifted grid or a real transform is resampled
    shifted = sitk.Image(moving)
    shifted.SetOrigin(tuple(np.add(moving.GetOrigin(), (3.6, 0.0, 0.0))))
    assert not same_grid(shifted, stir_ref)
    image, inside = resample_images(shifted, stir_ref, identity)
    assert 0 < sitk.GetArrayViewFromImage(inside).mean() < 1  # 1.5 voxels off: a column is uncovered
    moved = rigid(0.0, 0.0, 0.0, (2.4, 0.0, 0.0))
    image, _ = resample_images(moving, stir_ref, moved)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(image)[:, :, :-2],
                               sitk.GetArrayViewFromImage(moving)[:, :, 1:-1], rtol=1e-5, atol=1e-6)


def test_transform_points_agrees_with_itk():
    from bmepipe.normalize.grid import transform_points

    rng = np.random.default_rng(4)
    pts = rng.uniform(-200, 200, (500, 3))
    tx = rigid(4.0, -3.0, 7.0, (3.0, -4.0, 5.0))
    tx.SetCenter((10.0, -20.0, 30.0))
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(tuple((np.eye(3) + rng.normal(0, 0.05, (3, 3))).ravel()))
    affine.SetTranslation((1.0, 2.0, 3.0))
    for t in (tx, tx.GetInverse(), affine, sitk.TranslationTransform(3, (1.0, -2.0, 0.5))):
        expected = np.array([t.TransformPoint(tuple(p)) for p in pts])
        np.testing.assert_allclose(transform_points(t, pts), expected, atol=1e-9)
