"""Intensity standardization against skeletal muscle found in the same study.

MR signal has no absolute unit: receiver gain, coil, field strength, TR/TE/TI
and vendor scaling change it from scan to scan. Thresholds (e.g. "edema is
brighter than X") only mean the same on every scanner when each image is
divided by the signal of a reference tissue of the same study.

Reference tissue: **skeletal muscle** (gluteal, obturator, iliopsoas, thigh
muscles). Why muscle and not the other two candidates of issue 5:

* it is the largest homogeneous tissue of every hip field of view, so it is
  found without a segmentation, and its median over thousands of voxels is
  stable at SNR 12;
* its signal is intermediate on both T1 and fluid-sensitive images, far above
  the noise floor on STIR/fat-suppressed series (unlike suppressed
  subcutaneous fat, which sits at 2-3 sigma and whose value depends on the
  fat-suppression efficiency: exactly what fails at the FOV edge and at 3 T,
  mr_physics.md section 2-3);
* it is not the tissue under study: femoral marrow is where edema is measured,
  and its fat fraction varies with age and red-marrow reconversion, so a
  marrow reference would partly cancel the finding.
  Muscle edema (strain, denervation) is usually focal; the reference is the
  mode of the muscle-like voxels, which a focal change does not move.

How muscle is found (no segmentation needed). Inside the body mask, eroded
by ``skin_margin_mm`` to avoid skin and partial volume:

1. With a T1 series (on the same grid): muscle is intermediate on T1. Fat and
   fatty marrow are the brightest T1 tissue and fill well over 5 % of a hip
   FOV, so the 95th T1 percentile is a fat level; muscle lies between
   ``T1_MUSCLE_RANGE`` x that level (T1 TSE muscle/fat about 0.3-0.5 at
   1.5 and 3 T [approx]). Fluid (dark on T1) and cortex fall below, fat above.
   Among those voxels the fluid-sensitive signal of muscle is the histogram
   mode (bladder and effusion are bright outliers, partial-volume fat dark).
2. Fluid-sensitive series only: suppressed fat, marrow and cortex are dark,
   fluid bright but a few per cent of the body, muscle in between: it is the
   brightest log-histogram peak holding >= ``MAJOR_MODE_MASS`` of the body.
   This path assumes working fat suppression (unsuppressed fat would be a
   bright major peak), which QC can only verify with a T1 series.

Voxels within ``MODE_WINDOW`` of the mode(s), eroded once in-plane to drop
boundary voxels, form the reference mask; the reference value is its
noise-bias-free mean (:func:`bmepipe.normalize.noise.rician_mean`).

Muscle units remove gain but not contrast (fluid/muscle on STIR is ~3.8 at
1.5 T and ~5.5 at 3 T): :class:`Standardized` therefore also carries the
fluid-sensitive series on a three-tissue landmark scale (fat 0, muscle 1,
fluid 4; :mod:`bmepipe.normalize.landmarks`), whose values agree across field
strengths.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .._morphology import erode_square
from .._threads import map_in_threads
from ..errors import ConfigError, InputError
from .bias import body_mask
from .landmarks import LandmarkScale, find_landmarks
from .noise import noise_sigma_local, rician_mean

__all__ = ["Standardized", "standardize", "with_landmarks", "find_reference_tissue", "REFERENCE_TISSUES"]

REFERENCE_TISSUES = ("skeletal_muscle",)
#: Muscle T1 signal as a fraction of the fat level (95th T1 percentile in the body) [approx].
T1_MUSCLE_RANGE = (0.15, 0.7)
#: Half-width of the accepted band around the muscle mode, as a fraction of the mode.
MODE_WINDOW = 0.3
#: Smallest share of the body's voxels a histogram peak needs to be muscle on a fluid-only study.
MAJOR_MODE_MASS = 0.10
#: Skin margin (mm) removed from the body mask before searching.
SKIN_MARGIN_MM = 5.0


@dataclass
class Standardized:
    """Images divided by the reference tissue's signal (reference = 1.0).

    Attributes
    ----------
    fluid_rel, t1_rel : SimpleITK.Image
        ``sitkFloat32`` images in reference units (``t1_rel`` None without T1).
    reference_tissue : str
        ``"skeletal_muscle"``.
    reference_value_fluid, reference_value_t1 : float
        Reference signal in the input's units (noise-bias-free mean).
    noise_sigma_fluid_rel, noise_sigma_t1_rel : float
        Noise SD per channel in reference units (for :meth:`value`).
    reference_mask : SimpleITK.Image
        ``sitkUInt8`` mask of the voxels the reference was measured in.
    reference_voxels : int
        Their number.
    reason : str
        Why this tissue and how it was found.
    landmarks : LandmarkScale or None
        Fat and fluid landmarks of the fluid-sensitive series
        (:mod:`bmepipe.normalize.landmarks`).
    fluid_std : SimpleITK.Image or None
        ``fluid_rel`` on the landmark scale (fat 0, muscle 1, fluid 4): the
        values to compare across field strengths and sequences.
    """

    fluid_rel: sitk.Image
    t1_rel: Optional[sitk.Image]
    reference_tissue: str
    reference_value_fluid: float
    reference_value_t1: Optional[float]
    noise_sigma_fluid_rel: float
    noise_sigma_t1_rel: Optional[float]
    reference_mask: sitk.Image
    reference_voxels: int
    reason: str
    landmarks: Optional[LandmarkScale] = None
    fluid_std: Optional[sitk.Image] = None

    def value(self, region: np.ndarray, which: str = "fluid") -> float:
        """Noise-bias-free mean standardized signal of a region.

        Parameters
        ----------
        region : ndarray of bool
            Mask ``[slice, row, column]`` on the reference grid.
        which : {"fluid", "t1", "fluid_std"}
            Fluid-sensitive or T1 signal in muscle units, or the fluid-sensitive
            signal on the landmark scale (the noise-bias-free mean in muscle
            units, mapped by :meth:`LandmarkScale.apply`).
        """
        if which == "fluid_std":
            if self.landmarks is None:
                raise ConfigError("no landmark scale was measured")
            return self.landmarks.apply(self.value(region, "fluid"))
        if which == "fluid":
            img, sigma = self.fluid_rel, self.noise_sigma_fluid_rel
        else:
            img, sigma = self.t1_rel, self.noise_sigma_t1_rel
        if img is None:
            raise ConfigError("no T1 series was standardized")
        return rician_mean(sitk.GetArrayViewFromImage(img)[region], sigma)

    def to_dict(self) -> dict:
        """JSON-ready summary (no images)."""
        r = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
        return {
            "reference_tissue": self.reference_tissue,
            "reference_value_fluid": r(self.reference_value_fluid),
            "reference_value_t1": r(self.reference_value_t1),
            "noise_sigma_fluid_rel": r(self.noise_sigma_fluid_rel),
            "noise_sigma_t1_rel": r(self.noise_sigma_t1_rel),
            "reference_voxels": int(self.reference_voxels),
            "reason": self.reason,
            "landmarks": None if self.landmarks is None else self.landmarks.to_dict(),
        }


def _log_mode(values: np.ndarray) -> float:
    """Peak of the smoothed histogram of log intensity (robust to bright and dark tails)."""
    logv = np.log(values[values > 0])
    lo, hi = np.percentile(logv, [1, 99])
    hist, edges = np.histogram(logv, bins=100, range=(lo, hi))
    hist = ndimage.gaussian_filter1d(hist.astype(float), 2.0)
    k = int(np.argmax(hist))
    return float(np.exp(0.5 * (edges[k] + edges[k + 1])))


def _brightest_major_mode(values: np.ndarray, min_mass: float = MAJOR_MODE_MASS) -> float:
    """The brightest log-histogram peak holding at least ``min_mass`` of the voxels.

    On a fluid-sensitive image the body holds dark suppressed fat/marrow/cortex
    (possibly a large peak), muscle, and bright fluid (bladder, effusion: a
    few per cent): muscle is the brightest *large* peak.
    """
    logv = np.log(values[values > 0])
    lo, hi = np.percentile(logv, [0.5, 99.5])
    hist, edges = np.histogram(logv, bins=100, range=(lo, hi))
    hist = ndimage.gaussian_filter1d(hist.astype(float), 2.0)
    peaks = [k for k in range(100)
             if hist[k] > 0 and hist[k] >= hist[max(k - 1, 0)] and hist[k] >= hist[min(k + 1, 99)]]
    best = int(np.argmax(hist))
    for k in sorted(peaks, reverse=True):  # brightest first
        # the peak's basin: out to the neighbouring minima
        a = k
        while a > 0 and hist[a - 1] <= hist[a]:
            a -= 1
        b = k
        while b < 99 and hist[b + 1] <= hist[b]:
            b += 1
        if hist[a : b + 1].sum() >= min_mass * hist.sum():
            best = k
            break
    return float(np.exp(0.5 * (edges[best] + edges[best + 1])))


def _erode_in_plane(mask: np.ndarray, spacing_xyz, margin_mm: float) -> np.ndarray:
    n = max(1, int(round(margin_mm / min(spacing_xyz[0], spacing_xyz[1]))))
    return erode_square(mask, n)


def find_reference_tissue(
    fluid: sitk.Image,
    t1: Optional[sitk.Image] = None,
    body: Optional[sitk.Image] = None,
    *,
    skin_margin_mm: float = SKIN_MARGIN_MM,
) -> tuple[np.ndarray, str]:
    """Voxels of normal-appearing skeletal muscle (see the module docstring).

    Parameters
    ----------
    fluid : SimpleITK.Image
        Fluid-sensitive series (bias-corrected).
    t1 : SimpleITK.Image, optional
        T1 series on the same grid (bias-corrected); improves robustness.
    body : SimpleITK.Image, optional
        Body mask; default :func:`body_mask` of ``t1`` (or of ``fluid``).
    skin_margin_mm : float
        Margin (mm) eroded from the body mask.

    Returns
    -------
    mask : ndarray of bool
        ``[slice, row, column]`` reference voxels.
    how : str
        One line saying how they were found.

    Raises
    ------
    InputError
        When no muscle-like voxels are found.
    """
    # views of the images' buffers (no copy when they are float32, as normalize_study's are)
    f = np.asarray(sitk.GetArrayViewFromImage(fluid), np.float32)
    t = None if t1 is None else np.asarray(sitk.GetArrayViewFromImage(t1), np.float32)
    if t is not None and t.shape != f.shape:
        raise InputError("T1 and fluid-sensitive images must be on the same grid (use resample_to_reference)")
    if body is None:
        body = body_mask(t1 if t1 is not None else fluid)
    core = _erode_in_plane(sitk.GetArrayFromImage(body) > 0, fluid.GetSpacing(), skin_margin_mm)
    # 3x3 in-plane means: classify on less noisy values (muscle is large, so it survives the blur).
    # Values at the core voxels only (raster order), the mask rebuilt at the end: the same selection as
    # full-array arithmetic, without passes over the background.
    where = np.flatnonzero(core)
    fs = ndimage.uniform_filter(f, size=(1, 3, 3)).ravel()[where]
    if t is not None:
        ts = ndimage.uniform_filter(t, size=(1, 3, 3)).ravel()[where]
        fat_level = float(np.percentile(ts, 95)) if ts.size else 0.0
        keep = (ts > T1_MUSCLE_RANGE[0] * fat_level) & (ts < T1_MUSCLE_RANGE[1] * fat_level)
        where, fs, ts = where[keep], fs[keep], ts[keep]
        if where.size < 100:
            raise InputError("no T1-intermediate (muscle-like) tissue found inside the body")
        mode_f = _log_mode(fs)
        keep = np.abs(fs / mode_f - 1) < MODE_WINDOW
        where, ts = where[keep], ts[keep]
        mode_t = _log_mode(ts)
        where = where[np.abs(ts / mode_t - 1) < MODE_WINDOW]
        how = "T1-intermediate, fluid-intermediate mode (joint T1/fluid-sensitive)"
    else:
        vals = fs[fs > 0]
        if vals.size < 100:
            raise InputError("body mask holds no signal")
        mode_f = _brightest_major_mode(vals)
        where = where[np.abs(fs / mode_f - 1) < MODE_WINDOW]
        how = "brightest major histogram mode of the fluid-sensitive signal (no T1; assumes working fat suppression)"
    cand = np.zeros(core.shape, bool)
    cand.ravel()[where] = True
    muscle = erode_square(cand)
    if muscle.sum() < 100:
        muscle = cand
    if muscle.sum() < 100:
        raise InputError("too few muscle-like voxels to standardize intensities")
    return muscle, how


def _reference_value(image: sitk.Image, muscle: np.ndarray, name: str) -> tuple[float, float]:
    """Noise-bias-free mean of the reference voxels and the noise sigma, in the image's units."""
    a = sitk.GetArrayViewFromImage(image)
    sigma = noise_sigma_local(a, muscle, image.GetSpacing()[:2])
    value = rician_mean(a[muscle], sigma)
    if not value > 0:
        raise InputError(f"reference tissue has no signal on the {name} series")
    return value, sigma


