"""Proximal femur bone mask, neck and shaft axes, and the regions of regions.md.

Bone is found as cortex (dark on T1 and fluid-sensitive images) plus marrow
(bright on T1 when fatty; bright on fluid-sensitive and still above muscle on T1
when edematous), connected to the femoral head through the neck. The acetabulum
is cut off by the head sphere and the joint-space gap: close to the head, bone is
only followed in the directions where it continues without a gap (the neck).
Intensities are relative to skeletal muscle (muscle = 1, see
:func:`bmepipe.normalize.standardize`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .._morphology import fill_holes_per_slice, grey_square_closing, in_plane_window_px, square_min, square_opening
from .sphere import Grid, fibonacci_directions

__all__ = ["MARROW_T1_MIN", "EDEMA_T1_MIN", "EDEMA_FLUID_MIN", "CORTEX_T1_MAX", "CORTEX_FLUID_MAX",
           "SLICE_JOIN_OVERLAP", "NECK_CONE_MAX_DEG", "SHAFT_SECTION_REACH_MM", "bone_classes", "neck_direction",
           "femur_component", "neck_axis", "shaft_axis", "closest_approach"]

#: T1 signal (x muscle) above which a voxel looks like fatty marrow. Normal yellow marrow is
#: about 3x muscle on T1 spin echo; edematous marrow keeps part of its fat (regions.md convention).
MARROW_T1_MIN = 1.6
#: Edematous marrow: fluid-sensitive signal above this and T1 above EDEMA_T1_MIN (muscle-like or brighter);
#: joint fluid has the fluid signal but is darker than muscle on T1.
EDEMA_FLUID_MIN = 1.3
EDEMA_T1_MIN = 1.15
#: Cortex (signal void on every sequence): T1 below this fraction of muscle, i.e. at least about
#: half cortex in a voxel next to muscle (the half-voxel rule of regions.md) ...
CORTEX_T1_MAX = 0.6
#: ... and the fluid-sensitive signal below muscle (joint fluid is as dark on T1 but bright here).
CORTEX_FLUID_MAX = 0.8
#: Smallest downward z component of a neck candidate ray: the neck axis descends by NSA - 90 degrees
#: minus the shaft adduction, at least about 5 degrees for a neck-shaft angle of 100 (anatomy.md range
#: 100-146 degrees on CT); sin(5 deg) ~ 0.09.
NECK_MIN_DESCENT = 0.09
#: A region of a slice joins the femur when at least this fraction of it lies on the femur of the neighbouring
#: slice: at least half, as in the half-voxel rule of regions.md. With 0.4, fat joined to the neck's upper surface
#: through blurred cortex grew from slice to slice towards the ends of the stack (each slice's fat 1.3-2.2 times
#: the last's, up to 3300 voxels of a slice holding no bone; probe suites 9500-9501, 3-4.5 mm slices).
SLICE_JOIN_OVERLAP = 0.5
#: Widest neck cone half-angle (degrees) :func:`neck_direction` returns: through a neck of radius r_n rays from the
#: head centre stay in bone up to about atan(r_n / (R + 12 mm)), 20-25 degrees for r_n / R = 0.55-0.7. Wider cones
#: came from fat above the neck, joined to the head through blurred cortex at coarse resolution; the femur's cut
#: (cone + 15 degrees) then let that fat into the femur of every head slice (diagnosis suites 9605-9608, 9620-9623).
NECK_CONE_MAX_DEG = 25.0


def bone_classes(t1: np.ndarray | None, fluid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marrow-like and cortex-like voxels from muscle-relative images.

    Without T1, marrow is whatever is neither muscle-like nor fluid-bright-and-thin:
    fatty marrow is dark on fluid-sensitive images (like fat), edematous marrow bright.
    """
    if t1 is not None:
        marrow = (t1 >= MARROW_T1_MIN) | ((t1 >= EDEMA_T1_MIN) & (fluid >= EDEMA_FLUID_MIN))
        cortex = (t1 < CORTEX_T1_MAX) & (fluid < CORTEX_FLUID_MAX)
    else:
        marrow = (fluid < 0.75) | ((fluid >= EDEMA_FLUID_MIN) & (fluid < 3.5))
        cortex = fluid < 0.25
    return marrow, cortex


