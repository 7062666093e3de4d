"""Quantification building blocks against analytic geometry, signal equations and the staging tables.

Oracles: spheres and spherical caps (closed-form arcs and volumes), the magnitude
inversion-recovery null (TI = T1 ln 2), the cut-offs as printed in clinical.md
(ARCO 2019 extent groups, modified Kerboul grades of Ha et al. 2006, JIC types of
Sugano et al. 2002), and synthetic arrays whose answer is known by construction.
"""

from __future__ import annotations

import math
import tomllib
from types import SimpleNamespace

import numpy as np
import pytest

from bmepipe.errors import ConfigError
from bmepipe.quantify import QuantifyParams
from bmepipe.quantify.bme import bme_mask, edema_fraction, edema_fraction_from_ratio, edema_signal_from_marrow
from bmepipe.quantify.calibration import edema_signal_range, signal_ratio
from bmepipe.quantify.effusion import effusion
from bmepipe.quantify.headframe import head_frame
from bmepipe.quantify.necrosis import (acetabular_edge_deg, arc_angles_deg, arco_extent_group, collapse_depth_mm,
                                       edge_frame, fit_sphere, jic_type, kerboul_grade)
from bmepipe.segment.types import HipSegmentation, SideSegmentation


def test_fit_sphere_recovers_centre_and_radius():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(200, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    c, r = fit_sphere(np.array([3.0, -2.0, 5.0]) + 17.5 * d[d[:, 2] > 0.2])  # a cap only, like a band
    assert np.allclose(c, [3.0, -2.0, 5.0], atol=1e-6) and r == pytest.approx(17.5, abs=1e-6)


def test_arc_of_a_ball_cap_matches_closed_form():
    # Ball of radius R centred D above the head centre: the head sphere's points inside it span
    # a polar half-angle acos(D / 2R) around superior (law of cosines), on any great circle through the pole.
    R, D = 24.0, 20.0
    expected = 2 * math.degrees(math.acos(D / (2 * R)))
    for plane in ("coronal", "sagittal"):
        alpha, inside = arc_angles_deg(np.array([0.0, 0.0, D]), R, R, plane, step=0.1)
        assert inside.sum() * 0.1 == pytest.approx(expected, abs=0.3)


@pytest.mark.parametrize("lateral_end, edge, expected", [(-30.0, 30.0, "A"), (-20.0, 30.0, "A"), (0.0, 30.0, "B"),
                                                          (5.0, 30.0, "B"), (10.0, 30.0, "C1"), (25.0, 30.0, "C1"),
                                                          (40.0, 30.0, "C2")])
def test_jic_type_thirds_of_the_weight_bearing_portion(lateral_end, edge, expected):
    # weight-bearing portion from 45 deg medial to the acetabular edge (here 30 deg lateral), cut in thirds from
    # medial (Sugano 2002): medial third up to -20 deg, two thirds up to +5 deg
    alpha = np.arange(-180.0, 180.0, 0.5)
    inside = (alpha >= -60.0) & (alpha <= lateral_end)
    assert jic_type(alpha, inside, edge) == expected


def test_jic_none_outside_the_weight_bearing_portion():
    alpha = np.arange(-180.0, 180.0, 0.5)
    assert jic_type(alpha, (alpha > 100) & (alpha < 120), 30.0) is None


def test_acetabular_edge_is_the_rim_notch_not_the_fat_beyond_it():
    # roof 12 mm deep up to the rim at 33 deg, the labrum notch (2 mm), then periarticular fat joined to it
    _, side = _ball_segmentation()
    frame = edge_frame(head_frame(side))
    assert frame.r_mm[0] == pytest.approx(frame.radius_mm) and frame.r_mm[-1] == pytest.approx(frame.radius_mm + 15.0)
    depth_mm = np.where(frame.theta_deg < 33.0, 12.0, np.where(frame.theta_deg < 36.0, 2.0, 10.0))
    rays = (frame.r_mm[None, None, :] - frame.radius_mm < depth_mm[:, None, None]).astype(np.float32)
    assert acetabular_edge_deg(frame, rays) == 33.0
    # without fat the first ray without acetabulum; without acetabulum the default
    rays[frame.theta_deg >= 33.0] = 0.0
    assert acetabular_edge_deg(frame, rays) == 33.0
    assert acetabular_edge_deg(frame, np.zeros_like(rays), default=40.0) == 40.0


@pytest.mark.parametrize("case", ["only beyond 80 deg", "every ray covered alike", "roof ends at 6 deg"])
def test_acetabular_edge_without_a_notch_is_the_default(case):
    # nothing to find within the lateral centre-edge range 10-62 deg: the default, not its lower bound
    _, side = _ball_segmentation()
    frame = edge_frame(head_frame(side))
    theta = frame.theta_deg
    covered = {"only beyond 80 deg": theta > 80.0, "every ray covered alike": theta >= 0.0,
               "roof ends at 6 deg": theta <= 6.0}[case]
    rays = np.where(covered[:, None, None], 1.0, 0.0) * np.ones((1, 1, len(frame.r_mm)), np.float32)
    assert acetabular_edge_deg(frame, rays, default=40.0) == 40.0
    with pytest.raises(ValueError, match="edge_frame"):
        acetabular_edge_deg(head_frame(side), rays, default=40.0)


@pytest.mark.parametrize("angle, grade", [(150.0, 1), (199.9, 1), (200.0, 2), (249.9, 2), (250.0, 3), (299.9, 3),
                                          (300.0, 4), (None, None)])
def test_kerboul_grades_ha_2006(angle, grade):
    assert kerboul_grade(angle) == grade


@pytest.mark.parametrize("pct, group", [(0.0, "A"), (14.99, "A"), (15.0, "B"), (30.0, "B"), (30.01, "C"), (None, None)])
def test_arco_extent_groups(pct, group):
    assert arco_extent_group(pct) == group


def test_collapse_is_largest_inward_deviation_in_the_weight_bearing_cone():
    c = np.array([10.0, 20.0, 30.0])
    dirs = np.array([[0, 0, 1.0], [math.sin(0.5), 0, math.cos(0.5)], [1.0, 0, 0]])  # 0, 28.6 and 90 deg from superior
    dev = np.array([-1.2, -2.5, -7.0])  # the 90-degree point lies outside the 45-degree cone
    side = SimpleNamespace(surface_points_lps_mm=c + 24 * dirs, surface_deviation_mm=dev, head_center_lps_mm=tuple(c))
    assert collapse_depth_mm(side, 45.0) == pytest.approx(2.5)
    side.surface_deviation_mm = np.array([0.3, 0.1, -7.0])
    assert collapse_depth_mm(side, 45.0) == 0.0


def test_stir_edema_signal_vanishes_at_its_null_and_fs_edema_is_bright():
    # magnitude IR null at TI = T1 ln 2 when TR >> T1 (mr_physics.md section 3); edema T1 at 1.5 T is 1150 ms here
    assert signal_ratio("edema", "stir", 1.5, 1e7, 1.0, 1150.0 * math.log(2)) == pytest.approx(0.0, abs=1e-9)
    # long-TR, long-TE fat-suppressed T2: edema (T2 90 ms) far brighter than muscle (T2 35.5 ms)
    assert signal_ratio("edema", "t2_fs", 1.5, 4000.0, 70.0) > 2.0
    assert signal_ratio("fluid", "t2_fs", 3.0, 4500.0, 70.0) > signal_ratio("edema", "t2_fs", 3.0, 4500.0, 70.0)
    assert signal_ratio("edema", "stir", 1.5, 4000.0, 50.0, None) is None  # STIR needs TI


def test_edema_fraction_is_linear_between_normal_and_edema_levels():
    img = np.array([[[0.5, 1.25, 2.0, 3.5]]], np.float32)
    e = edema_fraction(img, 0.5, 3.5, (1.0, 1.0, 1.0), smoothing_mm=0.0)
    assert np.allclose(e, [[[0.0, 0.25, 0.5, 1.0]]])


def test_ratio_edema_fraction_ignores_cortex_partial_volume():
    # Voxels mixing normal marrow (F 1.8, T1 4.0) with a fraction e of edema (F 2.1, T1 1.3), then with a
    # share c of signal-free cortex: (1 - c) * ((1 - e) * marrow + e * edema) on both images.
    (f_n, t_n), (f_ed, t_ed) = (1.8, 4.0), (2.1, 1.3)
    e = np.array([0.0, 0.3, 0.6, 1.0, 0.0, 0.0, 0.3])
    c = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 0.6, 0.5])
    fluid = ((1 - c) * ((1 - e) * f_n + e * f_ed)).astype(np.float32)[None, None, :]
    t1 = ((1 - c) * ((1 - e) * t_n + e * t_ed)).astype(np.float32)[None, None, :]
    got = edema_fraction_from_ratio(fluid, t1, (f_n, t_n), (f_ed, t_ed), (1.0, 1.0, 1.0), smoothing_mm=0.0)
    assert np.allclose(got[0, 0], e, atol=1e-5)
    t1_alone = edema_fraction(t1, t_n, t_ed, (1.0, 1.0, 1.0), smoothing_mm=0.0)[0, 0]
    assert t1_alone[5] > 0.8  # the cortex-filled voxel reads as edema on T1 alone
    t1[0, 0, 2] = 0.0  # outside the T1 series' coverage (0 after resampling): no measurement, not edema
    assert edema_fraction_from_ratio(fluid, t1, (f_n, t_n), (f_ed, t_ed), (1.0, 1.0, 1.0), 0.0)[0, 0, 2] == 0.0


