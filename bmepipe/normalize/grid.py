"""One grid: resample a series onto the fluid-sensitive series' voxels.

Series of one study that share a DICOM FrameOfReferenceUID are already
registered by the scanner: the image position/orientation in their headers map
both into the same patient (LPS) coordinates, so resampling through the
identity is exact unless the patient moved between the series. Otherwise (a
different or unknown frame of reference, or motion) a rigid registration with
Mattes mutual information is run, because T1 and STIR have different contrast
(fat bright on one, dark on the other), which rules out intensity-difference
metrics (Mattes et al., IEEE Trans Med Imaging 2003;22:120).

With ``register="auto"`` a same-frame pair overlapping by at least 30 % is
checked for motion by a quick registration; the rigid result is kept when it
moves test points inside the body by more than ``motion_threshold_mm``
(default 1.5 mm, about half an in-plane pixel of a clinical STIR, below which
the correction is within the registration's own error). A registration that
ITK cannot run raises :class:`bmepipe.errors.InputError` (or, for the motion
check only, falls back to the header geometry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import SimpleITK as sitk

from ..errors import ConfigError, InputError, NoOverlapError
from ..io.types import Volume
from .bias import body_mask

__all__ = ["GridResult", "resample_to_reference", "resample_images", "overlap_fraction", "transform_points",
           "REGISTER_MODES"]

REGISTER_MODES = ("auto", "never", "always")
#: Rigid correction (mm) above which ``register="auto"`` keeps the registration for a same-frame pair.
MOTION_THRESHOLD_MM = 1.5
#: Smallest overlap (fraction of the reference) for the motion check: mutual information over a
#: thin overlap finds spurious millimetre shifts.
MIN_OVERLAP_FOR_MOTION_CHECK = 0.3
#: In-plane voxel size (mm) the registration works on (finer levels add time, not accuracy, at 4 mm slices).
REGISTRATION_SPACING_MM = 2.0
#: The same-frame motion check first registers on the check level alone (a third of the time) and stops
#: there when it finds less than this fraction of the motion threshold; otherwise the full registration
#: decides.
CHECK_FRACTION = 0.5
COARSE_CHECK_FRACTION = CHECK_FRACTION  # its earlier name (when the check ran on ITK's coarse level)
_LEVELS = ((4, 4.0), (2, 2.0))  # (shrink factor, smoothing sigma mm): ~8 and ~4 mm in-plane
#: The motion check's one level: (in-plane bin factor on the :data:`REGISTRATION_SPACING_MM` grid, in-plane
#: Gaussian sigma in mm). Its slices are not merged: ITK's pyramid shrinks every axis, and its coarse level
#: (4.4 mm slices merged into 18 mm) found 0.8-1.3 mm of motion on eight of ten 512 x 512 x 30 phantom
#: studies without any, so the check fell through to the full registration; this level found 0.37-0.71 mm.
CHECK_LEVEL = (2, 2.0)
#: Smallest optimizer step (mm, or radians scaled to mm at the field's edge): 0.01 gives the same residuals
#: as 1e-4 to 0.01 mm on five 512 x 512 x 30 phantoms with 0-2 mm motion, in half the iterations.
MIN_STEP = 0.01
#: Mutual-information samples in the body per level of the full registration at most (half the body's voxels
#: otherwise). A fat-suppressed or T1-like fluid series has a body mask three times STIR's (subcutaneous fat),
#: which tripled the registration's time for no gain in accuracy.
MAX_METRIC_SAMPLES = (2000, 16000)
#: Mutual-information samples in the body for the motion check at most.
CHECK_METRIC_SAMPLES = 2000


@dataclass
class GridResult:
    """A series on the reference grid.

    Attributes
    ----------
    image : SimpleITK.Image
        The moving series resampled on the reference grid (``sitkFloat32``;
        0 outside the moving series' coverage).
    method : str
        ``"geometry"`` (headers only) or ``"rigid"`` (registered).
    transform : SimpleITK.Transform
        Maps reference physical points (mm, LPS) to moving physical points
        (ITK convention); identity for ``"geometry"``.
    residual_mm : float
        Mean distance (mm) between where the geometry-only mapping and the
        registered mapping send test points inside the body: how far the
        headers alone were off. 0 for ``"geometry"`` when no check was run.
    max_residual_mm : float
        The largest such distance (mm) over the test points.
    metric : float or None
        Final Mattes mutual-information value (negative; lower is better) when
        a registration ran.
    overlap : float
        Fraction (0..1) of the reference volume covered by the moving series
        after the mapping.
    inside : SimpleITK.Image
        ``sitkUInt8`` mask of reference voxels the moving series covers.
    reason : str
        Why this method was chosen.
    """

    image: sitk.Image
    method: str
    transform: sitk.Transform
    residual_mm: float
    max_residual_mm: float
    metric: Optional[float]
    overlap: float
    inside: sitk.Image
    reason: str = ""
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary (no images)."""
        return {
            "method": self.method,
            "residual_mm": round(float(self.residual_mm), 3),
            "max_residual_mm": round(float(self.max_residual_mm), 3),
            "metric": None if self.metric is None else round(float(self.metric), 5),
            "overlap": round(float(self.overlap), 4),
            "reason": self.reason,
        }


def _image_and_frame(obj: Union[Volume, sitk.Image]) -> tuple[sitk.Image, str, str]:
    if isinstance(obj, Volume):
        return obj.image, obj.meta.frame_of_reference_uid or "", obj.meta.series_description or "series"
    if isinstance(obj, sitk.Image):
        return obj, "", "image"
    raise ConfigError(f"expected a bmepipe Volume or a SimpleITK image, got {type(obj).__name__}")


def _grid_points(image: sitk.Image, step: int = 8, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Physical coordinates (N x 3, mm) of a sub-grid of voxel centres (inside ``mask`` if given)."""
    size = image.GetSize()
    idx = np.stack(
        np.meshgrid(*[np.arange(0, n, max(1, min(step, n // 4 or 1))) for n in size], indexing="ij"), -1
    ).reshape(-1, 3)
    if mask is not None:
        idx = idx[mask[idx[:, 2], idx[:, 1], idx[:, 0]]]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return np.asarray(image.GetOrigin()) + (idx * np.asarray(image.GetSpacing())) @ direction.T


def _inside_fraction(points_mm: np.ndarray, image: sitk.Image) -> float:
    """Fraction of physical points that fall inside ``image``'s voxel extent."""
    if len(points_mm) == 0:
        return 0.0
    direction = np.array(image.GetDirection()).reshape(3, 3)
    cont = ((points_mm - np.asarray(image.GetOrigin())) @ direction) / np.asarray(image.GetSpacing())
    size = np.asarray(image.GetSize())
    ok = np.all((cont >= -0.5) & (cont <= size - 0.5), axis=1)
    return float(ok.mean())


def overlap_fraction(reference: sitk.Image, moving: sitk.Image, transform: Optional[sitk.Transform] = None) -> float:
    """Fraction (0..1) of the reference volume that lies inside the moving volume.

    Parameters
    ----------
    reference, moving : SimpleITK.Image
        3-D images in patient coordinates (mm).
    transform : SimpleITK.Transform, optional
        Reference-to-moving mapping; identity if omitted.
    """
    pts = _grid_points(reference)
    if transform is not None:
        pts = transform_points(transform, pts)
    return _inside_fraction(pts, moving)


def transform_points(transform: sitk.Transform, points_mm: np.ndarray) -> np.ndarray:
    """``transform`` applied to (N, 3) physical points (mm).

    Rigid and affine transforms as one matrix product, ``M (p - c) + c + t``; other kinds point by point
    through ITK (a Python loop of 16,000 points holds the interpreter for 0.1 s).
    """
    points_mm = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    if all(hasattr(transform, a) for a in ("GetMatrix", "GetCenter", "GetTranslation")):
        matrix = np.asarray(transform.GetMatrix(), float).reshape(3, 3)
        centre = np.asarray(transform.GetCenter(), float)
        return (points_mm - centre) @ matrix.T + centre + np.asarray(transform.GetTranslation(), float)
    return np.array([transform.TransformPoint(tuple(map(float, p))) for p in points_mm]).reshape(-1, 3)


def _displacements_mm(transform: sitk.Transform, points_mm: np.ndarray) -> np.ndarray:
    return np.linalg.norm(transform_points(transform, points_mm) - points_mm, axis=1)


def _prepare(image: sitk.Image) -> sitk.Image:
    sx, sy, _ = image.GetSpacing()
    factors = [max(1, int(round(REGISTRATION_SPACING_MM / sx))), max(1, int(round(REGISTRATION_SPACING_MM / sy))), 1]
    return sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors)


def _registration(iterations: int) -> sitk.ImageRegistrationMethod:
    """Mattes MI, linear interpolation, regular-step gradient descent: the settings every level shares."""
    reg = sitk.ImageRegistrationMethod()
    # one work unit: the metric's per-thread sums otherwise meet in a varying order, and the last-digit
    # differences change the transform from run to run
    reg.SetNumberOfWorkUnits(1)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=MIN_STEP, numberOfIterations=iterations, relaxationFactor=0.7,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    return reg


def _body_fraction(mask: sitk.Image) -> float:
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) / float(np.prod(mask.GetSize()))


