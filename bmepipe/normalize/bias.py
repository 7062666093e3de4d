"""Receive-coil bias (intensity non-uniformity) correction and the body mask.

The acquired magnitude is ``I(r) = I_true(r) x B(r)`` with ``B`` a smooth
multiplicative field from coil sensitivity, B1 and patient loading, 20-50 %
peak-to-peak over a both-hip field of view (mr_physics.md, section 4). The
usual correction is N4 (Tustison et al., IEEE Trans Med Imaging
2010;29:1310), a B-spline refinement of N3.

Why ``method="n4_coarse"`` (the default) is fast and still accurate: ``B`` is
smooth on the scale of centimetres, so N4 does not need fine voxels to see it.
We run N4 on a copy block-averaged to about ``coarse_spacing_mm`` in-plane
(30 x 32 x 32 voxels for a 30 x 512 x 512 series instead of the baseline's
30 x 128 x 128), inside a body mask instead of Otsu's (background noise carries
no bias information), with three fitting levels (the fourth level's 32-span
B-spline models detail that is anatomy, not coil shading), and evaluate the
log field on the coarse grid and interpolate it linearly to the full grid
(< 0.5 % from evaluating the B-spline at every voxel, at a third of the
cost). ``benchmarks/bench_bias.py`` prints the time / residual-bias trade-off
against the baseline ``method="n4_baseline"`` (N4 defaults, Otsu mask, image
shrunk by 4 in-plane, field evaluated at full resolution).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import ConfigError, InputError

__all__ = ["correct_bias", "body_mask", "BIAS_METHODS"]

BIAS_METHODS = ("n4_coarse", "n4_baseline", "none")

#: In-plane voxel size (mm) of the grid N4 runs on with ``method="n4_coarse"``.
COARSE_SPACING_MM = 10.0
#: B-spline fitting levels and iterations per level of ``n4_coarse``.
COARSE_ITERATIONS = (50, 50, 50)


def _shrink_factors(image: sitk.Image, target_mm: float) -> list[int]:
    # Shrink in-plane only: slices are already thick (3-5 mm) and few.
    sx, sy, _ = image.GetSpacing()
    nx, ny, _ = image.GetSize()
    return [
        int(max(1, min(n // 4, round(target_mm / s)))) for s, n in ((sx, nx), (sy, ny))
    ] + [1]


def body_mask(image: sitk.Image, *, smoothing_mm: float = 0.5) -> sitk.Image:
    """Voxels inside the patient (the body outline, holes filled).

    Otsu's threshold on the logarithm of the smoothed image separates the
    Rician background from tissue even when bright fat or fluid dominates the
    tissue histogram (on linear intensities Otsu tends to split fat from
    muscle instead). Dark structures inside the body (cortex, tendons, gas)
    are then filled slice by slice, and specks smaller than 2 % of the largest
    component are dropped. On STIR the nulled subcutaneous fat can be near the
    noise level and fall outside: prefer the T1 series' mask when there is one.

    Parameters
    ----------
    image : SimpleITK.Image
        3-D magnitude image.
    smoothing_mm : float
        Gaussian smoothing (sigma, mm) applied before thresholding. Binning to
        ~2.5 mm already averages the noise; more smoothing moves the outline
        outwards (the log threshold sits near the background level).

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` mask (1 inside) on the input's grid.
    """
    if image.GetDimension() != 3:
        raise InputError(f"body_mask needs a 3-D image, got {image.GetDimension()}-D")
    # A 2-3 mm grid is plenty for an outline and ~20x cheaper.
    factors = _shrink_factors(image, 2.5)
    small = sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors)
    small = sitk.SmoothingRecursiveGaussian(small, [smoothing_mm, smoothing_mm, 0.01])
    arr = sitk.GetArrayViewFromImage(small)
    positive = arr[arr > 0]
    if positive.size == 0 or float(positive.max()) <= float(positive.min()):
        raise InputError("image is blank (constant intensity): no body to find")
    log_arr = np.log(np.maximum(arr, positive.min()))
    from skimage.filters import threshold_otsu

    mask = log_arr > threshold_otsu(log_arr)
    mask = ndimage.binary_opening(mask, structure=np.ones((1, 3, 3), bool))
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.02 * sizes.max()))
    # Pad by edge replication so that closing does not erode a body cut by the FOV boundary.
    padded = np.pad(mask, ((0, 0), (3, 3), (3, 3)), mode="edge")
    mask = ndimage.binary_closing(padded, structure=np.ones((1, 5, 5), bool))[:, 3:-3, 3:-3]
    for k in range(mask.shape[0]):  # fill per slice: a 3-D fill leaks through the first/last slice
        mask[k] = ndimage.binary_fill_holes(mask[k])
    small_mask = sitk.GetImageFromArray(mask.astype(np.uint8))
    small_mask.CopyInformation(small)
    return sitk.Resample(small_mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8, True)


def _normalize_log_field(log_field: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # The field's scale is arbitrary (N4 fits it up to a constant): make its geometric
    # mean inside the body 1 so corrected intensities stay in the input's range.
    return log_field - float(log_field[mask].mean())


def correct_bias(
    image: sitk.Image,
    mask: Optional[sitk.Image] = None,
    *,
    method: str = "n4_coarse",
    coarse_spacing_mm: float = COARSE_SPACING_MM,
    iterations: tuple[int, ...] = COARSE_ITERATIONS,
) -> tuple[sitk.Image, sitk.Image]:
    """Remove the smooth multiplicative receive-coil field.

    Parameters
    ----------
    image : SimpleITK.Image
        3-D magnitude image (any pixel type).
    mask : SimpleITK.Image, optional
        Voxels the field is estimated from (non-zero = use), on the image's
        grid. Default: :func:`body_mask` for ``n4_coarse``, Otsu for
        ``n4_baseline`` (SimpleITK's documented usage).
    method : {"n4_coarse", "n4_baseline", "none"}
        ``n4_coarse``: N4 on a ~``coarse_spacing_mm`` grid, fast (see module
        docstring). ``n4_baseline``: N4 at its default settings on the image
        shrunk by 4 in-plane, field evaluated at full resolution (the
        reference of the benchmark). ``none``: unit field.
    coarse_spacing_mm : float
        In-plane voxel size (mm) N4 works on with ``n4_coarse``.
    iterations : tuple of int
        Maximum iterations per B-spline fitting level (``n4_coarse``); the
        tuple's length is the number of levels.

    Returns
    -------
    corrected : SimpleITK.Image
        ``image / field`` as ``sitkFloat32`` on the input's grid.
    field : SimpleITK.Image
        The estimated field ``B`` (``sitkFloat32``, geometric mean 1 inside the
        mask) on the input's grid.
    """
    if method not in BIAS_METHODS:
        raise ConfigError(f"unknown bias method {method!r}; expected one of {', '.join(BIAS_METHODS)}")
    if image.GetDimension() != 3:
        raise InputError(f"correct_bias needs a 3-D image, got {image.GetDimension()}-D")
    image = sitk.Cast(image, sitk.sitkFloat32)
    if method == "none":
        field = sitk.Image(image.GetSize(), sitk.sitkFloat32) + 1.0
        field.CopyInformation(image)
        return image, field

    if method == "n4_baseline":
        if mask is None:
            mask = sitk.OtsuThreshold(image, 0, 1, 200)
        factors = [4, 4, 1]
        n4 = sitk.N4BiasFieldCorrectionImageFilter()  # defaults: 4 levels x 50 iterations
        n4.Execute(sitk.Shrink(image, factors), sitk.Shrink(sitk.Cast(mask > 0, sitk.sitkUInt8), factors))
        log_field = n4.GetLogBiasFieldAsImage(image)
    else:
        if mask is None:
            mask = body_mask(image)
        mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
        factors = _shrink_factors(image, coarse_spacing_mm)
        small = sitk.BinShrink(image, factors)
        # A coarse voxel joins the fit if most of it lies in the body (no background partial volume).
        small_mask = sitk.Cast(sitk.BinShrink(sitk.Cast(mask, sitk.sitkFloat32), factors) > 0.5, sitk.sitkUInt8)
        if not sitk.GetArrayViewFromImage(small_mask).any():
            raise InputError("bias correction: the mask is empty on the coarse grid")
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
        n4.Execute(small, small_mask)
        log_field = n4.GetLogBiasFieldAsImage(image)

    log_arr = sitk.GetArrayFromImage(log_field).astype(np.float32)
    mask_arr = sitk.GetArrayViewFromImage(mask) > 0
    if not mask_arr.any():
        mask_arr = np.ones(log_arr.shape, bool)
    log_arr = _normalize_log_field(log_arr, mask_arr)
    field_arr = np.exp(log_arr)
    corrected_arr = sitk.GetArrayViewFromImage(image) / field_arr
    field = sitk.GetImageFromArray(field_arr)
    field.CopyInformation(image)
    corrected = sitk.GetImageFromArray(corrected_arr.astype(np.float32))
    corrected.CopyInformation(image)
    return corrected, field