def test_edema_signal_range_spans_the_literature_relaxation_times():
    # T2-FS at 1.5 T: the dimmest edema has the longest T1, shortest T2 and lowest PD of mr_physics.md table 1
    # (1400 ms, 60 ms, 0.9) and the brightest muscle the opposite (850 ms, 44 ms, 0.8); spin echo S = PD (1 -
    # exp(-TR/T1)) exp(-TE/T2).
    tr, te = 4000.0, 70.0

    def se(t1, t2, pd):
        return pd * (1 - math.exp(-tr / t1)) * math.exp(-te / t2)

    lo, hi = edema_signal_range("t2_fs", 1.5, tr, te)
    assert lo == pytest.approx(se(1400, 60, 0.9) / se(850, 44, 0.8), rel=1e-9)
    assert hi == pytest.approx(se(900, 120, 1.0) / se(1000, 27, 0.7), rel=1e-9)
    assert lo < signal_ratio("edema", "t2_fs", 1.5, tr, te) < hi
    assert edema_signal_range("stir", 3.0, 5000.0, 50.0) is None  # STIR without TI


def test_edema_signal_from_marrow_recovers_the_mixing_slope():
    # Marrow whose edema fraction e runs from 0 to 0.9 across the columns; the fluid-sensitive signal mixes
    # normal marrow (0.6) with edema water (2.4) linearly, and T1 reads e with noise of its own.
    rng = np.random.default_rng(3)
    e = np.broadcast_to(np.linspace(0.0, 0.9, 60), (8, 60, 60))
    fluid = (0.6 + e * (2.4 - 0.6) + rng.normal(0, 0.05, e.shape)).astype(np.float32)
    e_t1 = (e + rng.normal(0, 0.05, e.shape)).astype(np.float32)
    marrow = np.zeros(e.shape, bool)
    marrow[1:-1, 1:-1, 1:-1] = True
    kw = {"smoothing_mm": 0.0, "min_volume_ml": 2.0}
    got = edema_signal_from_marrow(fluid, e_t1, marrow, 0.6, (1.0, 1.0, 1.0), **kw)
    assert got == pytest.approx(2.4, rel=0.03)
    # too little edema on T1 (under 2 ml at e >= 0.45): no calibration
    small = marrow & (e > 0.85)
    assert small.sum() * 1e-3 < 2.0
    assert edema_signal_from_marrow(fluid, np.where(small, e_t1, 0.0), marrow, 0.6, (1.0, 1.0, 1.0), **kw) is None
    # a fluid-sensitive signal that falls as T1 darkens (cortex, a fibrous band): no calibration
    falling = (0.6 - 0.3 * e + rng.normal(0, 0.05, e.shape)).astype(np.float32)
    assert edema_signal_from_marrow(falling, e_t1, marrow, 0.6, (1.0, 1.0, 1.0), **kw) is None


