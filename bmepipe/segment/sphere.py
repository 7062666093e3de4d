"""Femoral-head sphere: detection by gradient voting, robust fit to articular-surface edges.

The head is found from its shape, not from marrow brightness, so edema or a
necrotic segment cannot bend it (clinical.md section 6): the subchondral plate
and cartilage form a dark rim on T1 that every marrow state borders, and the
fluid film / cartilage is a bright rim on fluid-sensitive images.

Thick slices (3-5 mm) blur the surface across the slice, so only in-plane edges
are used: a sphere cut by any slice plane is a circle whose centre is the
projection of the sphere centre and whose 50 % partial-volume edge lies at
``sqrt(R^2 - dz^2)`` (unbiased for a slab), whatever the obliquity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Grid", "fit_sphere", "robust_sphere_fit", "fibonacci_directions", "vote_centres", "circle_stack_fit",
           "ray_edges", "ray_dips", "HeadSphere"]


@dataclass(frozen=True)
class Grid:
    """Voxel grid ``[slice, row, column]`` in LPS mm (SimpleITK conventions).

    ``spacing`` is ``(column, row, slice)``, ``direction`` a 3x3 matrix whose
    columns are the row, column and slice directions.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    @classmethod
    def from_sitk(cls, image) -> "Grid":
        return cls(tuple(image.GetSize()[::-1]), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   np.asarray(image.GetDirection(), float).reshape(3, 3))

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (LPS)."""
        return self.direction[:, 2] / np.linalg.norm(self.direction[:, 2])

    def to_lps(self, zyx) -> np.ndarray:
        """``(N, 3)`` fractional indices ``[slice, row, column]`` -> LPS mm."""
        zyx = np.asarray(zyx, float).reshape(-1, 3)
        return (zyx[:, ::-1] * np.asarray(self.spacing)) @ self.direction.T + np.asarray(self.origin)

    def to_index(self, points) -> np.ndarray:
        """``(N, 3)`` LPS mm -> fractional indices ``[slice, row, column]``."""
        p = np.asarray(points, float).reshape(-1, 3) - np.asarray(self.origin)
        inv = np.linalg.inv(self.direction) / np.asarray(self.spacing)[:, None]
        return (p @ inv.T)[:, ::-1]

    def downsampled(self, factor: int) -> "Grid":
        """The grid of in-plane ``factor x factor`` block means (slices kept)."""
        sx, sy, sz = self.spacing
        shift = self.direction @ np.array([(factor - 1) / 2 * sx, (factor - 1) / 2 * sy, 0.0])
        shape = (self.shape[0], self.shape[1] // factor, self.shape[2] // factor)
        return Grid(shape, (sx * factor, sy * factor, sz), tuple(np.asarray(self.origin) + shift), self.direction)

    def axis_coordinates(self):
        """LPS coordinates of every voxel as three float32 arrays (broadcast-friendly, full shape)."""
        k, j, i = (np.arange(n, dtype=np.float32) for n in self.shape)
        sx, sy, sz = (np.float32(s) for s in self.spacing)
        d = self.direction.astype(np.float32)
        o = np.asarray(self.origin, np.float32)
        out = []
        for a in range(3):
            out.append(o[a] + d[a, 0] * sx * i[None, None, :] + d[a, 1] * sy * j[None, :, None]
                       + d[a, 2] * sz * k[:, None, None])
        return out


def block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    """In-plane block mean of ``a[slice, row, column]`` (remainder rows/columns dropped)."""
    if factor == 1:
        return a.astype(np.float32, copy=False)
    z, y, x = a.shape
    y2, x2 = y // factor, x // factor
    b = a[:, : y2 * factor, : x2 * factor].astype(np.float32, copy=False)
    return b.reshape(z, y2, factor, x2, factor).mean(axis=(2, 4))


# --------------------------------------------------------------------------- sphere fits
def fit_sphere(points: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Weighted algebraic least-squares sphere through ``(N, 3)`` points.

    Solves ``|p|^2 = 2 p.c + (R^2 - |c|^2)`` linearly.

    Returns
    -------
    centre : (3,) ndarray
    radius : float
    """
    p = np.asarray(points, float)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, float)
    a = np.column_stack([2 * p, np.ones(len(p))]) * np.sqrt(w)[:, None]
    b = (p * p).sum(1) * np.sqrt(w)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    c = sol[:3]
    return c, float(math.sqrt(max(sol[3] + c @ c, 1e-6)))


