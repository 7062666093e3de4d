"""Test and benchmark helpers: a phantom study as quantification input, without the segmentation stage.

Not used by the quantification itself (which never imports the phantom). Tests and
``benchmarks/bench_quantify.py`` use these to measure quantification on its own:

* :func:`normalized_from_study` runs the real :func:`bmepipe.normalize.normalize_study`
  on the phantom's in-memory series;
* :func:`segmentation_from_truth` fills a :class:`~bmepipe.segment.types.HipSegmentation`
  from the phantom's truth labels and its analytic anatomy (regions, marrow, joint
  space, head sphere, axes, subchondral zone, weight-bearing cone, articular surface
  and its collapse), i.e. a perfect segmentation.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

__all__ = ["normalized_from_study", "segmentation_from_truth", "series_volume"]

_FEMUR = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft")


def series_volume(series, sequence_class: str):
    """A :class:`bmepipe.io.types.Volume` holding one simulated series (LPS geometry kept)."""
    import SimpleITK as sitk

    from bmepipe.io.types import Volume, VolumeMeta

    g, p = series.geometry, series.protocol
    img = sitk.GetImageFromArray(np.asarray(series.signal, np.float32))
    img.SetSpacing(g.spacing_mm)
    img.SetOrigin(g.origin_lps_mm)
    img.SetDirection(g.direction)
    meta = VolumeMeta(
        series_instance_uid=f"1.2.826.0.1.{p.series_number}", series_description=series.name,
        sequence_class=sequence_class, sequence_kind=p.kind, sequence_reason="phantom", sequence_confidence=1.0,
        plane="coronal", field_strength_t=p.field_strength_t, repetition_time_ms=p.repetition_time_ms,
        echo_time_ms=p.echo_time_ms, inversion_time_ms=p.inversion_time_ms, spacing_mm=tuple(g.spacing_mm),
        slice_count=g.size[2], rows=g.size[1], columns=g.size[0],
    )
    return Volume(img, meta)


def normalized_from_study(study, *, with_t1: bool = True, **kwargs):
    """:func:`bmepipe.normalize.normalize_study` of a :class:`bmepipe.phantom.SyntheticStudy`."""
    from bmepipe.normalize import normalize_study

    t1 = None
    if with_t1 and any(s.name == "cor_t1" for s in study.series):
        t1 = series_volume(study.get("cor_t1"), "t1")
    sel = SimpleNamespace(fluid_sensitive=series_volume(study.fluid, "fluid_sensitive"), t1=t1)
    return normalize_study(sel, **kwargs)


def _voxel_points(geometry, zyx: np.ndarray, offsets=None) -> np.ndarray:
    """LPS points of voxel indices ``[slice, row, column]`` (optionally with sub-voxel offsets in voxels)."""
    ijk = zyx[:, ::-1].astype(float)
    if offsets is not None:
        ijk = (ijk[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    return geometry.index_to_lps(ijk)


def _marrow_mask(study, scene, femur: np.ndarray) -> np.ndarray:
    """Voxels of ``femur`` whose samples are at least half marrow (the truth BME rule's marrow part)."""
    from bmepipe.phantom.anatomy import MARROW

    g = study.geometry
    zyx = np.argwhere(femur)
    # 2 x 2 in-plane x 3 through-slice sub-samples (slice offsets span the slice thickness)
    th = study.spec.acquisition.slice_thickness_mm / g.spacing_mm[2]
    offs = np.array([[a, b, c * th] for a in (-0.25, 0.25) for b in (-0.25, 0.25) for c in (-1 / 3, 0.0, 1 / 3)])
    out = np.zeros(femur.shape, bool)
    step = 40000
    for i in range(0, len(zyx), step):
        part = zyx[i:i + step]
        code, _, _ = scene.sample_codes(_voxel_points(g, part, offs))
        frac = (code == MARROW).reshape(len(part), len(offs)).mean(axis=1)
        out[tuple(part[frac >= 0.5].T)] = True
    return out


def segmentation_from_truth(study, *, subchondral_depth_mm: float = 5.0, joint_space_mm: float = 15.0):
    """A perfect :class:`~bmepipe.segment.types.HipSegmentation` from a phantom study's truth.

    Parameters
    ----------
    study : bmepipe.phantom.SyntheticStudy
    subchondral_depth_mm : float
        Depth of the subchondral zone (regions.md: 5 mm).
    joint_space_mm : float
        Width of the capsular recess searched for effusion around the neck.
    """
    from bmepipe.phantom.study import build_scene
    from bmepipe.segment.types import HipSegmentation, SideSegmentation

    g = study.geometry
    scene = build_scene(study.spec)
    models = {m.side: m for m in scene.hips}
    zz, yy, xx = np.indices(g.shape)
    sides = {}
    for side in ("right", "left"):
        t = study.truth["sides"][side]
        model = models[side]
        regions = {r: study.labels[f"{side}_{r}"].copy() for r in
                   ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")}
        femur = np.logical_or.reduce([regions[r] for r in _FEMUR])
        marrow = _marrow_mask(study, scene, femur)
        c = np.asarray(t["head_center_lps_mm"], float)
        R = float(t["head_radius_mm"])
        n = np.asarray(t["neck_axis_lps"], float)
        rn = float(t["neck_radius_mm"])
        d1 = float(np.sqrt(R * R - rn * rn))
        L = float(t["neck_length_mm"])
        # voxel-centre geometry relative to the head centre
        pts = g.index_to_lps(np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])).reshape(*g.shape, 3) - c
        rr = np.linalg.norm(pts, axis=-1)
        q = pts / np.maximum(rr, 1e-6)[..., None]
        r_surface = R - model.collapse_depth(q * np.array([model.sign, 1.0, 1.0]))  # local frame flips x
        head = regions["femoral_head"]
        subchondral = head & marrow & (r_surface - rr <= subchondral_depth_mm)
        weight_bearing = head & (q[..., 2] >= np.cos(np.radians(45.0)))
        # capsular recess along the neck (where effusion collects), outside every bone
        tn = pts @ n
        rho = np.sqrt(np.maximum(rr * rr - tn * tn, 0.0))
        bone = femur | regions["acetabulum"]
        joint = (tn >= d1) & (tn <= 0.8 * L) & (rho <= 1.45 * rn + joint_space_mm) & ~bone
        # articular surface points in the weight-bearing cone (2 deg grid) and their deviation from the sphere
        th, ph = np.meshgrid(np.radians(np.arange(0, 46, 2.0)), np.radians(np.arange(0, 360, 4.0)), indexing="ij")
        dirs = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], axis=-1).reshape(-1, 3)
        dev = -model.collapse_depth(dirs * np.array([model.sign, 1.0, 1.0]))
        surface = c + (R + dev)[:, None] * dirs
        sides[side] = SideSegmentation(
            side=side, regions=regions, marrow=marrow, joint_space=joint,
            head_center_lps_mm=tuple(c), head_radius_mm=R, neck_axis=tuple(n), neck_radius_mm=rn,
            shaft_axis=tuple(t["shaft_axis_lps"]), neck_shaft_point_lps_mm=tuple(t["neck_shaft_point_lps_mm"]),
            head_neck_junction_lps_mm=tuple(c + d1 * n), subchondral_depth_mm=subchondral_depth_mm,
            subchondral_zone=subchondral, weight_bearing=weight_bearing, surface_points_lps_mm=surface,
            surface_deviation_mm=dev, extras={"source": "phantom truth"},
        )
    return HipSegmentation(sides=sides, spacing_mm=tuple(g.spacing_mm), origin_lps_mm=tuple(g.origin_lps_mm),
                           direction=tuple(g.direction))
