"""The subchondral line keeps its volume on every grid (thin-structure sampling of the phantom).

A 0.8-2 mm line sampled once per 1.8-3 mm pixel vanished wherever it ran between two sample rows. The
oracle here is the line's own analytic definition (``HipModel.line_inside``) integrated on a dense
0.15 mm grid over the head's upper half: with every compartment's signal 1 and the line's tissue 0, the
signal the line removes, summed over the image, is its volume, whatever the pixel size.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bmepipe.phantom import AcquisitionSpec, PhantomSpec
from bmepipe.phantom.anatomy import CODE_COMPARTMENT, FIBROUS, HipModel
from bmepipe.phantom.simulate import coronal_geometry, render
from bmepipe.phantom.study import build_scene
from bmepipe.phantom.tissues import COMPARTMENTS


def _sif_spec(pixel_mm: float, supersample=None) -> PhantomSpec:
    fov = 320.0
    m = int(round(fov / pixel_mm))
    acq = AcquisitionSpec(matrix=m, acquired_matrix=(m, m), fov_mm=fov, slices=9, slice_thickness_mm=3.0,
                          slice_gap_mm=0.0, supersample=supersample)
    spec = PhantomSpec.random(7, right="sif", left="normal", acquisition=acq)
    # fully inside marrow (cortex <= 1.3 mm above a 2-3 mm deep line): the analytic volume needs no marrow test
    hip = replace(spec.right, line_length_mm=18.0, line_thickness_mm=1.0, line_depth_mm=2.5, cortex_head_mm=1.0,
                  collapse_mm=0.0)
    return replace(spec, right=hip)


def _indicator_vectors():
    """(water, fat) signals: 1 for every tissue (marrow: its water and fat parts add up to 1 at any fat and edema
    fraction), 0 for the line's tissue."""
    water = np.ones(len(COMPARTMENTS), np.float32)
    fat = np.zeros(len(COMPARTMENTS), np.float32)
    fat[COMPARTMENTS.index("marrow_fat")] = 1.0
    water[COMPARTMENTS.index(CODE_COMPARTMENT[FIBROUS])] = 0.0
    return water, fat


def _scene_and_geometry(spec: PhantomSpec):
    """The spec's scene and the coronal grid centred on its right hip."""
    centre = np.asarray(spec.midpoint_lps_mm, float) - np.array([spec.head_separation_mm / 2, 0, 0])
    return build_scene(spec), coronal_geometry(spec.acquisition, centre)


def _line_volume_rendered(spec: PhantomSpec, monkeypatch) -> float:
    """Signal removed by the line (mm^3): every compartment signals 1, the line's tissue 0."""
    vectors = [_indicator_vectors()]
    scene, geom = _scene_and_geometry(spec)

    def image():
        r = render(scene, geom, spec.acquisition.slice_thickness_mm, vectors, spec.acquisition.supersample,
                   truth=False)
        return r.water[0] + r.fat[0]

    with_line = image()
    with monkeypatch.context() as m:
        m.setattr(HipModel, "line_inside", lambda self, u, v, w, rr: np.zeros(np.shape(rr), bool))
        without = image()
    dx, dy, _ = geom.spacing_mm
    return float((without - with_line).sum()) * dx * dy * spec.acquisition.slice_thickness_mm


def _line_volume_dense(spec: PhantomSpec, step_mm: float = 0.15) -> float:
    """The analytic line's volume (mm^3) on a dense grid over the upper half of the head's ball."""
    hip = build_scene(spec).hips[0]
    R = hip.R
    u_ax, v_ax = (np.arange(-R, R, step_mm) + step_mm / 2 for _ in range(2))
    w_ax = np.arange(0.0, R, step_mm) + step_mm / 2
    v, w = np.meshgrid(v_ax, w_ax, indexing="ij")
    total = 0
    for u in u_ax:  # one sheet at a time keeps memory small
        uu = np.full_like(v, u)
        rr = np.sqrt(uu * uu + v * v + w * w)
        total += int(hip.line_inside(uu, v, w, rr).sum())
    return total * step_mm**3


# default sampling (one sample per pixel in-plane up to 1.6 mm) and the small suites' (1, 1, 3)
@pytest.mark.parametrize("pixel_mm, supersample", [(1.0, None), (1.4, None), (2.5, (1, 1, 3)), (3.1, (1, 1, 3))])
def test_line_volume_is_kept_on_every_grid(pixel_mm, supersample, monkeypatch):
    spec = _sif_spec(pixel_mm, supersample)
    rendered = _line_volume_rendered(spec, monkeypatch)
    dense = _line_volume_dense(spec)
    assert rendered == pytest.approx(dense, rel=0.05)


def test_line_truth_mask_and_changes_only_in_the_box(monkeypatch):
    spec = _sif_spec(3.1, (1, 1, 3))
    scene, geom = _scene_and_geometry(spec)
    vectors = [_indicator_vectors()]
    lo, hi = scene.hips[0].local_box_to_lps(*scene.hips[0].thin_structure_box())
    fine = render(scene, geom, 3.0, vectors, (1, 1, 3), truth=True)
    # an 18 x 14 mm patch, 1 mm thick at 3.1 mm pixels: covers a quarter of some voxels (regions.md rule)
    assert fine.labels["right_subchondral_line"].sum() >= 5
    monkeypatch.setattr(HipModel, "thin_structure_box", lambda self, margin_mm=2.0: None)
    coarse = render(scene, geom, 3.0, vectors, (1, 1, 3), truth=True)
    changed = fine.water[0] != coarse.water[0]
    for name in fine.labels:
        changed |= fine.labels[name] != coarse.labels[name]
    assert changed.any()
    # only voxels touching the box change: their centres lie within half a voxel of it
    k, j, i = np.nonzero(changed)
    centres = geom.index_to_lps(np.column_stack([i, j, k]))
    half = 0.5 * np.abs(geom.matrix * np.asarray(geom.spacing_mm)).sum(axis=1) + 1e-6
    assert np.all((centres >= lo - half) & (centres <= hi + half))