def test_bme_mask_thresholds_requires_t1_support_and_drops_specks():
    p = QuantifyParams(bme_min_component_ml=0.005)
    e = np.zeros((4, 20, 20), np.float32)
    e[1:3, 5:10, 5:10] = 0.5  # 50 voxels = 0.05 ml at 1 mm
    e[0, 15, 15] = 0.9  # single-voxel speck
    e_t1 = np.full_like(e, 0.5)
    e_t1[1:3, 5:10, 5:7] = 0.0  # bright on fluid but fatty on T1 (failed fat suppression): not BME
    marrow = np.ones(e.shape, bool)
    m = bme_mask(e, e_t1, marrow, (1.0, 1.0, 1.0), p)
    assert m.sum() == 2 * 5 * 3 and not m[0, 15, 15] and not m[1:3, 5:10, 5:7].any()
    assert bme_mask(e, None, marrow & (np.arange(20) < 8)[None, None, :], (1.0, 1.0, 1.0), p).sum() == 2 * 5 * 3


def test_effusion_counts_partial_volume_shares():
    p = QuantifyParams(effusion_min_fraction=0.2)
    img = np.ones((3, 10, 10), np.float32)
    img[1, 2:4, 2:7] = 6.0  # 10 voxels of pure fluid (level 6.0)
    img[1, 5, 2:7] = 3.5  # 5 voxels half fluid
    img[1, 7, 2:7] = 1.5  # 5 voxels with a 10 % share: below the minimum, ignored
    joint = np.zeros(img.shape, bool)
    joint[1, :9, :8] = True
    ml, mask = effusion(img, joint, 0.001, p, fluid_level=6.0)
    assert ml == pytest.approx((10 + 5 * 0.5) * 0.001)
    assert mask.sum() == 15  # voxels at least half fluid


