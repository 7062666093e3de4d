"""AVN evidence: the demarcated subchondral segment, its extent, location, angles and collapse.

The necrotic segment of osteonecrosis is bordered by a low-signal band on T1
(JIC diagnostic criterion "low-intensity band on T1", Sugano et al., J Orthop Sci
2002;7:601 via clinical.md) with a high-signal inner rim on fluid-sensitive
images (double-line sign, Mitchell et al., Radiology 1987;162:709). On every ray
from the head centre (:mod:`bmepipe.quantify.headframe`) the band is a T1 dip:
darker than normal fatty marrow by ``band_t1_drop`` with brighter T1 on both
sides (or, for a fluid or fibrous centre, a sharp and lasting T1 drop), deeper
than ``band_min_depth_mm`` below the surface (AVN bands are deep,
SIF bands shallow: depth-of-band study, clinical.md section 3). The reactive
interface is a smooth cap, so a sphere is fitted robustly to the dip points; the
segment is the femoral head inside it (its reactive border included, as in
regions.md). Which side of the band the segment lies on is read from the
double-line sign: the high-signal inner rim, a narrow peak next to the band, is on the
segment side (edema beside the band is a broad plateau, often as bright). A large segment
can contain the head centre; its band then faces inwards (rays from the centre leave
the segment at the band) and surrounds the centre. Where the band passes near the head
centre, rays from the centre run along it and see only a shallow patch; the band is then
found once more on rays from inside the first fit's segment, which cross it head-on (as a
dip, or for a dark centre as the T1 rise out of it), and the sphere refitted. A band
through the head centre is crossed by no ray from it (they all start in it): when nothing
is found and the centre is T1-dark, the band is looked for from points off the centre;
and a dark centre's T1 step may spread over a wider window at coarse resolution. Every
fit must reach the articular surface. Then:

* necrotic extent = segment volume / femoral head volume x 100, ARCO groups
  A < 15 %, B 15-30 %, C > 30 % (ARCO table, clinical.md section 4);
* JIC type on the mid-coronal great circle against the weight-bearing portion
  from 45 degrees medial to the lateral acetabular edge, in thirds (Sugano 2002);
* modified Kerboul combined necrotic angle = coronal + sagittal arc of the
  segment on the head sphere (Ha et al., J Bone Joint Surg Am 2006;88 Suppl 3:35),
  grades < 200, 200-249, 250-299, >= 300 degrees;
* collapse = largest inward deviation of the articular surface from the fitted
  sphere in the weight-bearing portion (regions.md), ARCO IIIA <= 2 mm, IIIB > 2 mm
  (Yoon et al., J Arthroplasty 2020, ARCO 2019).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from scipy import ndimage

from ..segment.hips import ACETABULUM_MARGIN_MM
from .headframe import HeadFrame
from .params import QuantifyParams

__all__ = ["find_necrotic_segment", "fit_sphere", "jic_type", "kerboul_grade", "arco_extent_group",
           "collapse_depth_mm", "acetabular_edge_deg", "edge_frame", "arc_angles_deg"]

#: Modified Kerboul grade lower bounds (degrees), Ha et al. 2006 (clinical.md section 4).
KERBOUL_GRADES = (200.0, 250.0, 300.0)
#: Half-width (mm) of the window around a T1 dip in which the fluid-sensitive signal must fall below the
#: edema level for the dip to be a band: the band is 1.6-2.8 mm wide [approx] and blurred by the pixel.
BAND_FLUID_WINDOW_MM = 2.0
#: Width (mm) on either side of a band point in which the bright inner rim (double-line sign) is looked for, and of
#: the window beyond it that the rim must stand out from: rim 1.2-2 mm [approx] next to a 1.6-2.8 mm band.
RIM_WINDOW_MM = 3.0
#: A segment containing the head centre is surrounded by its band: the mean of its band rays' unit directions must be
#: shorter than this (a band on one side only, with the rest of the head "inside", is an edema front or sparing edge).
SURROUND_MAX = 0.7
#: Half-width (mm) of the window over which a sharp T1 step must drop; when no segment is found, once more with
#: ``STEP_HALF_WIDE_MM``: at coarse resolution (or with edema lowering T1 around it) the step of a dark centre is
#: spread over more than 4 mm.
STEP_HALF_MM = 2.0
STEP_HALF_WIDE_MM = 3.0
#: Seen from inside a dark centre, the band is where T1 rises out of it (a step on the reversed ray, over
#: ``STEP_HALF_WIDE_MM``: the rise into the edematous marrow around the segment is gradual, over about 6 mm); the
#: rise lies at the band's outer edge, where T1 leaves the dark band, while a dip lies at the band's darkest, inner
#: part. Rise points are taken back this far (mm) towards the start so both kinds mark the same place and get the same
#: ``necrosis_border_mm``: about a band width (1.6-2.8 mm [approx]) plus the blur (on the tuning suites, rise points
#: so taken back sit where dips do, a median 1.2-2.0 mm inside the true border).
RISE_EDGE_MM = 2.5
#: Rays from a point inside the segment (the refit) start this far (mm) from it: near the start every ray
#: crosses the same few voxels.
REFIT_MIN_R_MM = 2.5
#: A band passing through the head centre is crossed by no ray from the centre (they start in it): when no segment is
#: found, the band is looked for once more on rays from points this fraction of the head radius off the centre, along
#: each of the frame's six half-axes (the segment side is the one whose rays find the band with its bright rim on the
#: start's side, :func:`_fit_from_point`).
OFF_CENTRE_FRACTION = 0.4
#: ... and the fitted band must pass within this fraction of the head radius of the centre (the rays from the centre
#: look for dips from ``band_min_radius_fraction`` x R on and need brighter T1 inwards of the dip, over a pixel and
#: the smoothing: a band further out is seen from the centre, and a fit from off the centre passing far from it is
#: something else, e.g. the shallow band of a fracture).
NEAR_CENTRE_FRACTION = 0.15
#: Angular step (degrees) of the rays from the six points off the centre: a coarse search (a quarter of the rays of
#: the 3-degree grid), since it runs on every hip whose centre rays start T1-dark (edema too), and the band it finds
#: is then refitted from inside the segment on the 3-degree grid.
OFF_CENTRE_STEP_DEG = 6.0
#: ARCO extent groups, % of the femoral head: A < 15, B 15-30, C > 30 (clinical.md section 4).
ARCO_EXTENT = (15.0, 30.0)
#: Lateral centre-edge angles (degrees) the acetabular edge is looked for in: 10-62 degrees in 4151 hips
#: (Jacobsen 2005, anatomy.md section 2); a sanity bound on the search for the rim.
LATERAL_EDGE_RANGE_DEG = (10.0, 62.0)


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere ``|p - c| = r`` through ``points`` (N >= 4), algebraic fit."""
    a = np.column_stack([2 * points, np.ones(len(points))])
    b = (points ** 2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    c = sol[:3]
    return c, float(np.sqrt(max(sol[3] + c @ c, 0.0)))


def _median_outwards(points: np.ndarray, c: np.ndarray) -> float:
    """Median distance (mm) of the ball centre ``c`` beyond the points along their rays from the origin."""
    q = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-9)
    return float(np.median(((c[None, :] - points) * q).sum(axis=1)))


