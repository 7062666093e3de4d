"""SIF and reversibility evidence: the subchondral low-signal line on fluid-sensitive images.

A subchondral insufficiency fracture shows as a low-signal line just under the
subchondral plate, roughly parallel to (convex towards) the articular surface,
inside extensive BME (Yamamoto, Clin Orthop Surg 2012;4:173; radiologykey SIF
chapter; clinical.md section 2). Lines thicker than 4 mm or longer than 12.5 mm
pointed to an irreversible lesion in idiopathic femoral-head BME, thinner and
shorter ones to a transient one (Vande Berg et al., Radiology 1999;212:527; the
reference notes say the figures still need checking against the original, so
both are parameters of :class:`bmepipe.patterns.PatternParams`).

Measurement on rays from the head centre (:mod:`bmepipe.quantify.headframe`):
a line removes signal from the bright edematous marrow under the plate. On each
ray the signal deficit below the local BME level (median signal 6-9 mm deep) is
integrated from the fitted head sphere (the articular surface, regions.md) down to
``line_max_depth_mm`` + 2 mm; rays without a
line give the baseline (cortex partial volume: the 25th percentile). The excess
deficit divided by the BME-to-line contrast is the line's thickness, independent
of blurring (the integral of a blurred profile is preserved). Rays with a thickness
of at least ``line_min_thickness_mm`` form the line's footprint. Its length along the
curve (regions.md) comes from a fit of the whole footprint: the thickness map around it,
laid flat on the line's sphere (coronal and AP angle from the head's axis), is fitted by a
plane (the local baseline: cortex partial volume and BME gradients vary slowly across the
head, so the global baseline leaves shoulders next to the line) plus a uniform ellipse,
axis-aligned, whose coronal diameter is the length. Least squares puts a blurred edge at
its half height, so blur neither lengthens nor shortens the line, and the ellipse uses the
rays off the mid-coronal arc as well, which the noise and ringing of one arc do not allow.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from scipy import ndimage

from .headframe import HeadFrame
from .params import QuantifyParams

__all__ = ["find_subchondral_line"]

#: The footprint's ellipse is fitted to the thickness map within this margin (mm) around the
#: footprint's bounding box: enough flat marrow beside the line to fix the baseline plane, little
#: enough that the plane stays local [tuned on seeds 11, 33, 44: 5-12 tried; 7-9 within 2 hips of each
#: other per suite, 5 and 12 lose 2-4 hips within one voxel].
LINE_FIT_MARGIN_MM = 8.0
#: Search of the ellipse's centre along the coronal axis, +- about this distance (mm, whole coarse steps) from
#: the footprint's thickness-weighted centroid [tuned on seeds 11, 33, 44: 3, 4 and 6 agree within 1 hip].
LINE_FIT_CENTRE_MM = 4.0
#: Semi-axis range (mm) of the fitted ellipse along the coronal arc; a fit within one coarse step of the
#: upper end (a line of 37 mm or more: beyond the head's quarter circumference, no subchondral line) falls
#: back to the mid-coronal cell count [not tuned: 15 and 25 give the same results].
LINE_FIT_SEMI_AXIS_MM = (2.0, 20.0)
#: AP / coronal axis ratios of the coarse search; the refinement moves +-0.1 around the best one
#: [seeds 11, 33, 44: wide on purpose; (0.6, 0.8, 1.0) changes 1-2 hips per suite].
LINE_FIT_RATIOS = (0.5, 0.7, 0.9, 1.1, 1.3)
#: Coarse-to-fine search steps (mm): a grid of centre x semi-axis x ratio, then finer grids around the best
#: [speed: a 1 mm coarse step agrees within 1 hip at twice the time].
LINE_FIT_STEPS_MM = (1.5, 0.5, 0.25)


def _surface_index(head_rays: np.ndarray) -> np.ndarray:
    """Outermost radial index inside the head on every ray (-1 if none)."""
    inside = head_rays >= 0.5
    n_r = inside.shape[-1]
    last = n_r - 1 - np.argmax(inside[..., ::-1], axis=-1)
    return np.where(inside.any(axis=-1), last, -1)


def _ellipse_sse(X, Y, Z, W, basis, cx, a, ratio, edge):
    """Weighted least-squares fit of ``Z ~ basis + h * ellipse`` for every ellipse of a grid.

    Ellipses centred at (``cx``, 0) with semi-axes ``a`` along X and ``a * ratio`` along Y, for every
    combination of the 1-D arrays ``cx``, ``a``, ``ratio``; each covers a cell by a soft fraction: 1/2 on
    its boundary, ramping over ``edge`` mm (one ray cell) across it. Returns the residual sum of squares,
    shape (len(cx), len(a), len(ratio)), inf where the fitted height ``h`` is not positive.
    """
    f4 = np.float32
    dx2 = ((X[None, None, :] - cx[:, None, None]) / a[None, :, None]).astype(f4) ** 2  # (cx, a, ray)
    b = a[:, None] * ratio[None, :]
    dy2 = (Y[None, None, :] / b[..., None]).astype(f4) ** 2  # (a, ratio, ray)
    # coverage: 1/2 + distance inside the boundary / edge, that distance ~ (1 - r^2) / 2 x the mean radius
    cov = dx2[:, :, None, :] + dy2[None]
    np.subtract(f4(1.0), cov, out=cov)
    cov *= (np.sqrt(a[:, None] * b) / (2.0 * edge)).astype(f4)[None, :, :, None]
    cov += f4(0.5)
    np.clip(cov, 0.0, 1.0, out=cov)
    shape = cov.shape[:3]
    cov = cov.reshape(-1, len(X))
    nb = basis.shape[0]
    bw = basis * W
    m = np.zeros((cov.shape[0], nb + 1, nb + 1))
    m[:, :nb, :nb] = bw @ basis.T
    bwc = np.stack([cov @ v.astype(f4) for v in bw], axis=-1)  # matrix-vector products: no BLAS threads
    m[:, :nb, nb] = bwc
    m[:, nb, :nb] = bwc
    m[:, nb, nb] = (cov * cov) @ W.astype(f4)
    m[:, range(nb + 1), range(nb + 1)] += 1e-9
    rhs = np.empty((cov.shape[0], nb + 1))
    rhs[:, :nb] = bw @ Z
    rhs[:, nb] = cov @ (W * Z).astype(f4)
    sol = np.linalg.solve(m, rhs[..., None])[..., 0]
    sse = float((W * Z * Z).sum()) - (sol * rhs).sum(axis=1)
    return np.where(sol[:, nb] > 0, sse, np.inf).reshape(shape)


def _footprint_length(frame: HeadFrame, thick: np.ndarray, valid: np.ndarray, foot: np.ndarray,
                      radius_line: float) -> Optional[float]:
    """Coronal diameter (mm) of the ellipse plus baseline plane best fitting the thickness map around the footprint.

    ``valid`` marks the rays the fit may use (bright marrow under the head sphere, within the searched
    angle from superior). Rays are laid flat on the line's sphere: x = coronal angle from the superior axis (atan2(u, w)),
    y = AP latitude (asin(a)), both x ``radius_line``; a shift of the line's centre along the
    mid-coronal great circle shifts x only; y is taken from the footprint's thickness-weighted AP
    centre, so a line off the coronal plane is fitted where it lies. Near the pole, where the phi grid
    is denser than the theta grid, every k-th ray of a ring is used with k times its weight (solid
    angle; the pole itself once). None if too few rays, or if the best ellipse reaches the longest
    semi-axes searched (it then fits a broad hump of the background, not the line).
    """
    q = frame.local_directions
    x = np.arctan2(q[..., 0], q[..., 2]) * radius_line
    y = np.arcsin(np.clip(q[..., 1], -1.0, 1.0)) * radius_line
    th = np.radians(frame.theta_deg)
    dth = float(th[1] - th[0])
    sin_t = np.maximum(np.sin(th), dth / 4)
    k = np.minimum(np.floor(1.0 / sin_t), len(frame.phi_deg)).astype(int)
    k[th == 0.0] = len(frame.phi_deg)  # every ray of the pole row is the same direction
    thin = (np.arange(len(frame.phi_deg))[None, :] % k[:, None]) == 0
    w = np.where(valid & thin, (sin_t * k)[:, None], 0.0)
    ft = np.clip(thick[foot], 1e-6, None)
    y = y - np.average(y[foot], weights=ft)
    fx, fy = x[foot], y[foot]
    box = ((x >= fx.min() - LINE_FIT_MARGIN_MM) & (x <= fx.max() + LINE_FIT_MARGIN_MM)
           & (y >= fy.min() - LINE_FIT_MARGIN_MM) & (y <= fy.max() + LINE_FIT_MARGIN_MM))
    sel = (w > 0) & box
    if sel.sum() < 10:
        return None
    X, Y, Z, W = x[sel], y[sel], thick[sel], w[sel]
    basis = np.stack([np.ones_like(X), X - X.mean(), Y - Y.mean()])
    edge = dth * radius_line
    coarse, fine, finest = LINE_FIT_STEPS_MM
    cx0 = float(np.average(fx, weights=ft))
    n_c = int(round(LINE_FIT_CENTRE_MM / coarse))
    cx = cx0 + coarse * np.arange(-n_c, n_c + 1)
    a = np.arange(LINE_FIT_SEMI_AXIS_MM[0], LINE_FIT_SEMI_AXIS_MM[1] + 1e-9, coarse)
    ratio = np.asarray(LINE_FIT_RATIOS, float)
    best = None
    for span, step, r_span in ((None, coarse, None), (coarse, fine, 0.1), (fine, finest, 0.0)):
        if span is not None:
            off = np.arange(-span, span + 1e-9, step)
            cx, a = best[0] + off, best[1] + off
            a = a[a > 0.5]
            ratio = best[2] + np.arange(-r_span, r_span + 1e-9, 0.05)
            ratio = ratio[ratio > 0.1]
        sse = _ellipse_sse(X, Y, Z, W, basis, cx, a, ratio, edge)
        i, j, m = np.unravel_index(int(np.argmin(sse)), sse.shape)
        if not np.isfinite(sse[i, j, m]):
            return None
        best = (cx[i], a[j], ratio[m])
    if best[1] >= LINE_FIT_SEMI_AXIS_MM[1] - coarse:
        return None  # stopped at the search's edge: a broad background hump, not the line's ends
    return float(2.0 * best[1])


def find_subchondral_line(frame: HeadFrame, fluid_rays: np.ndarray, head_rays: np.ndarray, bme_level: float,
                          params: QuantifyParams, theta_max_deg: float = 75.0) -> Optional[dict]:
    """Footprint, length, thickness and depth of a subchondral low-signal line; None if none is found.

    Parameters
    ----------
    frame : HeadFrame
    fluid_rays, head_rays : (n_theta, n_phi, n_r) arrays
        Standardized fluid-sensitive signal and the femoral-head mask along the rays.
    bme_level : float
        Standardized signal of marrow at the BME threshold: a line is only
        measured where the marrow under it is at least this bright.
    params : QuantifyParams

    Returns
    -------
    dict or None
        ``length_mm``, ``thickness_mm``, ``depth_mm`` (centre below the fitted head sphere),
        ``footprint`` (bool (n_theta, n_phi)), ``shape`` ("convex" when the depth
        is constant within 1 mm, i.e. parallel to the surface; else "irregular").
    """
    step = float(frame.r_mm[1] - frame.r_mm[0])
    # depth below the fitted head sphere (regions.md: the articular surface the sphere is fitted to), on every
    # ray that crosses the head: the head mask's outer edge is not used, because the dark line and the cortex
    # above it merge into one low-signal layer that a segmentation may leave outside the head, which put the
    # depth window under the line on those rays
    i_sphere = min(int(round(frame.radius_mm / step)), fluid_rays.shape[-1] - 1)
    surf = np.where(_surface_index(head_rays) > 0, i_sphere, -1)
    n_th, n_ph, n_r = fluid_rays.shape
    rows = frame.theta_deg <= theta_max_deg
    depth_idx = surf[..., None] - np.arange(n_r)[None, None, :]  # samples below the surface
    depth_mm = depth_idx * step
    window = (depth_mm >= 0) & (depth_mm <= params.line_max_depth_mm + 2.0)
    ref = (depth_mm >= 6.0) & (depth_mm <= 9.0)
    with warnings.catch_warnings():  # rays too short to reach the reference band: NaN level, not bright
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nanmedian(np.where(ref, fluid_rays, np.nan), axis=-1)
    deficit = np.where(window, level[..., None] - fluid_rays, 0.0)
    d_int = np.clip(deficit, 0, None).sum(axis=-1) * step
    bright = (level >= bme_level) & (surf > 0) & rows[:, None]
    if bright.sum() < 10:
        return None
    base = float(np.percentile(d_int[bright], 25))
    thick = np.where(bright, (d_int - base) / np.maximum(level, 1e-6), 0.0)
    cand = bright & (thick >= params.line_min_thickness_mm)
    # footprint: the largest connected patch (phi wraps around)
    lab, n = ndimage.label(cand)
    if n == 0:
        return None
    parent = np.arange(n + 1)
    for a, b in zip(lab[:, 0], lab[:, -1]):  # join patches across phi = 0 / 360
        if a and b:
            ra, rb = parent[a], parent[b]
            parent[parent == max(ra, rb)] = min(ra, rb)
    lab = parent[lab]
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    foot = lab == int(np.argmax(sizes))
    if foot.sum() < 2:
        return None
    # line depth: deficit-weighted centre below the surface on the footprint rays
    w = np.clip(deficit, 0, None) * foot[..., None]
    depth_c = float((w * depth_mm).sum() / max(w.sum(), 1e-9))
    per_ray_depth = (w * depth_mm).sum(axis=-1) / np.maximum(w.sum(axis=-1), 1e-9)
    # arc on the mid-coronal great circle: phi = 0 (lateral, +theta) and 180 (medial, -theta)
    i0, i180 = 0, int(np.argmin(np.abs(frame.phi_deg - 180.0)))
    dth = float(frame.theta_deg[1] - frame.theta_deg[0])
    alpha = np.concatenate([-frame.theta_deg[foot[:, i180]], frame.theta_deg[foot[:, i0]]])
    if alpha.size == 0:
        return None
    alpha = np.unique(alpha)
    n_cells = len(alpha) if alpha.size else 0
    radius_line = frame.radius_mm - depth_c
    length = float(np.radians(n_cells * dth) * radius_line)
    if length < params.line_min_length_mm:
        return None
    coronal = np.zeros_like(foot)
    coronal[:, i0] = foot[:, i0]
    coronal[:, i180] = foot[:, i180]
    thickness = float(np.median(thick[coronal])) if coronal.any() else float(np.median(thick[foot]))
    # the length from the whole footprint: an ellipse on a local baseline plane (module docstring);
    # the mid-coronal cell count where the fit has too few rays or runs to its longest ellipse
    fitted = _footprint_length(frame, thick, bright, foot, radius_line)
    if fitted is not None:
        length = fitted
        if length < params.line_min_length_mm:
            return None
    depths = per_ray_depth[foot]
    return {
        "length_mm": length,
        "thickness_mm": thickness,
        "depth_mm": depth_c,
        "footprint": foot,
        "shape": "convex" if float(np.std(depths)) <= 1.0 else "irregular",
        "baseline_deficit_mm": base,
    }
