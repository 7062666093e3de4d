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
of at least ``line_min_thickness_mm`` form the line's footprint; its length is the
arc it spans on the mid-coronal great circle at the line's depth (regions.md: along
the curve), or, where blur thins its ends below that threshold, the arc integral of
the thickness there divided by the line's thickness (same preserved-integral argument).
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
from scipy import ndimage

from .headframe import HeadFrame
from .params import QuantifyParams

__all__ = ["find_subchondral_line", "LINE_END_FRACTION"]

#: Fading ends of a line on the mid-coronal arc: rays whose thickness exceeds this fraction of the line's
#: thickness, next to the footprint, still hold part of the line's (blurred) deficit
#: [tuned: one value tried, on tuning seeds 11, 33, 44].
LINE_END_FRACTION = 0.25


def _surface_index(head_rays: np.ndarray) -> np.ndarray:
    """Outermost radial index inside the head on every ray (-1 if none)."""
    inside = head_rays >= 0.5
    n_r = inside.shape[-1]
    last = n_r - 1 - np.argmax(inside[..., ::-1], axis=-1)
    return np.where(inside.any(axis=-1), last, -1)


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
    # the footprint's ends fade below line_min_thickness_mm where blur spreads a thin line along the
    # arc; the deficit itself is preserved, so the arc integral of the thickness over the footprint and
    # its fading ends, divided by the line's thickness, gives the length
    prof = np.concatenate([thick[::-1, i180], thick[1:, i0]])
    in_foot = np.concatenate([foot[::-1, i180], foot[1:, i0]])
    if in_foot.any() and thickness > 0:
        keep = prof > LINE_END_FRACTION * thickness
        lab, _ = ndimage.label(keep | in_foot)
        run = np.isin(lab, np.unique(lab[in_foot]))
        length = max(length, float(np.radians(dth) * radius_line * np.clip(prof[run], 0, None).sum() / thickness))
    depths = per_ray_depth[foot]
    return {
        "length_mm": length,
        "thickness_mm": thickness,
        "depth_mm": depth_c,
        "footprint": foot,
        "shape": "convex" if float(np.std(depths)) <= 1.0 else "irregular",
        "baseline_deficit_mm": base,
    }
