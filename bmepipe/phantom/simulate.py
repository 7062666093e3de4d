"""Acquisition simulation: sampling the anatomy on a scanner grid, k-space, bias, noise.

How a series is made (fast enough for a 512 x 512 x 30 two-series study on one core):

1. The anatomy (:mod:`bmepipe.phantom.anatomy`) is painted on sub-sample points of
   the reconstructed (display) grid: ``si x sj`` in-plane (sample step <= 0.8 mm)
   and ``sk`` through the slice thickness (rectangular slice profile; the gap is
   not imaged). Each structure is evaluated only inside its bounding box.
2. Averaging the sub-samples gives per-voxel volume fractions of the tissue
   compartments (partial volume) and the truth masks (regions.md rules).
3. Each sequence's signal is the fraction-weighted sum of the compartments'
   signals (:mod:`bmepipe.phantom.tissues`), so STIR and T1 share one pass.
   Spectral fat saturation scales the fat part by ``1 - eta(r)``.
4. The object is multiplied by a smooth coil bias ``B(r)``, Fourier transformed,
   cut to the acquired matrix (the scanner's resolution, with its Gibbs ringing),
   complex Gaussian noise is added in that k-space window, and the zero-filled
   inverse transform is taken in magnitude (Rician statistics), as scanners
   interpolate to the display matrix.

SNR definition: ``snr = mean(B x S) over voxels that are entirely gluteal muscle (maximus,
medius, minimus) /
sigma``, with ``sigma`` the standard deviation of the real (and of the imaginary)
noise per displayed pixel. Gluteal muscle is intermediate on every sequence and
sits in homogeneous tissue, so the same definition holds for STIR, T1 and FS.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from bmepipe.errors import ConfigError

from .anatomy import (CODE_COMPARTMENT, F_EFFUSION, F_LINE, F_NECROSIS, FAT, GLUTEAL, MARROW, REGIONS,
                      SIDE_OFFSET, URINE, HipModel)
from .dicom_writer import Geometry
from .tissues import COMPARTMENTS

__all__ = ["AcquisitionSpec", "coronal_geometry", "axial_geometry", "Scene", "render", "acquire",
           "bias_field", "fat_sat_efficiency", "FLUID_KINDS"]

FLUID_KINDS = ("stir", "pd_fs", "t2_fs")
VENDORS = ("siemens", "ge", "philips")
STRUCTURES = REGIONS + ("bme", "necrosis", "subchondral_line", "effusion")


@dataclass(frozen=True)
class AcquisitionSpec:
    """Scanner and protocol settings of one phantom study.

    Parameters
    ----------
    field_strength_t : {1.5, 3.0}
    vendor : {'siemens', 'ge', 'philips'}
    fluid_kind : {'stir', 'pd_fs', 't2_fs'}
        The coronal fluid-sensitive series (the truth grid).
    fov_mm : float
        Square field of view of the coronal series (340-400 both hips).
    matrix : int
        Reconstructed (display) matrix, square.
    acquired_matrix : (int, int)
        Acquired ``(rows, columns)``: rows along the column direction (frequency,
        S-I on coronal images), columns along the rows (phase, R-L). At most ``matrix``.
    slice_thickness_mm, slice_gap_mm : float
    slices : int
    obliquity_deg : float
        Rotation of the coronal stack about the patient's S-I axis (coronal oblique).
    tilt_deg : float
        Rotation about the L-R axis.
    center_offset_lps_mm : 3 floats
        FOV centre relative to the midpoint of the femoral-head centres.
    snr, snr_t1 : float
        SNR of the fluid-sensitive and T1 series (see module notes); ``snr_t1``
        defaults to twice ``snr``.
    bias_amplitude : float
        Peak-to-peak amplitude of the multiplicative coil bias over the coronal
        fluid-sensitive series' volume (0.3 = +-15 %).
    fat_sat_efficiency : float
        Spectral fat saturation efficiency eta at the isocentre (FS series only;
        0.9-0.98 working, near 0 failed).
    fat_sat_falloff : float
        Fraction of eta lost at the FOV edge (inhomogeneous fat suppression).
    fat_sat_radius_mm : float
        Distance from the isocentre where eta starts to fall.
    stir_ti_ms : float, optional
        STIR inversion time; default nulls the phantom's fat.
    with_t1, with_axial, with_localizer : bool
        Coronal T1 series, axial fluid-sensitive series, 3-plane localizer.
    supersample : (int, int, int), optional
        Sub-samples per voxel (column, row, slice); default from the voxel size.
    noise_seed : int, optional
        Seed of the noise alone (default from the study seed), to draw
        independent noise realizations of the same object.
    """

    field_strength_t: float = 1.5
    vendor: str = "siemens"
    fluid_kind: str = "stir"
    fov_mm: float = 380.0
    matrix: int = 512
    acquired_matrix: tuple[int, int] = (256, 256)
    slice_thickness_mm: float = 4.0
    slice_gap_mm: float = 0.4
    slices: int = 30
    obliquity_deg: float = 0.0
    tilt_deg: float = 0.0
    center_offset_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    snr: float = 20.0
    snr_t1: float | None = None
    bias_amplitude: float = 0.3
    fat_sat_efficiency: float = 0.95
    fat_sat_falloff: float = 0.0
    fat_sat_radius_mm: float = 120.0
    stir_ti_ms: float | None = None
    with_t1: bool = True
    with_axial: bool = False
    with_localizer: bool = False
    supersample: tuple[int, int, int] | None = None
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        if self.fluid_kind not in FLUID_KINDS:
            raise ConfigError(f"fluid_kind must be one of {FLUID_KINDS}, got {self.fluid_kind!r}")
        if self.vendor not in VENDORS:
            raise ConfigError(f"vendor must be one of {VENDORS}, got {self.vendor!r}")
        if self.field_strength_t not in (1.5, 3.0):
            raise ConfigError("field_strength_t must be 1.5 or 3.0")
        rows, cols = self.acquired_matrix
        if not (8 <= rows <= self.matrix and 8 <= cols <= self.matrix):
            raise ConfigError("acquired_matrix must be between 8 and the display matrix")
        if self.slices < 1 or self.slice_thickness_mm <= 0 or self.slice_gap_mm < 0 or self.fov_mm <= 0:
            raise ConfigError("slices, slice_thickness_mm and fov_mm must be positive, slice_gap_mm >= 0")
        if self.snr <= 0 or (self.snr_t1 is not None and self.snr_t1 <= 0):
            raise ConfigError("snr must be positive")
        if not 0 <= self.bias_amplitude < 1.5 or not 0 <= self.fat_sat_efficiency <= 1 or not 0 <= self.fat_sat_falloff <= 1:
            raise ConfigError("bias_amplitude must be in [0, 1.5), fat-sat efficiency and falloff in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- geometry
def _rotation(obliquity_deg: float, tilt_deg: float) -> np.ndarray:
    a, b = math.radians(obliquity_deg), math.radians(tilt_deg)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
    rx = np.array([[1.0, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rz @ rx


def _stack_geometry(centre, row_dir, col_dir, matrix, fov_mm, slices, spacing_z, rot) -> Geometry:
    m = rot @ np.column_stack([row_dir, col_dir, np.cross(row_dir, col_dir)])
    step = fov_mm / matrix
    half = np.array([(matrix - 1) / 2 * step, (matrix - 1) / 2 * step, (slices - 1) / 2 * spacing_z])
    origin = np.asarray(centre, float) - m @ half
    return Geometry((matrix, matrix, slices), (step, step, spacing_z), tuple(origin), tuple(m.ravel()))


def coronal_geometry(acq: AcquisitionSpec, centre_lps_mm) -> Geometry:
    """Coronal stack (rows run R->L, columns H->F, slices anterior->posterior) centred on ``centre``."""
    return _stack_geometry(centre_lps_mm, [1.0, 0, 0], [0, 0, -1.0], acq.matrix, acq.fov_mm, acq.slices,
                           acq.slice_thickness_mm + acq.slice_gap_mm, _rotation(acq.obliquity_deg, acq.tilt_deg))


def axial_geometry(acq: AcquisitionSpec, centre_lps_mm) -> Geometry:
    """Axial stack through both hips (rows R->L, columns A->P, slices F->H)."""
    return _stack_geometry(centre_lps_mm, [1.0, 0, 0], [0, 1.0, 0], acq.matrix, acq.fov_mm, acq.slices,
                           acq.slice_thickness_mm + acq.slice_gap_mm, np.eye(3))


def default_supersample(geometry: Geometry, thickness_mm: float) -> tuple[int, int, int]:
    """Odd sub-sample counts (column, row, slice), so a "half inside" vote has no ties.

    In-plane 1 up to 1.6 mm pixels (the k-space window then sets the resolution),
    3 up to 2.4 mm, 5 beyond; through the slice one sample per 1.5 mm, at least 3.
    """
    si = _odd(geometry.spacing_mm[0] / 0.8, 1) if geometry.spacing_mm[0] > 1.6 else 1
    sj = _odd(geometry.spacing_mm[1] / 0.8, 1) if geometry.spacing_mm[1] > 1.6 else 1
    return si, sj, _odd(thickness_mm / 1.5, 3)


def _odd(v: float, lo: int) -> int:
    """The smallest odd integer >= max(v, lo)."""
    k = max(lo, math.ceil(v - 1e-6))
    return k if k % 2 else k + 1


# --------------------------------------------------------------------------- sample blocks
def _box_extent_mm(origin, r, c, n, slab, lo, hi):
    """Extent (mm from ``origin`` along the row and column directions ``r``, ``c``: a_min, a_max, b_min, b_max)
    of the LPS box [lo, hi]; None if the box misses the slab ``slab`` (mm from ``origin`` along ``n``)."""
    corners = np.array([[a, b, z] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    rel = corners - origin
    nrm = rel @ n
    if nrm.max() < slab[0] or nrm.min() > slab[1]:
        return None
    a, b = rel @ r, rel @ c
    return a.min(), a.max(), b.min(), b.max()


@dataclass
class _Block:
    """Sample points of one slice (views); ``sub`` gives the part inside an LPS box."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    code: np.ndarray
    ff: np.ndarray
    e: np.ndarray
    region: np.ndarray
    flags: np.ndarray
    inner: np.ndarray
    frame: dict = field(default_factory=dict)

    def sub(self, lo, hi):
        f = self.frame
        ext = _box_extent_mm(f["origin"], f["r"], f["c"], f["n"], (f["k_lo"], f["k_hi"]), lo, hi)
        if ext is None:
            return None
        a_min, a_max, b_min, b_max = ext
        i0 = max(0, int(math.floor((a_min / f["dx"] + 0.5) * f["si"] - 0.5)))
        i1 = min(f["ni"], int(math.ceil((a_max / f["dx"] + 0.5) * f["si"] - 0.5)) + 1)
        j0 = max(0, int(math.floor((b_min / f["dy"] + 0.5) * f["sj"] - 0.5)))
        j1 = min(f["nj"], int(math.ceil((b_max / f["dy"] + 0.5) * f["sj"] - 0.5)) + 1)
        if i1 <= i0 or j1 <= j0:
            return None
        s = (slice(None), slice(j0, j1), slice(i0, i1))
        return _Block(*(getattr(self, k)[s] for k in ("x", "y", "z", "code", "ff", "e", "region", "flags", "inner")), f)