def _faces_out(points: np.ndarray, c: np.ndarray) -> bool:
    """True when the ball centre ``c`` lies beyond the band points along their rays from the head centre.

    The segment is subchondral: on every band ray it runs from the band out to the articular
    surface, so it is the inside of the fitted ball only when the ball's centre lies outwards of
    the band. Band points on a narrow cap at nearly constant depth fit a small ball around the head
    centre, or a large one below it, as well as the real border: those face inwards (a segment that
    really contains the head centre is fitted apart, :func:`_faces_in`).
    """
    return _median_outwards(points, c) > 0.0


def _faces_in(points: np.ndarray, c: np.ndarray, r: float, surface_mm: float) -> bool:
    """True for a ball containing the head centre whose border the band rays leave, with the articular surface
    outside it.

    A segment large enough to contain the head centre: rays from the centre start in the segment and cross
    the band outwards into normal marrow, so the ball centre lies inwards of the band points along their
    rays and the articular surface beyond them (radius ``surface_mm``) lies outside the ball.
    """
    if _median_outwards(points, c) >= 0.0 or float(np.linalg.norm(c)) >= r:
        return False
    q = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-9)
    return float(np.median(np.linalg.norm(surface_mm * q - c[None, :], axis=1))) > r


def _ransac_sphere(points: np.ndarray, tol_mm: float, rng: np.random.Generator, radius_range,
                   faces: Callable[[np.ndarray, np.ndarray, float], bool], n_iter: int = 300):
    """Sphere with the most points within ``tol_mm``, radius in ``radius_range``, oriented as ``faces(points, c, r)``
    requires (:func:`_faces_out`, :func:`_faces_in`, :func:`_contains_start`)."""
    best = None
    n = len(points)
    for _ in range(n_iter):
        idx = rng.choice(n, 4, replace=False)
        try:
            c, r = fit_sphere(points[idx])
        except np.linalg.LinAlgError:
            continue
        if not radius_range[0] <= r <= radius_range[1] or not faces(points[idx], c, r):
            continue  # e.g. a tiny sphere around dips clustered near the head centre
        inl = np.abs(np.linalg.norm(points - c, axis=1) - r) < tol_mm
        if best is None or inl.sum() > best.sum():
            best, c_best, r_best = inl, c, r
    if best is None or best.sum() < 4:
        return None
    c, r = c_best, r_best
    for _ in range(3):  # refine on the inliers, keeping the constraints (a refit may slide to a tiny sphere)
        c_new, r_new = fit_sphere(points[best])
        if not radius_range[0] <= r_new <= radius_range[1] or not faces(points[best], c_new, r_new):
            break
        c, r = c_new, r_new
        best = np.abs(np.linalg.norm(points - c, axis=1) - r) < tol_mm
    return c, r, best


