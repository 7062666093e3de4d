"""The phantom's images obey MR physics (measured in the images, not taken from the code).

Oracles: the signal equations evaluated by hand, tissue regions located from the
anatomy (tissue at voxel centres, eroded so partial volume cannot reach them),
SNR measured by the difference of two noise realizations and from the Rayleigh
background (mr_physics.md section 4), and the radiologist's expectations
(fat bright on T1 and nulled on STIR, fluid and BME bright on STIR).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study
from bmepipe.phantom.anatomy import AIR, FAT, MUSCLE, URINE
from bmepipe.phantom.study import build_scene
from bmepipe.phantom.tissues import inversion_recovery_signal, spin_echo_signal, stir_null_inversion_time_ms

SMALL = dict(matrix=160, acquired_matrix=(160, 160), slices=14, slice_thickness_mm=4.0, slice_gap_mm=0.4,
             supersample=(1, 1, 3))


def _tissue_roi(study, code, erode=2):
    """Voxels whose centre, and every in-plane neighbour within ``erode`` voxels, is tissue ``code``."""
    g = study.geometry
    ii, jj, kk = np.meshgrid(np.arange(g.size[0]), np.arange(g.size[1]), np.arange(g.size[2]), indexing="ij")
    pts = g.index_to_lps(np.column_stack([ii.ravel(), jj.ravel(), kk.ravel()]))
    codes, _, _ = build_scene(study.spec).sample_codes(pts)
    mask = (codes == code).reshape(ii.shape).transpose(2, 1, 0)  # -> [slice, row, col]
    if erode:
        mask = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool), iterations=erode)
    assert mask.sum() > 20, f"too few voxels of tissue {code} in the test ROI"
    return mask


@pytest.fixture(scope="module")
def toh_study():
    spec = PhantomSpec.random(21, right="toh", left="normal",
                              acquisition=AcquisitionSpec(bias_amplitude=0.0, snr=25.0, **SMALL))
    spec = replace(spec, right=replace(spec.right, bme_peak=0.9, bme_extent="head_neck", bme_medial_sparing=0.0,
                                       bme_heterogeneity=0.1))
    return generate_study(spec)


def test_signal_equations_limits():
    # Spin echo with TR >> T1 and TE -> 0 gives PD; TE = T2 divides by e.
    assert spin_echo_signal(0.8, 300.0, 50.0, 1e7, 0.0) == pytest.approx(0.8)
    assert spin_echo_signal(1.0, 300.0, 50.0, 1e7, 50.0) == pytest.approx(math.exp(-1))
    # Inversion recovery: null at T1 ln2 when TR >> T1; full recovery magnitude PD for TI >> T1.
    assert inversion_recovery_signal(1.0, 350.0, 60.0, 1e7, 0.0, 350.0 * math.log(2)) == pytest.approx(0.0, abs=1e-12)
    assert inversion_recovery_signal(1.0, 350.0, 60.0, 1e7, 0.0, 1e6) == pytest.approx(1.0)
    ti = stir_null_inversion_time_ms(300.0, 4500.0)
    assert inversion_recovery_signal(1.0, 300.0, 60.0, 4500.0, 0.0, ti) == pytest.approx(0.0, abs=1e-9)


def test_stir_nulls_fat_against_fluid(toh_study):
    stir = toh_study.get("cor_fluid").signal
    assert toh_study.get("cor_fluid").protocol.kind == "stir"
    fat = stir[_tissue_roi(toh_study, FAT)].mean()
    urine = stir[_tissue_roi(toh_study, URINE)].mean()
    muscle = stir[_tissue_roi(toh_study, MUSCLE)].mean()
    assert fat < 0.2 * urine  # the criterion
    assert urine > muscle > fat  # fluid bright, muscle intermediate, fat dark


def test_t1_fat_bright_fluid_dark(toh_study):
    t1 = toh_study.get("cor_t1").signal
    fat = t1[_tissue_roi(toh_study, FAT)].mean()
    urine = t1[_tissue_roi(toh_study, URINE)].mean()
    muscle = t1[_tissue_roi(toh_study, MUSCLE)].mean()
    assert fat > 1.5 * muscle
    assert muscle > urine


def test_bme_bright_on_stir_dark_on_t1(toh_study):
    lab = toh_study.labels
    inner = np.ones((1, 3, 3), bool)
    bme = ndimage.binary_erosion(lab["right_bme"] & lab["right_femoral_head"], inner, iterations=1)
    normal = ndimage.binary_erosion(lab["left_femoral_head"], inner, iterations=2)
    assert bme.sum() > 20 and normal.sum() > 20
    assert not lab["left_bme"].any()
    stir, t1 = toh_study.get("cor_fluid").signal, toh_study.get("cor_t1").signal
    assert stir[bme].mean() > 2.0 * stir[normal].mean()
    assert t1[bme].mean() < 0.8 * t1[normal].mean()


def _snr_pair(snr: float, **kw):
    acq = AcquisitionSpec(bias_amplitude=0.0, snr=snr, **{**SMALL, **kw})
    spec = PhantomSpec.random(5, right="normal", left="sif", acquisition=acq)
    a = generate_study(replace(spec, acquisition=replace(acq, noise_seed=101)))
    b = generate_study(replace(spec, acquisition=replace(acq, noise_seed=202)))
    return a, b


@pytest.mark.parametrize("snr", [12.0, 30.0])
def test_snr_by_difference_of_two_realizations(snr):
    a, b = _snr_pair(snr)
    roi = ndimage.binary_erosion(a.reference_mask, np.ones((1, 3, 3), bool))
    assert roi.sum() > 50
    for name, requested in (("cor_fluid", snr), ("cor_t1", 2 * snr)):
        s1, s2 = a.get(name).signal, b.get(name).signal
        sigma = np.std((s1 - s2)[roi]) / math.sqrt(2)
        measured = s1[roi].mean() / sigma
        assert measured == pytest.approx(requested, rel=0.15), name


def test_background_noise_is_rayleigh():
    a, _ = _snr_pair(20.0)
    s = a.get("cor_fluid").signal
    air = _tissue_roi(a, AIR, erode=3)
    roi = ndimage.binary_erosion(a.reference_mask, np.ones((1, 3, 3), bool))
    sigma_sd = s[air].std() / math.sqrt(2 - math.pi / 2)  # Rayleigh SD = 0.655 sigma
    sigma_mean = s[air].mean() / math.sqrt(math.pi / 2)  # Rayleigh mean = 1.253 sigma
    assert sigma_sd == pytest.approx(sigma_mean, rel=0.1)
    assert s[roi].mean() / sigma_sd == pytest.approx(20.0, rel=0.15)


@pytest.mark.parametrize("kind", ["pd_fs", "t2_fs"])
def test_fat_saturation_efficiency(kind):
    base = AcquisitionSpec(fluid_kind=kind, bias_amplitude=0.0, snr=40.0, with_t1=False, **SMALL)
    spec = PhantomSpec.random(9, acquisition=base)
    working = generate_study(replace(spec, acquisition=replace(base, fat_sat_efficiency=0.95)))
    failed = generate_study(replace(spec, acquisition=replace(base, fat_sat_efficiency=0.0)))
    fat, muscle = _tissue_roi(working, FAT), _tissue_roi(working, MUSCLE)
    on, off = working.fluid.signal, failed.fluid.signal
    assert on[fat].mean() < 0.5 * on[muscle].mean()  # suppressed fat darker than muscle
    assert off[fat].mean() > 1.5 * off[muscle].mean()  # failed suppression: fat bright, mimics edema
    # efficiency 0.95 leaves 5 % of the fat signal: (on_fat) / (off_fat) ~ 0.05 (noise floor aside)
    assert on[fat].mean() / off[fat].mean() == pytest.approx(0.05, abs=0.04)


def test_fat_saturation_falls_off_at_the_fov_edge():
    acq = AcquisitionSpec(fluid_kind="pd_fs", bias_amplitude=0.0, snr=60.0, with_t1=False, fat_sat_efficiency=0.95,
                          fat_sat_falloff=0.9, fat_sat_radius_mm=60.0, **SMALL)
    study = generate_study(PhantomSpec.random(9, acquisition=acq))
    fat = _tissue_roi(study, FAT)
    g = study.geometry
    centre_col = (g.size[0] - 1) / 2
    cols = np.arange(g.size[0])[None, None, :]
    lateral = fat & (np.abs(cols - centre_col) * g.spacing_mm[0] > 150)
    central = fat & (np.abs(cols - centre_col) * g.spacing_mm[0] < 40)
    assert lateral.sum() > 20 and central.sum() > 20
    s = study.fluid.signal
    assert s[lateral].mean() > 3 * s[central].mean()


def test_reported_bias_field_is_the_applied_field():
    acq = AcquisitionSpec(snr=1e6, bias_amplitude=0.4, **SMALL)
    spec = PhantomSpec.random(4, acquisition=acq)
    biased = generate_study(spec)
    flat = generate_study(replace(spec, acquisition=replace(acq, bias_amplitude=0.0)))
    tissue = flat.fluid.signal > 0.2 * np.percentile(flat.fluid.signal, 99)
    ratio = biased.fluid.signal[tissue] / flat.fluid.signal[tissue]
    assert np.abs(ratio - biased.bias_field[tissue]).max() < 0.01
    spread = biased.bias_field.max() - biased.bias_field.min()
    assert spread == pytest.approx(0.4, rel=0.03)  # requested peak-to-peak over the imaged volume


def test_same_spec_same_images():
    acq = AcquisitionSpec(matrix=64, acquired_matrix=(64, 64), slices=6, supersample=(1, 1, 3))
    spec = PhantomSpec.random(2, right="avn", left="toh", acquisition=acq)
    a, b = generate_study(spec), generate_study(spec)
    for sa, sb in zip(a.series, b.series):
        np.testing.assert_array_equal(sa.signal, sb.signal)
    assert a.truth == b.truth
