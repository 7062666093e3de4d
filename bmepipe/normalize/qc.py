"""Input quality control: SNR, fat suppression, coverage, ghosting.

Each check returns a :class:`QCFlag` (name, value, threshold, passed, message)
that the report carries; :func:`assess_quality` runs them all.

* ``snr_fluid`` / ``snr_t1``: mean muscle signal / noise sigma, sigma from
  neighbour differences inside muscle (:func:`bmepipe.normalize.noise.noise_sigma_local`;
  background-based sigma is in ``details`` for comparison). Below
  ``MIN_SNR`` the edema threshold is noise dominated.
* ``fat_suppression``: on a fluid-sensitive series fat must be dark. Fat
  compartments are found on T1 (bright on T1): subcutaneous fat (T1-bright
  within ``SUBCUTANEOUS_DEPTH_MM`` of the skin) and deep fat (T1-bright deeper:
  femoral marrow, intrapelvic fat). Their fluid-sensitive signal is divided by
  muscle's. With working suppression fat is darker than muscle (STIR ~0.1-0.3,
  FS PD/T2 ~0.2-0.5 with 90-98 % efficiency, from the signal equations of
  mr_physics.md section 3 [calc from approx relaxation times]); unsuppressed
  fat is 2-5x brighter than muscle and reads as edema. Threshold:
  ``FAT_SAT_MAX_RATIO`` = 1.0 (fat no brighter than muscle) [approx].
  Without T1 the check is not made (``passed`` None): suppressed fat,
  background and unsuppressed fat cannot be told apart on one image.
* ``fat_suppression_homogeneity``: the same ratio per region of the fat
  (patient right/left x central/peripheral, split at the median distance
  from the FOV centre: fat saturation fails off-centre and at the periphery,
  mr_physics.md section 3); fails when any region exceeds
  ``FAT_SAT_MAX_RATIO`` or regions differ by more than ``FAT_SAT_MAX_SPREAD``:
  value = the worst region.
* ``coverage``: both femoral heads inside the field of view. With head
  centres/radii (from segmentation) it is exact: the smallest distance (mm)
  from a head sphere to the FOV boundary must be >= ``COVERAGE_MARGIN_MM``.
  Without them a light check: the left-right midline by mirror symmetry and
  heads expected ``EXPECTED_HEAD_OFFSET_MM`` to each side of it
  (:func:`lateral_coverage_flag`). The body touching the FOV edge is not
  used: in large patients it does while both hips are well inside.
* ``ghosting``: motion and pulsation ghosts replicate the body along the
  phase-encoding direction into the background. Value = mean background
  signal in excess of the Rayleigh noise floor (1.253 sigma,
  mr_physics.md section 4), as a fraction of muscle signal, in the worse of
  the two in-plane directions; threshold ``MAX_GHOST_FRACTION`` [approx].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .bias import body_mask
from .landmarks import in_plane_depth_mm, t1_fat
from .noise import noise_sigma_background, noise_sigma_local, rician_mean
from .standardize import find_reference_tissue

__all__ = [
    "QCFlag",
    "QualityReport",
    "assess_quality",
    "snr_flag",
    "fat_suppression_flags",
    "coverage_flag",
    "lateral_coverage_flag",
    "ghosting_flag",
]

#: Lowest acceptable muscle SNR (clinical STIR muscle ~10-30, mr_physics.md section 4 [approx]).
MIN_SNR = 8.0
#: Largest acceptable fat / muscle signal ratio on a fluid-sensitive series [approx, see module docstring].
FAT_SAT_MAX_RATIO = 1.0
#: Largest acceptable difference of fat/muscle between fat regions (muscle units) [approx]: working
#: suppression varies by < 0.1; a region at +0.3 leaks enough fat to mimic mild edema.
FAT_SAT_MAX_SPREAD = 0.3
#: Depth (mm) below the skin treated as subcutaneous.
SUBCUTANEOUS_DEPTH_MM = 25.0
#: T1 fat level: voxels brighter than this fraction of the 95th T1 percentile in the body are fat.
T1_FAT_FRACTION = 0.7
#: Smallest distance (mm) a femoral head sphere must keep from the FOV boundary.
COVERAGE_MARGIN_MM = 0.0
#: Expected distance (mm) of each femoral-head centre from the midline: half of 140-200 mm (anatomy.md) [approx].
EXPECTED_HEAD_OFFSET_MM = 85.0
#: Expected femoral-head radius (mm): 21-28 mm in adults (anatomy.md) [approx].
EXPECTED_HEAD_RADIUS_MM = 25.0
#: Largest background excess over the noise floor, as a fraction of muscle signal [approx].
MAX_GHOST_FRACTION = 0.02
_MIN_VOXELS = 200


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else round(float(obj), 4)
    return obj


@dataclass
class QCFlag:
    """One quality check. ``passed`` is None when the check could not be made."""

    name: str
    value: Optional[float]
    threshold: Optional[float]
    passed: Optional[bool]
    message: str
    unit: str = ""
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:  # plain Python types, whatever numpy produced
        self.passed = None if self.passed is None else bool(self.passed)
        self.value = None if self.value is None else float(self.value)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (numpy scalars converted, floats rounded)."""
        return _plain(asdict(self))


