"""Intensity standardization to skeletal muscle (bmepipe.normalize.standardize) on analytic objects.

Truth: the analytic object's tissue signals, so tissue / muscle ratios are known exactly
(e.g. STIR fluid/muscle = 1.0 / 0.30).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import normalize_synth as ns
from bmepipe.errors import ConfigError, InputError
from bmepipe.normalize import correct_bias, standardize

LABELS = {name: lab for name, (lab, _) in ns.TISSUES.items()}
GRID = dict(size=(192, 192, 24), spacing=(2.0, 2.0, 5.0))


def truth_ratio(name, which):
    col = 0 if which == "t1" else 1
    return ns.TISSUES[name][1][col] / ns.TISSUES["muscle"][1][col]


@pytest.fixture(scope="module")
def variants():
    """Same anatomy: SNR 12 vs 40, different receiver gain, with and without a 30-45 % bias field."""
    grid = ns.make_grid(**GRID)
    p = ns.physical_points(grid)
    labels = ns.labels_at(p)
    out = {}
    for snr, bias_pp, gain in ((12, 0.0, 1.0), (40, 0.0, 250.0), (12, 0.45, 0.02), (40, 0.3, 7.0)):
        field = ns.smooth_bias(p, bias_pp, seed=2) if bias_pp else None
        fluid = ns.series(grid, "stir", bias=field, sigma=0.3 / snr, seed=1) * gain
        t1 = ns.series(grid, "t1", bias=field, sigma=0.35 / snr, seed=2) * gain * 1.7
        if bias_pp:
            fluid, _ = correct_bias(fluid)
            t1, _ = correct_bias(t1)
        out[(snr, bias_pp)] = standardize(fluid, t1)
    return labels, out


def interior(labels, name):
    # 1 voxel in from each tissue boundary: partial volume is not what is tested here
    return ndimage.binary_erosion(labels == LABELS[name], structure=np.ones((1, 3, 3), bool))


@pytest.mark.parametrize("which", ["fluid", "t1"])
def test_tissue_values_agree_across_snr_gain_and_bias(variants, which):
    labels, out = variants
    for name in ("fat", "marrow", "fluid", "muscle"):
        values = [s.value(interior(labels, name), which) for s in out.values()]
        spread = max(values) / min(values) - 1
        assert spread < 0.10, (name, which, values)
        # and they are the physical ratios of the object
        assert abs(np.median(values) / truth_ratio(name, which) - 1) < 0.05, (name, which, values)


def test_reference_is_muscle_and_documented(variants):
    labels, out = variants
    for s in out.values():
        m = sitk.GetArrayFromImage(s.reference_mask) > 0
        assert (labels[m] == LABELS["muscle"]).mean() > 0.98
        assert s.reference_tissue == "skeletal_muscle" and "muscle" in s.reason
        d = s.to_dict()
        assert d["reference_voxels"] == int(m.sum()) > 1000


def test_noise_sigma_in_reference_units_matches_known_snr(variants):
    _, out = variants
    for (snr, _), s in out.items():
        assert abs(s.noise_sigma_fluid_rel * snr - 1) < 0.15
        assert abs(s.noise_sigma_t1_rel * snr - 1) < 0.15


def test_fluid_only_path_finds_muscle():
    grid = ns.make_grid(**GRID)
    labels = ns.labels_at(ns.physical_points(grid))
    s = standardize(ns.series(grid, "stir", sigma=0.3 / 20, seed=1))
    assert s.t1_rel is None and s.reference_value_t1 is None
    assert abs(s.value(interior(labels, "fluid")) / truth_ratio("fluid", "stir") - 1) < 0.05
    with pytest.raises(ConfigError):
        s.value(interior(labels, "fluid"), "t1")


def test_bad_input():
    grid = ns.make_grid(**GRID)
    fluid = ns.series(grid, "stir", sigma=0.01, seed=1)
    with pytest.raises(ConfigError):
        standardize(fluid, reference="subcutaneous_fat")
    with pytest.raises(InputError):
        standardize(fluid, fluid[:, :, :10])  # not on the same grid


def test_erode_square_is_the_iterated_3x3_erosion():
    from bmepipe._morphology import erode_square

    rng = np.random.default_rng(12)
    for _ in range(20):
        shape = tuple(int(v) for v in rng.integers(1, 30, size=3))
        mask = ndimage.binary_dilation(rng.random(shape) < rng.uniform(0.05, 0.6), np.ones((1, 3, 3), bool))
        for n in (1, 2, 5):
            expected = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool), iterations=n)
            got = erode_square(mask, n)
            assert got.dtype == bool and np.array_equal(got, expected), (shape, n)
