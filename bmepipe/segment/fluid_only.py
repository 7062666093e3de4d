"""Proximal femur from a fluid-sensitive series alone (STIR, T2/PD fat-saturated; no T1).

On fat-suppressed images fatty marrow and fat are both dark, so intensity alone
cannot tell the femur from the fat around it. What still separates them:

* cortex is a signal void, a thin line darker than whatever lies on either side of it
  (marrow, edema, muscle, joint fluid), found with a relative black top-hat;
* fatty marrow keeps the signal of its water (10-15 %), and on STIR the marrow fat's
  shorter T1 is not nulled by the fat inversion time, so marrow sits a little above the
  suppressed fat (the darkest mode of the image); its level is read in the head and in the
  shaft, since necrosis and edema can fill the head;
* muscle is the reference (1.0 after :func:`bmepipe.normalize.standardize`);
* joint fluid and effusion are brighter than marrow edema (longer T2), and where they lie in
  thin layers (the capsular recess along the neck, the joint space) they are brighter than
  everything around them, found with a relative white top-hat, whereas edema fills the marrow
  broadly;
* water-rich (red) marrow can be as bright as muscle, but it lies inside the cortex: muscle-like
  patches enclosed by marrow and cortex lines are marrow;
* the head sphere (found before, from the articular surface) is bone whatever its signal.

These give a marrow-like / cortex-like classification that is turned into a T1-like
surrogate image (marrow bright, cortex dark, everything else muscle-like), and the T1 path
of :mod:`.hips` (femur growth, neck and shaft axes, regions of regions.md, joint space,
acetabulum) is run on it unchanged. Around the head, bone may only continue inside a
generous cone around the anatomical neck direction (anatomy.md), so the acetabulum cannot
join the femur through the joint space; the pelvic bone found there is passed on as such
and counted in the acetabulum whatever its signal.

Thresholds are relative to muscle (= 1). Those marked *tuned* were set on the phantom
suites 4401 and 4402 (``tests/segment_cases.segment_specs(8, seed)``) and, where these hold
no such case, on probe suites 9101, 9200 and 9300-9303; never on the test or benchmark seeds.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import ndimage

from .._morphology import (fill_holes_per_slice, grey_square_closing, grey_square_opening, in_plane_window_px,
                           square_closing, square_max, square_opening)
from . import hips as _hips
from .sphere import Grid
from .types import SideSegmentation

__all__ = ["t1_surrogate", "segment_side_fluid", "MARROW_FAT_FRACTION", "MARROW_FAT_NOISE_SD", "SHAFT_SLAB_MM",
           "MUSCLE_RANGE", "FLUID_EDEMA_RATIO", "CORTEX_LINE_DEPTH", "FLUID_LAYER_DEPTH", "NECK_PRIOR_DIRECTION_DEG",
           "NECK_CONE_DEG", "FLUID_RADIUS_OFFSET_MM", "SURROGATE_JOIN_OVERLAP"]

#: Marrow / fat threshold: this fraction of the way from the suppressed-fat level (the darkest mode
#: of the hip's box) to the marrow level (median of the head interior below muscle, or the shaft's where
#: lower: ``SHAFT_SLAB_MM``), at least
#: ``MARROW_FAT_GAP[0]`` and at most ``MARROW_FAT_GAP[1]`` above fat (x muscle). *Tuned* (0.5-0.6,
#: gaps 0.04-0.06 / 0.08-0.15 tried): marrow is only 0.06-0.3 above fat on these images.
MARROW_FAT_FRACTION = 0.6
MARROW_FAT_GAP = (0.06, 0.12)
MARROW_PERCENTILE = 50.0
#: ... where the suppressed fat is less noisy, the lower gap is at most this many of its standard deviations
#: (its spread below the darkest mode, where marrow does not add): STIR at 3 T left the shaft marrow only
#: 0.06 above fat (fat spread 0.008 x muscle, probe hips 9303_1 and 9200_1), half of it under the 0.06 gap,
#: and no femur grew below the neck. *Tuned* (4) on the probe suites 9300-9303, 9101 and 9200; the gap only
#: changes where the spread is below 0.015 (in the tuning suites 4401-4402: both hips of 4401_7).
MARROW_FAT_NOISE_SD = 4.0
#: Shaft marrow level: the median of the smooth signal between fat + ``SHAFT_FAT_SD`` fat spreads and muscle in
#: the slab this far below the head centre (mm), around and below the lesser trochanter (X 32-46 mm below C, the
#: trochanter about 30 mm lower; anatomy.md [approx]). The slab is the whole hip box, so muscle edges and fat
#: partial volumes take part (on the STIR study of tests/test_segment_fluid_only.py a quarter of its voxels are
#: femur, and it reads 0.49 against the shaft marrow's 0.38): a rough, low-side level, used only where it is
#: below the head's. The head interior is no sample of fatty marrow when necrosis and edema fill it: what is left
#: below muscle is the edema's fading edge and necrotic content, 0.7-0.8 x muscle where the shaft marrow was
#: 0.12-0.24 (AVN hips 9300_1, 9303_1 left), so the gap reached its cap and took the shaft for fat. *Tuned* on
#: the same probe suites (2 and 3 fat spreads tried; 3 left the shaft of 9300_1 left partly fat; 4401-4402 the
#: same with both).
SHAFT_SLAB_MM = (55.0, 110.0)
SHAFT_FAT_SD = 2.0
#: Muscle-like signal (x muscle); large homogeneous patches of it (opened by ``MUSCLE_OPENING_PX``)
#: are no marrow. *Tuned* (0.85-0.9 / 1.1-1.25 tried).
MUSCLE_RANGE = (0.9, 1.1)
MUSCLE_OPENING_PX = 2
#: ... unless they are enclosed per slice by marrow and cortex lines: water-rich (red) marrow reaches muscle
#: signal on T2 fat-saturated images (0.96-1.0 x muscle in the shaft of both hips of 4402_4), and its
#: muscle-like patches, cut from the cortex by the opening, broke the femur at the head-neck junction.
#: Marrow and lines are closed over this width (pixels) first, so that a one-pixel gap where a blurred
#: cortex line meets the head does not let the patch out. *Tuned* (3 and 5 gave the same hips; without
#: the closing one of the two hips stayed broken).
ENCLOSURE_CLOSING_PX = 3
#: Joint fluid / effusion: brighter than this fraction of the joint fluid level (95th percentile
#: just outside the head) is not marrow, unless edema of the head's base is as bright
#: (``EDEMA_MARGIN`` x its 90th percentile); never below muscle + 0.3, never above ``FLUID_MAX``.
#: Fluid T2 500-1200 ms vs edema 60-120 ms (mr_physics.md); *tuned* 0.6 / 1.2.
FLUID_EDEMA_RATIO = 0.6
EDEMA_MARGIN = 1.2
FLUID_MAX = 8.0
#: Thin fluid layers (effusion in the capsular recess along the neck, fluid in the joint space): brighter
#: than muscle, and than the grey opening over ``FLUID_LAYER_WIDTH_MM`` by this fraction of their signal
#: (the white counterpart of the cortex line), are no marrow whatever ``FLUID_EDEMA_RATIO`` and
#: ``EDEMA_MARGIN`` allow: with edema in the head, effusion only 1.2-1.6x as bright as the edema was taken
#: as marrow and joined the neck, thickening it by up to a slice. Marrow edema fills the marrow broadly
#: and is no thin layer. *Tuned* (0.2-0.4 and 6-8 mm gave the same hips on 4401-4402; 4.5 mm fewer).
FLUID_LAYER_DEPTH = 0.3
FLUID_LAYER_WIDTH_MM = 6.0
#: Fluid layers are only looked for down to this far below the head centre (mm): effusion stays inside the
#: joint capsule, which ends at the intertrochanteric line, about the base of the neck (the neck-shaft point
#: X lies 32-46 mm below C in the 32 tuning hips) [approx]. Below it the top-hat would only cost time (about
#: half of the hip's box at 512 x 512).
FLUID_LAYER_REACH_MM = 70.0
#: Cortex line: the grey closing over ``CORTEX_LINE_WIDTH_MM`` exceeds the image by this fraction of
#: the closing (and at least ``CORTEX_LINE_MIN`` x muscle). *Tuned* (0.35; 6 mm as the T1 barrier).
CORTEX_LINE_DEPTH = 0.35
CORTEX_LINE_MIN = 0.12
CORTEX_LINE_WIDTH_MM = 6.0
#: Cortex-like voxels are never farther than this (mm, in-plane, square neighbourhood) from marrow:
#: fat touching the bone must not be taken as a thick cortex (shaft cortex 4-7 mm, anatomy.md [approx]).
CORTEX_MAX_MM = 4.0
#: In-plane Gaussian sigma (pixels) for the tissue classes and for the cortex lines.
SMOOTHING_PX = 1.0
LINE_SMOOTHING_PX = 0.6
#: Anatomical neck direction from the head centre: neck-shaft angle and anteversion (degrees;
#: anatomy.md: 125-140 and 10-15 typical) ...
NECK_PRIOR_DIRECTION_DEG = (130.0, 15.0)
#: ... and the half-angle of the cone around it, within ``NECK_SHELL_MM`` outside the head sphere,
#: where bone may continue (covers neck-shaft angles 100-146 and anteversion -10-30, anatomy.md).
NECK_CONE_DEG = 50.0
NECK_SHELL_MM = 22.0
#: Marrow is a plateau: below muscle level, voxels whose in-plane gradient magnitude (of the image smoothed
#: for the tissue classes, ``SMOOTHING_PX``) exceeds this (x muscle per mm) are the partial-volume band
#: between muscle and fat, not marrow (thick slices cutting a muscle surface obliquely). *Tuned* (0.06-0.13 tried).
PLATEAU_GRAD = 0.1
#: The head sphere (radius minus this, mm) is bone whatever its signal (edema, necrosis).
HEAD_BALL_MARGIN_MM = 1.5
#: The fluid-only sphere fit finds the articular surface this much inside the true one (mm, median
#: over 30 hips of the tuning suites: -0.34); added to the radius and the surface radii.
FLUID_RADIUS_OFFSET_MM = 0.35
#: Slice-join rule of the femur growth on the surrogate (:func:`.femur.femur_component`): the T1 path's majority
#: (``femur.SLICE_JOIN_OVERLAP``) stops fat, bright on T1, joined through blurred cortex; the surrogate marks fat
#: muscle-like, and there the majority lost tangential trochanter slices (tests/test_segment_phantom.py, fluid-only
#: intertrochanteric Dice below 0.8), so the earlier 0.4 is kept; for the same reason its slices join from both
#: neighbours (``femur_component(outward_only=False)``): joins outwards only failed the same test.
SURROGATE_JOIN_OVERLAP = 0.4


def _mode(values: np.ndarray, lo: float, hi: float, step: float = 0.01) -> float:
    hist, edges = np.histogram(values, bins=np.arange(lo, hi + step / 2, step))
    return float(edges[np.argmax(hist)] + step / 2)


def _fat_spread(values: np.ndarray, fat: float) -> float:
    """Standard deviation (x muscle) of the suppressed fat: root mean square of ``values`` below its mode ``fat``
    (one-sided, so marrow and muscle above the mode do not count); inf without such values."""
    below = values[values < fat] - fat
    return float(np.sqrt(np.mean(below * below))) if below.size else math.inf


def _shaft_marrow_level(smooth: np.ndarray, grad: np.ndarray, height_mm: np.ndarray, fat: float,
                        fat_sd: float) -> float | None:
    """Median signal (x muscle) of the marrow-like plateau in the shaft slab (``SHAFT_SLAB_MM`` below the head centre).

    Parameters
    ----------
    smooth, grad : ndarray
        The hip box smoothed for the tissue classes and its in-plane gradient magnitude (x muscle per mm).
    height_mm : ndarray
        Height of each voxel above the head centre (mm, negative below it).
    fat, fat_sd : float
        Suppressed-fat level and spread (x muscle).

    Returns
    -------
    float or None
        None when the slab is outside the box or holds too few such voxels.
    """
    found = ndimage.find_objects(((height_mm < -SHAFT_SLAB_MM[0]) & (height_mm > -SHAFT_SLAB_MM[1])).view(np.uint8))
    if not found:
        return None
    s, g = smooth[found[0]], grad[found[0]]
    values = s[(s > fat + SHAFT_FAT_SD * fat_sd) & (s < MUSCLE_RANGE[0]) & (g < PLATEAU_GRAD)]
    return float(np.median(values)) if values.size > 50 else None


def _smooth_and_gradient(image: np.ndarray, sigma_px: float) -> tuple[np.ndarray, np.ndarray]:
    """In-plane Gaussian of ``image`` and the magnitude of its in-plane gradient (per pixel), five 1-D passes."""
    across = ndimage.gaussian_filter1d(image, sigma_px, axis=2)
    smooth = ndimage.gaussian_filter1d(across, sigma_px, axis=1)
    d_row = ndimage.gaussian_filter1d(across, sigma_px, axis=1, order=1)
    d_col = ndimage.gaussian_filter1d(ndimage.gaussian_filter1d(image, sigma_px, axis=1), sigma_px, axis=2, order=1)
    return smooth, np.hypot(d_row, d_col)


def _neck_prior(side: str) -> np.ndarray:
    nsa, version = (math.radians(a) for a in NECK_PRIOR_DIRECTION_DEG)
    a = nsa - math.pi / 2  # below the horizontal
    lateral = 1.0 if side == "left" else -1.0  # LPS: patient left is +x
    return np.array([lateral * math.cos(a) * math.cos(version), math.cos(a) * math.sin(version), -math.sin(a)])


def t1_surrogate(fluid: np.ndarray, grid: Grid, centre, radius_mm: float, side: str) -> np.ndarray:
    """A T1-like image of one hip from the fluid-sensitive image (muscle = 1).

    Parameters
    ----------
    fluid : ndarray
        Fluid-sensitive image ``[slice, row, column]`` divided by skeletal muscle.
    grid : Grid
        Its geometry.
    centre, radius_mm
        Head sphere (LPS mm, mm).
    side : {"right", "left"}

    Returns
    -------
    ndarray, float32
        3.0 where marrow-like (fatty marrow on T1), 0.3 where cortex-like or pelvic bone
        near the head, 1.0 elsewhere (muscle-like) inside the hip's box; 0 outside it.
    """
    roi = _hips._side_roi(grid, centre, radius_mm, side)
    out = np.zeros(fluid.shape, np.float32)
    out[roi] = _surrogate_box(fluid, grid, centre, radius_mm, side)[0]
    return out


def _surrogate_box(fluid: np.ndarray, grid: Grid, centre, radius_mm: float, side: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`t1_surrogate` inside the hip's box (``hips._side_roi``) only, all the femur segmentation reads, and
    the pelvic bone near the head on that box (marked 0.3 in the image) for the acetabulum: water-rich pelvic
    marrow is as bright as muscle or brighter on T2 fat-saturated images, too bright for the cortex rule of
    :func:`.femur.bone_classes` that reads the fluid image."""
    c, r = np.asarray(centre, float), float(radius_mm)
    roi = _hips._side_roi(grid, c, r, side)
    sub = _hips._sub_grid(grid, roi)
    F = fluid[roi]
    Fs, grad = _smooth_and_gradient(F, SMOOTHING_PX)
    grad /= min(sub.spacing[:2])  # in-plane only: thick slices
    X_, Y_, Z_ = sub.axis_coordinates()
    px, py, pz = X_ - np.float32(c[0]), Y_ - np.float32(c[1]), Z_ - np.float32(c[2])
    rr = np.sqrt(px * px + py * py + pz * pz)
    # the head and the shell around it, where the neck cone matters (a quarter of the box or less)
    found = ndimage.find_objects((rr < r + NECK_SHELL_MM).view(np.uint8))
    hb = found[0] if found else (slice(0, 0),) * 3
    n_prior = _neck_prior(side)
    rr_h, Fs_h = rr[hb], Fs[hb]
    cosang = (px[hb] * n_prior[0] + py[hb] * n_prior[1] + pz[hb] * n_prior[2]) / np.maximum(rr_h, 1e-3)

    # marrow above suppressed fat: levels from the darkest mode, the head interior and the shaft
    low = Fs[Fs < 0.7]
    fat = _mode(low, 0.0, 0.7)
    fat_sd = _fat_spread(low, fat)
    inner = Fs_h[(rr_h < r - 4.0) & (Fs_h > fat + 0.02) & (Fs_h < MUSCLE_RANGE[0])]
    marrow_level = float(np.percentile(inner, MARROW_PERCENTILE)) if inner.size > 50 else fat + 2 * MARROW_FAT_GAP[0]
    # a diseased head (necrosis, edema) overstates the fatty marrow level: the shaft's may be lower
    shaft_level = _shaft_marrow_level(Fs, grad, pz, fat, fat_sd)
    if shaft_level is not None:
        marrow_level = min(marrow_level, shaft_level)
    gap_min = min(MARROW_FAT_GAP[0], MARROW_FAT_NOISE_SD * fat_sd)
    gap = min(max(gap_min, MARROW_FAT_FRACTION * (marrow_level - fat)), MARROW_FAT_GAP[1])
    dark = Fs < fat + gap
    # cortex lines: thin dark lines between brighter tissue, whatever that tissue is
    Fl = ndimage.gaussian_filter(F, (0, LINE_SMOOTHING_PX, LINE_SMOOTHING_PX))
    size = in_plane_window_px(CORTEX_LINE_WIDTH_MM, sub.spacing)
    closed = grey_square_closing(Fl, size)
    line = (closed - Fl) > np.maximum(CORTEX_LINE_MIN, CORTEX_LINE_DEPTH * closed)
    # thin bright layers of fluid (effusion along the neck), brighter than everything around them, in the capsule
    layer_size = in_plane_window_px(FLUID_LAYER_WIDTH_MM, sub.spacing)
    fluid_layer = np.zeros(F.shape, bool)
    reach = ndimage.find_objects((pz > -FLUID_LAYER_REACH_MM).view(np.uint8))
    if reach:
        b = reach[0]
        fluid_layer[b] = (Fl[b] - grey_square_opening(Fl[b], layer_size)) > FLUID_LAYER_DEPTH * Fl[b]
    fluid_layer &= Fs > MUSCLE_RANGE[1]
    # joint fluid and effusion brighter than the edema of the head's base
    joint = Fs_h[(rr_h > r + 0.5) & (rr_h < r + 4.0)]
    fluid_level = float(np.percentile(joint, 95)) if joint.size else FLUID_MAX
    base = Fs_h[(rr_h > 0.3 * r) & (rr_h < r - 3.0) & (cosang > 0.5)]
    edema_level = float(np.percentile(base, 90)) if base.size else FLUID_MAX
    fluid_min = max(MUSCLE_RANGE[1] + 0.3, min(FLUID_MAX, max(FLUID_EDEMA_RATIO * fluid_level,
                                                               EDEMA_MARGIN * edema_level)))
    plateau = grad < PLATEAU_GRAD
    muscle = (Fs > MUSCLE_RANGE[0]) & (Fs < MUSCLE_RANGE[1])
    muscle = square_opening(muscle, 2 * MUSCLE_OPENING_PX + 1, mode="reflect")
    marrow = ~dark & ~line & ~muscle & ~fluid_layer & (Fs < fluid_min) & (plateau | (Fs >= MUSCLE_RANGE[0]))
    # muscle-like patches enclosed by marrow (marrow as bright as muscle, the fading edge of edema);
    # the opening first cuts the one- or two-pixel partial-volume rims around muscles
    marrow |= fill_holes_per_slice(square_opening(marrow, 3, mode="reflect")) & ~dark & ~line & ~fluid_layer
    # ... and muscle patches enclosed by marrow and the cortex (red marrow as bright as muscle)
    marrow |= fill_holes_per_slice(square_closing(marrow | line, ENCLOSURE_CLOSING_PX)) & muscle
    marrow[hb] |= rr_h < r - HEAD_BALL_MARGIN_MM
    # around the head, bone continues only in the neck cone: the acetabulum stays apart
    outside_cone = cosang < math.cos(math.radians(NECK_CONE_DEG))
    shell = (rr_h >= r - HEAD_BALL_MARGIN_MM) & (rr_h < r + NECK_SHELL_MM) & outside_cone
    pelvis = np.zeros(F.shape, bool)
    pelvis[hb] = marrow[hb] & shell & (rr_h > r + 2.0)
    marrow[hb] &= ~shell
    # cortex-like: darker than fat where fat saturation leaves fat some signal, and near marrow
    floor = float(np.percentile(Fs[:, ::2, ::2], 1.0))  # every other pixel: about the same level, a quarter of the work
    cortex_max = floor + 0.5 * (fat - floor) if fat - floor > 0.12 else fat + gap
    k = max(1, int(round(CORTEX_MAX_MM / min(sub.spacing[:2]))))
    near = square_max(marrow.view(np.uint8), 2 * k + 1).view(bool)
    cortex = ((dark & (Fs < cortex_max)) | line) & near
    box = np.ones(F.shape, np.float32)
    box[cortex | pelvis] = 0.3
    box[marrow] = 3.0
    return box, pelvis