def _dips(t1: np.ndarray, valid: np.ndarray, t1_normal: float, params: QuantifyParams) -> np.ndarray:
    """Index of the band (T1 dip) on every ray, -1 where none (``t1``: (rays, n_r))."""
    t = np.where(valid, t1, np.inf)
    k = np.argmin(t, axis=1)
    tmin = t[np.arange(len(t)), k]
    n_r = t1.shape[1]
    r_idx = np.arange(n_r)[None, :]
    before = np.where(valid & (r_idx < k[:, None]), t1, -np.inf).max(axis=1)
    after = np.where(valid & (r_idx > k[:, None]), t1, -np.inf).max(axis=1)
    rise = params.band_t1_rise * t1_normal
    ok = (tmin < (1 - params.band_t1_drop) * t1_normal) & (before - tmin >= rise) & (after - tmin >= rise)
    return np.where(ok, k, -1)


def _steps(t1: np.ndarray, valid: np.ndarray, t1_normal: float, half: int, params: QuantifyParams) -> np.ndarray:
    """Index of a sharp, lasting T1 drop (the border of a T1-dark segment centre) on every ray, -1 where none.

    A segment with a fluid or fibrous centre (Mitchell classes C, D; clinical.md section 4) is dark on T1
    beyond its band, so there is no dip, but a drop of ``band_t1_step`` x normal marrow within
    ``2 half`` samples after which T1 stays below ``(1 - band_t1_drop)`` x normal up to the surface;
    the gradual T1 change of edema fronts (ill-defined, clinical.md section 2) does not qualify.
    """
    n_rays, n_r = t1.shape
    t = np.where(valid, t1, np.nan)
    drop = np.full(t.shape, -np.inf)
    drop[:, half:n_r - half] = t[:, :n_r - 2 * half] - t[:, 2 * half:]
    drop = np.where(np.isnan(drop), -np.inf, drop)
    k = np.argmax(drop, axis=1)
    big = drop[np.arange(n_rays), k] >= params.band_t1_step * t1_normal
    r_idx = np.arange(n_r)[None, :]
    beyond = np.where(valid & (r_idx > k[:, None] + half), t1, -np.inf).max(axis=1)
    ok = big & (beyond < (1 - params.band_t1_drop) * t1_normal) & np.isfinite(beyond)
    return np.where(ok, k, -1)


def arc_angles_deg(center_local: np.ndarray, radius: float, R: float, plane: str,
                   neck_local: Optional[np.ndarray] = None, d1: Optional[float] = None, step: float = 0.5):
    """Angles (deg from superior, + lateral or + anterior) of head-sphere points inside the fitted ball."""
    alpha = np.arange(-180.0, 180.0, step)
    a = np.radians(alpha)
    q = np.zeros((len(a), 3))
    q[:, 2] = np.cos(a)
    q[:, 0 if plane == "coronal" else 1] = np.sin(a)
    p = R * q
    inside = np.linalg.norm(p - center_local, axis=1) < radius
    if neck_local is not None and d1 is not None:
        inside &= p @ neck_local < d1  # on the head side of P1
    return alpha, inside


def jic_type(alpha: np.ndarray, inside: np.ndarray, edge_deg: float, medial_deg: float = -45.0) -> Optional[str]:
    """JIC type from the mid-coronal arc (Sugano et al. 2002): thirds of the weight-bearing portion from medial."""
    wb = (alpha >= medial_deg) & (alpha <= edge_deg)
    if not (inside & wb).any():
        return None
    lat_end = float(alpha[inside & (np.abs(alpha) < 90)].max())
    third = (edge_deg - medial_deg) / 3.0
    if lat_end <= medial_deg + third:
        return "A"
    if lat_end <= medial_deg + 2 * third:
        return "B"
    return "C1" if lat_end <= edge_deg else "C2"


def kerboul_grade(angle_deg: Optional[float]) -> Optional[int]:
    """Modified Kerboul grade 1-4 of a combined necrotic angle (Ha et al. 2006)."""
    if angle_deg is None:
        return None
    return 1 + int(np.searchsorted(KERBOUL_GRADES, angle_deg, side="right"))


def arco_extent_group(extent_pct: Optional[float]) -> Optional[str]:
    """ARCO extent group A (< 15 %), B (15-30 %), C (> 30 %) of the femoral head."""
    if extent_pct is None:
        return None
    return "A" if extent_pct < ARCO_EXTENT[0] else "B" if extent_pct <= ARCO_EXTENT[1] else "C"