def robust_sphere_fit(points: np.ndarray, strength: np.ndarray, centre0, radius0: float, *, inward_mm: float = 1.5,
                      scale_mm: float = 1.5, iterations: int = 8) -> tuple[np.ndarray, float, np.ndarray]:
    """Sphere fit that ignores points lying inside the sphere (collapse, necrotic band) and outliers.

    Tukey biweight on the radial residual with scale ``scale_mm``, and zero weight
    for points more than ``inward_mm`` inside the current sphere: regions.md asks the
    sphere to fit the articular surface with the collapsed area excluded.

    Returns
    -------
    centre, radius, weights
    """
    c, r = np.asarray(centre0, float), float(radius0)
    w = np.asarray(strength, float)
    for _ in range(iterations):
        res = np.linalg.norm(points - c, axis=1) - r
        u = np.clip(res / (2.5 * scale_mm), -1, 1)
        w = np.asarray(strength, float) * (1 - u * u) ** 2
        w[res < -inward_mm] = 0.0
        w[np.abs(res) >= 2.5 * scale_mm] = 0.0
        if (w > 0).sum() < 12:
            break
        c, r = fit_sphere(points, w)
    return c, r, w


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors on the sphere."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    th = math.pi * (1 + 5**0.5) * i
    return np.column_stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)])


# --------------------------------------------------------------------------- detection
def vote_centres(image: np.ndarray, grid: Grid, radii_mm: tuple[float, float], *, edge_quantile: float = 0.9,
                 polarity: int = 0, mask: np.ndarray | None = None) -> np.ndarray:
    """2-D map ``[row, column]`` of circle-centre votes summed over slices.

    Every strong in-plane edge votes along its gradient for centres at distances
    ``radii_mm``; since slices are parallel, the circles of one sphere share the
    centre's projection, so the votes of all slices add up there.

    Parameters
    ----------
    image : ndarray ``[slice, row, column]``
    grid : Grid of ``image``
    radii_mm : (min, max)
    polarity : int
        +1: the centre side is brighter (vote against the gradient), -1 darker, 0 both.
    mask : bool ndarray, optional
        Voxels allowed to vote.
    """
    sx, sy, _ = grid.spacing
    sm = ndimage.gaussian_filter(image, sigma=(0, 1.0, 1.0))
    gy = np.gradient(sm, axis=1) / sy
    gx = np.gradient(sm, axis=2) / sx
    mag = np.hypot(gx, gy)
    sel = mag > 0
    if mask is not None:
        sel &= mask
    if not sel.any():
        return np.zeros(image.shape[1:], np.float32)
    thr = np.quantile(mag[sel], edge_quantile)
    k, j, i = np.nonzero(sel & (mag >= thr))
    ux, uy = gx[k, j, i] / mag[k, j, i], gy[k, j, i] / mag[k, j, i]
    step = min(sx, sy)
    rhos = np.arange(radii_mm[0], radii_mm[1] + 1e-6, step)
    signs = (-1, 1) if polarity == 0 else ((-1,) if polarity > 0 else (1,))
    ny, nx = image.shape[1:]
    acc = np.zeros(ny * nx, np.float64)
    for sgn in signs:
        for rho in rhos:
            cj = np.rint(j + sgn * rho * uy / sy).astype(np.int64)
            ci = np.rint(i + sgn * rho * ux / sx).astype(np.int64)
            ok = (cj >= 0) & (cj < ny) & (ci >= 0) & (ci < nx)
            acc += np.bincount(cj[ok] * nx + ci[ok], minlength=ny * nx)
    return ndimage.gaussian_filter(acc.reshape(ny, nx).astype(np.float32), 1.0)