def segment_side_fluid(side: str, centre, radius_mm: float, inlier: float, surface_radii: np.ndarray,
                       directions: np.ndarray, grid: Grid, fluid: np.ndarray, subchondral_depth_mm: float,
                       timings: dict | None = None) -> SideSegmentation:
    """One side from the fluid-sensitive image alone, given its head sphere.

    Runs the T1 path of :mod:`.hips` on the T1-like surrogate of the side's box (:func:`t1_surrogate`), with
    the surrogate's pelvic bone counted in the acetabulum. A side whose femur is
    implausible fails with the reason and keeps its head sphere. Analysed sides carry a
    warning in ``extras["warnings"]``: the regions are less accurate than with T1.
    """
    t0 = time.perf_counter()
    r = float(radius_mm) + FLUID_RADIUS_OFFSET_MM
    surf = np.asarray(surface_radii) + FLUID_RADIUS_OFFSET_MM
    try:
        # the surrogate of the side's box only: no whole-grid image to allocate and cut again
        t1_like, pelvis = _surrogate_box(fluid, grid, centre, r, side)
        out = _hips._segment_side(side, centre, r, inlier, surf, directions, grid, fluid, None, subchondral_depth_mm,
                                  t1_box=t1_like, pelvis_box=pelvis, join_overlap=SURROGATE_JOIN_OVERLAP,
                                  join_outward_only=False)
        out.extras.setdefault("warnings", []).append(
            "no T1 series: femur segmented from the fluid-sensitive series alone (less accurate regions)")
        return out
    except _hips._SideFailure as exc:
        out = _hips._failed(side, f"no T1 series and {exc}", subchondral_depth_mm)
        out.head_center_lps_mm, out.head_radius_mm = tuple(float(v) for v in centre), r
        out.extras = {"inlier_fraction": round(inlier, 3)}
        return out
    finally:
        if timings is not None:
            timings[f"{side}_femur"] = time.perf_counter() - t0