# --------------------------------------------------------------------------- scene
class Scene:
    """Both hips, the pelvis, soft tissues and the bladder in LPS.

    Parameters
    ----------
    hips : list of HipModel
    midpoint_lps_mm : 3 floats
        Midpoint of the two head centres (pelvic midline).
    subcutaneous_fat_mm : float
    bladder_ml : float
    """

    def __init__(self, hips: list[HipModel], midpoint_lps_mm, subcutaneous_fat_mm: float, bladder_ml: float):
        self.hips = hips
        self.m = np.asarray(midpoint_lps_mm, float)
        self.fat_mm = float(subcutaneous_fat_mm)
        half_sep = 0.5 * abs(hips[0].c[0] - hips[1].c[0])
        self.trunk_a = min(half_sep + 72 + self.fat_mm, 186.0)
        self.trunk_b = 100.0 + 0.6 * self.fat_mm
        k = (bladder_ml * 1000.0 / (4.0 / 3.0 * math.pi * 1.3 * 0.9 * 1.0)) ** (1 / 3)
        self.bladder_semi = (1.3 * k, 0.9 * k, 1.0 * k)
        self.bladder_centre = self.m + np.array([0.0, -22.0, 8.0 + 0.3 * k])

    def body_sdf(self, x, y, z):
        X, Y, Z = x - np.float32(self.m[0]), y - np.float32(self.m[1] + 14), z - np.float32(self.m[2])
        e = (np.sqrt((X / self.trunk_a) ** 2 + (Y / self.trunk_b) ** 2) - 1.0) * self.trunk_b
        d = np.maximum(e, -78.0 - Z)
        for hip in self.hips:
            p0 = hip.to_lps(hip.x + np.array([8.0, 6.0, 0.0])).tolist()
            s = hip.dir_to_lps(hip.s).tolist()
            qx, qy, qz = x - np.float32(p0[0]), y - np.float32(p0[1]), z - np.float32(p0[2])
            h = qx * s[0] + qy * s[1] + qz * s[2]
            rho = np.sqrt(np.maximum(qx * qx + qy * qy + qz * qz - h * h, 0))
            thigh = np.maximum(rho - (70.0 + self.fat_mm), -(h + 60.0))
            h2 = np.clip(0.5 + 0.5 * (thigh - d) / 35.0, 0, 1)
            d = thigh + (d - thigh) * h2 - 35.0 * h2 * (1 - h2)
        return d

    def paint(self, blk: _Block) -> None:
        # The skin is smooth on the scale of a slice: evaluate it on the central sub-slice only.
        mid = blk.x.shape[0] // 2
        d = self.body_sdf(blk.x[mid:mid + 1], blk.y[mid:mid + 1], blk.z[mid:mid + 1])
        d = np.broadcast_to(d, blk.code.shape)
        blk.code[d < 0] = FAT
        blk.inner[...] = d < -self.fat_mm
        for hip in self.hips:
            hip.paint_muscles(blk)
        c, semi = self.bladder_centre, self.bladder_semi
        sub = blk.sub(c - np.array(semi), c + np.array(semi))
        c = c.tolist()
        if sub is not None:
            k = ((sub.x - c[0]) / semi[0]) ** 2 + ((sub.y - c[1]) / semi[1]) ** 2 + ((sub.z - c[2]) / semi[2]) ** 2
            sub.code[k < 1] = URINE
        for hip in self.hips:
            sub = blk.sub(*hip.local_box_to_lps(*hip.pelvis_box()))
            if sub is not None:
                hip.paint_pelvis(sub)
        for hip in self.hips:
            sub = blk.sub(*hip.local_box_to_lps(*hip.femur_box()))
            if sub is not None:
                hip.paint_effusion(sub)
                hip.paint_femur(sub)

    def sample_codes(self, points_lps: np.ndarray):
        """Tissue code, marrow fat fraction and edema at arbitrary points (N, 3) (e.g. a localizer)."""
        n = len(points_lps)
        p = np.asarray(points_lps, np.float32).T.reshape(3, 1, 1, n)
        arrays = [np.zeros((1, 1, n), t) for t in (np.uint8, np.float32, np.float32, np.uint8, np.uint8, bool)]
        blk = _Block(p[0], p[1], p[2], *arrays, frame={})
        blk.sub = lambda lo, hi: blk  # no bounding-box pruning for scattered points
        self.paint(blk)
        return blk.code.ravel(), blk.ff.ravel(), blk.e.ravel()