def _sample(mask_f: np.ndarray, grid: Grid, points: np.ndarray) -> np.ndarray:
    idx = grid.to_index(points.reshape(-1, 3)).T
    return ndimage.map_coordinates(mask_f, idx, order=1, mode="constant", cval=0.0).reshape(points.shape[:-1])


def neck_direction(bone_f: np.ndarray, grid: Grid, centre, radius_mm: float,
                   lateral=None) -> tuple[np.ndarray | None, float]:
    """Directions from the head centre along which bone continues past the sphere without a gap.

    Towards the acetabulum the joint space (cartilage, fluid) interrupts bone just
    outside the head; only through the neck is bone continuous. Only rays within 30
    degrees of the slice plane are used: across thick slices the head's pole is
    blurred into the surrounding fat. With ``lateral`` (unit LPS vector towards the
    patient's side) only inferolateral rays are candidates: the neck runs down and out
    from the head (neck-shaft angle 100-146 degrees, anatomy.md), whereas fat next to the
    head's upper lateral surface, joined to it by blurred cartilage at coarse resolution,
    lies level with or above the centre. Returns the mean of those directions and the
    cone half-angle (degrees) that holds them, or ``(None, 0)``.
    """
    d = fibonacci_directions(2400)
    d = d[np.abs(d @ grid.normal) < 0.5]
    if lateral is not None:
        d = d[(d @ np.asarray(lateral, float) > 0) & (d[:, 2] < -NECK_MIN_DESCENT)]
    r = np.arange(radius_mm - 2.0, radius_mm + 12.01, 1.0)
    prof = _sample(bone_f, grid, np.asarray(centre)[None, None, :] + r[None, :, None] * d[:, None, :])
    cont = (prof >= 0.5).all(1)
    if cont.sum() < 8:
        return None, 0.0
    n = d[cont].mean(0)
    n /= np.linalg.norm(n)
    # keep the main cluster (the neck) if a few isolated rays pass elsewhere
    keep = cont & (d @ n > math.cos(math.radians(60)))
    if keep.sum() < 8:
        return None, 0.0
    n = d[keep].mean(0)
    n /= np.linalg.norm(n)
    ang = np.degrees(np.arccos(np.clip(d[keep] @ n, -1, 1)))
    # through a neck of radius r_n rays stay in marrow up to ~atan(r_n / (R + 12)), 20-25 degrees
    return n, float(np.clip(np.percentile(ang, 85), 15.0, NECK_CONE_MAX_DEG))


def cortex_barrier(image: np.ndarray, spacing_mm, *, width_mm: float = 6.0, depth: float = 0.4) -> np.ndarray:
    """Thin dark lines (cortex between marrow and fat) as a barrier, per slice.

    Black top-hat (grey closing minus image) over ``width_mm`` in-plane: a cortex
    thinner than the resolution no longer reaches the cortex threshold, but it still
    dips below its bright neighbours by more than ``depth`` (x muscle).
    """
    size = in_plane_window_px(width_mm, spacing_mm)
    closed = grey_square_closing(image, size)
    return (closed - image) > depth


def _grow_in_plane(acc: np.ndarray, marrow: np.ndarray, cortex: np.ndarray, k_open: int, steps: int) -> np.ndarray:
    """The joined marrow given back what the opening took (``k_open`` steps inside ``marrow``), then its
    cortex (one free step, then ``steps`` inside ``cortex``), holes filled per slice; 4-connected, in-plane.

    The growth reaches at most ``k_open + 1 + steps`` voxels, so it runs on ``acc``'s box plus that reach and a
    ring of background (hole filling then sees the same outside): the same mask as on the whole array
    (tested), for a fraction of the work.
    """
    found = ndimage.find_objects(acc.view(np.uint8))
    if not found:
        return acc.copy()
    reach = k_open + steps + 2
    box = (found[0][0],) + tuple(slice(max(0, b.start - reach), min(size, b.stop + reach))
                                 for b, size in zip(found[0][1:], acc.shape[1:]))
    cross = ndimage.generate_binary_structure(2, 1)[None]
    part, marrow, cortex = acc[box], marrow[box], cortex[box]
    part = ndimage.binary_dilation(part, structure=cross, iterations=k_open, mask=part | marrow)
    # (the free step: the voxel where marrow and cortex share partial volume)
    part = ndimage.binary_dilation(part, structure=cross)
    part = ndimage.binary_dilation(part, structure=cross, iterations=steps, mask=cortex | part)
    out = np.zeros_like(acc)
    out[box] = fill_holes_per_slice(part)  # lesions, necrotic content, vascular canals
    return out