def collapse_depth_mm(side_seg, half_angle_deg: float) -> Optional[float]:
    """Largest inward deviation (mm, >= 0) of the articular surface in the weight-bearing cone."""
    pts, dev = side_seg.surface_points_lps_mm, side_seg.surface_deviation_mm
    if pts is None or dev is None or side_seg.head_center_lps_mm is None:
        return None
    d = np.asarray(pts, float) - np.asarray(side_seg.head_center_lps_mm, float)
    cosang = d[:, 2] / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
    cone = cosang >= np.cos(np.radians(half_angle_deg))
    if not cone.any():
        return None
    return float(max(0.0, -float(np.min(np.asarray(dev, float)[cone]))))


def edge_frame(frame: HeadFrame) -> HeadFrame:
    """The lateral half-meridian (phi = 0) of ``frame``, rays from R to R + 15 mm (``ACETABULUM_MARGIN_MM``:
    the acetabulum is pelvic bone within R + 15 mm, regions.md)."""
    step = float(frame.r_mm[1] - frame.r_mm[0])
    r = np.arange(frame.radius_mm, frame.radius_mm + ACETABULUM_MARGIN_MM + 1e-9, step)
    return HeadFrame(frame.center, frame.radius_mm, frame.axes, frame.theta_deg, np.zeros(1), r)


def acetabular_edge_deg(frame: HeadFrame, acetabulum_rays: Optional[np.ndarray], default: float = 45.0) -> float:
    """Lateral acetabular edge on the mid-coronal circle (degrees from superior): the ray of least acetabulum.

    Up to the rim every ray crosses the thick roof; beyond it the segmented acetabulum may go on as
    periarticular fat (T1-bright like marrow, below the rim), joined to the roof through the labrum where
    partial volumes blur it. The labrum and the rim's cortex leave a notch: the edge is the first ray with the
    fewest acetabulum samples among the angles of ``LATERAL_EDGE_RANGE_DEG`` (for a clean rim, the first ray
    past it: one angular step beyond the last ray through the roof).

    Parameters
    ----------
    frame : HeadFrame
        An :func:`edge_frame` (one half-meridian).
    acetabulum_rays : ndarray or None
        The acetabulum mask sampled along its rays, (theta, 1, r).
    default : float
        Returned (degrees) when there is no notch to find: no acetabulum mask, no acetabulum or no variation of
        it within ``LATERAL_EDGE_RANGE_DEG``.
    """
    if len(frame.phi_deg) != 1:
        raise ValueError("acetabular_edge_deg needs an edge_frame (one half-meridian)")
    if acetabulum_rays is None:
        return default
    depth = (acetabulum_rays[:, 0, :] >= 0.5).sum(axis=1)
    lo, hi = LATERAL_EDGE_RANGE_DEG
    window = np.flatnonzero((frame.theta_deg >= lo) & (frame.theta_deg <= hi))
    if window.size == 0 or depth[window].max() == depth[window].min():
        return default
    return float(frame.theta_deg[window[np.argmin(depth[window])]])


def find_necrotic_segment(frame: HeadFrame, t1_rays: Optional[np.ndarray], fluid_rays: np.ndarray,
                          head_rays: np.ndarray, t1_normal: Optional[float], params: QuantifyParams,
                          seed: int = 0, edema_level: Optional[float] = None,
                          resample: Optional[Callable[[HeadFrame], tuple]] = None,
                          head_local: Optional[np.ndarray] = None) -> Optional[dict]:
    """Fit the necrotic segment's border on the rays; None when no band is found.

    A band running near the head centre is met at a grazing angle by the rays from the centre, which find
    it only in a patch; a sphere through a shallow patch is poorly determined (a flat cap fits a 20 mm or a
    50 mm ball alike). With ``resample`` (a function returning the ``(t1, fluid, head)`` samples along the
    rays of another :class:`HeadFrame`) and ``head_local`` (head voxel positions in the frame's local axes,
    mm), the band is detected once more on rays from the centroid of the first fit's segment, which cross
    its border head-on all round, and the sphere is refitted on them (:func:`_refit_from_inside`). When
    nothing is found, a dark centre's T1 step is looked for over ``STEP_HALF_WIDE_MM``, and then, if the rays
    from the centre start T1-dark (:func:`_centre_in_band`), a band through the centre from points off it
    (:func:`_fit_off_centre`). The returned dict is described under :func:`_fit_segment`.
    """
    fit = _fit_segment(frame, t1_rays, fluid_rays, head_rays, t1_normal, params, seed, edema_level, STEP_HALF_MM)
    if fit is None and t1_rays is not None:
        fit = _fit_segment(frame, t1_rays, fluid_rays, head_rays, t1_normal, params, seed, edema_level,
                           STEP_HALF_WIDE_MM)
    if (fit is None and resample is not None and head_local is not None
            and _centre_in_band(frame, t1_rays, head_rays, t1_normal, params)):
        fit = _fit_off_centre(frame, resample, t1_normal, params, seed, edema_level)
    if fit is not None and resample is not None and head_local is not None:
        fit = _refit_from_inside(frame, fit, head_local, resample, t1_normal, params, seed, edema_level)
    return fit


