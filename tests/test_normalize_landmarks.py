"""The fat / muscle / fluid landmark scale (bmepipe.normalize.landmarks).

Truth: the phantom's own signal equations (tests/normalize_synth.phantom_signal_ratios), its tissue masks
rendered from the anatomy and its edema-fraction map; the scale's definition for the analytic checks.
Same anatomy (seed 8, TOH on the right hip) at 1.5 and 3 T, SNR 12 and 40, with and without bias.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import normalize_synth as ns
from bmepipe.normalize import LandmarkScale, body_mask, correct_bias, find_landmarks, standardize
from bmepipe.normalize.landmarks import MIN_FLUID_ML, STANDARD_FAT, STANDARD_FLUID, STANDARD_MUSCLE
from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study

pytestmark = pytest.mark.slow  # four small phantom studies, ~20-30 s

SMALL = dict(matrix=160, acquired_matrix=(128, 128), slices=12, slice_thickness_mm=5.0)
ANATOMY_SEED = 8
VARIANTS = [(1.5, 12.0, 0.4), (3.0, 40.0, 0.0), (1.5, 40.0, 0.0), (3.0, 12.0, 0.45)]


@pytest.fixture(scope="module")
def variants():
    out = {}
    for v in VARIANTS:
        acq = AcquisitionSpec(**SMALL, field_strength_t=v[0], snr=v[1], bias_amplitude=v[2])
        study = generate_study(PhantomSpec.random(ANATOMY_SEED, right="toh", acquisition=acq))
        fluid = correct_bias(ns.phantom_image(study.get("cor_fluid")))[0]
        t1 = correct_bias(ns.phantom_image(study.get("cor_t1")))[0]
        body = sitk.Or(body_mask(fluid), body_mask(t1))
        out[v] = dict(study=study, std=standardize(fluid, t1, body=body), fluid=fluid, body=body)
    study = out[VARIANTS[0]]["study"]  # same anatomy and grid in every variant
    masks = ns.phantom_tissue_masks(study)
    regions = {k: ndimage.binary_erosion(m, structure=np.ones((1, 3, 3), bool)) for k, m in masks.items()}
    regions["edema"] = study.edema_fraction > 0.5  # marrow that is mostly edema water
    assert regions["edema"].sum() > 50
    return out, regions


def test_landmarks_are_the_phantoms_fat_and_urine(variants):
    out, _ = variants
    for v, o in out.items():
        truth = ns.phantom_signal_ratios(o["study"], "cor_fluid")
        lm = o["std"].landmarks
        assert lm.comparable, (v, lm.notes)
        assert abs(lm.fat - truth["fat"]) <= 0.05, (v, lm.fat, truth["fat"])
        assert abs(lm.fluid / truth["urine"] - 1) <= 0.05, (v, lm.fluid, truth["urine"])
        assert lm.fluid_ml >= MIN_FLUID_ML


def test_tissues_agree_across_field_strength_snr_and_bias_on_the_landmark_scale(variants):
    out, regions = variants
    spread = {}
    # Normal fatty marrow is not on this list: its fluid-sensitive signal is residual fat plus marrow
    # water, neither a landmark, and on phantoms it stays 13-90 % apart between 1.5 and 3 T on either
    # scale (a known limit, benchmarks/README.md); BME is measured against the study's own normal marrow.
    for tissue in ("muscle", "urine", "edema"):
        std = [o["std"].value(regions[tissue], "fluid_std") for o in out.values()]
        spread[tissue] = max(std) / min(std) - 1
        assert spread[tissue] < 0.10, (tissue, std)
    fat = [o["std"].value(regions["fat"], "fluid_std") for o in out.values()]
    assert max(fat) - min(fat) < 0.05, fat  # near 0: compared in absolute units
    # ... where muscle units alone leave field strength in the numbers (why the scale exists)
    edema_rel = [o["std"].value(regions["edema"], "fluid") for o in out.values()]
    muscle_unit_spread = max(edema_rel) / min(edema_rel) - 1
    assert muscle_unit_spread > 0.10, edema_rel  # muscle units alone miss the 10 % target ...
    assert spread["edema"] < 0.5 * muscle_unit_spread  # ... the landmark scale meets it


def test_the_landmark_image_is_the_mapped_muscle_unit_image(variants):
    out, regions = variants
    std = out[VARIANTS[1]]["std"]
    rel = sitk.GetArrayViewFromImage(std.fluid_rel)
    mapped = sitk.GetArrayViewFromImage(std.fluid_std)
    lm = std.landmarks
    urine = regions["urine"]
    # inside the urine (all above muscle) the map is the upper segment's straight line
    expected = STANDARD_MUSCLE + (rel[urine] - 1.0) * (STANDARD_FLUID - STANDARD_MUSCLE) / (lm.fluid - 1.0)
    np.testing.assert_allclose(mapped[urine], expected, rtol=1e-5)
    assert std.fluid_std.GetSpacing() == std.fluid_rel.GetSpacing()


def test_without_t1_fat_is_not_located_and_the_scale_says_so(variants):
    out, _ = variants
    o = out[VARIANTS[0]]
    s = standardize(o["fluid"])
    assert s.landmarks.fat is None and not s.landmarks.comparable
    assert any("T1" in n for n in s.landmarks.notes)
    truth = ns.phantom_signal_ratios(o["study"], "cor_fluid")
    assert abs(s.landmarks.fluid / truth["urine"] - 1) <= 0.05  # the bladder is still found
    assert s.to_dict()["landmarks"]["comparable_across_scanners"] is False


def test_scale_definition():
    lm = LandmarkScale(fat=0.2, fluid=5.0)
    assert lm.apply(0.2) == pytest.approx(STANDARD_FAT)
    assert lm.apply(1.0) == pytest.approx(STANDARD_MUSCLE)
    assert lm.apply(5.0) == pytest.approx(STANDARD_FLUID)
    v = np.linspace(-1, 8, 901, dtype=np.float32)
    m = lm.apply(v)
    assert np.all(np.diff(m) > 0)  # monotone, continuous at muscle
    assert lm.apply(3.0) == pytest.approx(1.0 + 2.0 * 3.0 / 4.0)
    identity = LandmarkScale(fat=None, fluid=None)
    np.testing.assert_allclose(identity.apply(v), v, rtol=1e-6, atol=1e-6)  # float32 arithmetic


def _block_study(fluid_blobs):
    """A body block of muscle (1.0) with fat under the skin on T1 and bright T1-dark blobs."""
    shape, spacing = (12, 120, 160), (1.5, 1.5, 5.0)
    body = np.zeros(shape, bool)
    body[:, 10:110, 10:150] = True
    f = np.where(body, 1.0, 0.0).astype(np.float32)
    t = np.where(body, 1.0, 0.0).astype(np.float32)
    ring = body & ~ndimage.binary_erosion(body, np.ones((1, 3, 3), bool), iterations=8)
    f[ring], t[ring] = 0.1, 3.0  # suppressed fat, bright on T1
    for (z, y, x, r), value in fluid_blobs:
        zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
        blob = ((zz - z) * spacing[2]) ** 2 + ((yy - y) * spacing[1]) ** 2 + ((xx - x) * spacing[0]) ** 2 <= r * r
        f[blob], t[blob] = value, 0.4
    return f, t, body, spacing


def test_a_lateral_bright_compartment_is_not_taken_for_the_bladder():
    # a 3x-muscle femoral-head edema (lateral) beside a 4.5x midline bladder: the bladder is the landmark
    f, t, body, spacing = _block_study([((6, 60, 40, 15.0), 3.0), ((6, 60, 80, 15.0), 4.5)])
    lm = find_landmarks(f, t, body, spacing)
    assert lm.fluid == pytest.approx(4.5) and lm.fat == pytest.approx(0.1)
    # empty bladder: the edema must not become the fluid landmark
    f, t, body, spacing = _block_study([((6, 60, 40, 15.0), 3.0)])
    lm = find_landmarks(f, t, body, spacing)
    assert lm.fluid is None and not lm.comparable
    assert any("bladder" in n for n in lm.notes)


def test_failed_fat_suppression_drops_the_fat_landmark():
    f, t, body, spacing = _block_study([((6, 60, 80, 15.0), 4.5)])
    f[(t > 2.0) & body] = 1.4  # unsuppressed fat, brighter than muscle
    lm = find_landmarks(f, t, body, spacing)
    assert lm.fat is None and lm.fluid == pytest.approx(4.5)
    assert any("fat suppression failed" in n for n in lm.notes)


@pytest.mark.parametrize("field_strength_t", [1.5, 3.0])
def test_a_pd_fat_saturated_bladder_is_the_fluid_landmark(field_strength_t):
    # on PD-FS free fluid is only about twice muscle (seed 7 at 1.5 T: 1.9x), below the STIR/T2-FS range
    acq = AcquisitionSpec(**SMALL, field_strength_t=field_strength_t, snr=20.0, fluid_kind="pd_fs")
    study = generate_study(PhantomSpec.random(7, acquisition=acq))
    truth = ns.phantom_signal_ratios(study, "cor_fluid")
    fluid = correct_bias(ns.phantom_image(study.get("cor_fluid")))[0]
    t1 = correct_bias(ns.phantom_image(study.get("cor_t1")))[0]
    lm = standardize(fluid, t1, body=sitk.Or(body_mask(fluid), body_mask(t1))).landmarks
    assert truth["urine"] < 2.5
    assert lm.comparable, lm.notes
    assert abs(lm.fluid / truth["urine"] - 1) <= 0.05, (lm.fluid, truth["urine"])


@pytest.mark.parametrize("fluid_kind", ["stir", "pd_fs"])
@pytest.mark.parametrize("field_strength_t", [1.5, 3.0])
def test_without_t1_the_bladder_alone_is_the_fluid_landmark(fluid_kind, field_strength_t):
    # no T1 to confirm fluid by its dark T1 signal: the fluid cut (1.5 x muscle) must still pick the bladder
    # and not its partial-volume rim or the brighter edge of fat
    acq = AcquisitionSpec(**SMALL, field_strength_t=field_strength_t, snr=20.0, fluid_kind=fluid_kind, with_t1=False)
    study = generate_study(PhantomSpec.random(7, acquisition=acq))
    assert not any(s.name == "cor_t1" for s in study.series)
    truth = ns.phantom_signal_ratios(study, "cor_fluid")
    fluid = correct_bias(ns.phantom_image(study.get("cor_fluid")))[0]
    lm = standardize(fluid, None, body=body_mask(fluid)).landmarks
    assert lm.fat is None and any("no T1 series" in n for n in lm.notes)  # fat needs T1 to be located
    assert lm.fluid is not None, lm.notes
    assert abs(lm.fluid / truth["urine"] - 1) <= 0.05, (lm.fluid, truth["urine"])