# --------------------------------------------------------------------------- rendering
_I_MFAT, _I_MWATER, _I_EDEMA = (COMPARTMENTS.index(n) for n in ("marrow_fat", "marrow_water", "edema"))


@dataclass
class Rendered:
    """Noise-free per-voxel results of one grid: per series water/fat signal, truth arrays."""

    water: list
    fat: list
    labels: dict
    edema_fraction: np.ndarray | None
    reference: np.ndarray  # voxels entirely gluteal muscle (SNR reference)


def _code_luts(signal_vectors):
    """Per sample-code signal (water, fat) of each series; marrow handled separately."""
    luts = []
    for water, fat in signal_vectors:
        lw, lf = np.zeros(256, np.float32), np.zeros(256, np.float32)
        for code, name in CODE_COMPARTMENT.items():
            ci = COMPARTMENTS.index(name)
            lw[code], lf[code] = water[ci], fat[ci]
        marrow = (float(fat[_I_MFAT]), float(water[_I_MWATER]), float(water[_I_EDEMA]))
        luts.append((lw, lf, marrow))
    return luts


#: Sub-sample spacing (mm) in-plane inside a hip's :meth:`~.anatomy.HipModel.thin_structure_box`: the
#: subchondral line is 0.8-2 mm thick, and sampled once per 1.8-3 mm pixel it vanished wherever it ran between
#: two sample rows (three of the 36 SIF hips of the small tuning suites kept no truth voxel of a 12-15 mm line).
THIN_SAMPLE_MM = 0.3


