"""Small analytic test objects for tests/test_normalize_*.py (not a test module).

Tissues are defined by analytic shapes in patient coordinates (LPS, mm), so a
series on any grid, or moved by a known rigid transform, is sampled exactly
(no interpolation of a reference image: the truth does not depend on the code
under test).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

# label -> (T1-weighted, STIR) relative signal; fat bright on T1 and nulled on STIR, fluid the opposite.
TISSUES = {
    "background": (0, (0.0, 0.0)),
    "fat": (1, (1.0, 0.06)),
    "muscle": (2, (0.35, 0.30)),
    "marrow": (3, (0.90, 0.08)),
    "cortex": (4, (0.0, 0.0)),
    "fluid": (5, (0.12, 1.0)),
}


def make_grid(size=(96, 96, 20), spacing=(4.0, 4.0, 4.0), origin=None, direction=None) -> sitk.Image:
    """An empty float image (x, y, z sizes) centred on the patient origin unless ``origin`` is given."""
    img = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    img.SetSpacing([float(s) for s in spacing])
    if direction is not None:
        img.SetDirection([float(d) for d in direction])
    if origin is None:
        centre_index = [(n - 1) / 2 for n in size]
        d = np.array(img.GetDirection()).reshape(3, 3)
        origin = -(d @ (np.asarray(centre_index) * np.asarray(spacing)))
    img.SetOrigin([float(o) for o in origin])
    return img


def physical_points(grid: sitk.Image) -> np.ndarray:
    """Physical coordinates (mm) of every voxel, array shape (z, y, x, 3)."""
    nx, ny, nz = grid.GetSize()
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i, j, k], -1).astype(float)
    d = np.array(grid.GetDirection()).reshape(3, 3)
    return np.asarray(grid.GetOrigin()) + (idx * np.asarray(grid.GetSpacing())) @ d.T


def labels_at(p: np.ndarray) -> np.ndarray:
    """Tissue label at physical points ``p`` (..., 3) of a crude both-hip pelvis."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    lab = np.zeros(p.shape[:-1], np.uint8)
    lab[(x / 175) ** 2 + (y / 115) ** 2 + (z / 220) ** 2 < 1] = 1
    lab[(x / 150) ** 2 + (y / 92) ** 2 + (z / 200) ** 2 < 1] = 2
    for cx in (-90.0, 90.0):
        shaft = (np.hypot(x - cx * 1.1, y) < 16) & (z < 40)
        head = np.sqrt((x - cx) ** 2 + y**2 + (z - 40) ** 2) < 24
        bone = shaft | head
        lab[bone] = 4
        inner = ((np.hypot(x - cx * 1.1, y) < 12) & (z < 40)) | (np.sqrt((x - cx) ** 2 + y**2 + (z - 40) ** 2) < 21)
        lab[inner] = 3
    # Asymmetric features so that no rigid motion maps the object onto itself.
    lab[((x - 10) / 45) ** 2 + ((y + 35) / 30) ** 2 + ((z - 30) / 35) ** 2 < 1] = 5  # bladder, off-centre
    lab[((x + 40) / 25) ** 2 + ((y - 60) / 15) ** 2 + ((z + 60) / 20) ** 2 < 1] = 1  # fat pad, posterior right
    return lab


def contrast(labels: np.ndarray, which: str) -> np.ndarray:
    """Noise-free signal of ``which`` ("t1" or "stir") for a label array."""
    col = 0 if which == "t1" else 1
    lut = np.zeros(8, np.float32)
    for lab, values in TISSUES.values():
        lut[lab] = values[col]
    return lut[labels]


def smooth_bias(p: np.ndarray, peak_to_peak: float = 0.4, seed: int = 0) -> np.ndarray:
    """A smooth multiplicative field (low-order polynomial in log) with the given peak-to-peak ratio in the body."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=6)
    u, v, w = p[..., 0] / 175, p[..., 1] / 115, p[..., 2] / 150
    f = c[0] * u + c[1] * v + 0.5 * c[2] * w + 0.6 * c[3] * u**2 + 0.6 * c[4] * v**2 + 0.6 * c[5] * u * v
    body = labels_at(p) > 0
    f = f - f[body].mean()
    f *= np.log(1 + peak_to_peak) / np.ptp(f[body])
    return np.exp(f).astype(np.float32)


def rician(signal: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Magnitude of signal + complex Gaussian noise of SD ``sigma`` per channel (mr_physics.md section 4)."""
    rng = np.random.default_rng(seed)
    re = signal + rng.normal(0, sigma, signal.shape)
    im = rng.normal(0, sigma, signal.shape)
    return np.hypot(re, im).astype(np.float32)


def apply_rigid(transform: sitk.Transform, p: np.ndarray) -> np.ndarray:
    """Apply an Euler3D/affine-like transform to points (..., 3): R (p - c) + c + t."""
    r = np.array(transform.GetMatrix()).reshape(3, 3)
    c = np.asarray(transform.GetCenter())
    t = np.asarray(transform.GetTranslation())
    return (p - c) @ r.T + c + t


