""":func:`quantify_hips`: BME, AVN, SIF and effusion measurements of both hips."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from .._threads import map_in_threads
from .bme import (bme_distribution, bme_mask, edema_fraction, edema_fraction_from_ratio, edema_signal_from_marrow,
                  normal_marrow_levels)
from .calibration import edema_signal_range, signal_ratio
from .effusion import effusion
from .headframe import head_frame
from .necrosis import (acetabular_edge_deg, arc_angles_deg, arco_extent_group, collapse_depth_mm, edge_frame,
                       find_necrotic_segment, jic_type, kerboul_grade)
from .params import QuantifyParams
from .subchondral_line import find_subchondral_line
from .types import AvnResult, BmeResult, HipMeasurements, SideMeasurements, SifResult

__all__ = ["quantify_hips", "quantify_arrays"]

_FEMUR = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft")
_REGIONS = _FEMUR + ("acetabulum",)


def _get(protocol, name: str):
    if protocol is None:
        return None
    if isinstance(protocol, dict):
        return protocol.get(name)
    return getattr(protocol, name, None)


def _sequence_args(protocol) -> Optional[tuple]:
    """``(kind, field strength, TR, TE, TI)`` of a protocol (dict or object) for :mod:`.calibration`; None
    without a sequence kind."""
    kind = _get(protocol, "sequence_kind") or _get(protocol, "kind")
    if not kind:
        return None
    return (str(kind),) + tuple(_get(protocol, n) for n in ("field_strength_t", "repetition_time_ms", "echo_time_ms",
                                                            "inversion_time_ms"))


def _ratio(tissue: str, protocol, pv_factor: float, default: float) -> tuple[float, str]:
    args = _sequence_args(protocol)
    r = None if args is None else signal_ratio(tissue, *args, pv_factor=pv_factor)
    return (r, f"signal equations ({args[0]})") if r is not None else (default, "parameter default")


def quantify_hips(normalized, segmentation, *, params: QuantifyParams = QuantifyParams(),
                  fluid_protocol=None, t1_protocol=None) -> HipMeasurements:
    """Measure BME, necrotic segment, subchondral line and effusion on both hips.

    Parameters
    ----------
    normalized : bmepipe.normalize.NormalizedStudy
        Uses ``fluid_rel`` and ``t1_rel`` (standardized to skeletal muscle).
    segmentation : bmepipe.segment.types.HipSegmentation
        Regions, marrow, joint space, head sphere and surface on the same grid.
    params : QuantifyParams
    fluid_protocol, t1_protocol : VolumeMeta or dict, optional
        ``sequence_kind`` (or ``kind``), ``field_strength_t``, ``repetition_time_ms``,
        ``echo_time_ms``, ``inversion_time_ms`` of the two series; they set the
        expected signal of edema and joint fluid (:mod:`bmepipe.quantify.calibration`).
        Without them the parameter defaults are used.

    Returns
    -------
    HipMeasurements
    """
    import SimpleITK as sitk

    # read-only views of the images' buffers (float32 from normalize_study: no copy)
    fluid = np.asarray(sitk.GetArrayViewFromImage(normalized.fluid_rel), np.float32)
    t1 = None if normalized.t1_rel is None else np.asarray(sitk.GetArrayViewFromImage(normalized.t1_rel), np.float32)
    if t1 is not None and not np.any(t1):
        t1 = None
    return quantify_arrays(fluid, t1, segmentation, params=params, fluid_protocol=fluid_protocol,
                           t1_protocol=t1_protocol)


def quantify_arrays(fluid: np.ndarray, t1: Optional[np.ndarray], segmentation, *,
                    params: QuantifyParams = QuantifyParams(), fluid_protocol=None, t1_protocol=None) -> HipMeasurements:
    """:func:`quantify_hips` on standardized arrays ``[slice, row, column]`` (muscle = 1.0)."""
    t_start = time.perf_counter()
    spacing = tuple(float(s) for s in segmentation.spacing_mm)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    ok_sides = [s for s in segmentation.sides.values() if s.ok and s.marrow is not None]
    marrow_all = np.zeros(fluid.shape, bool)
    for s in ok_sides:
        marrow_all |= s.marrow
    f_n, t_n = normal_marrow_levels(fluid, t1, marrow_all, params)
    f_ed, f_how = _ratio("edema", fluid_protocol, params.edema_pv_factor, params.edema_signal_fluid)
    t_ed, t_how = _ratio("edema", t1_protocol, 1.0, params.edema_signal_t1)
    f_fl, fl_how = _ratio("fluid", fluid_protocol, params.effusion_pv_factor, params.effusion_signal)
    e_f = e_t = None
    if t1 is not None and t_n is not None and t_n > t_ed:
        e_t = edema_fraction(t1, t_n, t_ed, spacing, params.bme_smoothing_mm, within=marrow_all)
    f_ed_equations, f_ed_marrow = f_ed, None
    if e_t is not None and np.isfinite(f_n) and f_ed > f_n:
        # heads and necks: where the BME of TOH, SIF and AVN lies, and where a femur mask grown into muscle
        # (on STIR as bright as mild edema, on T1 as dark as edema) least often reaches
        head_neck = np.zeros(fluid.shape, bool)
        for s in ok_sides:
            for region in ("femoral_head", "femoral_neck"):
                if s.regions.get(region) is not None:
                    head_neck |= s.regions[region]
        f_ed_marrow = edema_signal_from_marrow(fluid, e_t, head_neck & marrow_all, f_n, spacing,
                                               params.bme_smoothing_mm,
                                               min_fraction=params.edema_calibration_min_t1_fraction,
                                               min_volume_ml=params.edema_calibration_min_ml)
        if f_ed_marrow is not None:
            args = _sequence_args(fluid_protocol)
            dimmest = None if args is None else edema_signal_range(*args)
            ratio = (f_ed_marrow - f_n) / (f_ed - f_n)
            if dimmest is not None and f_ed_marrow < params.edema_pv_factor * dimmest[0]:
                why = "dimmer than edema can be on this sequence"
            elif f_ed_marrow - f_n < params.min_edema_contrast:
                # the ratio estimate of failed fat suppression keeps the equations' levels it was built with
                why = "too little contrast"
            elif not params.edema_calibration_min_ratio <= ratio <= params.edema_calibration_max_ratio:
                why = f"{ratio:.2f}x the contrast"
            else:
                why = None
            if why is None:
                f_ed, f_how = f_ed_marrow, "the study's marrow against its T1 edema fraction"
            else:
                f_how += f" (the study's marrow gave {f_ed_marrow:.2f}, {why}: not used)"
    bme_from = "fluid-sensitive signal, T1-supported" if e_t is not None else "fluid-sensitive signal"
    if np.isfinite(f_n) and f_ed - f_n >= params.min_edema_contrast:
        e_f = edema_fraction(fluid, f_n, f_ed, spacing, params.bme_smoothing_mm, within=marrow_all)
    elif e_t is not None:
        # normal marrow nearly as bright as edema (failed fat suppression): the fluid-sensitive to T1 ratio,
        # which partial volume with cortex leaves unchanged
        e_f = edema_fraction_from_ratio(fluid, t1, (f_n, t_n), (f_ed, t_ed), spacing, params.bme_smoothing_mm,
                                        within=marrow_all)
        bme_from = "ratio of fluid-sensitive to T1 signal (normal marrow too bright on the fluid-sensitive series)"
    common = {"normal_marrow_fluid": f_n, "normal_marrow_t1": t_n, "edema_signal_fluid": f_ed,
              "edema_signal_fluid_from": f_how, "edema_signal_fluid_equations": f_ed_equations,
              "edema_signal_fluid_marrow": f_ed_marrow, "edema_signal_t1": t_ed, "edema_signal_t1_from": t_how,
              "joint_fluid_signal": f_fl, "joint_fluid_signal_from": fl_how, "bme_from": bme_from}

    def one_side(name):
        t0 = time.perf_counter()
        side_seg = segmentation.sides[name]
        if not side_seg.ok or side_seg.marrow is None or e_f is None:
            return SideMeasurements(side=name, status="failed", reason=side_seg.reason or "no femoral marrow segmented")
        out = _quantify_side(fluid, t1, e_f, e_t, side_seg, segmentation, params, voxel_ml, f_n, t_n, f_ed, f_fl)
        out.details.update(common, seconds=round(time.perf_counter() - t0, 3))
        return out

    names = list(segmentation.sides)
    sides = dict(zip(names, map_in_threads(one_side, names)))  # independent sides, one thread each
    return HipMeasurements(sides=sides, params=params, timings_s={"quantify": time.perf_counter() - t_start},
                           details=common)


def _voxel_local(zyx: np.ndarray, segmentation, center, axes) -> np.ndarray:
    return (segmentation.index_to_lps(zyx) - center) @ axes.T


def _quantify_side(fluid, t1, e_f, e_t, side_seg, segmentation, params, voxel_ml, f_n, t_n, f_ed, f_fl):
    regions = {r: side_seg.regions.get(r, np.zeros(fluid.shape, bool)) for r in _REGIONS}
    out = SideMeasurements(side=side_seg.side, head_center_lps_mm=side_seg.head_center_lps_mm,
                           head_radius_mm=side_seg.head_radius_mm,
                           region_volumes_ml={r: float(m.sum()) * voxel_ml for r, m in regions.items()})
    head = regions["femoral_head"]
    necrosis = np.zeros(fluid.shape, bool)
    line_mask = np.zeros(fluid.shape, bool)
    have_head = side_seg.head_center_lps_mm is not None and side_seg.head_radius_mm and head.any()
    frame = head_frame(side_seg) if have_head else None
    seg_fit = None
    avn = AvnResult(collapse_mm=collapse_depth_mm(side_seg, params.weight_bearing_half_angle_deg))
    if frame is not None:
        head_f = head.astype(np.float32)
        fluid_rays, head_rays, t1_rays = frame.sample_many([fluid, head_f, t1], segmentation)
        zyx = np.argwhere(head)
        loc = _voxel_local(zyx, segmentation, frame.center, frame.axes)

        def resample(f):
            return tuple(f.sample_many([t1, fluid, head_f], segmentation))

        seg_fit = find_necrotic_segment(frame, t1_rays, fluid_rays, head_rays, t_n, params,
                                        edema_level=f_n + params.bme_edema_fraction * (f_ed - f_n),
                                        resample=resample, head_local=loc)
        if seg_fit is not None:
            inside = np.linalg.norm(loc - seg_fit["center_local"], axis=1) < seg_fit["radius_mm"]
            necrosis[tuple(zyx[inside].T)] = True
        if t1 is not None:
            avn = _avn_result(avn, seg_fit, necrosis, head, frame, side_seg, segmentation, params)
        out.details["necrotic_fit"] = None if seg_fit is None else {
            k: (v.tolist() if isinstance(v, np.ndarray) and v.ndim == 1 else v)
            for k, v in seg_fit.items() if k != "band_points"}
    if not avn.present:
        necrosis[:] = False
    # BME (the necrotic segment, reactive rim included, is not edema)
    mask = bme_mask(e_f, e_t, side_seg.marrow, segmentation.spacing_mm, params, exclude=necrosis)
    vol = float(mask.sum()) * voxel_ml
    fractions = {r: (float((mask & m).sum()) / float(m.sum()) if m.any() else None) for r, m in regions.items()}
    vals = fluid[mask]
    out.bme = BmeResult(
        present=vol >= params.bme_present_ml, volume_ml=vol, fraction=fractions,
        mean_intensity=float(vals.mean()) if vals.size else None,
        peak_intensity=float(np.percentile(vals, 95)) if vals.size else None,
        distribution=bme_distribution(mask, fluid, side_seg, segmentation.index_to_lps, f_n, segmentation.spacing_mm,
                                      params),
    )
    # subchondral line
    sif = SifResult(present=False if frame is not None else None)
    if frame is not None:
        bme_level = f_n + params.bme_edema_fraction * (f_ed - f_n)
        line = find_subchondral_line(frame, fluid_rays, head_rays, bme_level, params)
        if line is not None:
            vb = (line["thickness_mm"] > params.vande_berg_thickness_mm) or (line["length_mm"] > params.vande_berg_length_mm)
            sif = SifResult(present=True, line_length_mm=line["length_mm"], line_thickness_mm=max(line["thickness_mm"], 0.0),
                            line_exceeds_vande_berg=bool(vb), line_shape=line["shape"],
                            band_depth_ratio=line["depth_mm"] / (2 * frame.radius_mm),
                            details={"depth_mm": line["depth_mm"]})
            line_mask = _line_mask(line, frame, side_seg, segmentation, head)
        if seg_fit is not None and avn.present:
            sif.band_depth_ratio = seg_fit["band_depth_mm"] / (2 * frame.radius_mm)
    out.avn, out.sif = avn, sif
    # effusion
    eff_ml, eff_mask = (None, np.zeros(fluid.shape, bool))
    if side_seg.joint_space is not None:
        eff_ml, eff_mask = effusion(fluid, side_seg.joint_space, voxel_ml, params, f_fl)
    out.effusion_ml = eff_ml
    out.masks = {"bme": mask, "necrosis": necrosis, "subchondral_line": line_mask, "effusion": eff_mask}
    return out


def _avn_result(avn, seg_fit, necrosis, head, frame, side_seg, segmentation, params) -> AvnResult:
    if seg_fit is None:
        avn.present, avn.necrotic_extent_pct = False, 0.0
        return avn
    extent = 100.0 * float(necrosis.sum()) / max(float(head.sum()), 1.0)
    avn.necrotic_extent_pct = extent
    avn.present = extent >= params.necrosis_present_pct
    if not avn.present:
        return avn
    c_loc, rho, R = seg_fit["center_local"], seg_fit["radius_mm"], frame.radius_mm
    neck_loc = d1 = None
    if side_seg.neck_axis is not None and side_seg.neck_radius_mm:
        neck_loc = frame.axes @ np.asarray(side_seg.neck_axis, float)
        d1 = float(np.sqrt(max(R * R - side_seg.neck_radius_mm ** 2, 0.0)))
    angles = {}
    for plane in ("coronal", "sagittal"):
        alpha, inside = arc_angles_deg(c_loc, rho, R, plane, neck_loc, d1)
        angles[plane] = float(inside.sum()) * float(alpha[1] - alpha[0])
        if plane == "coronal":
            acetab = side_seg.regions.get("acetabulum")
            meridian = edge_frame(frame)
            acet_rays = None if acetab is None else meridian.sample(acetab.astype(np.float32), segmentation)
            edge = acetabular_edge_deg(meridian, acet_rays, default=params.weight_bearing_half_angle_deg)
            avn.jic_type = jic_type(alpha, inside, edge, -params.weight_bearing_half_angle_deg)
    avn.kerboul_angle_deg = angles["coronal"] + angles["sagittal"]
    avn.kerboul_grade = kerboul_grade(avn.kerboul_angle_deg)
    avn.double_line = None if seg_fit["double_line_contrast"] is None else \
        bool(seg_fit["double_line_contrast"] >= params.double_line_contrast)
    avn.arco_extent_group = arco_extent_group(extent)
    if avn.collapse_mm is None:
        avn.arco_stage_hint = None
    elif avn.collapse_mm > params.collapse_min_mm:
        # ARCO 2019: IIIA depression <= 2 mm, IIIB > 2 mm (Yoon et al., J Arthroplasty 2020)
        avn.arco_stage_hint = "IIIA" if avn.collapse_mm <= params.arco_iiib_collapse_mm else "IIIB"
    else:
        avn.arco_stage_hint = "I"  # MRI-positive, no measurable collapse (radiograph not available)
    avn.details = {"kerboul_coronal_deg": angles["coronal"], "kerboul_sagittal_deg": angles["sagittal"],
                   "acetabular_edge_deg": edge}
    return avn


def _line_mask(line, frame, side_seg, segmentation, head) -> np.ndarray:
    """Head voxels in the line's footprint at its depth (+- half its thickness, at least half a voxel)."""
    out = np.zeros(head.shape, bool)
    zyx = np.argwhere(head)
    loc = _voxel_local(zyx, segmentation, frame.center, frame.axes)
    r = np.linalg.norm(loc, axis=1)
    th = np.degrees(np.arccos(np.clip(loc[:, 2] / np.maximum(r, 1e-6), -1, 1)))
    ph = np.degrees(np.arctan2(loc[:, 1], loc[:, 0])) % 360.0
    step = frame.theta_deg[1] - frame.theta_deg[0]
    ti = np.clip(np.round(th / step).astype(int), 0, len(frame.theta_deg) - 1)
    pi = np.round(ph / step).astype(int) % len(frame.phi_deg)
    in_foot = line["footprint"][ti, pi]
    half = max(0.5 * line["thickness_mm"], 0.5 * min(segmentation.spacing_mm))
    depth = frame.radius_mm - r
    sel = in_foot & (np.abs(depth - line["depth_mm"]) <= half)
    out[tuple(zyx[sel].T)] = True
    return out