def _slice_block(geometry: Geometry, thickness_mm: float, k: int, sub: tuple, cols: tuple, rows: tuple) -> _Block:
    """Empty sample block of slice ``k``, voxel columns ``cols`` x rows ``rows`` (half-open), ``sub`` samples each."""
    si, sj, sk = sub
    dx, dy, dz = geometry.spacing_mm
    m = geometry.matrix
    r, c, n = m[:, 0], m[:, 1], m[:, 2]
    origin = np.asarray(geometry.origin_lps_mm) + cols[0] * dx * r + rows[0] * dy * c
    ni, nj = (cols[1] - cols[0]) * si, (rows[1] - rows[0]) * sj
    i_mm = ((np.arange(ni) + 0.5) / si - 0.5) * dx
    j_mm = ((np.arange(nj) + 0.5) / sj - 0.5) * dy
    k_off = ((np.arange(sk) + 0.5) / sk - 0.5) * thickness_mm
    base = origin + (k * dz + k_off)[:, None] * n  # (sk, 3)
    pts = [(base[:, a][:, None, None] + j_mm[None, :, None] * c[a] + i_mm[None, None, :] * r[a]).astype(np.float32)
           for a in range(3)]
    shp = (sk, nj, ni)
    return _Block(pts[0], pts[1], pts[2], np.zeros(shp, np.uint8), np.zeros(shp, np.float32),
                  np.zeros(shp, np.float32), np.zeros(shp, np.uint8), np.zeros(shp, np.uint8), np.zeros(shp, bool),
                  frame=dict(origin=origin, r=r, c=c, n=n, dx=dx, dy=dy, si=si, sj=sj, ni=ni, nj=nj,
                             k_lo=k * dz - thickness_mm / 2, k_hi=k * dz + thickness_mm / 2))