def series(grid: sitk.Image, which: str, *, transform: sitk.Transform | None = None, sigma: float = 0.0,
           bias: np.ndarray | None = None, seed: int = 0) -> sitk.Image:
    """Sample the object on ``grid``; with ``transform`` (grid point -> object point) the object appears moved."""
    p = physical_points(grid)
    if transform is not None:
        p = apply_rigid(transform, p)
    s = contrast(labels_at(p), which)
    if bias is not None:
        s = s * bias
    if sigma > 0:
        s = rician(s, sigma, seed)
    img = sitk.GetImageFromArray(s.astype(np.float32))
    img.CopyInformation(grid)
    return img


def residual_bias(true_field: np.ndarray, estimated: sitk.Image, region: np.ndarray) -> float:
    """Residual bias: CV in ``region`` of true / estimated field, i.e. of (corrected / bias-free) for the
    noise-free image, without blowing up where the bias-free signal is ~0 (cortex, nulled fat)."""
    r = (true_field / sitk.GetArrayFromImage(estimated))[region]
    return float(r.std() / r.mean())


CORONAL = (1, 0, 0, 0, 0, 1, 0, -1, 0)  # DICOM coronal: row direction +x, column direction -z, normal +y (LPS)


def volume(image: sitk.Image, kind: str = "t1", frame: str = "1.2.3.7"):
    """A bmepipe.io Volume around ``image`` with minimal metadata (sequence kind, frame of reference)."""
    from bmepipe.io.types import Volume, VolumeMeta

    meta = VolumeMeta(
        series_instance_uid=f"1.2.3.{len(kind)}", series_description=kind,
        sequence_class="t1" if kind == "t1" else "fluid_sensitive", sequence_kind=kind, sequence_reason="test",
        sequence_confidence=1.0, plane="coronal", frame_of_reference_uid=frame,
    )
    return Volume(image=image, meta=meta)


# --------------------------------------------------------------------------- bmepipe.phantom helpers
def phantom_image(series) -> sitk.Image:
    """A phantom SimulatedSeries as a SimpleITK image (LPS geometry from the phantom)."""
    g = series.geometry
    img = sitk.GetImageFromArray(np.asarray(series.signal, dtype=np.float32))
    img.SetSpacing([float(v) for v in g.spacing_mm])
    img.SetOrigin([float(v) for v in g.origin_lps_mm])
    img.SetDirection([float(v) for v in g.direction])
    return img


def phantom_tissue_masks(study) -> dict:
    """Voxels entirely of one tissue (and the body: >= half non-air) on the phantom's fluid grid.

    Rendered by the phantom itself with indicator "signals" (1 for the tissue's compartments, 0 for
    the rest), so the masks come from the anatomy, not from any image analysis.
    """
    from bmepipe.phantom.simulate import render
    from bmepipe.phantom.study import build_scene
    from bmepipe.phantom.tissues import COMPARTMENTS

    def vec(names):
        w = np.array([1.0 if c in names else 0.0 for c in COMPARTMENTS], np.float32)
        return w, w.copy()

    tissues = {
        "body": [c for c in COMPARTMENTS if c != "air"],
        "muscle": ["muscle"],
        "fat": ["fat"],
        "urine": ["urine"],
        "marrow": ["marrow_fat", "marrow_water", "edema"],
    }
    spec = study.spec
    r = render(build_scene(spec), study.geometry, spec.acquisition.slice_thickness_mm,
               [vec(n) for n in tissues.values()], supersample=spec.acquisition.supersample, truth=False)
    out = {}
    for i, name in enumerate(tissues):
        # marrow is rendered as water + fat parts (each tissue's indicator sums to its fraction)
        frac = r.water[i] + r.fat[i] if name == "marrow" else r.water[i]
        out[name] = frac >= (0.5 if name == "body" else 0.999)
    return out


def phantom_signal_ratios(study, series_name: str) -> dict:
    """Noise-free signal of muscle, fat and urine / muscle in one phantom series, from its own
    signal equations (bmepipe.phantom.tissues) and protocol: the physical truth of standardization."""
    from bmepipe.phantom.tissues import COMPARTMENTS, compartment_signals, sample_tissue_properties

    spec = study.spec
    acq = spec.acquisition
    # same draw as generate_study: SeedSequence([seed, 11]).spawn(2)[0] drives the tissue properties
    rng_props = np.random.default_rng(np.random.SeedSequence([spec.seed, 11]).spawn(2)[0])
    props = sample_tissue_properties(acq.field_strength_t, rng_props)
    p = study.get(series_name).protocol
    water, fat = compartment_signals(props, p.kind, p.repetition_time_ms, p.echo_time_ms, p.inversion_time_ms)
    total = {c: float(water[i] + fat[i]) for i, c in enumerate(COMPARTMENTS)}
    if p.kind.endswith("_fs"):
        eta = acq.fat_sat_efficiency  # at the isocentre; the test phantoms have no fall-off
        total["fat"] = float(water[COMPARTMENTS.index("fat")] + (1 - eta) * fat[COMPARTMENTS.index("fat")])
    return {t: total[t] / total["muscle"] for t in ("muscle", "fat", "urine")}
