"""Bone marrow edema: mask, volume, regional fractions, intensity and distribution.

Model (regions.md): edema water replaces a fraction ``e`` of the marrow, so a
voxel's standardized fluid-sensitive signal is ``F = F_n + e (F_ed - F_n)``, with
``F_n`` the normal-appearing marrow level measured in the same study and ``F_ed``
the expected signal of pure edema water (:mod:`bmepipe.quantify.calibration`).
A marrow voxel is BME when ``e >= bme_edema_fraction`` (0.3, regions.md), and,
where a T1 series exists, its T1 signal is also lower than normal fatty marrow
(low T1 signal of edematous marrow, Vande Berg et al., RadioGraphics 1993;13:501
via clinical.md section 2), which rejects bright fat under failed fat suppression.
Where fat suppression failed so badly that edema barely stands out on the
fluid-sensitive image, ``e`` comes from the ratio of the two signals
(:func:`edema_fraction_from_ratio`), which partial volume with cortex leaves unchanged.
Where a T1 series shows enough edema, ``F_ed`` is calibrated on the study's own marrow
(:func:`edema_signal_from_marrow`) instead of taken from the signal equations.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from .._morphology import erode_square
from .params import QuantifyParams

__all__ = ["normal_marrow_levels", "edema_fraction", "edema_fraction_from_ratio", "edema_signal_from_marrow",
           "bme_mask", "bme_distribution", "REGION_NAMES"]

#: Standardized T1 signal (x muscle) below which a voxel has no T1 measurement for the fluid-sensitive/T1 ratio:
#: T1 is 0 outside its coverage, and even cortex partial volume leaves marrow voxels far brighter.
T1_SIGNAL_MIN = 0.1

REGION_NAMES = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")


def _in_plane_sigma(spacing_xyz, sigma_mm: float):
    return (0.0, sigma_mm / spacing_xyz[1], sigma_mm / spacing_xyz[0])


def _gaussian_reach(sigma_voxels) -> int:
    """Voxels a ``gaussian_filter`` (truncate 4) reaches in-plane."""
    return int(4.0 * max(sigma_voxels) + 0.5)


def _box(mask: np.ndarray, pad_in_plane: int, pad_slices: int = 0) -> Optional[tuple]:
    """Slices of ``mask``'s bounding box, widened by ``pad_in_plane`` and ``pad_slices`` voxels (None if empty).

    Filters whose reach is within the pads give the same values inside the
    mask as on the whole volume: the hip work happens in a few per cent of a
    512 x 512 field of view.
    """
    found = ndimage.find_objects(mask.astype(np.uint8))
    if not found or found[0] is None:
        return None
    pads = (pad_slices, pad_in_plane, pad_in_plane)
    return tuple(slice(max(0, s.start - p), s.stop + p) for s, p in zip(found[0], pads))


def normal_marrow_levels(fluid: np.ndarray, t1: Optional[np.ndarray], marrow: np.ndarray,
                         params: QuantifyParams) -> tuple[float, Optional[float]]:
    """Normal-appearing marrow levels ``(F_n, T1_n)`` from the femoral marrow of both hips.

    The marrow is eroded by one voxel in-plane (cortex partial volume) and the
    levels are low (fluid) and high (T1) percentiles, because edema only raises
    the fluid-sensitive signal and lowers T1.
    """
    inner = erode_square(marrow)
    if inner.sum() < 50:
        inner = marrow
    if not inner.any():
        return float("nan"), None
    fn = float(np.percentile(fluid[inner], params.normal_marrow_percentile_fluid))
    tn = None if t1 is None else float(np.percentile(t1[inner], params.normal_marrow_percentile_t1))
    return fn, tn


def edema_signal_from_marrow(fluid: np.ndarray, t1_edema_fraction: np.ndarray, marrow: np.ndarray,
                             normal_level: float, spacing_xyz, smoothing_mm: float, *, min_fraction: float = 0.45,
                             min_volume_ml: float = 10.0) -> Optional[float]:
    """Fluid-sensitive signal of pure edema water, calibrated on the study's own femoral marrow.

    Edema water mixes linearly into marrow on both series (regions.md), so across
    marrow voxels the fluid-sensitive signal rises linearly with the edema fraction
    read on T1: ``F = F_n + e_T1 (F_ed - F_n)``. The slope gives ``F_ed`` for this
    patient and scanner. On T1 (short TE) edema contrast is set by T1 alone, while on
    STIR, T2-FS and PD-FS it also follows the edema's and muscle's T2, which vary
    between patients (edema 55-120 ms, muscle 27-44 ms, mr_physics.md table 1 [approx]):
    on T2-FS the signal equations' mid-range value can be 2x off either way.

    Marrow voxels (eroded by one voxel in-plane: cortex partial volume) are binned by
    ``e_T1`` (0.1 wide); only bins from ``min_fraction`` up are used, since below it
    the T1 spread of normal marrow (red marrow, partial volume) dominates; the line
    through ``(0, F_n)`` is fitted to the bins' median ``F`` by least squares weighted
    by their voxel counts. Both images are smoothed as in :func:`edema_fraction`.

    Parameters
    ----------
    fluid : ndarray
        Standardized fluid-sensitive image.
    t1_edema_fraction : ndarray
        :func:`edema_fraction` of the T1 image (same grid, computed within ``marrow``).
    marrow : ndarray of bool
        Femoral marrow to calibrate on (:func:`bmepipe.quantify.quantify_hips` passes
        the marrow of both femoral heads and necks).
    normal_level : float
        ``F_n`` (:func:`normal_marrow_levels`).
    spacing_xyz : sequence of float
        Voxel spacing (mm).
    smoothing_mm : float
        In-plane Gaussian sigma (mm) of :func:`edema_fraction`.
    min_fraction : float
        Lowest ``e_T1`` used.
    min_volume_ml : float
        Marrow volume (ml) with ``e_T1 >= min_fraction`` needed for a calibration.

    Returns
    -------
    float or None
        ``F_ed``; None with too little edema on T1 or no rise of the fluid-sensitive signal.
    """
    inner = erode_square(marrow)
    if inner.sum() < 50:
        inner = marrow
    box, smoothed = _smoothed(fluid, spacing_xyz, smoothing_mm, marrow)
    sel = inner[box]
    f, e = smoothed[sel], np.asarray(t1_edema_fraction[box], np.float32)[sel]
    voxel_ml = float(np.prod(spacing_xyz)) / 1000.0
    if float(((e >= min_fraction) & (e < 1.0)).sum()) * voxel_ml < min_volume_ml:
        return None
    x, y, w = [], [], []
    for lo in np.arange(min_fraction, 1.0, 0.1):
        b = (e >= lo) & (e < min(lo + 0.1, 1.0))  # above 1: darker than edema on T1 (cortex, fibrous tissue)
        if b.sum() >= 20:
            x.append(float(np.median(e[b])))
            y.append(float(np.median(f[b])))
            w.append(float(b.sum()))
    if len(x) < 2:
        return None
    x, y, w = np.asarray(x), np.asarray(y), np.asarray(w)
    slope = float((w * x * (y - normal_level)).sum() / (w * x * x).sum())
    return normal_level + slope if slope > 0 else None


def edema_fraction(image: np.ndarray, normal_level: float, edema_level: float, spacing_xyz,
                   smoothing_mm: float, within: Optional[np.ndarray] = None) -> np.ndarray:
    """Edema-equivalent fraction ``(S - normal) / (edema - normal)`` after light in-plane smoothing.

    For T1 pass the levels the other way round (edema darker than fat): the
    formula is the same. With ``within`` (bool mask), the fraction is computed
    only in that mask's bounding box (exactly as on the whole image) and is 0
    elsewhere: several times faster when only marrow voxels are used.
    """
    box, s = _smoothed(image, spacing_xyz, smoothing_mm, within)
    e = (s - np.float32(normal_level)) / np.float32(edema_level - normal_level)
    if within is None:
        return e
    out = np.zeros(np.shape(image), np.float32)
    out[box] = e
    return out


def _smoothed(image: np.ndarray, spacing_xyz, smoothing_mm: float, within: Optional[np.ndarray]):
    """``(box, image[box] smoothed in-plane, float32)``: the box is ``within``'s bounding box widened by the
    filter's reach (inside ``within`` the values are those of smoothing the whole image), or the whole image."""
    sigma = _in_plane_sigma(spacing_xyz, smoothing_mm)
    box = None if within is None else _box(within, _gaussian_reach(sigma) + 1)
    box = box or tuple(slice(None) for _ in np.shape(image))
    sub = np.asarray(image[box], np.float32)
    return box, (ndimage.gaussian_filter(sub, sigma) if smoothing_mm > 0 else sub)