def _voxel_values(scene: Scene, blk: _Block, sub: tuple, luts: list, truth: bool) -> dict:
    """Paint ``blk`` and average its sub-samples per voxel: signals, truth masks and mean edema (2-D arrays)."""
    si, sj, sk = sub
    nsamp = si * sj * sk
    count_t = np.uint8 if nsamp <= 255 else np.uint16

    def vsum(a, dtype=count_t):
        """Sum over the sub-samples of each voxel -> (rows, cols) (strided adds: fast)."""
        x = a.sum(axis=0, dtype=dtype)
        if si > 1:
            x = sum(x[:, o::si] for o in range(si))
        if sj > 1:
            x = sum(x[o::sj, :] for o in range(sj))
        return x

    scene.paint(blk)
    code = blk.code
    mi = np.nonzero((code == MARROW).ravel())[0]
    ff, e = blk.ff.ravel()[mi], blk.e.ravel()[mi]
    out = {"water": [], "fat": []}
    for lw, lf, (s_mf, s_mw, s_ed) in luts:
        vw, vf = lw[code], lf[code]
        vw.ravel()[mi] = (1 - ff) * (1 - e) * s_mw + e * s_ed
        vf.ravel()[mi] = ff * (1 - e) * s_mf
        out["water"].append(vsum(vw, np.float32) / nsamp)
        out["fat"].append(vsum(vf, np.float32) / nsamp)
    out["reference"] = vsum(code == GLUTEAL) == nsamp
    if not truth:
        return out
    region, flags = blk.region, blk.flags
    left = blk.x > float(scene.m[0])
    is_marrow = code == MARROW
    labels = {}
    mean_e_total = 0.0
    for side, off in SIDE_OFFSET.items():
        for ri, name in enumerate(REGIONS, start=1):
            labels[f"{side}_{name}"] = 2 * vsum(region == off + ri).astype(np.int32) >= nsamp
        fem = is_marrow & (region >= off + 1) & (region <= off + 4)
        n_m = vsum(fem).astype(np.float32)
        e_sum = vsum(np.where(fem, blk.e, 0), np.float32)
        mean_e = np.where(n_m > 0, e_sum / np.maximum(n_m, 1), 0)
        labels[f"{side}_bme"] = (2 * n_m >= nsamp) & (mean_e >= 0.3)
        mean_e_total = mean_e_total + mean_e
        on_side = left if side == "left" else ~left
        for flag, name, need in ((F_NECROSIS, "necrosis", 0.5), (F_EFFUSION, "effusion", 0.5),
                                 (F_LINE, "subchondral_line", 0.25)):
            cnt = vsum(((flags & flag) > 0) & on_side).astype(np.float32)
            labels[f"{side}_{name}"] = cnt >= need * nsamp - 1e-6
    out["labels"], out["edema"] = labels, mean_e_total
    return out


