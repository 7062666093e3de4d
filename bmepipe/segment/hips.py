"""segment_hips: both proximal femurs, their regions (regions.md) and the landmarks the measurements need.

Per side:

1. **Head sphere** (:mod:`.sphere`): circle-centre votes of in-plane edges in that
   half of the field of view, a sphere through the stack of circles, then a robust
   least-squares fit to the articular bone surface found along rays (T1: where bright
   marrow meets the dark subchondral plate; fluid-sensitive: the plate's dark dip under
   edema or fluid, else where the dark bone meets bright cartilage and joint fluid).
   Inward points (necrotic band) are down-weighted and the rays of a collapsed area
   (dent) are left out, then the fit is repeated. Marrow brightness never enters the
   shape, so BME and necrosis cannot bend it.
2. **Femur** (:mod:`.femur`): cortex + marrow connected to the head through the neck,
   cut from the acetabulum by the head sphere and the joint-space gap.
3. **Axes**: neck axis from the narrowest neck section, shaft axis from centroids of
   axial sections below the lesser trochanter (first of their cortex, which fat joined to
   the femur lacks), X = their closest approach.
4. **Regions** with the exact planes of regions.md (P1, P2, P3, 1.5 r_n), the
   acetabulum (pelvic bone within R + 15 mm), the joint space, the subchondral zone,
   the weight-bearing cone and the surface deviation from the sphere (collapse).

Work is done on in-plane 2x2-averaged images (about 1.5 mm pixels) and on rays
sampled from the full-resolution images; masks are returned on the full grid.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import ConfigError, InputError
from .femur import (EDEMA_FLUID_MIN, EDEMA_T1_MIN, SLICE_JOIN_OVERLAP, bone_classes, closest_approach, cortex_barrier,
                    femur_component, neck_axis, neck_direction, shaft_axis)
from .sphere import (Grid, block_mean, circle_stack_fit, fibonacci_directions, ray_dips, ray_edges, robust_sphere_fit,
                     vote_centres)
from .._morphology import square_max
from .._threads import map_in_threads
from .types import REGIONS, SIDES, HipSegmentation, SideSegmentation

__all__ = ["segment_hips", "segment_hips_images", "T1_EDGE_DEPTH_MM", "FLUID_EDGE_HEIGHT_MM", "SUBCHONDRAL_PLATE_MM",
           "HEAD_RADIUS_RANGE_MM"]

#: Depth of the T1 marrow edge (half-way between bright marrow and the dark rim) below the
#: articular bone surface: the subchondral plate (~1 mm, anatomy.md [approx]) plus the
#: partial-volume spread of the plate and cartilage. Calibrated on tuning phantoms (seeds 5, 11, 21),
#: never on the test or benchmark seeds.
T1_EDGE_DEPTH_MM = 1.4
#: T1 signal (x muscle) 1.5-3.5 mm inside a T1 edge for it to count as the marrow / subchondral-plate edge
#: (fatty marrow ~3x muscle; a fluid-filled necrotic segment, cartilage or joint fluid are darker).
T1_BACKING_MIN = 1.4
#: Fluid-sensitive signal (x muscle) by which the marrow under the subchondral plate must exceed the plate's
#: minimum for that dip to mark the surface (the rising edge outside it moves outwards when joint fluid
#: fills a collapsed area).
PLATE_DIP_CONTRAST = 0.5
#: A collapsed area: surface at least this far (mm, median of 15 neighbouring rays) inside the sphere; its
#: rays, widened by DENT_MARGIN_DEG, are left out of the sphere fit (regions.md: the sphere fits the
#: articular surface with the collapsed area excluded). Tuned on phantom suites 8801-8802 (0.3 and 0.5 mm,
#: 12-20 degrees tried), never on the test or benchmark seeds.
DENT_MIN_MM = 0.5
DENT_MARGIN_DEG = 12.0
#: Deepest collapse taken as such (mm); deeper inward edges are no articular surface [approx: ARCO IIIB
#: collapse is > 2 mm, clinical.md; femoral heads collapsed by more than ~8 mm are not in the scope].
COLLAPSE_MAX_MM = 8.0
#: Surface deviation per ray = median over this many nearest rays (about 10 degrees), so single-ray edges
#: of a necrotic band or a fracture line do not count as collapse (7-15 tried on the same suites).
COLLAPSE_NEIGHBOURS = 9
#: Height of the fluid-sensitive edge (dark bone to bright cartilage / joint fluid) above the
#: articular bone surface: about half the femoral cartilage thickness blurred; calibrated as above.
FLUID_EDGE_HEIGHT_MM = 0.85
#: Subchondral plate thickness: head voxels shallower than this are cortex, not marrow [approx, anatomy.md].
SUBCHONDRAL_PLATE_MM = 1.0
#: Plausible femoral-head radii searched (mm): adult 21-28 (anatomy.md) with margin.
HEAD_RADIUS_RANGE_MM = (18.0, 32.0)
#: Minimum fraction of surface rays agreeing with the fitted sphere (on it, or in its collapsed area)
#: for a head to be accepted ...
MIN_INLIER_FRACTION = 0.5
#: ... and of rays on the sphere outside any collapsed area: a "collapse" may not explain away most of a
#: sphere (spurious spheres 0.19-0.26, heads >= 0.49 on fluid-sensitive images alone, tuning suites 8801-8802).
MIN_SURFACE_INLIER_FRACTION = 0.35
#: Minimum circle-stack score (0-1; 1 = every slice's strongest edge lies on the sphere).
MIN_CIRCLE_SCORE = 0.55
#: Circle-centre peaks tried per side, strongest first: on coarse grids (~3 mm pixels, 5 mm slices) rings of
#: the pelvis can outvote the head (5th peak on phantom 9608007 right; 5 of 768 hips of suites 11/33/44,
#: 9500-9503, 9600-9608 were found only with 6). 4-8 compared on suites 9605-9608: every head found with 4
#: stays the same with 6.
HEAD_CANDIDATES = 6
#: The peaks refined first; the others only when none of these is accepted. Refining all six cost 30 % more
#: segmentation time on small studies (0.54 -> 0.73 s, seed 11) and found the same heads on the 16 studies
#: where the later peaks or the all-ray fallback of :func:`_find_head` mattered.
HEAD_CANDIDATES_FIRST = 4
#: In-plane depth (mm) inside the last bone slice's section beyond which the next, tangentially cut
#: slice is taken as at least half bone (thick slices, see femur._tangential_slices); calibrated on
#: the tuning phantoms (4 mm of 4 and 7 tried).
TANGENTIAL_CORE_MM = 4.0
#: Black top-hat widths (mm): the barrier against marrow leaking through blurred cortex into fat,
#: and the thin-cortex detector (tuned on phantoms: 6 and 4 of 4-6).
BARRIER_WIDTH_MM = 6.0
THIN_CORTEX_WIDTH_MM = 4.0
#: Farthest lateral reach of the proximal femur from the head centre (mm): femoral offset (head centre to
#: shaft axis) 42.9 +- 6.8 mm on 3D CT (Carmona et al., anatomy.md) taken to +3 SD, plus the largest shaft
#: radius (16.5 mm, anatomy.md [approx]). Fat lateral to the greater trochanter, which blurred cortex can
#: join to the femur at coarse resolution, lies beyond it (the phantom femurs reach 48-64 mm).
FEMUR_LATERAL_REACH_MM = 42.9 + 3 * 6.8 + 16.5
#: Plausible neck-shaft angles (adults about 125-140, range 100-146 on CT; anatomy.md) with margin.
NECK_SHAFT_ANGLE_RANGE_DEG = (95.0, 165.0)
#: Reach of the capsular recess (where effusion collects) beyond the neck surface, mm [approx]: the MRI
#: effusion criterion is fluid >= 5 mm wide along the neck (anatomy.md), distended recesses reach further.
JOINT_RECESS_MM = 15.0
#: Weight-bearing cone half-angle around +z (regions.md).
WEIGHT_BEARING_HALF_ANGLE_DEG = 45.0
#: Acetabulum = pelvic bone within R + this of C (regions.md).
ACETABULUM_MARGIN_MM = 15.0
#: Region planes (regions.md): neck within 1.5 r_n of the neck axis, P3 50 mm below X.
NECK_RADIUS_FACTOR = 1.5
#: The two femoral head centres of a patient lying on the table are at nearly the same height: their
#: separation is 140-200 mm and the pelvis tilts a few degrees at most (anatomy.md section 3) [approx].
#: 40 mm (13 degrees over 170 mm) is far outside that, so one side's sphere is not its head.
HEAD_HEIGHT_DIFF_MAX_MM = 40.0
P3_BELOW_X_MM = 50.0


# --------------------------------------------------------------------------- helpers
def _array(image) -> np.ndarray:
    import SimpleITK as sitk

    # a read-only view of the image's buffer when it is float32 (as normalize_study's are): no copy
    return np.asarray(sitk.GetArrayViewFromImage(image), np.float32)


def _roi(grid: Grid, lo_lps, hi_lps, pad: int = 1) -> tuple[slice, slice, slice]:
    """Index box of ``grid`` covering the LPS box ``[lo, hi]``."""
    corners = np.array([[a, b, c] for a in (lo_lps[0], hi_lps[0]) for b in (lo_lps[1], hi_lps[1])
                        for c in (lo_lps[2], hi_lps[2])])
    idx = grid.to_index(corners)
    lo = np.maximum(np.floor(idx.min(0)).astype(int) - pad, 0)
    hi = np.minimum(np.ceil(idx.max(0)).astype(int) + pad + 1, grid.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _side_roi(grid: Grid, centre, radius, side) -> tuple[slice, slice, slice]:
    """Index box of ``grid`` covering :func:`_side_box`."""
    lo, hi = _side_box(np.asarray(centre, float), float(radius), side)
    return _roi(grid, lo, hi)


def _sub_grid(grid: Grid, roi) -> Grid:
    o = grid.to_lps([[roi[0].start, roi[1].start, roi[2].start]])[0]
    shape = tuple(s.stop - s.start for s in roi)
    return Grid(shape, grid.spacing, tuple(o), grid.direction)


def _side_box(centre, radius, side):
    """LPS box of one proximal femur and its acetabulum around the head centre."""
    sign = -1.0 if side == "right" else 1.0
    u = np.array([-radius - 25.0, 120.0])  # local lateral coordinate (medial .. lateral)
    xs = np.sort(centre[0] + sign * u)
    lo = np.array([xs[0], centre[1] - radius - 45.0, centre[2] - 400.0])
    hi = np.array([xs[1], centre[1] + radius + 50.0, centre[2] + radius + 25.0])
    return lo, hi


def _failed(side: str, reason: str, depth: float) -> SideSegmentation:
    return SideSegmentation(side=side, status="failed", reason=reason, subchondral_depth_mm=depth)


# --------------------------------------------------------------------------- head sphere
def _surface_radii(images, grid: Grid, centre, radius, directions):
    """Per-ray radius (mm from ``centre``) of the articular bone surface and its edge strength.

    The T1 edge is used where marrow backs it (1.5-3.5 mm inside: fatty marrow at least
    ``T1_BACKING_MIN`` x muscle, or edematous marrow as in :func:`.femur.bone_classes`):
    it lies on the subchondral plate whatever fills the joint. Elsewhere
    (necrotic segment with fluid content, no T1) the fluid-sensitive edge is used.
    """
    surf = np.full(len(directions), np.nan)
    strength = np.zeros(len(directions))
    fluid = next((im[0] for im in images if im[1] > 0), None)
    for img, pol, off in sorted(images, key=lambda im: -im[1]):  # fluid-sensitive first, T1 overrides
        dist, s = ray_edges(img, grid, centre, radius - off, directions, pol)
        ok = np.isfinite(dist)
        if pol < 0 and ok.any():
            depth = np.array([1.5, 2.5, 3.5])
            along = np.where(ok, dist, radius)[:, None] - depth[None, :]
            idx = grid.to_index((np.asarray(centre) + along[:, :, None] * directions[:, None, :]).reshape(-1, 3)).T
            inner = np.median(ndimage.map_coordinates(img, idx, order=1, mode="nearest").reshape(along.shape), axis=1)
            backed = inner >= T1_BACKING_MIN
            if fluid is not None:
                # edematous marrow backs the plate too: darker on T1 than fatty marrow but above muscle,
                # and bright on the fluid-sensitive image (the marrow rule of femur.bone_classes);
                # fluid content, cartilage and joint fluid are darker than muscle on T1
                f_in = np.median(ndimage.map_coordinates(fluid, idx, order=1, mode="nearest").reshape(along.shape),
                                 axis=1)
                backed |= (inner >= EDEMA_T1_MIN) & (f_in >= EDEMA_FLUID_MIN)
            ok &= backed
        if pol > 0 and ok.any():
            # where edema or fluid lies under the plate, the plate's dip marks the surface
            dip = ray_dips(img, grid, centre, dist, directions, contrast=PLATE_DIP_CONTRAST)
            dist = np.where(np.isfinite(dip), dip - off, dist)
        if ok.any():
            surf[ok] = dist[ok] + off
            strength[ok] = s[ok] / max(float(np.median(s[ok])), 1e-9)
    return surf, strength


def _dent(directions, tree, deviation_mm):
    """Rays of a collapsed area: neighbour median of the deviation below ``-DENT_MIN_MM`` (and above
    ``-COLLAPSE_MAX_MM``) in the upper half, widened by ``DENT_MARGIN_DEG`` (the shallow rim of a
    dent would still pull the sphere inwards)."""
    ok = np.isfinite(deviation_mm)
    dev = np.where(ok, deviation_mm, 0.0)
    _, nb = tree.query(directions, k=15)
    med = np.median(dev[nb], axis=1)
    # collapse is a dent of the weight-bearing (upper) half, at most COLLAPSE_MAX_MM deep
    core = (med < -DENT_MIN_MM) & (med > -COLLAPSE_MAX_MM) & (directions[:, 2] > 0)
    if not core.any():
        return core
    near = tree.query_ball_point(directions[core], 2 * math.sin(math.radians(DENT_MARGIN_DEG) / 2))
    out = np.zeros(len(directions), bool)
    out[np.unique(np.concatenate([np.asarray(n, int) for n in near]))] = True
    return out


def _refine_sphere(images, grid: Grid, centre, radius, directions, iterations: int = 3):
    """Robust fit to the articular bone surface found along rays (collapsed area excluded).

    ``images`` is a list of ``(array, polarity, offset_mm)``: edges are shifted by
    ``offset_mm`` along the ray to the bone surface. After the first fit the rays of a
    dent (collapse) are left out, as regions.md asks, and the fit repeated.
    """
    c, r = np.asarray(centre, float), float(radius)
    tree = cKDTree(directions)
    excluded = np.zeros(len(directions), bool)
    for _ in range(iterations):
        surf, s = _surface_radii(images, grid, c, r, directions)
        ok = np.isfinite(surf)
        if ok.sum() < 30:
            return None
        pts = c + surf[:, None] * directions
        w = np.where(excluded, 0.0, s)
        c, r, w_fit = robust_sphere_fit(pts[ok], w[ok], c, r)
        dev = np.full(len(directions), np.nan)
        dev[ok] = np.linalg.norm(pts[ok] - c, axis=1) - r
        excluded = _dent(directions, tree, dev)
    # inliers: rays on the sphere (robust-fit window; nan compares False), which rank the candidates;
    # with the rays of the collapsed area they decide whether the head is accepted
    on = ~excluded & (dev >= -1.5) & (dev <= 3.75)
    dented = excluded & (dev >= -COLLAPSE_MAX_MM) & (dev <= 3.75)
    inlier, explained = float(on.sum()) / len(directions), float((on | dented).sum()) / len(directions)
    surf, _ = _surface_radii(images, grid, c, r, directions)
    return c, r, inlier, explained, surf


def _head_fit_problem(fit, gw: Grid, side_cols: np.ndarray):
    """None if a :func:`_refine_sphere` result is an acceptable head on this side, else why not
    (an empty string when the fit drifted to the other hip)."""
    c, r, inlier, explained, _ = fit
    col = int(np.clip(np.rint(gw.to_index([c])[0, 2]), 0, len(side_cols) - 1))
    if not side_cols[col]:
        return ""
    if not HEAD_RADIUS_RANGE_MM[0] + 0.5 <= r <= HEAD_RADIUS_RANGE_MM[1] - 0.5:
        return f"the best sphere has an implausible radius ({r:.1f} mm)"
    if explained < MIN_INLIER_FRACTION or inlier < MIN_SURFACE_INLIER_FRACTION:
        return (f"no sphere with a consistent articular surface (best {100 * explained:.0f} % of rays agree, "
                f"{100 * inlier:.0f} % outside a collapsed area)")
    return None


def _find_head(votes, det_w, gw: Grid, images_full, grid: Grid, side_cols: np.ndarray, polarity: int, directions,
               rows: Optional[np.ndarray] = None):
    """Acceptable head spheres among the strongest circle-centre peaks of one side, best first; an empty list
    with a reason if none.

    Each candidate is refined with its collapsed area left out (:func:`_refine_sphere`). That
    refinement can run away: wherever edges lie outside the surface (neck, acetabulum, or the
    pelvic ring around a non-head peak), each pass that leaves out the rays inside the sphere
    and takes the outermost edge refits it larger, and it may take a whole upper half for a
    collapse (33-39 mm spheres from 23-31 mm circles on phantom suites 9605-9608). Runaway rejects
    most non-head peaks, so it still decides while any candidate survives it; only when none does
    are the candidates' all-ray fits (the first pass, before any collapse is left out) compared
    instead, on the same criteria. A non-head sphere that passes them is left to the femur checks
    (a neck continuing from the head, its length and angle to the shaft) that follow. Peaks beyond
    the first ``HEAD_CANDIDATES_FIRST`` are refined only when none of those is accepted. The caller tries the
    spheres in turn until one passes those femur checks. ``rows`` (bool per row of ``votes``) limits the
    candidates to those rows.
    """
    acc = votes.copy()
    acc[:, ~side_cols] = 0
    if rows is not None:
        acc[~rows, :] = 0
    if not np.any(acc > 0):
        return [], "no circular structure in this half of the field of view"
    size = max(3, int(round(20.0 / gw.spacing[0])))
    peaks = np.argwhere((acc == ndimage.maximum_filter(acc, size=size)) & (acc > 0.2 * acc.max()))
    order = np.argsort(-acc[peaks[:, 0], peaks[:, 1]])[:HEAD_CANDIDATES]
    why = "no sphere of femoral-head size (radius 18-32 mm) in this half of the field of view"
    circles = []
    for batch in (order[:HEAD_CANDIDATES_FIRST], order[HEAD_CANDIDATES_FIRST:]):
        new = []
        for j, i in peaks[batch]:
            c0, r0, score = circle_stack_fit(det_w, gw, float(j), float(i), HEAD_RADIUS_RANGE_MM, polarity)
            if score >= MIN_CIRCLE_SCORE:
                new.append((c0, r0 + images_full[0][2], score))
        circles += new
        heads, problem = _ranked_heads(new, images_full, grid, gw, side_cols, directions, iterations=3)
        why = problem or why
        if heads:
            return heads, None
    # collapse-excluding refinement ran away on every candidate: their all-ray fits instead
    heads, _ = _ranked_heads(circles, images_full, grid, gw, side_cols, directions, iterations=1)
    return heads, (None if heads else why)


def _ranked_heads(circles, images_full, grid: Grid, gw: Grid, side_cols: np.ndarray, directions, iterations: int):
    """Acceptable heads among refined ``(centre, radius, circle score)`` candidates, ranked by surface
    inliers x circle score, best first: ``([(centre, radius, inlier, surface radii, score), ...], None)``, or
    ``([], why)`` with why the last candidate was rejected (empty if none was)."""
    heads, why = [], ""
    for c0, r0, score in circles:
        fit = _refine_sphere(images_full, grid, c0, r0, directions, iterations=iterations)
        if fit is None:
            continue
        problem = _head_fit_problem(fit, gw, side_cols)
        if problem is not None:
            why = problem or why
            continue
        c, r, inlier, _, surf = fit
        heads.append((c, r, inlier, surf, score))
    heads.sort(key=lambda h: -h[2] * h[4])
    return heads, ("" if heads else why)


# --------------------------------------------------------------------------- public API
def segment_hips(normalized, *, subchondral_depth_mm: float = 5.0, use_t1: bool = True) -> HipSegmentation:
    """Segment both proximal femurs of a normalized study.

    Parameters
    ----------
    normalized : bmepipe.normalize.NormalizedStudy
        Its muscle-relative images ``fluid_rel`` and ``t1_rel`` are used (T1 on the fluid grid).
    subchondral_depth_mm : float
        Depth of the subchondral zone below the articular surface (regions.md: 5 mm).
    use_t1 : bool
        Use the T1 series when present. Without T1 the femur is segmented from the
        fluid-sensitive series alone (:mod:`.fluid_only`, less accurate; the side's
        ``extras["warnings"]`` says so).

    Returns
    -------
    HipSegmentation
        Masks on the fluid-sensitive grid; a side without a femoral head has
        ``status == "failed"`` and a ``reason``.
    """
    t1 = normalized.t1_rel if use_t1 else None
    return segment_hips_images(normalized.fluid_rel, t1, subchondral_depth_mm=subchondral_depth_mm)


def segment_hips_images(fluid, t1=None, *, subchondral_depth_mm: float = 5.0) -> HipSegmentation:
    """Segment both proximal femurs from muscle-relative images (muscle = 1).

    Parameters
    ----------
    fluid : SimpleITK.Image
        Fluid-sensitive series (STIR, T2/PD fat-saturated), divided by skeletal muscle.
    t1 : SimpleITK.Image, optional
        T1 series on the same grid, divided by skeletal muscle (0 outside its coverage).
    subchondral_depth_mm : float

    Returns
    -------
    HipSegmentation
    """
    if not 0 < subchondral_depth_mm <= 15:
        raise ConfigError("subchondral_depth_mm must be in (0, 15]")
    timings: dict = {}
    t_start = time.perf_counter()
    grid = Grid.from_sitk(fluid)
    F = _array(fluid)
    T = None
    if t1 is not None:
        if tuple(t1.GetSize()) != tuple(fluid.GetSize()):
            raise InputError("T1 image is not on the fluid-sensitive grid (resample it first)")
        T = _array(t1)
        if not np.any(T > 0):
            T = None
    if min(F.shape) < 3:
        sides = {s: _failed(s, "not a volume (fewer than 3 slices, rows or columns)", subchondral_depth_mm)
                 for s in SIDES}
        return HipSegmentation(sides, grid.spacing, grid.origin, tuple(grid.direction.ravel()), timings)
    f = max(1, int(round(1.4 / min(grid.spacing[:2]))))
    gw = grid.downsampled(f)
    Fw = block_mean(F, f)
    Tw = block_mean(T, f) if T is not None else None
    timings["prepare"] = time.perf_counter() - t_start

    # detection on T1 when present (marrow/plate edge), else on the fluid image
    det = Tw if Tw is not None else Fw
    pol = -1 if Tw is not None else 1
    images_full = []
    if T is not None:
        images_full.append((T, -1, T1_EDGE_DEPTH_MM))
    images_full.append((F, 1, -FLUID_EDGE_HEIGHT_MM))
    dirs = fibonacci_directions(900)
    dirs = dirs[np.abs(dirs @ grid.normal) < 0.75]  # in-plane edges only (thick slices blur the rest)

    # laterality from patient coordinates: right hip at negative x (LPS), split at the body's midline
    ny, nx = gw.shape[1:]
    cols = gw.to_lps(np.column_stack([np.full(nx, gw.shape[0] / 2), np.full(nx, ny / 2), np.arange(nx)]))[:, 0]
    body = (Fw + (Tw if Tw is not None else 0)) > 0.3
    colw = body.sum(axis=(0, 1)).astype(float)
    # the body's centre when the body lies inside the field of view; a body cut by the field's
    # lateral edges has no meaningful centre, then x = 0 (the table midline at the isocentre)
    edge = max(colw[:2].max(), colw[-2:].max()) if len(colw) > 4 else colw.max()
    truncated = colw.sum() == 0 or edge > 0.2 * colw.max()
    midline = 0.0 if truncated else float((cols * colw).sum() / colw.sum())

    t0 = time.perf_counter()
    votes = vote_centres(det, gw, (8.0, HEAD_RADIUS_RANGE_MM[1]), polarity=0)
    timings["votes"] = time.perf_counter() - t0
    def one_side(side, rows=None):
        t0 = time.perf_counter()
        sign = -1.0 if side == "right" else 1.0
        side_cols = sign * (cols - midline) > 30.0
        if not side_cols.any():
            return _failed(side, f"the {side} half of the body is outside the field of view", subchondral_depth_mm)
        heads, why = _find_head(votes, det, gw, images_full, grid, side_cols, pol, dirs, rows)
        timings[f"{side}_head"] = time.perf_counter() - t0
        if not heads:
            return _failed(side, f"no femoral head found: {why}", subchondral_depth_mm)
        # a sphere the femur checks reject (no neck, implausible neck or angle) is no head: the next one is
        # tried (a trochanter sphere outranked a collapsed head, whose collapsed rays count as no inliers)
        first = None
        for c, r, inlier, surf, score in heads:
            out = segment_femur(side, c, r, inlier, surf)
            if out.ok:
                return out
            if first is None:
                first = out
        return first

    def segment_femur(side, c, r, inlier, surf):
        if T is None:
            # without T1 the femur is the dark bone enclosed by muscle, capsule and joint fluid (.fluid_only)
            from .fluid_only import segment_side_fluid

            return segment_side_fluid(side, c, r, inlier, surf, dirs, grid, F, subchondral_depth_mm, timings)
        t0 = time.perf_counter()
        try:
            return _segment_side(side, c, r, inlier, surf, dirs, grid, F, T, subchondral_depth_mm)
        except _SideFailure as exc:
            return _failed(side, str(exc), subchondral_depth_mm)
        finally:
            timings[f"{side}_femur"] = timings.get(f"{side}_femur", 0.0) + time.perf_counter() - t0

    # the two sides are independent: one thread each (bmepipe._threads)
    sides = dict(zip(SIDES, map_in_threads(one_side, SIDES)))
    heights = {s: float(sides[s].head_center_lps_mm[2]) for s in SIDES if sides[s].ok}
    if len(heights) == 2 and abs(heights["right"] - heights["left"]) > HEAD_HEIGHT_DIFF_MAX_MM:
        # one "head" is something else: look again on the side further from the field's centre height,
        # among candidates at the other head's height
        centre_z = float(grid.to_lps(np.array([[(n - 1) / 2.0 for n in grid.shape]]))[0, 2])
        suspect = max(SIDES, key=lambda s: abs(heights[s] - centre_z))
        other = "left" if suspect == "right" else "right"
        other_z = heights[other]
        ny, nx = gw.shape[1:]
        row_z = gw.to_lps(np.column_stack([np.full(ny, gw.shape[0] / 2), np.arange(ny), np.full(ny, nx / 2)]))[:, 2]
        again = one_side(suspect, np.abs(row_z - other_z) <= HEAD_HEIGHT_DIFF_MAX_MM)
        if not again.ok or abs(float(again.head_center_lps_mm[2]) - other_z) > HEAD_HEIGHT_DIFF_MAX_MM:
            dz = heights[suspect] - other_z
            again = _failed(suspect, f"no femoral head at the {other} head's height (the best sphere lies "
                                     f"{abs(dz):.0f} mm {'above' if dz > 0 else 'below'} it)", subchondral_depth_mm)
        sides[suspect] = again
    timings["total"] = time.perf_counter() - t_start
    return HipSegmentation(sides, tuple(grid.spacing), tuple(grid.origin), tuple(grid.direction.ravel()), timings)


class _SideFailure(Exception):
    pass


def _collapse_lookup(dirs, surf, radius):
    """Inward surface deviation (mm, <= 0) as a function of direction (median of the nearest rays)."""
    dev = surf - radius
    ok = np.isfinite(dev)
    tree = cKDTree(dirs[ok])
    d_ok = dev[ok]
    _, nb = tree.query(dirs[ok], k=min(COLLAPSE_NEIGHBOURS, ok.sum()))
    med = np.median(d_ok[nb], axis=1)  # neighbour median: single-ray outliers (band, line) do not count
    smooth = np.where(med < -1.0, np.maximum(med, -COLLAPSE_MAX_MM), 0.0)  # only real dents shape the head
    dev = np.full(len(dev), np.nan)
    dev[ok] = med

    def lookup(unit):
        dist, k = tree.query(unit, k=1)
        out = smooth[k]
        out[dist > math.radians(12.0)] = 0.0
        return out

    return lookup, dev


def _segment_side(side, c, r, inlier, surf, dirs, grid, F, T, depth_mm, *, t1_box=None, pelvis_box=None,
                  join_overlap=SLICE_JOIN_OVERLAP, join_outward_only=True):
    """One side's femur, axes and regions from its head sphere; T1 given on the grid (``T``) or already cut to
    the side's box (``t1_box``, :func:`_side_roi`, as the fluid-only surrogate is); ``pelvis_box`` (optional, on
    that box) is pelvic bone known beforehand, counted in the acetabulum; ``join_overlap`` and
    ``join_outward_only`` are the slice-join rules of :func:`.femur.femur_component`."""
    roi = _side_roi(grid, c, r, side)
    sub = _sub_grid(grid, roi)
    X_, Y_, Z_ = sub.axis_coordinates()
    px, py, pz = X_ - np.float32(c[0]), Y_ - np.float32(c[1]), Z_ - np.float32(c[2])
    rr = np.sqrt(px * px + py * py + pz * pz)
    # tissue classes on lightly smoothed images (noise), cortex reinforced by thin dark lines
    Fs = ndimage.gaussian_filter(F[roi], (0, 0.7, 0.7))
    if t1_box is None and T is not None:
        t1_box = T[roi]
    for name, box in (("t1_box", t1_box), ("pelvis_box", pelvis_box)):
        if box is not None and box.shape != Fs.shape:
            raise ValueError(f"{name} of shape {box.shape} does not cover the side's box {Fs.shape}")
    Ts = ndimage.gaussian_filter(t1_box, (0, 0.7, 0.7)) if t1_box is not None else None
    marrow_like, cortex = bone_classes(Ts, Fs)
    thin_cortex = cortex
    if Ts is not None:
        # a wide top-hat blocks marrow growth through blurred cortex; a narrow one marks thin cortex
        marrow_like &= ~cortex_barrier(Ts, sub.spacing, width_mm=BARRIER_WIDTH_MM)
        thin_cortex = cortex | (cortex_barrier(Ts, sub.spacing, width_mm=THIN_CORTEX_WIDTH_MM) & (Fs < 1.0))
    # anatomical envelope: no femoral bone medial to the head, above it, or far lateral to the
    # trochanter (anatomy.md: the trochanter tip is at about the level of the head centre)
    u = px if side == "left" else -px  # lateral coordinate
    envelope = (u >= -(r + 3.0)) & (u <= FEMUR_LATERAL_REACH_MM) & (pz <= r + 5.0)
    lookup, dev = _collapse_lookup(dirs, surf, r)
    # seed: head interior in slices cutting the sphere near its equator (sharp in-plane edges)
    dz = px * np.float32(grid.normal[0]) + py * np.float32(grid.normal[1]) + pz * np.float32(grid.normal[2])
    seed = (rr < r - 3.0) & (np.abs(dz) < 0.6 * r)
    lateral = np.array([-1.0 if side == "right" else 1.0, 0.0, 0.0])
    n0, cone = neck_direction((marrow_like | seed).astype(np.float32), sub, c, r, lateral)
    if n0 is None:
        raise _SideFailure("femoral head found but no femoral neck continues from it")
    comp = femur_component(marrow_like & envelope, thin_cortex, (px, py, pz), rr, seed, n0, cone, r, sub.spacing,
                           partial_mm=TANGENTIAL_CORE_MM, min_overlap=join_overlap,
                           outward_only=join_outward_only)
    n, rn, t_min = neck_axis(comp.astype(np.float32), sub, c, r, n0)
    if not 0.35 * r <= rn <= 0.95 * r:
        raise _SideFailure(f"implausible femoral neck (narrowest radius {rn:.1f} mm for a {r:.1f} mm head)")
    top = c[2] - 95.0  # below the lesser trochanter (X ~ 40 mm and the trochanter ~ 30 mm lower, anatomy.md)
    p_s, s, n_levels = shaft_axis(comp, sub, (X_, Y_, Z_), top, cortex=cortex)
    warnings = []
    if s is None:
        # too little shaft in the field of view: assume the typical adduction (anatomy.md ~7 degrees)
        sign = -1.0 if side == "right" else 1.0
        a = math.radians(7.0)
        s = np.array([-sign * math.sin(a), 0.0, -math.cos(a)])
        low = comp & (pz < -40.0)
        p_s = (np.array([X_[low].mean(), Y_[low].mean(), Z_[low].mean()]) if low.any() else c + 45.0 * n)
        warnings.append("shaft axis assumed: too little femoral shaft in the field of view")
    nsa = _neck_shaft_angle(n, s)
    if n @ lateral <= 0 or n[2] >= 0 or not NECK_SHAFT_ANGLE_RANGE_DEG[0] <= nsa <= NECK_SHAFT_ANGLE_RANGE_DEG[1]:
        raise _SideFailure(f"implausible femoral neck direction (neck-shaft angle {nsa:.0f} degrees; the neck must "
                           "run inferolaterally from the head)")
    X = closest_approach(c, n, p_s, s)
    L = float((X - c) @ n)
    if not 25.0 <= L <= 90.0:
        raise _SideFailure(f"implausible neck length {L:.1f} mm (neck and shaft axes do not meet below the head)")
    d1 = math.sqrt(max(r * r - rn * rn, 0.0))

    t = px * np.float32(n[0]) + py * np.float32(n[1]) + pz * np.float32(n[2])
    rho = np.sqrt(np.maximum(rr * rr - t * t, 0))
    hx, hy, hz = X_ - np.float32(X[0]), Y_ - np.float32(X[1]), Z_ - np.float32(X[2])
    h = hx * np.float32(s[0]) + hy * np.float32(s[1]) + hz * np.float32(s[2])
    # articular surface radius per voxel direction (collapse dents the sphere inwards)
    near = rr < r + 3.0
    r_surf = np.full(rr.shape, np.float32(r))
    if near.any():
        unit = np.column_stack([px[near], py[near], pz[near]]) / np.maximum(rr[near], 1e-3)[:, None]
        r_surf[near] = r + lookup(unit)
    ball = rr < r_surf
    head = ball & (t < d1)
    rest = (comp | ball) & (t >= d1)
    neck = rest & (t < L) & (rho <= NECK_RADIUS_FACTOR * rn)
    other = rest & ~neck
    inter = other & (h < P3_BELOW_X_MM)
    shaft = other & (h >= P3_BELOW_X_MM)
    femur = head | rest

    # acetabulum: pelvic bone (bone-like, not femur) within R + 15 mm, away from the neck
    bone_full = marrow_like | cortex
    if pelvis_box is not None:
        # fluid-only (.fluid_only): pelvic marrow as bright as muscle or more (T2 fat-saturated) fails the cortex rule
        bone_full |= pelvis_box
    cosang = t / np.maximum(rr, 1e-3)
    cup = bone_full & ~square_max(femur.view(np.uint8), 3, mode="constant").view(bool) & (rr > r + 1.5)
    cup &= (rr <= r + ACETABULUM_MARGIN_MM) & (cosang < math.cos(math.radians(min(cone + 10.0, 80.0))))
    # joint space: articular shell outside the head (not bone) and the capsular recess along the neck
    shell = (rr >= r_surf) & (rr < r + 6.0) & (cosang < math.cos(math.radians(max(cone - 5.0, 5.0))))
    recess = (t >= d1 - 3.0) & (t <= 0.8 * L) & (rho <= 1.45 * rn + JOINT_RECESS_MM)
    # the femur's outermost voxel layer is shared: it holds partial volumes of effusion against the cortex
    core = ndimage.binary_erosion(femur, structure=ndimage.generate_binary_structure(2, 1)[None])
    joint = (shell | recess) & ~core & ~cup
    # marrow: femur minus cortex (dark on every series); in the head, below the subchondral plate
    depth = r_surf - rr
    marrow = (head & (depth >= SUBCHONDRAL_PLATE_MM)) | (rest & ~cortex & ~(ball & (depth < SUBCHONDRAL_PLATE_MM)))
    subchondral = head & (depth >= SUBCHONDRAL_PLATE_MM) & (depth <= depth_mm)
    wb = head & (pz >= rr * np.float32(math.cos(math.radians(WEIGHT_BEARING_HALF_ANGLE_DEG))))

    def full(m):
        out = np.zeros(grid.shape, bool)
        out[roi] = m
        return out

    regions = {"femoral_head": full(head), "femoral_neck": full(neck), "intertrochanteric": full(inter),
               "proximal_shaft": full(shaft), "acetabulum": full(cup)}
    assert set(regions) == set(REGIONS)
    # articular surface only: rays on the head side of P1 (the neck is no articular surface)
    # edges more than 2 mm outside the sphere lie beyond the cartilage (labrum, joint space): outliers
    ok_dev = np.isfinite(dev) & (dirs @ n < d1 / r - 0.05) & (dev <= 2.0)
    surface_pts = c + (r + dev[ok_dev])[:, None] * dirs[ok_dev]
    return SideSegmentation(
        side=side, status="analysed", reason=None, regions=regions, marrow=full(marrow), joint_space=full(joint),
        head_center_lps_mm=tuple(float(v) for v in c), head_radius_mm=float(r), neck_axis=tuple(float(v) for v in n),
        neck_radius_mm=float(rn), shaft_axis=tuple(float(v) for v in s),
        neck_shaft_point_lps_mm=tuple(float(v) for v in X),
        head_neck_junction_lps_mm=tuple(float(v) for v in c + d1 * n), subchondral_depth_mm=float(depth_mm),
        subchondral_zone=full(subchondral), weight_bearing=full(wb), surface_points_lps_mm=surface_pts,
        surface_deviation_mm=dev[ok_dev],
        extras={"inlier_fraction": round(inlier, 3), "neck_cone_deg": round(cone, 1), "neck_length_mm": round(L, 2),
                "narrowest_neck_t_mm": round(t_min, 2), "shaft_levels": int(n_levels), "warnings": warnings,
                "neck_shaft_angle_deg": round(_neck_shaft_angle(n, s), 2)},
    )


def _neck_shaft_angle(n, s) -> float:
    """Angle between n and -s projected on the coronal (x-z) plane (regions.md)."""
    a = np.array([n[0], n[2]])
    b = -np.array([s[0], s[2]])
    cosang = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosang, -1, 1))))