def femur_component(marrow: np.ndarray, cortex: np.ndarray, rel: tuple, centre_dist: np.ndarray, seed: np.ndarray,
                    n: np.ndarray, cone_deg: float, radius_mm: float, spacing_mm, *, shell_mm: float = 22.0,
                    cortex_max_mm: float = 6.0, min_overlap: float = SLICE_JOIN_OVERLAP, partial_mm: float = 0.0,
                    opening_mm: float = 5.0, outward_only: bool = True) -> np.ndarray:
    """Femoral bone: the marrow grown from ``seed`` (head interior), plus the cortex around it.

    Marrow is grown through marrow-like voxels only, so the dark cortex is the barrier
    against fat outside the bone. Growth is in-plane per slice; a region of a slice
    joins when at least ``min_overlap`` of it lies on the femur of the neighbouring
    slice, because a thick slice cutting a bone surface tangentially blurs the cortex
    away and would let the marrow leak into the fat of the next slice. With ``outward_only``
    a slice beyond the head's slices joins from its neighbour on the head's side only.
    Voxels within ``shell_mm`` outside the head sphere are dropped unless they lie in
    the neck cone (``cone_deg`` + 15 degrees around ``n``): the acetabular cup cannot
    join the femur through the joint space even where partial volume blurs the gap.
    Bridges narrower than ``opening_mm`` (blurred cortex between marrow and fat) are opened
    before the growth; the opened-away border comes back afterwards, within the same reach.
    The cortex is then added as the cortex-like voxels within ``cortex_max_mm``
    (in-plane) of that marrow.
    """
    x, y, z = rel
    cosang = (x * n[0] + y * n[1] + z * n[2]) / np.maximum(centre_dist, 1e-3)
    cut = (centre_dist > radius_mm - 1.0) & (centre_dist < radius_mm + shell_mm)
    cut &= cosang < math.cos(math.radians(min(cone_deg + 15.0, 80.0)))
    dom = (marrow & ~cut) | seed
    cross = ndimage.generate_binary_structure(2, 1)[None]
    # break thin bridges (partial-volume contacts with fat through thin cortex) before labelling
    k_open = max(1, int(round(opening_mm / 2 / min(spacing_mm[:2]))))
    dom = square_opening(dom, 2 * k_open + 1, mode="reflect") | seed
    nz = dom.shape[0]
    labels = [ndimage.label(dom[k], structure=cross[0])[0] for k in range(nz)]
    acc = np.zeros(dom.shape, bool)
    seeded = [k for k in range(nz) if seed[k].any()]
    if not seeded:
        return acc
    for k in seeded:
        ids = np.unique(labels[k][seed[k]])
        acc[k] = np.isin(labels[k], ids[ids > 0])

    areas = [np.bincount(lab.ravel()) for lab in labels]

    def join(k, ref):
        lab, area = labels[k], areas[k]
        if len(area) < 2:
            return
        over = np.bincount(lab[ref], minlength=len(area))  # voxels of each component on the neighbour's femur
        joined = over >= min_overlap * area
        joined[0] = False
        acc[k] |= joined[lab]  # a lookup table: far cheaper than np.isin on a 512 x 512 slice

    # sweeps from the head's slices towards both ends of the stack (trochanter regions apart from the head). Bone
    # narrows towards the ends of the stack, whereas fat joined at a trochanter or neck surface through blurred
    # cortex widens there (whole slices of it) and, joined back towards the head, reached the fat beside the neck
    # and shaft in every slice: hence outward joins only beyond the head's slices (diagnosis suites 9605-9608, both
    # ways: 92 % of the 40000 voxels joined back towards the head lay outside the femur, 3200 of the 294000 bone
    # voxels joined came that way)
    first, last = (seeded[0], seeded[-1]) if outward_only else (-1, nz)
    for _ in range(2):
        for k in range(1, nz):
            if k > first:
                join(k, acc[k - 1])
        for k in range(nz - 2, -1, -1):
            if k < last:
                join(k, acc[k + 1])
    steps = max(1, int(round(cortex_max_mm / min(spacing_mm[:2]))))
    acc = _grow_in_plane(acc, marrow & ~cut, cortex, k_open, steps)
    if partial_mm > 0:
        acc |= _tangential_slices(acc, spacing_mm, partial_mm)
    return acc