def _voxel_window(geometry: Geometry, thickness_mm: float, k: int, lo, hi):
    """Columns and rows (half-open ranges) of slice ``k``'s voxels touching the LPS box [lo, hi]; None if none."""
    dx, dy, dz = geometry.spacing_mm
    m = geometry.matrix
    ext = _box_extent_mm(np.asarray(geometry.origin_lps_mm), m[:, 0], m[:, 1], m[:, 2],
                         (k * dz - thickness_mm / 2, k * dz + thickness_mm / 2), lo, hi)
    if ext is None:
        return None
    a_min, a_max, b_min, b_max = ext
    i0, i1 = max(0, math.floor(a_min / dx + 0.5)), min(geometry.size[0], math.floor(a_max / dx + 0.5) + 1)
    j0, j1 = max(0, math.floor(b_min / dy + 0.5)), min(geometry.size[1], math.floor(b_max / dy + 0.5) + 1)
    return ((i0, i1), (j0, j1)) if i1 > i0 and j1 > j0 else None


def render(scene: Scene, geometry: Geometry, thickness_mm: float, signal_vectors: list,
           supersample=None, truth: bool = True) -> Rendered:
    """Sample the scene on ``geometry`` and return per-series noise-free images and truth.

    Voxels in the box around a hip's subchondral line (:meth:`~.anatomy.HipModel.thin_structure_box`) are sampled
    at most ``THIN_SAMPLE_MM`` apart in-plane (never more coarsely than ``supersample``), every tissue in it, so the
    line and the tissue around its ends share one sampling; the box's edge, 2 mm beyond the line, is a small step in
    partial volume (cortex, cartilage). Through the slice the sampling is unchanged, so on a stack whose slices cut
    across the line (the axial series) it can still fall between sub-samples.

    Parameters
    ----------
    scene : Scene
    geometry : Geometry
    thickness_mm : float
        Slice thickness (sub-samples span it; the gap is not imaged).
    signal_vectors : list of (water, fat) arrays of shape (n_compartments,)
        Per-compartment signal of each series (:func:`tissues.compartment_signals`).
    supersample : (si, sj, sk), optional
    truth : bool
        Also compute the truth masks (only needed on the fluid-sensitive grid).
    """
    sub = supersample or default_supersample(geometry, thickness_mm)
    if sub[0] * sub[1] * sub[2] > 255:
        raise ConfigError("too many sub-samples per voxel (at most 255)")
    cols, rows, nsl = geometry.size
    dx, dy, _ = geometry.spacing_mm
    fine = (max(sub[0], _odd(dx / THIN_SAMPLE_MM, 1)), max(sub[1], _odd(dy / THIN_SAMPLE_MM, 1)), sub[2])
    boxes = [hip.local_box_to_lps(*b) for hip in scene.hips if (b := hip.thin_structure_box()) is not None]
    luts = _code_luts(signal_vectors)
    shape3 = (nsl, rows, cols)
    water = [np.zeros(shape3, np.float32) for _ in signal_vectors]
    fat = [np.zeros(shape3, np.float32) for _ in signal_vectors]
    reference = np.zeros(shape3, bool)
    labels = {f"{side}_{s}": np.zeros(shape3, bool) for side in ("right", "left") for s in STRUCTURES} if truth else {}
    edema = np.zeros(shape3, np.float32) if truth else None

    def store(k, v, win):
        sl = (k, slice(*win[1]), slice(*win[0]))
        for s in range(len(luts)):
            water[s][sl], fat[s][sl] = v["water"][s], v["fat"][s]
        reference[sl] = v["reference"]
        if truth:
            for name, mask in v["labels"].items():
                labels[name][sl] = mask
            edema[sl] = v["edema"]

    for k in range(nsl):
        whole = ((0, cols), (0, rows))
        store(k, _voxel_values(scene, _slice_block(geometry, thickness_mm, k, sub, *whole), sub, luts, truth), whole)
        for lo, hi in boxes:
            win = _voxel_window(geometry, thickness_mm, k, lo, hi)
            if win is not None:
                store(k, _voxel_values(scene, _slice_block(geometry, thickness_mm, k, fine, *win), fine, luts, truth),
                      win)
    return Rendered(water, fat, labels, edema, reference)