def _fit_segment(frame: HeadFrame, t1_rays: Optional[np.ndarray], fluid_rays: np.ndarray,
                 head_rays: np.ndarray, t1_normal: Optional[float], params: QuantifyParams,
                 seed: int = 0, edema_level: Optional[float] = None,
                 step_half_mm: float = STEP_HALF_MM) -> Optional[dict]:
    """The fit of :func:`find_necrotic_segment` on the rays from the head centre, T1 steps over ``2 step_half_mm``.

    ``edema_level`` (standardized fluid-sensitive signal of marrow at the BME threshold): a T1
    dip counts as the band only where the fluid-sensitive signal within ``BAND_FLUID_WINDOW_MM``
    of it falls below this level. The band is low-signal on T1 *and* fluid-sensitive images
    (JIC band; dark outer line of the double-line sign, Mitchell 1987), whereas a T1 dip inside
    bright edema is edematous marrow (at coarse resolution, ringing of the subchondral plate
    across an edematous head shows as such dips).

    Returns
    -------
    dict or None
        ``center_local`` (fitted ball centre relative to the head centre, in the
        frame's (u, a, w) axes, mm), ``radius_mm``, ``band_points`` (N, 3) local,
        ``band_depth_mm`` (median depth of the band below the sphere),
        ``double_line_contrast`` (median fluid-sensitive rim-minus-band contrast),
        ``band_area_deg2``, ``contains_head_centre``, ``step_fraction`` (share of the band points that are
        T1 steps into a dark centre, or, for a fit from a point inside the segment, T1 rises out of it),
        ``refit`` (True when refitted from inside the segment: centre, radius, band points and depth are the
        refit's, area and double-line contrast the first fit's), ``off_centre`` (True when found from a point
        off the head centre).
    """
    if t1_rays is None or t1_normal is None or not np.isfinite(t1_normal):
        return None
    R = frame.radius_mm
    n_th, n_ph, n_r = t1_rays.shape
    t1 = ndimage.gaussian_filter1d(t1_rays, 1.0 / (frame.r_mm[1] - frame.r_mm[0]), axis=2)
    depth = R - frame.r_mm
    # near the centre every ray crosses the same few voxels: a band passing there would look like a tiny sphere
    valid = (head_rays >= 0.5) & (depth >= 2.0)[None, None, :] & (frame.r_mm >= params.band_min_radius_fraction * R)[None, None, :]
    step = float(frame.r_mm[1] - frame.r_mm[0])
    k = _dips(t1.reshape(-1, n_r), valid.reshape(-1, n_r), t1_normal, params).reshape(n_th, n_ph)
    k = _fluid_confirms(k, fluid_rays, head_rays, edema_level, step)
    half = max(1, int(round(step_half_mm / step)))
    ks = _steps(t1.reshape(-1, n_r), valid.reshape(-1, n_r), t1_normal, half, params).reshape(n_th, n_ph)
    k = np.where(k >= 0, k, ks)
    deep = (k >= 0) & (depth[np.maximum(k, 0)] >= params.band_min_depth_mm)
    if deep.sum() < 8:
        return None
    q = frame.local_directions[deep]
    r_band = frame.r_mm[k[deep]]
    pts = q * r_band[:, None]
    # the segment's side of each band point: the double-line sign's high-signal inner rim (fluid-sensitive
    # image) lies on the segment side of the dark band; a sharp T1 step drops into a dark centre lying outwards
    rim_out = np.where((ks >= 0) & (k == ks), np.inf, _rim_outwards(fluid_rays, head_rays, k, step))[deep]
    rim_out = np.where(np.isfinite(rim_out), rim_out, np.where(rim_out > 0, 1e3, 0.0))
    # fit both orientations (segment outwards of the band, or containing the head centre) and keep the one
    # its own band points' rims support; none when the rims contradict it
    fits = []
    for inward in (False, True):
        faces = ((lambda p, c, r: _faces_in(p, c, r, R + params.necrosis_border_mm)) if inward
                 else (lambda p, c, r: _faces_out(p, c)))
        fit = _ransac_sphere(pts, tol_mm=2.0, rng=np.random.default_rng(seed), radius_range=(0.4 * R, 3.0 * R),
                             faces=faces)
        if fit is None:
            continue
        if inward and float(np.linalg.norm(q[fit[2]].mean(axis=0))) >= SURROUND_MAX:
            continue  # a one-sided band: not a border around the head centre
        support = float(np.median(rim_out[fit[2]]))
        fits.append((-support if inward else support, inward, fit))
    if not fits:
        return None
    support, inward, fit = max(fits, key=lambda f: f[0])
    if support < 0:
        return None
    c, rho, inl = fit
    area = float(frame.solid_angle_deg2()[deep][inl].sum())
    if area < params.necrosis_min_area_deg2 or not 0.4 * R <= rho <= 3.0 * R:
        return None
    if not _reaches_surface(frame, c, rho + params.necrosis_border_mm, params):
        return None
    # double line: the segment lies outside the band on the ray, or inside it when it contains the head centre
    contrast = _double_line_contrast(fluid_rays[deep][inl], k[deep][inl], step, towards_start=inward)
    return {
        "center_local": c, "radius_mm": rho + params.necrosis_border_mm, "band_points": pts[inl],
        "band_depth_mm": float(np.median(R - r_band[inl])),
        "double_line_contrast": contrast, "band_area_deg2": area, "contains_head_centre": bool(inward),
        "step_fraction": float(((ks >= 0) & (k == ks))[deep][inl].mean()), "refit": False, "off_centre": False,
    }