def _tangential_slices(mask: np.ndarray, spacing_mm, depth_mm: float) -> np.ndarray:
    """Voxels of the slice beyond the last bone slice that are at least half bone.

    A thick slice cutting a bone surface tangentially holds a thin layer of cortex and
    marrow, too little signal to be recognised, yet more than half of the voxel is bone
    (the truth rule of regions.md) where the neighbouring slice's section is wide: its
    in-plane core (eroded by ``depth_mm``) is taken into the next slice.
    """
    it = max(1, int(round(depth_mm / min(spacing_mm[:2]))))
    k = max(1, int(round(0.75 * it)))  # a square of this half-width erodes about as deep as the diamond of it
    core = square_min(mask.view(np.uint8), 2 * k + 1).view(bool)
    out = np.zeros_like(mask)
    out[1:] |= core[:-1]
    out[:-1] |= core[1:]
    return out & ~mask


def _section_basis(axis) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane perpendicular to the unit ``axis`` (right-handed with it)."""
    e1 = np.cross(axis, [0.0, 1.0, 0.0] if abs(axis[1]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


def cross_sections(mask_f: np.ndarray, grid: Grid, centre, axis, ts, max_radius_mm: float, step_mm: float = 0.6):
    """Area (mm^2) and centroid (LPS) of ``mask_f`` on planes perpendicular to ``axis`` at distances ``ts``.

    The plane is sampled on a disc of ``max_radius_mm`` with trilinear interpolation,
    so thick slices are handled by interpolation, not by voxel counting.
    """
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    e1, e2 = _section_basis(axis)
    g = np.arange(-max_radius_mm, max_radius_mm + 1e-6, step_mm)
    a, b = np.meshgrid(g, g, indexing="ij")
    disc = a * a + b * b <= max_radius_mm**2
    a, b = a[disc], b[disc]
    areas, cents = [], []
    for t in ts:
        p = np.asarray(centre) + t * axis + a[:, None] * e1 + b[:, None] * e2
        v = _sample(mask_f, grid, p)
        w = v.sum()
        areas.append(w * step_mm * step_mm)
        cents.append((p * v[:, None]).sum(0) / w if w > 0 else np.asarray(centre) + t * axis)
    return np.asarray(areas), np.asarray(cents)


#: After the first pass, neck sections are sampled within this factor of the narrowest equivalent radius,
#: so the greater trochanter and the head do not pull the section centroids (tuned on phantoms: 1.2 of 1.2-1.6).
CLIP_FACTOR = 1.2
#: The axis is then refitted to the neck's surface: sections from this far past the head-neck junction
#: (d1 = sqrt(R^2 - r_n^2) from C) ...
NECK_SURFACE_START_MM = 1.0
#: ... over this length, 1 mm apart (tuned on phantoms: 16 of 8-20 mm; shorter spans follow the slice
#: staircase of the boundary more).
NECK_SURFACE_SPAN_MM = 16.0
#: In-plane rays per section from the current axis to the bone boundary (the mask's 0.5 level).
NECK_SURFACE_RAYS = 32
#: Robust (Tukey biweight) limits of the surface fit: boundary points farther out than the fitted neck by more
#: than this get no weight. With a neck-shaft angle above about 135 degrees the greater trochanter joins the
#: upper neck surface up to the waist, a bulge on one side that pulls area centroids by 4-6 degrees
#: (tuned on phantoms: 2 of 1.2-4 mm, about the boundary noise of 4-5 mm slices) ...
NECK_BULGE_MM = 2.0
#: ... and points this far inside it (noise or a missed voxel; the usual biweight limit, 4.7 times a 0.8 mm
#: noise scale: wider than the bulge limit because the neck is the lower envelope of the boundary).
NECK_DENT_MM = 3.75
#: Sections whose fitted radius exceeds the narrowest by more than this are left out and the fit repeated:
#: towards its base the neck widens unevenly (metaphysis and trochanters), which would tilt the axis
#: (tuned on phantoms: 1 of 0.7-2.5 mm; without it the in-plane axis error doubled, median 0.9 degree, at
#: 0.75 mm pixels).
NECK_FLARE_MM = 1.0
#: The surface refit needs pixels fine enough to trace the neck's surface: at coarser pixels the boundary's
#: steps exceed the biweight limits and the refit turned the axis by up to 18 degrees (phantom small suites,
#: seeds 11/33/44, 1.8-3.1 mm pixels; two of their 144 hips then failed); the centroid axis is kept there
#: (refits at 1.4-1.5 mm pixels, tuning suites 4401-4402: at most 5.9 degrees).
NECK_SURFACE_MAX_PIXEL_MM = 1.6
#: A refit turning the axis farther than this is not the trochanter's pull (4-6 degrees on the tuning suites'
#: truth masks) but a failed fit: the centroid axis is kept.
NECK_SURFACE_MAX_TURN_DEG = 8.0


def _neck_surface_fit(rad, ends, ts, cos_t, sin_t):
    """Robust fit r_ik = a_i + t_i (alpha cos_k + beta sin_k) to the boundary radii (rays that end).

    Returns ``(alpha, beta, a)``: the tilt of the axis through C (radians, along the frame's two
    in-section directions) and the radius of each section.
    """
    m = len(ts)
    A = np.zeros((m, len(cos_t), 2 + m))
    A[:, :, 0] = ts[:, None] * cos_t
    A[:, :, 1] = ts[:, None] * sin_t
    A[np.arange(m), :, 2 + np.arange(m)] = 1.0
    A, y = A[ends], rad[ends]
    sol = np.zeros(2 + m)
    sol[2:] = [np.median(row[ok]) for row, ok in zip(rad, ends)]
    for _ in range(10):
        res = y - A @ sol
        u = res / np.where(res > 0, NECK_BULGE_MM, NECK_DENT_MM)
        w = np.where(np.abs(u) < 1, 1 - u * u, 0.0) ** 2  # biweight
        # normal equations (a 2 + m square system): lstsq's threaded BLAS costs more CPU than the whole fit
        aw = A * w[:, None]
        M = np.einsum("ij,ik->jk", aw, A) + 1e-9 * np.eye(2 + m)
        new = np.linalg.solve(M, np.einsum("ij,i->j", aw, y))
        converged = np.abs(new - sol).max() < 0.003
        sol = new
        if converged:
            break
    return sol[0], sol[1], sol[2:]


def _neck_surface_axis(mask_f: np.ndarray, grid: Grid, centre, n, radius_mm: float, neck_radius_mm: float,
                       iterations: int = 3):
    """The axis through C of the neck's surface from the head-neck junction towards the neck's base.

    Each section (perpendicular to ``n`` at ``t``) is sampled along ``NECK_SURFACE_RAYS`` rays from the axis to
    the first point below half bone: its boundary radius r_ik. All boundary points are fitted at once by a
    neck around an axis through C tilted by (alpha, beta) from ``n``, with a free radius a_i per section
    (:func:`_neck_surface_fit`, Tukey biweight with ``NECK_BULGE_MM`` outwards and ``NECK_DENT_MM`` inwards):
    rays running into the trochanter (bone to the end of the ray, or a bulge) carry no weight, unlike in
    area centroids. Sections where fewer than half of the rays end are left out, and so are sections wider
    than the narrowest by ``NECK_FLARE_MM`` (then the fit is repeated). Returns the unit axis (that of
    the last pass when fewer than three sections remain: ``n`` itself if on the first).
    """
    c = np.asarray(centre, float)
    d1 = math.sqrt(max(radius_mm**2 - neck_radius_mm**2, 0.0))
    ts = np.arange(d1 + NECK_SURFACE_START_MM, d1 + NECK_SURFACE_START_MM + NECK_SURFACE_SPAN_MM + 1e-6, 1.0)
    theta = np.arange(NECK_SURFACE_RAYS) * (2 * math.pi / NECK_SURFACE_RAYS)
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    step = 0.4  # mm along the rays
    r = np.arange(0.5 * neck_radius_mm, 1.1 * radius_mm + 1e-6, step)  # the boundary lies beyond half r_n
    for _ in range(iterations):
        e1, e2 = _section_basis(n)
        dirs = cos_t[:, None] * e1 + sin_t[:, None] * e2
        p = c + ts[:, None, None, None] * n + r[None, None, :, None] * dirs[None, :, None, :]
        v = _sample(mask_f, grid, p)
        below = v < 0.5
        j = np.argmax(below, axis=2)
        ends = below.any(axis=2) & (j > 0)
        j = np.clip(j, 1, len(r) - 1)
        va = np.take_along_axis(v, (j - 1)[..., None], 2)[..., 0]
        vb = np.take_along_axis(v, j[..., None], 2)[..., 0]
        rad = r[j - 1] + step * (va - 0.5) / np.maximum(va - vb, 1e-6)
        sec = ends.mean(1) >= 0.5
        if sec.sum() < 3:
            return n
        rad, ends, t_sec = rad[sec], ends[sec], ts[sec]
        alpha, beta, a = _neck_surface_fit(rad, ends, t_sec, cos_t, sin_t)
        narrow = a <= a.min() + NECK_FLARE_MM
        if not narrow.all() and narrow.sum() >= 3:
            alpha, beta, _ = _neck_surface_fit(rad[narrow], ends[narrow], t_sec[narrow], cos_t, sin_t)
        n_new = n + alpha * e1 + beta * e2
        n_new /= np.linalg.norm(n_new)
        done = float(n_new @ n) > math.cos(math.radians(0.1))
        n = n_new
        if done:
            break
    return n


def neck_axis(mask_f: np.ndarray, grid: Grid, centre, radius_mm: float, n0, iterations: int = 4):
    """Neck axis through the head centre along the narrowest neck section (regions.md).

    Alternates: cross-section areas along the current axis (between 0.55 R and
    0.55 R + 30 mm), then the axis through C and the centroids of the waist sections
    (area within 4 % of the narrowest); after the first pass the sections are
    clipped to ``CLIP_FACTOR`` times the waist radius around the axis. The axis is then
    refitted to the neck's surface (:func:`_neck_surface_axis`), which the greater trochanter
    does not pull where it joins the neck (at in-plane pixels up to ``NECK_SURFACE_MAX_PIXEL_MM``,
    and unless it turns the axis by more than ``NECK_SURFACE_MAX_TURN_DEG``), and the narrowest
    section is measured along the result.

    Returns
    -------
    n : unit vector, r_n : equivalent-circle radius (mm), t_min : distance of the narrowest section (mm)
    """
    n = np.asarray(n0, float) / np.linalg.norm(n0)
    ts = np.arange(0.55 * radius_mm, 0.55 * radius_mm + 30.0, 1.0)
    rmax = 1.1 * radius_mm
    for _ in range(iterations):
        areas, cents = cross_sections(mask_f, grid, centre, n, ts, rmax)
        areas_s = ndimage.uniform_filter1d(areas, 3, mode="nearest")
        # next time sample only around the neck (the trochanter and the head stay out of the sections)
        rmax = min(1.1 * radius_mm, CLIP_FACTOR * math.sqrt(areas_s.min() / math.pi))
        # sections of the waist (area within 4 % of the narrowest): their centroids lie on the axis
        waist = areas_s <= 1.04 * areas_s.min()
        d = cents[waist] - np.asarray(centre)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        n_new = d.mean(0) / np.linalg.norm(d.mean(0))
        done = float(n_new @ n) > math.cos(math.radians(0.3))
        n = n_new
        if done:
            break
    if max(grid.spacing[:2]) <= NECK_SURFACE_MAX_PIXEL_MM:
        n_surface = _neck_surface_axis(mask_f, grid, centre, n, radius_mm, math.sqrt(areas_s.min() / math.pi))
        if float(n_surface @ n) >= math.cos(math.radians(NECK_SURFACE_MAX_TURN_DEG)):
            n = n_surface
    areas, cents = cross_sections(mask_f, grid, centre, n, ts, rmax, step_mm=0.4)
    areas_s = ndimage.uniform_filter1d(areas, 3, mode="nearest")
    i = int(np.argmin(areas_s))
    return n, float(math.sqrt(areas_s[i] / math.pi)), float(ts[i])


#: Sections of the shaft are taken within this distance (mm) of the current shaft axis: the largest shaft radius
#: (16.5 mm, anatomy.md [approx]) with margin. Fat joined to the trochanter through blurred cortex runs down beside
#: the shaft (probe suites 9501, 9621-9623, 3-4.5 mm pixels) and pulled the centroids of whole sections.
SHAFT_SECTION_REACH_MM = 20.0


def _section_line(xs, ys, zs, step_mm: float, min_levels: int):
    """Line through the centroids of the points' ``step_mm`` axial levels: ``(point, unit vector towards the feet,
    levels)``; no line (``None, None, levels``) with fewer than ``min_levels`` well-filled levels."""
    if len(zs) == 0:
        return None, None, 0
    bins = np.floor((zs - zs.min()) / step_mm).astype(int)
    cnt = np.bincount(bins)
    ok = cnt >= max(10, 0.3 * np.median(cnt[cnt > 0]))
    cx = np.bincount(bins, xs)[ok] / cnt[ok]
    cy = np.bincount(bins, ys)[ok] / cnt[ok]
    cz = np.bincount(bins, zs)[ok] / cnt[ok]
    if len(cz) < min_levels:
        return None, None, len(cz)
    pts = np.column_stack([cx, cy, cz])
    m = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - m, full_matrices=False)
    s = vt[0] if vt[0][2] < 0 else -vt[0]
    return m, s, len(cz)


def shaft_axis(mask: np.ndarray, grid: Grid, coords: tuple, top_z_mm: float, *, cortex: np.ndarray | None = None,
               step_mm: float = 5.0, min_levels: int = 4, iterations: int = 2):
    """Shaft axis from centroids of axial (constant-z) sections of the femur below ``top_z_mm``.

    With ``cortex``, the first axis comes from the femur's cortex voxels (fat joined to the femur through blurred
    cortex is marrow-like, it has no cortex of its own); then, ``iterations`` times, the whole sections within
    ``SHAFT_SECTION_REACH_MM`` of the current axis give the next. Without cortex in at least ``min_levels`` levels
    (or without ``cortex``) the whole sections give the axis: refining an axis that fat has already pulled only
    takes it further into that fat.

    Returns
    -------
    point : (3,) LPS on the axis, s : unit vector towards the feet, n_levels : int
    """
    x, y, z = coords
    sel = mask & (z < top_z_mm)
    if not sel.any():
        return None, None, 0
    xs, ys, zs = x[sel], y[sel], z[sel]
    s = None
    if cortex is not None:
        core = cortex[sel]
        m, s, n_levels = _section_line(xs[core], ys[core], zs[core], step_mm, min_levels)
    if s is None:
        return _section_line(xs, ys, zs, step_mm, min_levels)
    pts = np.column_stack([xs, ys, zs])
    for _ in range(iterations):
        d = pts - m
        near = np.linalg.norm(d - np.outer(d @ s, s), axis=1) <= SHAFT_SECTION_REACH_MM
        m_new, s_new, n_new = _section_line(xs[near], ys[near], zs[near], step_mm, min_levels)
        if s_new is None:
            break
        m, s, n_levels = m_new, s_new, n_new
    return m, s, n_levels


def closest_approach(p1, d1, p2, d2) -> np.ndarray:
    """Midpoint of the shortest segment between lines ``p1 + a d1`` and ``p2 + b d2``."""
    p1, d1, p2, d2 = (np.asarray(v, float) for v in (p1, d1, p2, d2))
    w = p1 - p2
    a, b, c = d1 @ d1, d1 @ d2, d2 @ d2
    d, e = d1 @ w, d2 @ w
    den = a * c - b * b
    if abs(den) < 1e-9:
        return p1
    s = (b * e - c * d) / den
    t = (a * e - b * d) / den
    return 0.5 * ((p1 + s * d1) + (p2 + t * d2))