# --------------------------------------------------------------------------- scanner effects
def _voxel_centres(geometry: Geometry, k: int):
    cols, rows, _ = geometry.size
    dx, dy, dz = geometry.spacing_mm
    m = geometry.matrix
    o = np.asarray(geometry.origin_lps_mm) + k * dz * m[:, 2]
    jj, ii = np.meshgrid(np.arange(rows) * dy, np.arange(cols) * dx, indexing="ij")
    return [(o[a] + ii * m[a, 0] + jj * m[a, 1]).astype(np.float32) for a in range(3)]


def _bias_poly(x, y, z, centre, coef):
    centre = [float(v) for v in centre]
    X, Y, Z = (x - centre[0]) / 200.0, (y - centre[1]) / 200.0, (z - centre[2]) / 200.0
    terms = (X, Y, Z, X * X, Y * Y, Z * Z, X * Y, X * Z, Y * Z)
    out = np.zeros(np.shape(x), np.float32)
    for a, t in zip(coef, terms):
        out += np.float32(a) * t
    return out


def bias_field(geometry: Geometry, amplitude: float, coef: np.ndarray, centre, reference: Geometry | None = None) -> np.ndarray:
    """Smooth multiplicative coil bias ``1 + amplitude (g - mid) / (max g - min g)`` on ``geometry``.

    ``g`` is a quadratic polynomial in LPS with coefficients ``coef`` (9). Its
    range (max, min, mid) is taken over the volume of ``reference`` (default
    ``geometry``; the coronal fluid-sensitive grid in a study), so the field has
    exactly ``amplitude`` peak-to-peak there and every series of the study sees
    the same coil field.
    """
    ref_g = reference or geometry
    axes = [np.linspace(0, n - 1, min(n, 17)) for n in ref_g.size]
    ii, jj, kk = np.meshgrid(*axes, indexing="ij")
    pts = ref_g.index_to_lps(np.column_stack([ii.ravel(), jj.ravel(), kk.ravel()]))
    ref = _bias_poly(pts[:, 0], pts[:, 1], pts[:, 2], centre, coef)
    lo, hi = float(ref.min()), float(ref.max())
    mid, span = 0.5 * (lo + hi), max(hi - lo, 1e-9)
    out = np.empty(geometry.shape, np.float32)
    for k in range(geometry.size[2]):
        x, y, z = _voxel_centres(geometry, k)
        out[k] = 1.0 + amplitude * (_bias_poly(x, y, z, centre, coef) - mid) / span
    return out