def _ball_segmentation(shape=(40, 40, 40), spacing=(1.0, 1.0, 1.0)):
    side = SideSegmentation(side="left", head_center_lps_mm=(20.0, 20.0, 20.0), head_radius_mm=10.0)
    return HipSegmentation(sides={"left": side}, spacing_mm=spacing, origin_lps_mm=(0.0, 0.0, 0.0),
                           direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)), side


def test_head_frame_rays_sample_distance_from_the_centre():
    seg, side = _ball_segmentation()
    zz, yy, xx = np.indices((40, 40, 40))
    dist = np.sqrt((xx - 20.0) ** 2 + (yy - 20.0) ** 2 + (zz - 20.0) ** 2)
    frame = head_frame(side, step_deg=10.0, r_step_mm=1.0)
    vals = frame.sample(dist, seg)
    # trilinear interpolation of |p| is exact along the axes and within a fraction of a voxel elsewhere
    assert np.allclose(vals, frame.r_mm[None, None, :], atol=0.25)
    # lateral is +x for a left hip; theta = 90, phi = 0 points there
    d = frame.directions[list(frame.theta_deg).index(90.0), 0]
    assert np.allclose(d, [1.0, 0.0, 0.0], atol=1e-9)
    # solid angles of the grid add up to the spherical cap's area (theta <= 110 deg + half a step)
    cap = 2 * math.pi * (1 - math.cos(math.radians(115.0))) * (180 / math.pi) ** 2
    assert frame.solid_angle_deg2().sum() == pytest.approx(cap, rel=0.03)


def test_params_round_trip_and_toml():
    p = QuantifyParams(bme_edema_fraction=0.35, vande_berg_length_mm=12.0)
    assert QuantifyParams.from_dict(p.to_dict()) == p
    text = "\n".join(f"{k} = {float(v)!r}" for k, v in p.to_dict().items())
    assert QuantifyParams.from_dict(tomllib.loads(text)) == p
    with pytest.raises(ConfigError):
        QuantifyParams.from_dict({"no_such_parameter": 1.0})
    with pytest.raises(ConfigError):
        QuantifyParams(bme_edema_fraction=1.5)