def standardize(
    fluid: sitk.Image,
    t1: Optional[sitk.Image] = None,
    *,
    body: Optional[sitk.Image] = None,
    reference: str = "skeletal_muscle",
    depth_mm: Optional[np.ndarray] = None,
    landmarks: bool = True,
) -> Standardized:
    """Express fluid-sensitive (and T1) signal relative to skeletal muscle.

    Parameters
    ----------
    fluid : SimpleITK.Image
        Fluid-sensitive series, bias-corrected.
    t1 : SimpleITK.Image, optional
        T1 series on the fluid-sensitive grid, bias-corrected.
    body : SimpleITK.Image, optional
        Body mask on that grid (default: found from ``t1``, else ``fluid``).
    reference : {"skeletal_muscle"}
        Reference tissue (the only one implemented; see the module docstring).
    depth_mm : ndarray, optional
        In-plane depth below the skin of every body voxel
        (:func:`bmepipe.normalize.landmarks.in_plane_depth_mm`), if already computed.
    landmarks : bool
        Also measure the landmark scale (:func:`with_landmarks`); ``False`` gives
        muscle units only (``landmarks`` and ``fluid_std`` None).

    Returns
    -------
    Standardized
    """
    if reference not in REFERENCE_TISSUES:
        raise ConfigError(f"unknown reference tissue {reference!r}; expected one of {', '.join(REFERENCE_TISSUES)}")
    if body is None:
        body = body_mask(t1 if t1 is not None else fluid)
    muscle, how = find_reference_tissue(fluid, t1, body)
    series = [(fluid, "fluid-sensitive")] + ([(t1, "T1")] if t1 is not None else [])
    (ref_f, sigma_f), *ref_t1 = map_in_threads(lambda s: _reference_value(s[0], muscle, s[1]), series)
    # divided in double precision, stored as float32 (``/`` alone would give float64 images)
    fluid_rel = sitk.Cast(sitk.DivideReal(sitk.Cast(fluid, sitk.sitkFloat32), ref_f), sitk.sitkFloat32)
    t1_rel = ref_t = sigma_t_rel = None
    if t1 is not None:
        ref_t, sigma_t = ref_t1[0]
        t1_rel = sitk.Cast(sitk.DivideReal(sitk.Cast(t1, sitk.sitkFloat32), ref_t), sitk.sitkFloat32)
        sigma_t_rel = sigma_t / ref_t
    mask_img = sitk.GetImageFromArray(muscle.astype(np.uint8))
    mask_img.CopyInformation(fluid)
    std = Standardized(
        fluid_rel=fluid_rel, t1_rel=t1_rel, reference_tissue=reference,
        reference_value_fluid=ref_f, reference_value_t1=ref_t,
        noise_sigma_fluid_rel=sigma_f / ref_f, noise_sigma_t1_rel=sigma_t_rel,
        reference_mask=mask_img, reference_voxels=int(muscle.sum()),
        reason=f"skeletal muscle: largest homogeneous tissue, intermediate on both contrasts, "
        f"independent of fat suppression and of marrow disease; found as {how}",
    )
    return with_landmarks(std, body, depth_mm=depth_mm) if landmarks else std


def with_landmarks(std: Standardized, body: sitk.Image, *, depth_mm: Optional[np.ndarray] = None) -> Standardized:
    """``std`` with the fat and fluid landmarks measured and ``fluid_std`` on the landmark scale.

    Parameters
    ----------
    std : Standardized
        Muscle units (``standardize(..., landmarks=False)``).
    body : SimpleITK.Image
        Body mask on the fluid-sensitive grid.
    depth_mm : ndarray, optional
        :func:`bmepipe.normalize.landmarks.in_plane_depth_mm` of ``body``, if already computed.
    """
    fluid_rel = std.fluid_rel
    scale = find_landmarks(
        sitk.GetArrayViewFromImage(fluid_rel), None if std.t1_rel is None else sitk.GetArrayViewFromImage(std.t1_rel),
        sitk.GetArrayViewFromImage(body) > 0, fluid_rel.GetSpacing(), noise_sigma_rel=std.noise_sigma_fluid_rel,
        depth_mm=depth_mm,
    )
    fluid_std = sitk.GetImageFromArray(scale.apply(sitk.GetArrayViewFromImage(fluid_rel)))
    fluid_std.CopyInformation(fluid_rel)
    return replace(std, landmarks=scale, fluid_std=fluid_std)