def _register_rigid(
    reference: sitk.Image, moving: sitk.Image, initial: sitk.Transform, *, iterations: int, seed: int,
    prepared: Optional[tuple] = None,
) -> tuple[sitk.Euler3DTransform, float]:
    """Rigid MI registration on the :data:`_LEVELS` pyramid; ``prepared``: :func:`_prepare_pair` of the same
    images from an earlier call."""
    fixed, mov, fixed_mask = prepared or _prepare_pair(reference, moving)
    reg = _registration(iterations)
    # ITK draws share x (voxels of the level) points and drops those outside the mask: the share that
    # keeps the expected number in the body at the cap (each level shrinks every axis)
    body_fraction = _body_fraction(fixed_mask)
    shares = []
    for (shrink, _), cap in zip(_LEVELS, MAX_METRIC_SAMPLES):
        level_voxels = float(np.prod([max(1, n // shrink) for n in fixed.GetSize()]))
        shares.append(min(0.5, cap / max(level_voxels * body_fraction, 1.0)))
    reg.SetMetricSamplingPercentagePerLevel(shares, seed + 1)  # SimpleITK seed 0 means "wall clock"
    reg.SetMetricFixedMask(fixed_mask)
    # Two coarse levels (~8 and ~4 mm in-plane) suffice: the full 2 mm level costs 4x the time for
    # ~0.05 mm on test objects with 4-5 mm slices.
    reg.SetShrinkFactorsPerLevel([shrink for shrink, _ in _LEVELS])
    reg.SetSmoothingSigmasPerLevel([sigma for _, sigma in _LEVELS])
    reg.SetSmoothingSigmasAreSpecifiedInPhysicalUnits(True)
    reg.SetInitialTransform(initial, inPlace=False)
    out = reg.Execute(fixed, mov)
    # Execute returns a composite wrapping the optimized Euler transform.
    if isinstance(out, sitk.CompositeTransform) or out.GetName() == "CompositeTransform":
        out = sitk.CompositeTransform(out).GetNthTransform(0)
    return sitk.Euler3DTransform(out), float(reg.GetMetricValue())


def _register_check(prepared: tuple, initial: sitk.Transform, *, iterations: int,
                    seed: int) -> tuple[sitk.Euler3DTransform, float]:
    """The motion check: one rigid MI registration on :data:`CHECK_LEVEL` of :func:`_prepare_pair`'s images."""
    fixed, mov, fixed_mask = prepared
    factor, sigma_mm = CHECK_LEVEL
    shrink = [factor, factor, 1]
    sigma = [sigma_mm, sigma_mm, 0.01]  # in-plane only, like the binning
    fixed = sitk.SmoothingRecursiveGaussian(sitk.BinShrink(fixed, shrink), sigma)
    mov = sitk.SmoothingRecursiveGaussian(sitk.BinShrink(mov, shrink), sigma)
    mask = sitk.Cast(sitk.BinShrink(fixed_mask, shrink) > 0, sitk.sitkUInt8)
    body = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    reg = _registration(iterations)
    reg.SetMetricSamplingPercentage(min(0.5, CHECK_METRIC_SAMPLES / max(body, 1.0)), seed + 1)
    reg.SetMetricFixedMask(mask)
    transform = sitk.Euler3DTransform(initial)
    reg.SetInitialTransform(transform, inPlace=True)
    reg.Execute(fixed, mov)
    return transform, float(reg.GetMetricValue())


def _prepare_pair(reference: sitk.Image, moving: sitk.Image) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    fixed = _prepare(reference)
    # Sample only the body: background noise carries no alignment information.
    return fixed, _prepare(moving), body_mask(fixed)


def _initial_transform(reference: sitk.Image, moving: sitk.Image, same_frame: bool) -> sitk.Euler3DTransform:
    # Rotate about the reference centre so rotation and translation parameters stay decoupled.
    centre = reference.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in reference.GetSize()])
    tx = sitk.Euler3DTransform()
    tx.SetCenter(centre)
    if same_frame or overlap_fraction(reference, moving) >= 0.5:
        return tx  # headers are (nearly) right: start from them
    # Unrelated frames of reference: start with the two volumes' centres aligned.
    return sitk.Euler3DTransform(
        sitk.CenteredTransformInitializer(
            reference, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
        )
    )


def resample_to_reference(
    moving: Union[Volume, sitk.Image],
    reference: Union[Volume, sitk.Image],
    *,
    register: str = "auto",
    same_frame: Optional[bool] = None,
    motion_threshold_mm: float = MOTION_THRESHOLD_MM,
    min_overlap: float = 0.05,
    iterations: int = 200,
    seed: int = 0,
    reference_body: Optional[sitk.Image] = None,
    resample: bool = True,
) -> GridResult:
    """Resample ``moving`` onto the grid of ``reference``.

    Parameters
    ----------
    moving, reference : bmepipe.io.Volume or SimpleITK.Image
        3-D series in patient coordinates (LPS, mm). Volumes carry their
        FrameOfReferenceUID; plain images are assumed to share one unless
        ``same_frame`` says otherwise.
    register : {"auto", "never", "always"}
        ``never``: headers only. ``always``: rigid registration. ``auto``:
        headers when the frame of reference is shared and a quick registration
        finds no motion above ``motion_threshold_mm``; rigid otherwise. The
        quick check is one level (:data:`CHECK_LEVEL`) alone when that finds less than
        :data:`CHECK_FRACTION` of the threshold (its residual is then
        the one reported), else the full registration.
    same_frame : bool, optional
        Override the frame-of-reference comparison.
    motion_threshold_mm : float
        Mean test-point displacement (mm) above which ``auto`` keeps the
        registration for a same-frame pair.
    min_overlap : float
        Smallest fraction (0..1) of the reference the moving series must cover.
    iterations : int
        Optimizer iterations per resolution level.
    seed : int
        Seed of the metric's random sampling (results are deterministic).
    reference_body : SimpleITK.Image, optional
        :func:`body_mask` of ``reference`` if the caller has it (the residual is measured at body points).
    resample : bool
        ``False``: decide the mapping only; ``image`` and ``inside`` are None
        (:func:`resample_images` makes them).

    Returns
    -------
    GridResult

    Raises
    ------
    NoOverlapError
        When the moving series covers less than ``min_overlap`` of the
        reference (before and, when registering, after registration).
    """
    if register not in REGISTER_MODES:
        raise ConfigError(f"unknown register mode {register!r}; expected one of {', '.join(REGISTER_MODES)}")
    mov_img, mov_frame, mov_name = _image_and_frame(moving)
    ref_img, ref_frame, ref_name = _image_and_frame(reference)
    if same_frame is None:
        same_frame = mov_frame == ref_frame  # both "" for plain images: trust the caller's coordinates
    identity = sitk.Euler3DTransform()
    geometric_overlap = overlap_fraction(ref_img, mov_img)
    if same_frame and geometric_overlap < min_overlap:
        raise NoOverlapError(
            f"{mov_name} covers {geometric_overlap:.1%} of {ref_name} in patient coordinates "
            f"(minimum {min_overlap:.0%}): the volumes do not overlap"
        )

    metric: Optional[float] = None
    rigid: Optional[sitk.Euler3DTransform] = None
    residual = max_residual = 0.0
    method, transform = "geometry", identity
    reason = "shared frame of reference: header geometry" if same_frame else ""
    if register == "never":
        reason = "registration disabled: header geometry"
        if not same_frame:
            reason += " (frames of reference differ)"
    elif register == "auto" and same_frame and geometric_overlap < MIN_OVERLAP_FOR_MOTION_CHECK:
        reason = (f"shared frame of reference: header geometry "
                  f"(overlap {geometric_overlap:.0%} too small to check motion)")
    else:
        check_only = register == "auto" and same_frame
        if reference_body is None:
            reference_body = body_mask(ref_img)
        ref_mask = sitk.GetArrayViewFromImage(reference_body) > 0  # the image is held by the name above
        pts = _grid_points(ref_img, mask=ref_mask)
        if len(pts) == 0:
            pts = _grid_points(ref_img)
        try:
            initial = _initial_transform(ref_img, mov_img, same_frame)
            prepared = _prepare_pair(ref_img, mov_img)
            rigid = None
            if check_only:
                rigid, metric = _register_check(prepared, initial, iterations=iterations, seed=seed)
                if _displacements_mm(rigid, pts).mean() >= CHECK_FRACTION * motion_threshold_mm:
                    rigid = None  # possible motion: the full registration decides
            if rigid is None:
                rigid, metric = _register_rigid(ref_img, mov_img, initial, iterations=iterations, seed=seed,
                                                prepared=prepared)
        except RuntimeError as err:  # ITK gives up, e.g. too few samples in the overlap
            if not check_only:
                detail = str(err).strip().splitlines()[-1]  # ITK puts the reason on the last line
                raise InputError(f"rigid registration of {mov_name} to {ref_name} failed: {detail}") from None
            rigid = metric = None
            reason = "shared frame of reference: header geometry (motion check failed to run)"
    if register != "never" and rigid is not None:
        d = _displacements_mm(rigid, pts)
        residual, max_residual = float(d.mean()), float(d.max())
        if not check_only or residual > motion_threshold_mm:
            method, transform = "rigid", rigid
            if register == "always":
                reason = "rigid registration requested"
            elif same_frame:
                reason = f"rigid registration: motion of {residual:.1f} mm detected"
            else:
                reason = "rigid registration: frames of reference differ"
        else:
            reason = f"shared frame of reference, no motion above {motion_threshold_mm} mm: header geometry"

    ov = overlap_fraction(ref_img, mov_img, None if method == "geometry" else transform)
    if ov < min_overlap:
        raise NoOverlapError(
            f"{mov_name} covers {ov:.1%} of {ref_name} after {method} mapping (minimum {min_overlap:.0%}): "
            "the volumes do not overlap"
        )
    image, inside = resample_images(mov_img, ref_img, transform) if resample else (None, None)
    return GridResult(
        image=image, method=method, transform=transform, residual_mm=residual, max_residual_mm=max_residual,
        metric=metric, overlap=ov, inside=inside, reason=reason,
    )


def resample_images(moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform) -> tuple[sitk.Image, sitk.Image]:
    """``moving`` on ``reference``'s grid through ``transform`` (linear, ``sitkFloat32``, 0 outside) and the
    ``sitkUInt8`` mask of the reference voxels it covers.

    When the grids coincide and the transform is the identity (T1 and fluid-sensitive series planned on one
    geometry) this is a copy: interpolating at the voxels themselves would return them.
    """
    if same_grid(moving, reference) and _is_identity(transform):
        image = sitk.Cast(moving, sitk.sitkFloat32)
        image.CopyInformation(reference)
        inside = sitk.Image(reference.GetSize(), sitk.sitkUInt8) + 1
        inside.CopyInformation(reference)
        return image, inside
    image = sitk.Resample(
        sitk.Cast(moving, sitk.sitkFloat32), reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    ones = sitk.Cast(moving * 0 + 1, sitk.sitkUInt8)
    inside = sitk.Resample(ones, reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return image, inside


def resample_label(mask: sitk.Image, reference: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """A label image on ``reference``'s grid through ``transform`` (nearest neighbour, ``sitkUInt8``, 0 outside)."""
    if same_grid(mask, reference) and _is_identity(transform):
        out = sitk.Cast(mask, sitk.sitkUInt8)
        out.CopyInformation(reference)
        return out
    return sitk.Resample(mask, reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def same_grid(a: sitk.Image, b: sitk.Image, *, tol_mm: float = 1e-3) -> bool:
    """Same voxel grid: size, and spacing, origin and direction within ``tol_mm`` over the field of view."""
    if a.GetSize() != b.GetSize() or a.GetDimension() != b.GetDimension():
        return False
    extent = max(n * sp for n, sp in zip(a.GetSize(), a.GetSpacing()))
    return (np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=tol_mm / max(a.GetSize()))
            and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=tol_mm)
            and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=tol_mm / extent))


def _is_identity(transform: sitk.Transform) -> bool:
    if transform.GetName() not in ("Euler3DTransform", "TranslationTransform", "AffineTransform",
                                   "VersorRigid3DTransform", "IdentityTransform"):
        return False
    if transform.GetName() == "IdentityTransform":
        return True
    if transform.GetName() == "AffineTransform":
        affine = sitk.AffineTransform(transform)
        return (np.allclose(affine.GetMatrix(), np.eye(3).ravel(), rtol=0, atol=1e-12)
                and np.allclose(affine.GetTranslation(), 0.0, rtol=0, atol=1e-9))
    return bool(np.allclose(transform.GetParameters(), 0.0, rtol=0, atol=1e-12))