def _fluid_confirms(k: np.ndarray, fluid_rays: np.ndarray, head_rays: np.ndarray, edema_level: Optional[float],
                    step_mm: float) -> np.ndarray:
    """``k`` (dip index per ray, -1: none) with the dips removed where the fluid-sensitive signal within
    ``BAND_FLUID_WINDOW_MM`` does not fall below ``edema_level`` (see :func:`_fit_segment`)."""
    if edema_level is None or not np.isfinite(edema_level):
        return k
    w = max(1, int(round(BAND_FLUID_WINDOW_MM / step_mm)))
    f_low = ndimage.minimum_filter1d(np.where(head_rays >= 0.5, fluid_rays, np.inf), 2 * w + 1, axis=2)
    at_dip = np.take_along_axis(f_low, np.maximum(k, 0)[..., None], axis=2)[..., 0]
    return np.where(at_dip < edema_level, k, -1)


def _rim_outwards(fluid_rays: np.ndarray, head_rays: np.ndarray, k: np.ndarray, step_mm: float) -> np.ndarray:
    """Which side of each ray's band sample ``k`` the double-line sign's bright inner rim lies on: > 0 outwards,
    < 0 inwards (NaN where neither side has a head sample).

    The rim is a narrow line along the band: on its side the fluid-sensitive signal within ``RIM_WINDOW_MM`` peaks
    above both the band and the mean over the next ``RIM_WINDOW_MM`` (prominence: the smaller of the two). Where a
    side shows such a peak, the value is the outward minus the inward prominence: bone-marrow edema beside the band
    (centred on the lesion) is a broad plateau, often brighter than the blurred rim but no peak. Where neither does,
    the brightest head signals within ``RIM_WINDOW_MM`` are compared, outwards minus inwards (+-inf where only one
    side has head samples). With noise a flat side nearly always shows a small peak, so this fall-back is rare: a
    rim blurred into a bright fluid or poorly fat-suppressed centre is then decided by noise peaks (no noise floor
    on the prominence: 0.05-0.2 x muscle changed one tuning hip, read right either way).
    """
    w = max(1, int(round(RIM_WINDOW_MM / step_mm)))
    head = head_rays >= 0.5
    r_idx = np.arange(fluid_rays.shape[-1])[None, None, :]
    band = np.take_along_axis(fluid_rays, np.maximum(k, 0)[..., None], axis=2)[..., 0]
    maxima, peaks = [], []
    for sign in (1, -1):  # outwards, inwards
        d = sign * (r_idx - k[..., None])  # samples from the band on this side
        near = head & (d > 0) & (d <= w)
        beyond = head & (d > w) & (d <= 2 * w)
        peak = np.where(near, fluid_rays, -np.inf).max(axis=2)
        n_beyond = beyond.sum(axis=2)
        after = np.where(beyond, fluid_rays, 0.0).sum(axis=2) / np.maximum(n_beyond, 1)
        prominence = np.where(n_beyond > 0, np.minimum(peak - band, peak - after), 0.0)
        maxima.append(peak)
        peaks.append(np.maximum(prominence, 0.0))
    with np.errstate(invalid="ignore"):  # no head sample on either side: -inf - -inf
        brighter = maxima[0] - maxima[1]
    return np.where((peaks[0] > 0) | (peaks[1] > 0), peaks[0] - peaks[1], brighter)


