"""Receive-coil bias (intensity non-uniformity) correction and the body mask.

The acquired magnitude is ``I(r) = I_true(r) x B(r)`` with ``B`` a smooth
multiplicative field from coil sensitivity, B1 and patient loading, 20-50 %
peak-to-peak over a both-hip field of view (mr_physics.md, section 4). The
usual correction is N4 (Tustison et al., IEEE Trans Med Imaging
2010;29:1310), a B-spline refinement of N3.

Why ``method="n4_coarse"`` (the default) is fast and still accurate: ``B`` is
smooth on the scale of centimetres, so N4 does not need fine voxels to see it.
We run N4 on a copy subsampled to about ``coarse_spacing_mm`` in-plane and
``coarse_slice_mm`` across slices (15 x 47 x 47 voxels for a 30 x 512 x 512
series with 0.74 mm pixels and 4.4 mm slices, instead of the baseline's 30 x 128 x 128;
subsampled, not averaged, so tissue intensities stay pure),
inside a body mask found on that coarse copy (background noise carries no
bias information), with three fitting levels (the fourth level's finer
B-spline starts to model anatomy, not coil shading), and evaluate the log
field on the coarse grid and interpolate it linearly to the full grid.
``benchmarks/bench_bias.py`` prints the time / residual-bias trade-off
against the baseline ``method="n4_baseline"`` (N4 defaults, no mask, image
shrunk by 4 in-plane, field evaluated at full resolution). Without a mask,
background noise and the nulled fat of STIR pull the baseline's fit (it
does not converge in 4 x 50 iterations): the body mask is most of the
accuracy gain, the coarse grid most of the speed gain.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .._morphology import fill_holes_per_slice, square_closing, square_opening
from ..errors import ConfigError, InputError

__all__ = ["correct_bias", "body_mask", "BIAS_METHODS"]

BIAS_METHODS = ("n4_coarse", "n4_baseline", "none")

#: In-plane voxel size (mm) of the grid N4 runs on with ``method="n4_coarse"``. 8 mm costs about 60 % of
#: the CPU time of 6 mm for the same residual bias (1.1-2.4 % vs 1.3-2.2 % CV on the three phantoms of
#: ``benchmarks/bench_bias.py``); 9 mm with two levels starts to lose accuracy.
COARSE_SPACING_MM = 8.0
#: Through-plane spacing (mm) of that grid (slices are subsampled only if at least 8 remain).
COARSE_SLICE_MM = 8.0
#: B-spline fitting levels and iterations per level of ``n4_coarse``.
COARSE_ITERATIONS = (50, 50, 50)
#: Fit N4 to every other coarse voxel of the mask (a 3-D checkerboard). N4's cost grows with the number of
#: voxels it fits and the field is smooth on a scale of many voxels: half the voxels give the same residual
#: bias (``benchmarks/bench_bias.py``: median / max CV 1.15 / 2.17 % vs 1.11 / 2.38 % with every voxel) in
#: 0.32 instead of 0.42 s per 512 x 512 x 30 series (N4 itself: about 55 % of the CPU time).
COARSE_CHECKERBOARD = True
#: With the checkerboard, masks of at least three times this many coarse voxels are thinned further, to
#: every k-th diagonal plane (``(z + y + x) % k == 0``, ``k = mask voxels // COARSE_FIT_VOXELS``, so
#: 4500-6750 voxels are fitted): T1 and fat-suppressed series keep the subcutaneous fat in their body
#: mask, three times STIR's. On nine 512 x 512 x 30 phantoms (T1) the median / max residual CV was
#: 0.68 / 1.01 % instead of 0.69 / 1.19 % in 0.30 instead of 0.83 s of N4 (one thread); STIR masks
#: (about 9000 voxels) keep the checkerboard.
COARSE_FIT_VOXELS = 4500


def _shrink_factors(image: sitk.Image, target_mm: float, target_slice_mm: Optional[float] = None) -> list[int]:
    """Integer shrink factors giving ~``target_mm`` in-plane (and ~``target_slice_mm`` across slices)."""
    sx, sy, sz = image.GetSpacing()
    nx, ny, nz = image.GetSize()
    f = [int(max(1, min(n // 4, round(target_mm / s)))) for s, n in ((sx, nx), (sy, ny))]
    # Slices are already thick (3-5 mm) and few: shrink them only when asked, keeping >= 8.
    fz = 1 if target_slice_mm is None else int(max(1, min(nz // 8, round(target_slice_mm / sz))))
    return f + [fz]


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
    mask = square_opening(mask, 3)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.02 * sizes.max()))
    # Pad by edge replication so that closing does not erode a body cut by the FOV boundary.
    padded = np.pad(mask, ((0, 0), (3, 3), (3, 3)), mode="edge")
    mask = square_closing(padded, 5)[:, 3:-3, 3:-3]
    mask = fill_holes_per_slice(mask)  # per slice: a 3-D fill leaks through the first/last slice
    small_mask = sitk.GetImageFromArray(mask.astype(np.uint8))
    small_mask.CopyInformation(small)
    return sitk.Resample(small_mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8, True)


def correct_bias(
    image: sitk.Image,
    mask: Optional[sitk.Image] = None,
    *,
    method: str = "n4_coarse",
    coarse_spacing_mm: float = COARSE_SPACING_MM,
    coarse_slice_mm: float = COARSE_SLICE_MM,
    iterations: tuple[int, ...] = COARSE_ITERATIONS,
    checkerboard: bool = COARSE_CHECKERBOARD,
    fit_voxels: int = COARSE_FIT_VOXELS,
) -> tuple[sitk.Image, sitk.Image]:
    """Remove the smooth multiplicative receive-coil field.

    Parameters
    ----------
    image : SimpleITK.Image
        3-D magnitude image (any pixel type).
    mask : SimpleITK.Image, optional
        Voxels the field is estimated from (non-zero = use), on the image's
        grid. Default: :func:`body_mask` for ``n4_coarse``; every voxel for
        ``n4_baseline`` (N4's default).
    method : {"n4_coarse", "n4_baseline", "none"}
        ``n4_coarse``: N4 on a ~``coarse_spacing_mm`` grid, fast (see module
        docstring). ``n4_baseline``: N4 at its default settings (no mask,
        4 levels x 50 iterations) on the image shrunk by 4 in-plane, field
        evaluated at full resolution: the reference of the benchmark (~30 s
        on a 30 x 512 x 512 series on 2 cores). ``none``: unit field.
    coarse_spacing_mm, coarse_slice_mm : float
        In-plane and through-plane voxel size (mm) N4 works on with
        ``n4_coarse``.
    iterations : tuple of int
        Maximum iterations per B-spline fitting level (``n4_coarse``); the
        tuple's length is the number of levels.
    checkerboard : bool
        ``n4_coarse``: fit to every other mask voxel of the coarse grid (see
        :data:`COARSE_CHECKERBOARD`), or fewer for large masks.
    fit_voxels : int
        With ``checkerboard``: thin masks of at least three times this many
        voxels to 1-1.5 times as many (see :data:`COARSE_FIT_VOXELS`).

    Returns
    -------
    corrected : SimpleITK.Image
        ``image / field`` as ``sitkFloat32`` on the input's grid.
    field : SimpleITK.Image
        The estimated field ``B`` (``sitkFloat32``) on the input's grid,
        scaled to geometric mean 1 over the mask (with ``n4_coarse``: over the
        mask as sampled on the coarse grid, so within ~1 %).
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
        factors = [4, 4, 1]
        n4 = sitk.N4BiasFieldCorrectionImageFilter()  # defaults: 4 levels x 50 iterations, no mask
        if mask is None:
            n4.Execute(sitk.Shrink(image, factors))
            mask = sitk.Cast(image * 0 + 1, sitk.sitkUInt8)
        else:
            n4.Execute(sitk.Shrink(image, factors), sitk.Shrink(sitk.Cast(mask > 0, sitk.sitkUInt8), factors))
        log_field = n4.GetLogBiasFieldAsImage(image)
        offset = float(sitk.GetArrayViewFromImage(log_field)[sitk.GetArrayViewFromImage(mask) > 0].mean())
    else:
        factors = _shrink_factors(image, coarse_spacing_mm, coarse_slice_mm)
        # Subsample, do not average: averaging mixes tissues into partial-volume values that blur
        # the histogram peaks N4 sharpens (residual bias ~25 % higher on phantoms at 6 mm).
        small = sitk.Shrink(image, factors)
        small_mask = body_mask(small) if mask is None else sitk.Shrink(sitk.Cast(mask > 0, sitk.sitkUInt8), factors)
        small_mask_arr = sitk.GetArrayViewFromImage(small_mask) > 0
        if not small_mask_arr.any():
            raise InputError("bias correction: the mask is empty on the coarse grid")
        fit_mask = small_mask
        if checkerboard:
            k = max(2, int(np.count_nonzero(small_mask_arr)) // max(1, int(fit_voxels)))
            z, y, x = np.indices(small_mask_arr.shape, sparse=True)
            fit_mask = sitk.GetImageFromArray((small_mask_arr & ((z + y + x) % k == 0)).astype(np.uint8))
            fit_mask.CopyInformation(small_mask)
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
        n4.Execute(small, fit_mask)
        small_log = n4.GetLogBiasFieldAsImage(small)
        offset = float(sitk.GetArrayViewFromImage(small_log)[small_mask_arr].mean())
        # Linear interpolation of the smooth coarse log field costs a third of evaluating the B-spline
        # at every voxel and differs from it by < 0.5 %.
        log_field = sitk.Resample(small_log, image, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32, True)
    # N4 fits the field up to a constant: make its geometric mean over the mask 1 so that corrected
    # intensities stay in the input's range.
    field = sitk.Exp(log_field - offset)
    # ``/`` (DivideReal) gives float64: twice the memory of every later copy; the documented type is float32
    return sitk.Cast(sitk.DivideReal(image, field), sitk.sitkFloat32), field