def edema_fraction_from_ratio(fluid: np.ndarray, t1: np.ndarray, normal_levels: tuple[float, float],
                              edema_levels: tuple[float, float], spacing_xyz, smoothing_mm: float,
                              within: Optional[np.ndarray] = None) -> np.ndarray:
    """Edema-equivalent fraction from the ratio of the fluid-sensitive to the T1 signal.

    For studies whose fat suppression failed, where edema barely stands out on the
    fluid-sensitive image. T1 alone also marks the marrow's outer ring, because
    cortical bone, which gives almost no signal on either sequence, lowers T1 in
    partially filled voxels as edema does. The same partial volume scales both
    signals alike and leaves their ratio ``r = F / T1`` unchanged, while edema water
    raises it. Mixing normal marrow ``(F_n, T1_n)`` with a fraction ``e`` of edema
    ``(F_ed, T1_ed)`` gives ``r = (F_n + e dF) / (T1_n + e dT)``, hence
    ``e = (r T1_n - F_n) / (dF - r dT)`` with ``dF = F_ed - F_n`` and ``dT = T1_ed - T1_n``.
    Both images are smoothed in-plane first; where the two levels leave edema no
    ratio contrast (``dF - r dT <= 0``), and where T1 has no signal (outside its
    coverage, which is 0 after resampling), the fraction is 0. ``within`` works as in
    :func:`edema_fraction`.
    """
    (f_n, t_n), (f_ed, t_ed) = normal_levels, edema_levels
    box, f = _smoothed(fluid, spacing_xyz, smoothing_mm, within)
    _, t = _smoothed(t1, spacing_xyz, smoothing_mm, within)
    out = np.zeros(np.shape(fluid), np.float32)
    r = f / np.maximum(t, np.float32(1e-3))
    den = np.float32(f_ed - f_n) - r * np.float32(t_ed - t_n)
    ok = (den > 1e-3) & (t > np.float32(T1_SIGNAL_MIN))
    out[box] = np.where(ok, (r * np.float32(t_n) - np.float32(f_n)) / np.where(ok, den, 1), 0)
    return out


