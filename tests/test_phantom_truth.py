"""Phantom truth against analytic geometry (sphere, spherical caps, annulus volume, line placement)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study


def _cap(r, h):
    return math.pi * h * h * (3 * r - h) / 3.0


def _head_region_ml(r, rn):
    """Bone on the head side of P1 (regions.md): ball minus the cap beyond d1 = sqrt(R^2 - r_n^2)."""
    return (4.0 / 3.0 * math.pi * r**3 - _cap(r, r - math.sqrt(r * r - rn * rn))) / 1000.0


@pytest.fixture(scope="module")
def fine_study():
    acq = AcquisitionSpec(matrix=256, acquired_matrix=(256, 256), slice_thickness_mm=2.0, slice_gap_mm=0.0,
                          slices=34, bias_amplitude=0.0)
    spec = PhantomSpec.random(11, right="avn", left="sif", acquisition=acq)
    spec = replace(spec, right=replace(spec.right, collapse_mm=0.0, necrosis_extent_pct=30.0, effusion_ml=0.0),
                   left=replace(spec.left, effusion_ml=10.0, collapse_mm=0.0, line_length_mm=20.0,
                                line_thickness_mm=1.5, line_depth_mm=2.5))
    return generate_study(spec)


def _centroid_lps(study, mask):
    k, j, i = np.nonzero(mask)
    return study.geometry.index_to_lps(np.column_stack([i, j, k])).mean(axis=0)


def test_head_volume_matches_sphere_minus_cap(fine_study):
    for side in ("right", "left"):
        hs = getattr(fine_study.spec, side)
        got = fine_study.truth["sides"][side]["regions"]["femoral_head"]["volume_ml"]
        assert got == pytest.approx(_head_region_ml(hs.head_radius_mm, hs.neck_radius_mm), rel=0.03), side


def test_necrotic_segment_volume_matches_requested_extent(fine_study):
    hs = fine_study.spec.right
    vox_ml = np.prod(fine_study.geometry.spacing_mm) / 1000.0
    vol = fine_study.labels["right_necrosis"].sum() * vox_ml
    assert vol == pytest.approx(0.30 * _head_region_ml(hs.head_radius_mm, hs.neck_radius_mm), rel=0.03)
    # the segment is two caps of a lens (equal radii): check against an independent Monte-Carlo volume
    side = fine_study.truth["sides"]["right"]
    r, d = side["head_radius_mm"], side["necrosis"]["lens_distance_mm"]
    h = r - d / 2.0
    assert vol == pytest.approx(2 * _cap(r, h) / 1000.0, rel=0.03)
    assert not fine_study.labels["left_necrosis"].any()


def test_effusion_volume_matches_request(fine_study):
    vox_ml = np.prod(fine_study.geometry.spacing_mm) / 1000.0
    assert fine_study.labels["left_effusion"].sum() * vox_ml == pytest.approx(10.0, rel=0.03)
    assert not fine_study.labels["right_effusion"].any()


def test_right_hip_is_at_negative_x_and_regions_are_ordered(fine_study):
    spec = fine_study.spec
    mid = np.asarray(spec.midpoint_lps_mm)
    for side, sign in (("right", -1), ("left", 1)):
        centre = mid + np.array([sign * spec.head_separation_mm / 2, 0, 0])
        head = _centroid_lps(fine_study, fine_study.labels[f"{side}_femoral_head"])
        # head region = ball minus a cap on the neck side: centroid close to the sphere centre
        assert np.linalg.norm(head - centre) < 4.0
        assert sign * (head[0] - mid[0]) > 60
        neck = _centroid_lps(fine_study, fine_study.labels[f"{side}_femoral_neck"])
        assert sign * (neck[0] - head[0]) > 10  # neck lateral to the head
        assert neck[2] < head[2]  # and below it
        acet = _centroid_lps(fine_study, fine_study.labels[f"{side}_acetabulum"])
        assert acet[2] > head[2] and sign * (acet[0] - head[0]) < 0  # roof above, medial wall medial


def test_subchondral_line_lies_at_its_depth_with_its_length(fine_study):
    hs = fine_study.spec.left
    side = fine_study.truth["sides"]["left"]
    line = fine_study.labels["left_subchondral_line"]
    assert line.any()
    c, r = np.asarray(side["head_center_lps_mm"]), hs.head_radius_mm
    k, j, i = np.nonzero(line)
    pts = fine_study.geometry.index_to_lps(np.column_stack([i, j, k]))
    dist = np.linalg.norm(pts - c, axis=1)
    half_diag = 0.5 * np.linalg.norm(fine_study.geometry.spacing_mm)
    assert np.all(np.abs(dist - (r - hs.line_depth_mm)) <= hs.line_thickness_mm / 2 + half_diag + 0.35)
    # length on the mid-coronal plane: angular spread of the line voxels near that plane x radius
    near = np.abs(pts[:, 1] - c[1]) < fine_study.geometry.spacing_mm[2]
    q = pts[near] - c
    lateral = q[:, 0]  # left hip: lateral = +x
    ang = np.arctan2(lateral, q[:, 2])
    length = (ang.max() - ang.min()) * (r - hs.line_depth_mm)
    assert length == pytest.approx(20.0, abs=2 * fine_study.geometry.spacing_mm[0] + 1.0)
    assert side["subchondral_line"]["length_mm"] == pytest.approx(20.0, rel=0.05)


def test_bme_mask_follows_the_regions_md_rule(fine_study):
    # BME only where the voxel is mostly femoral marrow with e >= 0.3: inside the femur regions of that side
    for side in ("right", "left"):
        bme = fine_study.labels[f"{side}_bme"]
        femur = np.zeros_like(bme)
        for r in ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft"):
            femur |= fine_study.labels[f"{side}_{r}"]
        assert not (bme & ~femur).any()
        assert (fine_study.edema_fraction[bme] >= 0.3).all()
    assert fine_study.labels["left_bme"].sum() > 100  # SIF carries BME around the line