def fat_sat_efficiency(geometry: Geometry, acq: AcquisitionSpec, isocentre) -> np.ndarray:
    """Spectral fat-saturation efficiency eta(r): ``eta0`` near the isocentre, falling towards the FOV edge."""
    out = np.empty(geometry.shape, np.float32)
    r0, r1 = acq.fat_sat_radius_mm, max(acq.fov_mm / 2 * 1.2, acq.fat_sat_radius_mm + 1)
    isocentre = [float(v) for v in isocentre]
    for k in range(geometry.size[2]):
        x, y, z = _voxel_centres(geometry, k)
        rho = np.sqrt((x - isocentre[0]) ** 2 + (y - isocentre[1]) ** 2 + (z - isocentre[2]) ** 2)
        drop = np.clip((rho - r0) / (r1 - r0), 0, 1) ** 2
        out[k] = acq.fat_sat_efficiency * (1 - acq.fat_sat_falloff * drop)
    return out


def _kept_frequencies(n: int, keep: int) -> np.ndarray:
    f = np.fft.fftfreq(n, 1.0 / n).astype(int)
    return np.nonzero((f >= -(keep // 2)) & (f < keep - keep // 2))[0]


def acquire(obj: np.ndarray, acquired_matrix, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Band-limit a noise-free object to the acquired matrix, add complex noise, zero-fill, magnitude.

    Parameters
    ----------
    obj : ndarray (slices, rows, columns)
        Noise-free signal (bias included) on the display grid.
    acquired_matrix : (rows, columns)
    sigma : float
        Noise SD of the real and imaginary parts per displayed pixel.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, float32
        Magnitude image (Rician noise).
    """
    from scipy import fft

    _, rows, cols = obj.shape
    kr, kc = _kept_frequencies(rows, acquired_matrix[0]), _kept_frequencies(cols, acquired_matrix[1])
    ix = np.ix_(kr, kc)
    n_window = len(kr) * len(kc)
    sigma_k = sigma * rows * cols / math.sqrt(n_window)  # numpy's ifft divides by rows*cols
    out = np.empty(obj.shape, np.float32)
    for k in range(obj.shape[0]):
        spec = fft.fft2(obj[k].astype(np.float32), workers=1)
        window = spec[ix]
        noise = rng.standard_normal((2, len(kr), len(kc)), dtype=np.float32) * np.float32(sigma_k)
        full = np.zeros((rows, cols), np.complex64)
        full[ix] = window + (noise[0] + 1j * noise[1])
        out[k] = np.abs(fft.ifft2(full, workers=1))
    return out