def _double_line_contrast(profiles: np.ndarray, k: np.ndarray, step_mm: float, towards_start: bool) -> Optional[float]:
    """Median rim-minus-band contrast on the fluid-sensitive ``profiles`` (one ray per row, band at ``k``):
    the bright rim beyond the dark band on the segment's side, read within 3 mm; ``towards_start`` when the
    segment lies inwards on the ray (the profile is then read reversed)."""
    w = int(round(3.0 / step_mm))
    n_r = profiles.shape[-1]
    contrast = []
    for fr, ki in zip(profiles, k):
        seg = fr[max(ki - w, 0):min(ki + w + 1, n_r)]
        seg = seg[::-1] if towards_start else seg
        contrast.append(seg[int(np.argmax(seg)):].max() - seg[:int(np.argmax(seg)) + 1].min())
    return float(np.median(contrast)) if contrast else None


def _reaches_surface(frame: HeadFrame, c: np.ndarray, radius_mm: float, params: QuantifyParams) -> bool:
    """The segment is subchondral: the ball (``c`` local, ``radius_mm`` with its border) must reach the articular
    surface (the head sphere) over at least ``necrosis_min_area_deg2``."""
    on_surface = np.linalg.norm(frame.radius_mm * frame.local_directions - c, axis=-1) < radius_mm
    return float(frame.solid_angle_deg2()[on_surface].sum()) >= params.necrosis_min_area_deg2


def _contains_start(points: np.ndarray, c: np.ndarray, r: float) -> bool:
    """True for a ball containing the rays' start (the origin) whose border the band rays leave outwards."""
    return float(np.linalg.norm(c)) < r and _median_outwards(points, c) < 0.0


def _refit_from_inside(frame: HeadFrame, fit: dict, head_local: np.ndarray, resample, t1_normal: float,
                       params: QuantifyParams, seed: int, edema_level: Optional[float]) -> dict:
    """Refit the segment's sphere on band points found along rays from the centroid of the first fit's segment.

    From a point inside the segment every ray leaves it through its border, so the band is crossed about
    head-on all round (instead of along its length where it passes near the head centre), see
    :func:`_fit_from_point`; this matters most for a dark (fluid or fibrous) centre, whose T1 step is found from
    the head centre only near the lesion axis, so that the first fit rests on a narrow patch. The first fit is kept
    when the refit finds too little band (fewer than 8 points or less than ``necrosis_min_area_deg2``).
    """
    inside = np.linalg.norm(head_local - fit["center_local"], axis=1) < fit["radius_mm"]
    if inside.sum() < 20:
        return fit
    new = _fit_from_point(frame, head_local[inside].mean(axis=0), resample, t1_normal, params, seed, edema_level)
    if new is None:
        return fit
    out = dict(fit)
    out.update({k: new[k] for k in ("center_local", "radius_mm", "band_points", "band_depth_mm",
                                     "contains_head_centre")}, refit=True)
    return out


def _centre_in_band(frame: HeadFrame, t1_rays: Optional[np.ndarray], head_rays: np.ndarray,
                    t1_normal: Optional[float], params: QuantifyParams) -> bool:
    """True when the rays from the centre start T1-dark: the median T1 where they begin their dip search
    (``band_min_radius_fraction`` x R) is darker than normal marrow by ``band_t1_drop``, as in a band.

    Only then can a band through the centre have escaped them; elsewhere the search from off the centre
    (:func:`_fit_off_centre`, six resamplings) is not run.
    """
    if t1_rays is None or t1_normal is None or not np.isfinite(t1_normal):
        return False
    i0 = int(np.searchsorted(frame.r_mm, params.band_min_radius_fraction * frame.radius_mm))
    if i0 >= t1_rays.shape[-1]:
        return False
    start = head_rays[..., i0] >= 0.5
    return bool(start.any()) and float(np.median(t1_rays[..., i0][start])) < (1 - params.band_t1_drop) * t1_normal


def _fit_off_centre(frame: HeadFrame, resample, t1_normal: float, params: QuantifyParams, seed: int,
                    edema_level: Optional[float]) -> Optional[dict]:
    """The segment seen from points ``OFF_CENTRE_FRACTION`` x R off the head centre, for a band through the centre.

    A segment of about a third of the head has its border through the head centre: every ray from the centre starts
    in the band, so none shows it as a dip. From a point off the centre on the segment side the rays cross the band
    head-on (:func:`_fit_from_point`: same dip, fluid, depth and area tests, the double-line sign's bright rim on the
    start's side, or the T1 rise out of a dark centre); from a point on the other side the rims contradict the
    segment. Only a band passing within ``NEAR_CENTRE_FRACTION`` x R of the head centre counts (elsewhere the rays
    from the centre would have crossed it), and of those the fit with the largest band area is kept; None when no
    start point (inside the head) finds one.
    """
    R = frame.radius_mm
    best = None
    for axis in range(3):
        for sign in (1.0, -1.0):
            p0 = np.zeros(3)
            p0[axis] = sign * OFF_CENTRE_FRACTION * R
            new = _fit_from_point(frame, p0, resample, t1_normal, params, seed, edema_level, off_centre=True)
            if new is None:
                continue
            band_radius = new["radius_mm"] - params.necrosis_border_mm
            if abs(float(np.linalg.norm(new["center_local"])) - band_radius) > NEAR_CENTRE_FRACTION * R:
                continue  # the band does not pass through the centre's blind spot
            if best is None or new["band_area_deg2"] > best["band_area_deg2"]:
                best = new
    return best