@dataclass
class QualityReport:
    """All QC flags of one study."""

    flags: list[QCFlag] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True unless a check failed (checks that could not be made do not fail)."""
        return all(f.passed is not False for f in self.flags)

    def flag(self, name: str) -> QCFlag:
        for f in self.flags:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"passed": bool(self.passed), "flags": [f.to_dict() for f in self.flags]}


def _sigma(a: np.ndarray, muscle: np.ndarray, image: sitk.Image, sigma: Optional[float]) -> float:
    """``sigma`` if the caller measured it already (e.g. standardization did), else measured in muscle."""
    return noise_sigma_local(a, muscle, image.GetSpacing()[:2]) if sigma is None else float(sigma)


def snr_flag(image: sitk.Image, muscle: np.ndarray, body: np.ndarray, name: str = "snr_fluid",
             min_snr: float = MIN_SNR, *, sigma: Optional[float] = None) -> QCFlag:
    """SNR of skeletal muscle: noise-bias-free mean / sigma (spread around local means).

    ``sigma`` (noise SD per channel, image units), when given, must have been
    measured in ``muscle`` by :func:`noise_sigma_local`; it saves measuring it again.
    """
    a = sitk.GetArrayViewFromImage(image)
    sigma = _sigma(a, muscle, image, sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        return QCFlag(name, None, min_snr, None, "SNR not measurable: too little homogeneous muscle")
    snr = rician_mean(a[muscle], sigma) / sigma
    ok = snr >= min_snr
    return QCFlag(
        name, snr, min_snr, ok,
        f"muscle SNR {snr:.1f}" + ("" if ok else f" below {min_snr:g}: edema thresholds are noise dominated"),
        details={"sigma": sigma, "sigma_background": noise_sigma_background(a, body),
                 "method": "spread around local means in muscle"},
    )


def _fat_ratio(f: np.ndarray, region: np.ndarray, muscle_value: float, sigma: float) -> Optional[float]:
    if region.sum() < _MIN_VOXELS:
        return None
    return rician_mean(f[region], sigma) / muscle_value


def fat_suppression_flags(
    fluid: sitk.Image, t1: Optional[sitk.Image], body: np.ndarray, muscle: np.ndarray, *,
    max_ratio: float = FAT_SAT_MAX_RATIO, subcutaneous_depth_mm: float = SUBCUTANEOUS_DEPTH_MM,
    sigma: Optional[float] = None, depth_mm: Optional[np.ndarray] = None,
) -> list[QCFlag]:
    """Fat-suppression failure (global) and inhomogeneity (worst region); see the module docstring.

    Needs ``t1`` (on the fluid-sensitive grid) to find fat: without it both
    flags are returned as not assessable, because suppressed fat, background
    and an unsuppressed-fat "edema" cannot be told apart on one image.
    ``sigma``: as in :func:`snr_flag`; ``depth_mm``:
    :func:`~bmepipe.normalize.landmarks.in_plane_depth_mm` of ``body`` if
    already computed.
    """
    if t1 is None:
        msg = "fat suppression not assessable without a T1 series (fat is located on T1)"
        return [QCFlag("fat_suppression", None, max_ratio, None, msg),
                QCFlag("fat_suppression_homogeneity", None, max_ratio, None, msg)]
    f = sitk.GetArrayViewFromImage(fluid)
    sigma = _sigma(f, muscle, fluid, sigma)
    muscle_value = rician_mean(f[muscle], sigma)
    depth = in_plane_depth_mm(body, fluid.GetSpacing()) if depth_mm is None else depth_mm
    skin = depth > 3.0  # skip skin and the partial-volume edge
    superficial = skin & (depth <= subcutaneous_depth_mm)
    t = ndimage.uniform_filter(np.asarray(sitk.GetArrayViewFromImage(t1), np.float32), size=(1, 3, 3))
    fat = t1_fat(t, body, fraction=T1_FAT_FRACTION, smoothed=True)
    subcut, deep = fat & superficial, fat & (depth > subcutaneous_depth_mm)
    r_sub = _fat_ratio(f, subcut, muscle_value, sigma)
    r_deep = _fat_ratio(f, deep, muscle_value, sigma)
    # fluid (bladder, effusion): bright on the fluid-sensitive series, for the report's comparison
    fluid_ratio = None
    fl = body & (f > 2.0 * muscle_value) & (t < np.median(t[muscle][::7]))
    if fl.sum() >= _MIN_VOXELS // 4:
        fluid_ratio = rician_mean(f[fl], sigma) / muscle_value
    details = {"subcutaneous_fat_to_muscle": r_sub, "deep_fat_marrow_to_muscle": r_deep,
               "fluid_to_muscle": fluid_ratio}
    ratios = [r for r in (r_sub, r_deep) if r is not None]
    if not ratios:
        none = QCFlag("fat_suppression", None, max_ratio, None, "fat suppression not assessable: no fat found")
        return [none, QCFlag("fat_suppression_homogeneity", None, max_ratio, None, none.message)]
    worst = max(ratios)
    ok = worst <= max_ratio
    msg = (f"fat/muscle {worst:.2f} on the fluid-sensitive series"
           + ("" if ok else f" above {max_ratio:g}: fat suppression failed, unsuppressed fat reads as edema"))
    if fluid_ratio is not None:
        msg += f" (fluid/muscle {fluid_ratio:.2f})"
    flags = [QCFlag("fat_suppression", worst, max_ratio, ok, msg, unit="ratio to muscle", details=details)]

    # Regions: patient right/left x central/peripheral (split at the median distance of fat from the
    # FOV centre): fat saturation fails off-centre and at the periphery (mr_physics.md section 3).
    fat_all = subcut | deep
    centre = np.asarray(fluid.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fluid.GetSize()]))
    flat = np.flatnonzero(fat_all)  # one index array, not three
    stride = max(1, len(flat) // 200_000)  # 200 000 fat voxels give the regional means to < 0.1 %
    k, j, i = np.unravel_index(flat[::stride], fat_all.shape)
    d = np.array(fluid.GetDirection()).reshape(3, 3)
    phys = np.asarray(fluid.GetOrigin()) + (np.stack([i, j, k], 1) * np.asarray(fluid.GetSpacing())) @ d.T
    radius = np.linalg.norm(phys - centre, axis=1)
    outer = radius > np.median(radius) if radius.size else radius.astype(bool)
    quad = {}
    for side, xs in (("right", phys[:, 0] < centre[0]), ("left", phys[:, 0] >= centre[0])):
        for ring, rs in (("central", ~outer), ("peripheral", outer)):
            sel = xs & rs
            if sel.sum() >= _MIN_VOXELS:
                quad[f"{side}_{ring}"] = rician_mean(f[k[sel], j[sel], i[sel]], sigma) / muscle_value
    if not quad:
        flags.append(QCFlag("fat_suppression_homogeneity", None, max_ratio, None, "too little fat per region"))
        return flags
    name_worst = max(quad, key=quad.get)
    worst_q, best_q = quad[name_worst], min(quad.values())
    ok_q = worst_q <= max_ratio and worst_q - best_q <= FAT_SAT_MAX_SPREAD
    msg_q = f"fat/muscle by region {best_q:.2f}-{worst_q:.2f} (worst {name_worst.replace('_', ' ')})"
    if not ok_q:
        msg_q += (": suppression failed" if worst_q > max_ratio else ": suppression uneven") + (
            " in part of the field of view" if ok else "")
    flags.append(QCFlag("fat_suppression_homogeneity", worst_q, max_ratio, ok_q, msg_q, unit="ratio to muscle",
                        details={"regions": quad}))
    return flags


def coverage_flag(image: sitk.Image, head_centres_mm: Sequence[Sequence[float]], head_radii_mm: Sequence[float],
                  *, margin_mm: float = COVERAGE_MARGIN_MM) -> QCFlag:
    """Both femoral heads inside the field of view, from head spheres (e.g. from segmentation).

    Parameters
    ----------
    image : SimpleITK.Image
        The series whose field of view is checked.
    head_centres_mm : sequence of (x, y, z)
        Head-sphere centres in patient coordinates (LPS, mm); two expected.
    head_radii_mm : sequence of float
        Their radii (mm).
    margin_mm : float
        Required clearance (mm) between each sphere and the FOV boundary.

    Returns
    -------
    QCFlag
        ``value`` = smallest clearance (mm; negative = cut by the boundary).
    """
    size = np.asarray(image.GetSize(), float)
    spacing = np.asarray(image.GetSpacing())
    d = np.array(image.GetDirection()).reshape(3, 3)
    clear = []
    for c, r in zip(head_centres_mm, head_radii_mm):
        idx = ((np.asarray(c, float) - np.asarray(image.GetOrigin())) @ d) / spacing
        # FOV boundary = outer voxel faces, at index -0.5 and size - 0.5
        dist = np.minimum(idx + 0.5, size - 0.5 - idx) * spacing
        clear.append(float(dist.min() - r))
    if len(clear) < 2:
        return QCFlag("coverage", min(clear) if clear else None, margin_mm, False,
                      f"only {len(clear)} femoral head(s) given: both hips are not covered", unit="mm")
    worst = min(clear)
    ok = worst >= margin_mm
    return QCFlag("coverage", worst, margin_mm, ok,
                  "both femoral heads inside the field of view" if ok else
                  f"a femoral head comes within {worst:.1f} mm of (or crosses) the FOV boundary", unit="mm",
                  details={"clearance_mm": clear, "method": "head spheres"})


def _midline_x_mm(image: sitk.Image, array: np.ndarray) -> Optional[float]:
    """Patient x (mm) of the left-right symmetry plane, by mirror correlation of a projection.

    The pelvis is nearly left-right symmetric: the image, averaged over its
    slices, best matches its own mirror image about the midline. Works while
    at least 40 % of the width overlaps its mirror, so a cropped side still
    gives the midline.
    """
    d = np.array(image.GetDirection()).reshape(3, 3)
    axis_xyz = int(np.argmax(np.abs(d[0])))  # image axis closest to patient left-right
    if axis_xyz == 2:
        return None  # sagittal slices: left-right is the slice axis
    proj = array.mean(axis=0)  # [row, column]
    prof = proj if axis_xyz == 0 else proj.T  # x along the last axis
    step = max(1, int(round(2.0 / image.GetSpacing()[axis_xyz])))  # ~2 mm columns are plenty
    n_full = prof.shape[1]
    prof = prof[:, : n_full - n_full % step].reshape(prof.shape[0], -1, step).mean(axis=2)
    n, rows = prof.shape[1], prof.shape[0]
    # prof[:, i] ~ mirror[:, i + shift] (mirror = prof[:, ::-1]) <=> symmetric about i0 = (n - 1 - shift) / 2.
    # Pearson's r of the overlapping columns for every shift at once, from sums: the cross term pairs
    # columns i and j = n - 1 - shift - i, an anti-diagonal i + j of the columns' Gram matrix.
    prof = prof.astype(float) - float(prof.mean())  # r ignores an offset; the sums below lose less precision
    ii, jj = np.indices((n, n))
    cross = np.bincount((ii + jj).ravel(), weights=(prof.T @ prof).ravel(), minlength=2 * n - 1)
    col, col_sq = prof.sum(axis=0), (prof * prof).sum(axis=0)
    csum = np.concatenate([[0.0], np.cumsum(col)])
    csum_sq = np.concatenate([[0.0], np.cumsum(col_sq)])
    best, best_s = -np.inf, None
    for shift in range(-n + 1, n):
        lo, hi = max(0, -shift), min(n, n - shift)
        if hi - lo < 0.4 * n:
            continue
        m = n - 1 - shift  # i + j of the pairs
        count = rows * (hi - lo)
        sa, sa2 = csum[hi] - csum[lo], csum_sq[hi] - csum_sq[lo]
        sb, sb2 = csum[m - lo + 1] - csum[m - hi + 1], csum_sq[m - lo + 1] - csum_sq[m - hi + 1]
        var = (sa2 - sa * sa / count) * (sb2 - sb * sb / count)
        if var <= 0:
            continue
        r = (cross[m] - sa * sb / count) / np.sqrt(var)
        if r > best:
            best, best_s = r, shift
    if best_s is None or not np.isfinite(best):
        return None
    i0 = ((n - 1 - best_s) / 2 + 0.5) * step - 0.5  # back to full-resolution column index
    index = [(sz - 1) / 2 for sz in image.GetSize()]
    index[axis_xyz] = i0
    return float(image.TransformContinuousIndexToPhysicalPoint(index)[0])


def lateral_coverage_flag(image: sitk.Image, *, head_offset_mm: float = EXPECTED_HEAD_OFFSET_MM,
                          head_radius_mm: float = EXPECTED_HEAD_RADIUS_MM,
                          margin_mm: float = COVERAGE_MARGIN_MM) -> QCFlag:
    """Light coverage check without head positions: do the expected femoral heads fit laterally?

    The midline is found by mirror symmetry (:func:`_midline_x_mm`); the heads
    are expected ``head_offset_mm`` to each side of it (half the head-centre
    distance, 140-200 mm in adults, anatomy.md section 3 [approx]) with radius
    ``head_radius_mm``. Value = the smaller clearance (mm) between those
    spheres and the patient-left/right FOV boundary; negative = a head is
    (partly) outside. Superior-inferior and anterior-posterior coverage need
    the real head positions: use :func:`coverage_flag` once they are known.
    """
    arr = sitk.GetArrayViewFromImage(image)
    x0 = _midline_x_mm(image, arr)
    if x0 is None:
        return QCFlag("coverage", None, margin_mm, None, "coverage not assessable: left-right is the slice axis")
    d = np.array(image.GetDirection()).reshape(3, 3)
    axis_xyz = int(np.argmax(np.abs(d[0])))
    index = [(sz - 1) / 2 for sz in image.GetSize()]
    edges = []
    for edge in (-0.5, image.GetSize()[axis_xyz] - 0.5):
        index[axis_xyz] = edge
        edges.append(image.TransformContinuousIndexToPhysicalPoint(index)[0])
    x_lo, x_hi = min(edges), max(edges)
    reach = head_offset_mm + head_radius_mm
    clear = {"right": (x0 - reach) - x_lo, "left": x_hi - (x0 + reach)}
    side = min(clear, key=clear.get)
    worst = clear[side]
    ok = worst >= margin_mm
    return QCFlag("coverage", worst, margin_mm, ok,
                  "both expected femoral-head positions inside the field of view laterally" if ok
                  else f"the patient's {side} femoral head is expected {-worst:.0f} mm beyond the FOV edge" if worst < 0
                  else f"the patient's {side} femoral head is expected within {worst:.0f} mm of the FOV edge",
                  unit="mm", details={"midline_x_mm": x0, "clearance_mm": clear,
                                      "method": "mirror-symmetry midline + expected head offset"})


def _near_body(body: np.ndarray, spacing_xy, gap_mm: float, block_mm: float = 3.0) -> np.ndarray:
    """Voxels within about ``gap_mm`` (in-plane) of the body, the body included.

    Measured on ``block_mm`` blocks (a block is body if any of its voxels is): the distance
    transform of the background is the costliest step of QC at full resolution, and a gap of
    20 mm needs no sub-millimetre edge. Blocks only widen the gap, by less than one block.
    """
    sx, sy = (float(v) for v in spacing_xy)
    k = max(1, int(block_mm // min(sx, sy)))
    nz, ny, nx = body.shape
    py, px = -ny % k, -nx % k
    padded = np.pad(body, ((0, 0), (0, py), (0, px)))
    blocks = padded.reshape(nz, (ny + py) // k, k, (nx + px) // k, k).any(axis=(2, 4))
    near = np.stack([ndimage.distance_transform_edt(~b, sampling=(k * sy, k * sx)) <= gap_mm if b.any() else b
                     for b in blocks])
    return near.repeat(k, axis=1).repeat(k, axis=2)[:, :ny, :nx]


def ghosting_flag(image: sitk.Image, body: np.ndarray, muscle: np.ndarray, *,
                  max_fraction: float = MAX_GHOST_FRACTION, gap_mm: float = 20.0,
                  sigma: Optional[float] = None) -> QCFlag:
    """Ghosting estimate: background signal above the Rayleigh noise floor (see the module docstring).

    ``gap_mm`` of background next to the body is skipped (blurring, and nulled
    fat that a fluid-only body mask misses); ghosts spread over the whole
    phase-encoding line, so they are still seen beyond it. ``sigma`` as in
    :func:`snr_flag`.
    """
    a = sitk.GetArrayViewFromImage(image)
    sigma = _sigma(a, muscle, image, sigma)
    muscle_value = rician_mean(a[muscle], sigma)
    near = _near_body(body, image.GetSpacing()[:2], gap_mm)
    excess = {}
    for axis, label in ((1, "rows"), (2, "columns")):
        # background voxels beside the body along this axis (where its ghosts land) vs elsewhere
        span = np.any(body, axis=axis, keepdims=True)
        band = ~near & np.broadcast_to(span, body.shape)
        if band.sum() >= _MIN_VOXELS:
            excess[label] = (float(a[band].mean()) - sigma * np.sqrt(np.pi / 2)) / muscle_value
    if not excess or not np.isfinite(sigma):
        return QCFlag("ghosting", None, max_fraction, None, "ghosting not assessable: no background beside the body")
    worst_axis = max(excess, key=excess.get)
    worst = max(excess[worst_axis], 0.0)
    ok = worst <= max_fraction
    return QCFlag("ghosting", worst, max_fraction, ok,
                  f"background {worst:.1%} of muscle signal above the noise floor"
                  + ("" if ok else f" along the image {worst_axis}: motion or pulsation ghosts"),
                  unit="fraction of muscle", details={"excess_by_axis": excess})


def assess_quality(
    fluid: sitk.Image,
    t1: Optional[sitk.Image] = None,
    *,
    body: Optional[sitk.Image] = None,
    muscle: Optional[np.ndarray] = None,
    head_centres_mm: Optional[Sequence[Sequence[float]]] = None,
    head_radii_mm: Optional[Sequence[float]] = None,
    noise_sigma_fluid: Optional[float] = None,
    noise_sigma_t1: Optional[float] = None,
    depth_mm: Optional[np.ndarray] = None,
) -> QualityReport:
    """Run every input check on a fluid-sensitive series (and T1 on its grid).

    Parameters
    ----------
    fluid : SimpleITK.Image
        Fluid-sensitive series (bias correction not needed for these checks).
    t1 : SimpleITK.Image, optional
        T1 series resampled on the fluid-sensitive grid.
    body : SimpleITK.Image, optional
        Body mask on that grid; default from ``t1`` (else ``fluid``).
    muscle : ndarray of bool, optional
        Reference muscle voxels; default :func:`find_reference_tissue`.
    head_centres_mm, head_radii_mm : optional
        Femoral-head spheres (LPS, mm) for the exact coverage check.
    noise_sigma_fluid, noise_sigma_t1 : float, optional
        Noise SD per channel (image units) of each series, measured in
        ``muscle`` by :func:`noise_sigma_local` (standardization already did);
        measured here when not given.
    depth_mm : ndarray, optional
        :func:`~bmepipe.normalize.landmarks.in_plane_depth_mm` of ``body``, if already computed.

    Returns
    -------
    QualityReport
        Flags ``snr_fluid``, ``snr_t1`` (with T1), ``fat_suppression``,
        ``fat_suppression_homogeneity``, ``coverage``, ``ghosting``.
    """
    if body is None:
        body = body_mask(t1 if t1 is not None else fluid)
    body_arr = sitk.GetArrayFromImage(body) > 0
    if muscle is None:
        muscle, _ = find_reference_tissue(fluid, t1, body)
    if noise_sigma_fluid is None:
        noise_sigma_fluid = noise_sigma_local(sitk.GetArrayViewFromImage(fluid), muscle, fluid.GetSpacing()[:2])

    def signal_flags():
        flags = [snr_flag(fluid, muscle, body_arr, "snr_fluid", sigma=noise_sigma_fluid)]
        if t1 is not None:
            flags.append(snr_flag(t1, muscle, body_arr, "snr_t1", sigma=noise_sigma_t1))
        return flags + fat_suppression_flags(fluid, t1, body_arr, muscle, sigma=noise_sigma_fluid, depth_mm=depth_mm)

    def geometry_flags():
        if head_centres_mm is not None and head_radii_mm is not None:
            flags = [coverage_flag(fluid, head_centres_mm, head_radii_mm)]
        else:
            flags = [lateral_coverage_flag(t1 if t1 is not None else fluid)]
        if t1 is not None:
            flags.append(ghosting_flag(fluid, body_arr, muscle, sigma=noise_sigma_fluid))
        else:  # a STIR-only body mask misses the nulled subcutaneous fat, whose faint signal would read as ghosts
            flags.append(QCFlag("ghosting", None, MAX_GHOST_FRACTION, None,
                                "ghosting not assessable without a T1 series (the body outline is found on T1)"))
        return flags

    # One after the other: in an analysis the QC already runs on a background thread beside segmentation
    # (normalize_study), and two more threads would only add their temporaries to that stage's peak memory.
    return QualityReport(signal_flags() + geometry_flags())