def bme_mask(e_fluid: np.ndarray, e_t1: Optional[np.ndarray], marrow: np.ndarray, spacing_xyz,
             params: QuantifyParams, exclude: Optional[np.ndarray] = None) -> np.ndarray:
    """Marrow voxels with ``e >= bme_edema_fraction`` (T1-supported), small components removed."""
    box = _box(marrow, 0)
    if box is None:
        return np.zeros(marrow.shape, bool)
    if any(b.stop - b.start < n for b, n in zip(box, marrow.shape)):  # the same within the marrow's box
        out = np.zeros(marrow.shape, bool)
        out[box] = bme_mask(e_fluid[box], None if e_t1 is None else e_t1[box], marrow[box], spacing_xyz, params,
                            None if exclude is None else exclude[box])
        return out
    m = marrow & (e_fluid >= params.bme_edema_fraction)
    if e_t1 is not None:
        m &= e_t1 >= params.t1_support_fraction
    if exclude is not None:
        m &= ~exclude
    lab, n = ndimage.label(m, structure=ndimage.generate_binary_structure(3, 2))
    if n:
        voxel_ml = float(np.prod(spacing_xyz)) / 1000.0
        sizes = np.bincount(lab.ravel())[1:] * voxel_ml
        keep = np.concatenate([[False], sizes >= params.bme_min_component_ml])
        m = keep[lab]
    return m


def _margin_width_mm(fluid: np.ndarray, mask: np.ndarray, marrow: np.ndarray, normal_level: float,
                     spacing_xyz) -> Optional[float]:
    """10-90 % width (mm) of the BME front: amplitude / steepest in-plane gradient at the mask edge.

    A logistic front of 10-90 % width W has a peak gradient of 4.39 A / (4 W), so
    ``W = 1.1 A / g``; ill-defined TOH margins give widths of 10-20 mm, the
    sharply bordered necrotic segment a few mm (clinical.md section 2).
    """
    sigma = _in_plane_sigma(spacing_xyz, 1.0)
    box = _box(mask, _gaussian_reach(sigma) + 4, 1)  # + sobel's 1 (it also smooths across slices) + erosions' 3
    if box is None:
        return None
    fluid, mask, marrow = fluid[box], mask[box], marrow[box]
    edge = mask & ~erode_square(mask)
    edge &= erode_square(marrow, 2)  # not at the cortex
    if edge.sum() < 5:
        return None
    s = ndimage.gaussian_filter(fluid.astype(np.float32), sigma)
    gy = ndimage.sobel(s, axis=1) / (8.0 * spacing_xyz[1])
    gx = ndimage.sobel(s, axis=2) / (8.0 * spacing_xyz[0])
    g = float(np.median(np.hypot(gx, gy)[edge]))
    amp = float(np.percentile(fluid[mask], 90)) - normal_level
    if g <= 0 or amp <= 0:
        return None
    return 1.1 * amp / g