def _fit_from_point(frame: HeadFrame, p0: np.ndarray, resample, t1_normal: float, params: QuantifyParams,
                    seed: int, edema_level: Optional[float], off_centre: bool = False) -> Optional[dict]:
    """The segment's sphere fitted on band points found along rays from ``p0`` (local, mm), a point inside it.

    The band is a T1 dip (:func:`_dips`, the fluid-sensitive check as on the head rays) with the double-line sign's
    bright rim on the start's side (the segment side) or, on a ray without a dip, a sharp T1 rise out of a dark
    (fluid or fibrous) centre: :func:`_steps` on the reversed ray, T1 dark from the start up to the rise (the dark side
    is the start's, so no rim test; taken back by ``RISE_EDGE_MM``). Either more than ``band_min_depth_mm`` below the
    head sphere; the ball must contain the start. None with fewer than 8 band points or a band of less than
    ``necrosis_min_area_deg2`` (solid angle seen from ``p0``). With ``off_centre`` (a start point not known to be in
    the segment, :func:`_fit_off_centre`) the start must lie in the segmented head.
    """
    R = frame.radius_mm
    step = float(frame.r_mm[1] - frame.r_mm[0])
    ang = OFF_CENTRE_STEP_DEG if off_centre else 3.0
    nf = HeadFrame(frame.center + p0 @ frame.axes, R, frame.axes, np.arange(0.0, 180.0 + 1e-9, ang),
                   np.arange(0.0, 360.0, ang), np.arange(0.0, R + float(np.linalg.norm(p0)) + step, step))
    t1_r, fl_r, hd_r = resample(nf)
    if t1_r is None:
        return None
    n_th, n_ph, n_r = t1_r.shape
    if off_centre and float(hd_r[:, :, 0].mean()) < 0.5:
        return None  # the start is outside the segmented head (e.g. beyond the neck cut)
    q = nf.local_directions
    depth = R - np.linalg.norm(p0 + q[:, :, None, :] * nf.r_mm[None, None, :, None], axis=-1)
    t1 = ndimage.gaussian_filter1d(t1_r, 1.0 / step, axis=2)
    valid = (hd_r >= 0.5) & (depth >= 2.0) & (nf.r_mm >= REFIT_MIN_R_MM)[None, None, :]
    k = _dips(t1.reshape(-1, n_r), valid.reshape(-1, n_r), t1_normal, params).reshape(n_th, n_ph)
    k = _fluid_confirms(k, fl_r, hd_r, edema_level, step)
    # a dark centre seen from inside: a sharp T1 rise with T1 dark from the start on (a step on the reversed ray)
    half = max(1, int(round(STEP_HALF_WIDE_MM / step)))
    kr = _steps(t1[..., ::-1].reshape(-1, n_r), valid[..., ::-1].reshape(-1, n_r), t1_normal, half,
                params).reshape(n_th, n_ph)
    rise = (k < 0) & (kr >= 0)
    k = np.where(rise, n_r - 1 - kr, k)
    d_k = np.take_along_axis(depth, np.maximum(k, 0)[..., None], axis=2)[..., 0]
    deep = (k >= 0) & (d_k >= params.band_min_depth_mm)
    good = deep & (rise | (_rim_outwards(fl_r, hd_r, k, step) < 0))
    if good.sum() < 8:
        return None
    pts = q[good] * (nf.r_mm[k[good]] - np.where(rise[good], RISE_EDGE_MM, 0.0))[:, None]
    fit = _ransac_sphere(pts, tol_mm=2.0, rng=np.random.default_rng(seed), radius_range=(0.4 * R, 3.0 * R),
                         faces=_contains_start)
    if fit is None:
        return None
    c, r, best = fit
    area = float(nf.solid_angle_deg2()[good][best].sum())
    if area < params.necrosis_min_area_deg2 or not _reaches_surface(frame, c + p0, r + params.necrosis_border_mm,
                                                                     params):
        return None
    # double line read from the band towards the start (the segment side)
    contrast = _double_line_contrast(fl_r[good][best], k[good][best], step, towards_start=True)
    band = pts[best] + p0
    return {
        "center_local": c + p0, "radius_mm": r + params.necrosis_border_mm, "band_points": band,
        "band_depth_mm": float(np.median(R - np.linalg.norm(band, axis=1))),
        "double_line_contrast": contrast, "band_area_deg2": area,
        "contains_head_centre": bool(np.linalg.norm(c + p0) < r),
        "step_fraction": float(rise[good][best].mean()), "refit": False, "off_centre": off_centre,
    }
