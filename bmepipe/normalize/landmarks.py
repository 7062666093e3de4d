"""Three-tissue landmark scale: fluid-sensitive signal comparable across field strengths.

Dividing by skeletal muscle removes scanner gain but not contrast: on STIR the
fluid/muscle ratio is about 3.8 at 1.5 T and 5.5 at 3 T for the same patient
(longer T1 at 3 T changes what TI nulls and recovers; mr_physics.md sections
1-3), so a threshold in muscle units does not mean the same on both scanners.
Piecewise-linear landmark standardization (Nyul, Udupa and Zhang, IEEE Trans
Med Imaging 2000;19:143) fixes that with tissues found in the same study:

* **fat** (subcutaneous fat, located on T1 where it is the brightest tissue):
  ``STANDARD_FAT`` (0);
* **skeletal muscle** (the reference of :mod:`bmepipe.normalize.standardize`):
  ``STANDARD_MUSCLE`` (1);
* **free fluid**: bladder urine, the brightest fluid-sensitive, T1-dark
  connected compartment of at least ``MIN_FLUID_ML`` whose centre lies in the
  middle third of the body's left-right extent (columns of a coronal or axial
  series; this keeps a large bone marrow edema of the femoral head, also
  bright and T1-dark, from becoming the landmark when the bladder is empty):
  ``STANDARD_FLUID`` (4, about the 1.5 T STIR value, so 1.5 T images change
  little).

Signal between two landmarks is interpolated linearly, beyond them extrapolated
with the nearest segment's slope. Edema water and normal marrow lie between
the landmarks, and their position relative to them moves far less with field
strength than their ratio to muscle does (phantoms, ``tests/test_normalize_landmarks.py``:
BME 38 % apart in muscle units at 1.5 vs 3 T, < 10 % on this scale).

A landmark that cannot be found (no T1 series: fat cannot be told from
nulled background on STIR; no fluid compartment) or is implausible (fat not
darker than ``MAX_FAT_LANDMARK`` x muscle: failed fat suppression; fluid
below ``MIN_FLUID_LANDMARK`` x muscle) is left out and that segment keeps
muscle units; :attr:`LandmarkScale.comparable` then says the scale is not
comparable across field strengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from .._morphology import erode_square
from .noise import rician_mean

__all__ = [
    "LandmarkScale",
    "find_landmarks",
    "in_plane_depth_mm",
    "t1_fat",
    "STANDARD_FAT",
    "STANDARD_MUSCLE",
    "STANDARD_FLUID",
]

#: Values the landmarks are mapped to (a unit definition, like water 0 HU: any fixed values would do).
STANDARD_FAT, STANDARD_MUSCLE, STANDARD_FLUID = 0.0, 1.0, 4.0
#: T1 fat level: voxels brighter than this fraction of the 95th T1 percentile in the body are fat.
T1_FAT_FRACTION = 0.7
#: Depth band (mm) below the skin where fat is subcutaneous fat: past the skin's partial volume,
#: before deep fat and fatty marrow [approx].
SUBCUTANEOUS_BAND_MM = (3.0, 25.0)
#: Smallest fluid compartment (ml) used as a landmark (bladder: tens to hundreds of ml).
MIN_FLUID_ML = 5.0
#: A fat landmark at or above this many times muscle means fat suppression failed: not used.
MAX_FAT_LANDMARK = 0.5
#: A fluid landmark below this many times muscle is not free fluid: not used.
MIN_FLUID_LANDMARK = 1.5
#: Fluid candidates: fluid-sensitive signal above this many times muscle, T1 below muscle [approx:
#: free fluid is 3-6x muscle on STIR/T2-FS but only about 2x on PD-FS (TE 30-45 ms barely decays
#: muscle's T2 of 30-45 ms: S = PD (1 - e^-TR/T1) e^-TE/T2, mr_physics.md sections 1-2 and table 1;
#: phantom PD-FS bladders 1.9-2.5x), and darker than muscle on T1]. The landmark's own floor: a PD-FS
#: bladder must not fall below the candidate cut and lose the landmark.
FLUID_MIN_RATIO = MIN_FLUID_LANDMARK
_MIN_FAT_VOXELS = 200


def in_plane_depth_mm(body: np.ndarray, spacing_xyz) -> np.ndarray:
    """Distance (mm) of each body voxel to the nearest non-body voxel of its slice (0 outside).

    In-plane only: slices are thick and the body is cut by the first and last one.
    """
    sx, sy = float(spacing_xyz[0]), float(spacing_xyz[1])
    out = np.empty(np.shape(body), np.float32)  # filled slice by slice: no float64 copy of the volume
    for k, b in enumerate(body):
        out[k] = ndimage.distance_transform_edt(b, sampling=(sy, sx))
    return out


def t1_fat(t1: np.ndarray, body: np.ndarray, *, fraction: float = T1_FAT_FRACTION,
           smoothed: bool = False) -> np.ndarray:
    """Fat voxels: T1 (3x3 in-plane mean) above ``fraction`` of the body's 95th T1 percentile, eroded once.

    ``smoothed=True``: ``t1`` already is the 3x3 in-plane mean.
    """
    t = np.asarray(t1) if smoothed else ndimage.uniform_filter(np.asarray(t1, np.float32), size=(1, 3, 3))
    fat = body & (t > fraction * np.percentile(t[body][::7], 95))  # every 7th voxel: same percentile
    return erode_square(fat)


@dataclass(frozen=True)
class LandmarkScale:
    """Piecewise-linear map from muscle units to the landmark scale (see the module docstring).

    Attributes
    ----------
    fat, fluid : float or None
        Measured landmark signals in muscle units (None: not found or not used).
    fat_voxels, fluid_ml : int, float
        Size of the region each was measured in.
    notes : tuple of str
        Why a landmark is missing, if one is.
    """

    fat: Optional[float]
    fluid: Optional[float]
    fat_voxels: int = 0
    fluid_ml: float = 0.0
    notes: tuple = ()

    @property
    def comparable(self) -> bool:
        """True when both landmarks were used: values compare across field strengths and sequences."""
        return self.fat is not None and self.fluid is not None

    def apply(self, values):
        """Map muscle-unit values (scalar or array) to the landmark scale (float32 for arrays)."""
        v = np.asarray(values, dtype=np.float32)
        lo_slope = (STANDARD_MUSCLE - STANDARD_FAT) / (1.0 - self.fat) if self.fat is not None else 1.0
        hi_slope = (STANDARD_FLUID - STANDARD_MUSCLE) / (self.fluid - 1.0) if self.fluid is not None else 1.0
        if v.ndim == 0:
            return float(STANDARD_MUSCLE + (v - 1.0) * np.float32(lo_slope if v < 1.0 else hi_slope))
        # in place on one output array: a whole study's volume is mapped
        out = np.subtract(v, 1.0, dtype=np.float32)
        below = v < 1.0
        np.multiply(out, np.float32(lo_slope), out=out, where=below)
        np.multiply(out, np.float32(hi_slope), out=out, where=~below)
        out += np.float32(STANDARD_MUSCLE)
        return out

    def to_dict(self) -> dict:
        r = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
        return {
            "standard_values": {"fat": STANDARD_FAT, "muscle": STANDARD_MUSCLE, "fluid": STANDARD_FLUID},
            "fat_muscle_units": r(self.fat), "fluid_muscle_units": r(self.fluid),
            "fat_voxels": int(self.fat_voxels), "fluid_ml": round(float(self.fluid_ml), 2),
            "comparable_across_scanners": self.comparable, "notes": list(self.notes),
        }


def find_landmarks(
    fluid_rel: np.ndarray,
    t1_rel: Optional[np.ndarray],
    body: np.ndarray,
    spacing_xyz,
    *,
    noise_sigma_rel: Optional[float] = None,
    depth_mm: Optional[np.ndarray] = None,
) -> LandmarkScale:
    """Measure the fat and fluid landmarks of a study, in muscle units.

    Parameters
    ----------
    fluid_rel : ndarray
        Fluid-sensitive image in muscle units, ``[slice, row, column]``.
    t1_rel : ndarray or None
        T1 image on the same grid in muscle units; locates fat and confirms fluid.
    body : ndarray of bool
        Body mask on that grid.
    spacing_xyz : sequence of float
        Voxel size (x, y, z) in mm.
    noise_sigma_rel : float, optional
        Noise SD per channel of ``fluid_rel``: the fat landmark (near the noise
        floor on STIR) is then a noise-bias-free mean (:func:`rician_mean`).
    depth_mm : ndarray, optional
        :func:`in_plane_depth_mm` of ``body`` if already computed.

    Returns
    -------
    LandmarkScale
    """
    f = np.asarray(fluid_rel)
    notes = []
    fat = fluid = None
    fat_voxels, fluid_ml = 0, 0.0
    if t1_rel is None:
        notes.append("no T1 series: fat cannot be located, values below muscle stay in muscle units")
    else:
        depth = in_plane_depth_mm(body, spacing_xyz) if depth_mm is None else depth_mm
        lo, hi = SUBCUTANEOUS_BAND_MM
        subcut = t1_fat(t1_rel, body) & (depth > lo) & (depth <= hi)
        fat_voxels = int(subcut.sum())
        if fat_voxels < _MIN_FAT_VOXELS:
            notes.append("too little subcutaneous fat found for a fat landmark")
        else:
            value = rician_mean(f[subcut], noise_sigma_rel)
            if value >= MAX_FAT_LANDMARK:
                notes.append(f"fat at {value:.2f} x muscle: fat suppression failed, fat landmark not used")
            else:
                fat = value
    candidates = body & (f > FLUID_MIN_RATIO)
    if t1_rel is not None:
        candidates &= np.asarray(t1_rel) < STANDARD_MUSCLE  # free fluid is darker than muscle on T1
    labels, n = ndimage.label(candidates)
    voxel_ml = float(np.prod(spacing_xyz)) / 1000.0
    best = None
    columns = np.flatnonzero(body.any(axis=(0, 1)))
    if n and columns.size:
        # per-component statistics over the candidate voxels only (ndimage.median scans the whole volume)
        where = np.flatnonzero(labels)
        lab = labels.ravel()[where]
        sizes = np.bincount(lab, minlength=n + 1)
        centre_col = np.bincount(lab, weights=where % f.shape[2], minlength=n + 1) / np.maximum(sizes, 1)
        mid, third = 0.5 * (columns[0] + columns[-1]), (columns[-1] - columns[0]) / 3.0
        big = np.flatnonzero((sizes * voxel_ml >= MIN_FLUID_ML) & (np.abs(centre_col - mid) <= 0.5 * third))
        big = big[big > 0]  # label 0 is the background
        if big.size:
            values = f.ravel()[where]
            medians = [float(np.median(values[lab == k])) for k in big]
            k = int(np.argmax(medians))
            best, fluid_ml = medians[k], float(sizes[big[k]] * voxel_ml)
    if best is None:
        notes.append(f"no midline fluid compartment (bladder) of >= {MIN_FLUID_ML:g} ml: "
                     "values above muscle stay in muscle units")
    elif best < MIN_FLUID_LANDMARK:
        notes.append(f"brightest fluid compartment only {best:.2f} x muscle: fluid landmark not used")
    else:
        fluid = best
    return LandmarkScale(fat=fat, fluid=fluid, fat_voxels=fat_voxels, fluid_ml=fluid_ml, notes=tuple(notes))