def bme_distribution(mask: np.ndarray, fluid: np.ndarray, side_seg, points_lps, normal_level: float,
                     spacing_xyz, params: QuantifyParams) -> dict:
    """Where and how the BME lies (report ``bme.distribution``).

    Keys: ``pattern`` (none / diffuse / focal / subchondral), ``head_neck_coverage``
    (BME share of head+neck marrow, 0-1), ``regions_involved``, ``medial_third_fraction``
    and ``lateral_fraction`` (BME share of the medial third and the lateral two
    thirds of the head; TOH often spares the medial head, clinical.md section 2),
    ``medial_sparing`` (medial share below half the lateral one),
    ``mean_depth_mm`` (mean distance of head BME below the fitted sphere),
    ``subchondral_share`` (share of head BME in the subchondral zone),
    ``homogeneity_cv`` (coefficient of variation of the signal inside the mask),
    ``margin_width_mm`` and ``margin`` (ill-defined above
    ``margin_ill_defined_mm``, else sharp), ``neck_to_head_ratio`` (mean signal excess
    over normal marrow in the neck / in the weight-bearing head: about 1 for
    homogeneous head-and-neck BME as in TOH, low for BME centred under the
    subchondral weight-bearing area as around a SIF, clinical.md section 3).
    """
    marrow = side_seg.marrow
    head = side_seg.regions["femoral_head"] & marrow
    neck = side_seg.regions["femoral_neck"] & marrow
    hn = head | neck
    out = {"pattern": "none", "head_neck_coverage": 0.0, "regions_involved": [], "medial_third_fraction": None,
           "lateral_fraction": None, "medial_sparing": None, "mean_depth_mm": None, "subchondral_share": None,
           "homogeneity_cv": None, "margin_width_mm": None, "margin": None, "neck_to_head_ratio": None}
    if not mask.any():
        return out
    coverage = float((mask & hn).sum()) / max(int(hn.sum()), 1)
    out["head_neck_coverage"] = round(coverage, 4)
    out["regions_involved"] = [r for r in REGION_NAMES[:4]
                               if (mask & side_seg.regions[r]).sum() >= 0.1 * max(int((marrow & side_seg.regions[r]).sum()), 1)]
    vals = fluid[mask]
    out["homogeneity_cv"] = round(float(vals.std() / max(vals.mean(), 1e-6)), 4)
    w = _margin_width_mm(fluid, mask, marrow, normal_level, spacing_xyz)
    out["margin_width_mm"] = None if w is None else round(w, 2)
    out["margin"] = None if w is None else ("ill-defined" if w > params.margin_ill_defined_mm else "sharp")
    c, R = side_seg.head_center_lps_mm, side_seg.head_radius_mm
    if c is not None and R is not None and head.any():
        lateral = -1.0 if side_seg.side == "right" else 1.0
        zyx = np.argwhere(head)
        p = points_lps(zyx) - np.asarray(c)
        u = lateral * p[:, 0]
        is_bme = mask[tuple(zyx.T)]
        medial = u < -R / 3.0
        mf = float(is_bme[medial].mean()) if medial.any() else None
        lf = float(is_bme[~medial].mean()) if (~medial).any() else None
        out["medial_third_fraction"] = None if mf is None else round(mf, 4)
        out["lateral_fraction"] = None if lf is None else round(lf, 4)
        out["medial_sparing"] = None if mf is None or lf is None or lf < 0.1 else bool(mf < 0.5 * lf)
        if is_bme.any():
            depth = R - np.linalg.norm(p[is_bme], axis=1)
            out["mean_depth_mm"] = round(float(np.mean(np.clip(depth, 0, None))), 2)
            out["subchondral_share"] = round(float(np.mean(depth <= params.subchondral_depth_mm)), 4)
    wb = side_seg.weight_bearing
    if wb is not None and (wb & marrow).any() and neck.any():
        top = float(np.mean(fluid[wb & marrow])) - normal_level
        if top > 0:
            out["neck_to_head_ratio"] = round((float(np.mean(fluid[neck])) - normal_level) / top, 4)
    if coverage >= params.bme_diffuse_fraction:
        out["pattern"] = "diffuse"
    elif out["subchondral_share"] is not None and out["subchondral_share"] >= 0.5:
        out["pattern"] = "subchondral"
    else:
        out["pattern"] = "focal"
    return out