def _ray_profiles(image: np.ndarray, grid: Grid, centre, directions, radii, order: int = 1) -> np.ndarray:
    pts = np.asarray(centre)[None, None, :] + radii[None, :, None] * directions[:, None, :]
    idx = grid.to_index(pts.reshape(-1, 3)).T
    prof = ndimage.map_coordinates(image, idx, order=order, mode="nearest")
    return prof.reshape(len(directions), len(radii))


def circle_stack_fit(image: np.ndarray, grid: Grid, row: float, col: float, radius_range_mm: tuple[float, float],
                     polarity: int) -> tuple[np.ndarray, float, float]:
    """Sphere centre along the slice normal and radius from the circles of each slice.

    For the in-plane centre ``(row, col)``, every slice gives a radial edge-strength
    profile (mean over 48 in-plane rays of the signed derivative); a grid search over
    the sphere centre's slice position and radius maximises the summed strength at
    ``rho_k = sqrt(R^2 - dz_k^2)``.

    Returns
    -------
    centre_lps_mm, radius_mm, score (mean edge strength on the fitted circles)
    """
    nz = image.shape[0]
    sz = grid.spacing[2]
    ang = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    rho = np.arange(2.0, radius_range_mm[1] + 4.0, 0.5)
    strength = np.zeros((nz, len(rho)))
    d_row, d_col = grid.direction[:, 0], grid.direction[:, 1]
    dirs = np.cos(ang)[:, None] * d_row[None, :] + np.sin(ang)[:, None] * d_col[None, :]
    for k in range(nz):
        c = grid.to_lps([[k, row, col]])[0]
        prof = _ray_profiles(image, grid, c, dirs, rho)
        der = np.gradient(prof, 0.5, axis=1) * (polarity if polarity else 1)
        if polarity == 0:
            der = np.abs(der)
        strength[k] = np.clip(der, 0, None).mean(0)
    # each slice's circle counts at most once: a concentric larger shell (the outer acetabular
    # surface) must not outvote a head seen in every slice it cuts
    strength /= np.maximum(strength.max(1, keepdims=True), 0.3 * strength.max())[:, :] + 1e-12
    zs = np.arange(nz) * sz
    zc = np.arange(-0.5 * sz, (nz - 0.5) * sz, 0.5)[:, None, None]
    R = np.arange(radius_range_mm[0], radius_range_mm[1] + 1e-6, 0.5)[None, :, None]
    dz2 = (zs[None, None, :] - zc) ** 2  # (zc, 1, slice)
    # slices cutting circles of at least 0.6 R (small circles are poorly resolved)
    ok = dz2 < 0.64 * R * R
    r_k = np.sqrt(np.maximum(R * R - dz2, 0.0))
    col_idx = np.clip(np.rint((r_k - rho[0]) / 0.5).astype(int), 0, len(rho) - 1)
    val = np.where(ok, strength[np.arange(nz)[None, None, :], col_idx], 0.0).sum(-1)
    # normalise by the slices the sphere should cut, so a sphere sticking out of the stack is not favoured
    n_exp = np.maximum(ok.sum(-1), 1.6 * R[..., 0] / sz)
    score_map = np.where(ok.sum(-1) >= 2, val / n_exp, -1.0)
    iz, ir = np.unravel_index(int(np.argmax(score_map)), score_map.shape)
    score, zc, R = float(score_map[iz, ir]), float(zc[iz, 0, 0]), float(R[0, ir, 0])
    centre = grid.to_lps([[zc / sz, row, col]])[0]
    return centre, float(R), float(score)


