"""Normalization on bmepipe.phantom studies, whose bias field, SNR, tissue signals and anatomy are known.

Truth comes from the phantom: its applied bias field, its noise sigma / SNR definition (gluteus
maximus), its own signal equations for tissue/muscle ratios and tissue masks rendered from its
anatomy (tests/normalize_synth.py). Small grids (160 x 160 x 12) keep the module ~30-40 s.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import normalize_synth as ns
from bmepipe.normalize import assess_quality, correct_bias, coverage_flag, standardize
from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study

pytestmark = pytest.mark.slow  # ~30 s for the module: ten phantom studies are simulated

SMALL = dict(matrix=160, acquired_matrix=(128, 128), slices=12, slice_thickness_mm=5.0)
ANATOMY_SEED = 7
# (field strength T, SNR, bias peak-to-peak): same anatomy, different scanners
VARIANTS = [(1.5, 12.0, 0.4), (3.0, 40.0, 0.0), (1.5, 40.0, 0.0), (3.0, 12.0, 0.45)]


def phantom(**acq):
    return generate_study(PhantomSpec.random(ANATOMY_SEED, acquisition=AcquisitionSpec(**{**SMALL, **acq})))


def images(study):
    return ns.phantom_image(study.get("cor_fluid")), ns.phantom_image(study.get("cor_t1"))


@pytest.fixture(scope="module")
def variants():
    studies = {v: phantom(field_strength_t=v[0], snr=v[1], bias_amplitude=v[2]) for v in VARIANTS}
    masks = ns.phantom_tissue_masks(studies[VARIANTS[0]])  # same anatomy and grid in every variant
    inner = {k: ndimage.binary_erosion(m, structure=np.ones((1, 3, 3), bool)) for k, m in masks.items()}
    out = {}
    for v, study in studies.items():
        fluid, t1 = images(study)
        fluid_c, fluid_field = correct_bias(fluid)
        t1_c, _ = correct_bias(t1)
        out[v] = dict(study=study, fluid=fluid, t1=t1, fluid_field=fluid_field,
                      std=standardize(fluid_c, t1_c), qc=assess_quality(fluid_c, t1_c))
    return out, masks, inner


def test_bias_correction_matches_the_baseline_on_phantoms(variants):
    out, masks, _ = variants
    for v in (VARIANTS[0], VARIANTS[3]):  # the biased ones
        o = out[v]
        true = o["study"].bias_field
        _, base = correct_bias(o["fluid"], method="n4_baseline")
        ours = ns.residual_bias(true, o["fluid_field"], masks["body"])
        assert ours <= 1.1 * ns.residual_bias(true, base, masks["body"]), v
        # Where the STIR has signal (muscle; the phantom's fat is nulled and carries no bias
        # information) most of the field is gone.
        muscle = masks["muscle"]
        before = float(true[muscle].std() / true[muscle].mean())
        assert ns.residual_bias(true, o["fluid_field"], muscle) < 0.5 * before, v


@pytest.mark.parametrize("which", ["fluid", "t1"])
def test_standardized_tissue_values_are_the_physical_ratios(variants, which):
    out, _, inner = variants
    series = "cor_fluid" if which == "fluid" else "cor_t1"
    for v, o in out.items():
        truth = ns.phantom_signal_ratios(o["study"], series)
        for tissue in ("muscle", "fat", "urine"):
            got = o["std"].value(inner[tissue], which)
            # 5 %, or 0.05 muscle units for tissues near the noise floor (nulled fat on STIR)
            assert abs(got - truth[tissue]) <= max(0.05 * truth[tissue], 0.05), (v, which, tissue, got, truth[tissue])


def test_standardized_values_agree_across_snr_and_bias(variants):
    out, _, inner = variants
    for field in (1.5, 3.0):
        group = [o for v, o in out.items() if v[0] == field]
        for which in ("fluid", "t1"):
            for tissue in ("muscle", "fat", "urine", "marrow"):
                vals = [o["std"].value(inner[tissue], which) for o in group]
                if max(vals) < 0.2:  # nulled fat: compare in absolute muscle units
                    assert max(vals) - min(vals) < 0.05, (field, which, tissue, vals)
                else:
                    assert max(vals) / min(vals) - 1 < 0.10, (field, which, tissue, vals)


def test_t1_standardized_values_agree_across_field_strengths(variants):
    # T1 contrast of the phantom's tissues changes little from 1.5 to 3 T; STIR's does not
    # (urine/muscle 3.8 vs 5.5 in the phantom's own equations), so only T1 is compared across fields.
    out, _, inner = variants
    for tissue in ("muscle", "fat", "urine", "marrow"):
        vals = [o["std"].value(inner[tissue], "t1") for o in out.values()]
        assert max(vals) / min(vals) - 1 < 0.10, (tissue, vals)


def test_fluid_only_standardization_finds_muscle(variants):
    out, masks, inner = variants
    o = out[VARIANTS[3]]  # 3 T, SNR 12, bias
    s = standardize(correct_bias(o["fluid"])[0])  # no T1
    assert masks["muscle"][sitk.GetArrayFromImage(s.reference_mask) > 0].mean() > 0.95
    truth = ns.phantom_signal_ratios(o["study"], "cor_fluid")["urine"]
    assert abs(s.value(inner["urine"]) / truth - 1) < 0.05


def test_reference_is_skeletal_muscle(variants):
    out, masks, _ = variants
    for o in out.values():
        ref = sitk.GetArrayFromImage(o["std"].reference_mask) > 0
        assert masks["muscle"][ref].mean() > 0.95


@pytest.mark.parametrize("snr", [12.0, 40.0])
def test_snr_estimate_matches_the_phantom(variants, snr):
    out, _, _ = variants
    for v, o in out.items():
        if v[1] == snr:
            assert abs(o["qc"].flag("snr_fluid").value / o["study"].get("cor_fluid").snr - 1) < 0.15, v
            if o["study"].get("cor_t1").snr <= 30:  # see noise.noise_sigma_local: ringing above ~50
                assert abs(o["qc"].flag("snr_t1").value / o["study"].get("cor_t1").snr - 1) < 0.15, v


def test_normal_studies_pass_qc(variants):
    out, _, _ = variants
    for v, o in out.items():
        assert o["qc"].passed, (v, o["qc"].to_dict())


def fs_quality(**acq):
    study = phantom(fluid_kind="pd_fs", snr=20.0, bias_amplitude=0.2, **acq)
    fluid, t1 = images(study)
    return assess_quality(correct_bias(fluid)[0], correct_bias(t1)[0])


def test_fat_saturation_failure_is_flagged():
    ok = fs_quality(fat_sat_efficiency=0.95)
    assert ok.flag("fat_suppression").passed and ok.flag("fat_suppression_homogeneity").passed
    failed = fs_quality(fat_sat_efficiency=0.2)
    assert failed.flag("fat_suppression").passed is False


def test_peripheral_fat_saturation_failure_is_inhomogeneous():
    q = fs_quality(fat_sat_efficiency=0.95, fat_sat_falloff=1.0, fat_sat_radius_mm=80.0)
    h = q.flag("fat_suppression_homogeneity")
    assert h.passed is False
    regions = h.details["regions"]
    assert max(regions, key=regions.get).endswith("peripheral")
    assert min(regions.values()) < 1.0  # the centre is still suppressed


def test_cropped_field_of_view_fails_coverage(variants):
    out, _, _ = variants
    assert out[VARIANTS[2]]["qc"].flag("coverage").passed
    study = phantom(snr=20.0, center_offset_lps_mm=(110.0, 0.0, 0.0))  # FOV shifted to the patient's left
    fluid, t1 = images(study)
    c = assess_quality(fluid, t1).flag("coverage")
    assert c.passed is False and "right" in c.message
    # exact check with the phantom's head spheres
    sides = study.truth["sides"]
    centres = [sides[s]["head_center_lps_mm"] for s in ("right", "left")]
    radii = [sides[s]["head_radius_mm"] for s in ("right", "left")]
    assert coverage_flag(fluid, centres, radii).passed is False
    full = out[VARIANTS[2]]
    assert coverage_flag(full["fluid"], centres, radii).passed