def ray_edges(image: np.ndarray, grid: Grid, centre, radius_mm: float, directions: np.ndarray, polarity: int, *,
              window_mm: tuple[float, float] = (-5.0, 3.5), step_mm: float = 0.35, smooth_mm: float = 0.7,
              ) -> tuple[np.ndarray, np.ndarray]:
    """Edge distance along each ray from ``centre`` near ``radius_mm``.

    The outermost strong edge of the requested polarity (``-1``: signal falls
    outwards, ``+1``: rises) inside the window; outermost because a necrotic band
    or a subchondral line lies inside the articular surface.

    Returns
    -------
    dist_mm : (N,) ndarray (nan where no edge)
    strength : (N,) ndarray
    """
    radii = np.arange(radius_mm + window_mm[0] - 2, radius_mm + window_mm[1] + 2, step_mm)
    prof = _ray_profiles(image, grid, centre, directions, radii)
    prof = ndimage.gaussian_filter1d(prof, smooth_mm / step_mm, axis=1)
    der = np.gradient(prof, step_mm, axis=1) * polarity
    inwin = (radii >= radius_mm + window_mm[0]) & (radii <= radius_mm + window_mm[1])
    der[:, ~inwin] = 0
    peak = der.max(1)
    scale = np.median(peak[peak > 0]) if (peak > 0).any() else 1.0
    # local maxima at least 40 % of the ray's strongest edge and 25 % of the typical edge
    locmax = (der > np.roll(der, 1, 1)) & (der >= np.roll(der, -1, 1))
    strong = locmax & (der >= 0.4 * peak[:, None]) & (der >= 0.25 * scale)
    has = strong.any(1)
    last = strong.shape[1] - 1 - np.argmax(strong[:, ::-1], axis=1)
    rows = np.arange(len(directions))
    y0 = der[rows, np.maximum(last - 1, 0)]
    y1 = der[rows, last]
    y2 = der[rows, np.minimum(last + 1, len(radii) - 1)]
    den = y0 - 2 * y1 + y2
    off = np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)  # parabola vertex
    dist = np.where(has, radii[last] + np.clip(off, -0.5, 0.5) * step_mm, np.nan)
    strength = np.where(has, y1, 0.0)
    return dist, strength


def ray_dips(image: np.ndarray, grid: Grid, centre, edge_mm: np.ndarray, directions: np.ndarray, *,
             contrast: float, search_mm: float = 3.5, inner_mm: float = 4.0, step_mm: float = 0.35,
             smooth_mm: float = 0.7) -> np.ndarray:
    """Distance of the dark subchondral plate just inside a rising (dark-to-bright outwards) edge.

    The signal minimum within ``search_mm`` inside ``edge_mm`` along each ray counts where the
    signal within ``inner_mm`` further inside is brighter by at least ``contrast``
    (edematous marrow or a fluid-filled necrotic segment under the plate). A thin dark plate
    between brighter tissues blurs into a dip whose minimum marks it, whatever lies outside
    it, whereas the rising edge moves outwards when joint fluid fills a collapsed area.

    Returns
    -------
    dist_mm : (N,) ndarray, nan where there is no such dip
    """
    edge = np.asarray(edge_mm, float)
    ok = np.isfinite(edge)
    out = np.full(len(edge), np.nan)
    if not ok.any():
        return out
    lo = float(np.nanmin(edge)) - search_mm - inner_mm
    radii = np.arange(max(lo, 0.0), float(np.nanmax(edge)) + step_mm, step_mm)
    prof = _ray_profiles(image, grid, centre, directions[ok], radii)
    prof = ndimage.gaussian_filter1d(prof, smooth_mm / step_mm, axis=1)
    e = edge[ok][:, None]
    win = (radii[None, :] >= e - search_mm) & (radii[None, :] <= e)
    j = np.argmin(np.where(win, prof, np.inf), axis=1)
    rows = np.arange(len(j))
    rmin = radii[j][:, None]
    inner = (radii[None, :] >= rmin - inner_mm) & (radii[None, :] < rmin)
    bright = np.where(inner, prof, -np.inf).max(1)
    found = win.any(1) & (bright >= prof[rows, j] + contrast)
    out[np.nonzero(ok)[0][found]] = radii[j[found]]
    return out


@dataclass
class HeadSphere:
    """Result of the head search on one side."""

    centre: np.ndarray
    radius: float  # articular (bone) surface
    edge_radius: float  # radius of the detected edge sphere
    directions: np.ndarray  # (N, 3) ray directions used
    edge_dist: np.ndarray  # (N,) edge distance from the final centre (nan = none)
    weights: np.ndarray  # (N,) final fit weights
    score: float
    inlier_fraction: float
