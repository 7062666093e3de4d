"""Synthetic hip MRI studies: specification, generation, truth, writing and reading back.

Coordinates are LPS millimetres (patient right hip at negative x). Truth follows
``shared/reference/regions.md`` and lies on the coronal fluid-sensitive series'
grid. Output layout of :func:`write_study`::

    OUT/dicom/<NN>_<description>/...        DICOM series (NN = series number)
    OUT/truth/truth.json                    per-side truth and acquisition parameters
    OUT/truth/labels/<side>_<structure>.nii.gz
    OUT/truth/label_map.nii.gz              anatomy labels (LABEL_SCHEME)
    OUT/truth/edema_fraction.nii.gz         mean edema fraction e of the voxel's femoral marrow
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bmepipe.errors import ConfigError, InputError, OutputError

from .anatomy import PATTERNS, REGIONS, HipModel, HipSpec, hip_summary, lens_volume_mm3
from .dicom_writer import Geometry, SeriesProtocol, StudyInfo
from .simulate import (STRUCTURES, AcquisitionSpec, Scene, acquire, axial_geometry, bias_field, coronal_geometry,
                       fat_sat_efficiency, render)
from .tissues import compartment_signals, sample_tissue_properties, stir_null_inversion_time_ms

__all__ = [
    "PHANTOM_VERSION",
    "LABEL_SCHEME",
    "STRUCTURES",
    "PhantomSpec",
    "SimulatedSeries",
    "SyntheticStudy",
    "generate_study",
    "write_study",
    "load_truth",
    "make_suite",
]

PHANTOM_VERSION = "1.0"
SIDES = ("right", "left")
#: label_map.nii.gz values: 0 background, right 1..5, left 11..15 (REGIONS order).
LABEL_SCHEME = {"background": 0, **{f"right_{r}": i for i, r in enumerate(REGIONS, 1)},
                **{f"left_{r}": 10 + i for i, r in enumerate(REGIONS, 1)}}
_SYMMETRIC_FIELDS = ("head_radius_mm", "neck_radius_mm", "neck_length_mm", "neck_shaft_angle_deg", "anteversion_deg",
                     "shaft_radius_mm", "cortex_shaft_mm", "acetabular_inclination_deg", "acetabular_anteversion_deg",
                     "marrow_fat_fraction")
_SERIES_NUMBERS = {"localizer": 1, "cor_t1": 3, "cor_fluid": 4, "ax_fluid": 5}


@dataclass(frozen=True)
class PhantomSpec:
    """Everything that defines one synthetic study; the same spec gives the same study.

    Parameters
    ----------
    seed : int
        Drives tissue properties, textures, bias and (unless ``acquisition.noise_seed``) noise.
    right, left : HipSpec
    acquisition : AcquisitionSpec
    head_separation_mm : float
        Distance between the femoral-head centres (MRI plausibility 140-200; anatomy.md).
    subcutaneous_fat_mm : float
    bladder_ml : float
        Urine volume (bright on fluid-sensitive images: a deliberate confounder).
    midpoint_lps_mm : 3 floats
        Midpoint of the two head centres in scanner coordinates.
    """

    seed: int = 0
    right: HipSpec = field(default_factory=HipSpec)
    left: HipSpec = field(default_factory=HipSpec)
    acquisition: AcquisitionSpec = field(default_factory=AcquisitionSpec)
    head_separation_mm: float = 170.0
    subcutaneous_fat_mm: float = 22.0
    bladder_ml: float = 180.0
    midpoint_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if not 120 <= self.head_separation_mm <= 220:
            raise ConfigError("head_separation_mm must be 120-220")
        if not 5 <= self.subcutaneous_fat_mm <= 60 or not 0 < self.bladder_ml <= 800:
            raise ConfigError("subcutaneous_fat_mm must be 5-60 and bladder_ml 0-800")

    @classmethod
    def random(cls, seed: int, right: str = "normal", left: str = "normal",
               acquisition: AcquisitionSpec | None = None, **overrides) -> "PhantomSpec":
        """A plausible study with the given patterns; anatomy drawn from ``seed``."""
        rng = np.random.default_rng([seed, 1])
        right_spec = HipSpec.random(rng, right)
        # the two hips of one patient are nearly symmetric: left anatomy = right +- 3 %
        shared = {k: getattr(right_spec, k) * float(rng.uniform(0.97, 1.03)) for k in _SYMMETRIC_FIELDS}
        p = dict(
            seed=seed,
            right=right_spec,
            left=HipSpec.random(rng, left, **shared),
            acquisition=acquisition or AcquisitionSpec(),
            head_separation_mm=float(rng.uniform(155, 185)),
            subcutaneous_fat_mm=float(rng.uniform(12, 32)),
            bladder_ml=float(rng.uniform(60, 350)),
            midpoint_lps_mm=tuple(float(v) for v in rng.normal(0, [3.0, 5.0, 8.0])),
        )
        p.update(overrides)
        return cls(**p)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SimulatedSeries:
    """One simulated series: magnitude ``signal[slice, row, column]`` on ``geometry``."""

    name: str  # 'cor_fluid', 'cor_t1' or 'ax_fluid'
    signal: np.ndarray
    geometry: Geometry
    protocol: SeriesProtocol
    noise_sigma: float
    snr: float


@dataclass
class SyntheticStudy:
    """An in-memory phantom study.

    Attributes
    ----------
    spec : PhantomSpec
    series : list of SimulatedSeries
        The coronal fluid-sensitive series first (the truth grid).
    labels : dict of str -> ndarray of bool
        ``'<side>_<structure>'`` masks ``[slice, row, column]`` on the fluid grid.
    edema_fraction : ndarray of float32
        Mean edema fraction e of each voxel's femoral marrow (0 without marrow).
    bias_field : ndarray of float32
        The multiplicative bias applied to the fluid series.
    fat_sat_map : ndarray of float32 or None
        Fat-saturation efficiency on the fluid grid (FS series only).
    truth : dict
        The content of ``truth.json``.
    study_info : StudyInfo
    """

    spec: PhantomSpec
    series: list
    labels: dict
    edema_fraction: np.ndarray
    bias_field: np.ndarray
    fat_sat_map: np.ndarray | None
    truth: dict
    study_info: StudyInfo
    reference_mask: np.ndarray = None  # voxels entirely gluteal muscle (SNR reference)

    @property
    def fluid(self) -> SimulatedSeries:
        """The coronal fluid-sensitive series (truth grid)."""
        return self.series[0]

    @property
    def geometry(self) -> Geometry:
        return self.series[0].geometry

    @property
    def noise_sigma(self) -> float:
        return self.series[0].noise_sigma

    def get(self, name: str) -> SimulatedSeries:
        """Series by name ('cor_fluid', 'cor_t1', 'ax_fluid')."""
        for s in self.series:
            if s.name == name:
                return s
        raise KeyError(name)

    def label_map(self) -> np.ndarray:
        """Multi-label anatomy map (uint8, :data:`LABEL_SCHEME`)."""
        out = np.zeros(self.geometry.shape, np.uint8)
        for name, value in LABEL_SCHEME.items():
            if value:
                out[self.labels[name]] = value
        return out


# --------------------------------------------------------------------------- protocols
def _protocols(acq: AcquisitionSpec, props) -> dict:
    b0, hi = acq.field_strength_t, acq.field_strength_t > 2
    thick = acq.slice_thickness_mm
    rows_acq, cols_acq = acq.acquired_matrix
    common = dict(vendor=acq.vendor, field_strength_t=b0, slice_thickness_mm=thick,
                  acquisition_matrix=(rows_acq, cols_acq))
    kind = acq.fluid_kind
    if kind == "stir":
        tr = 5000.0 if hi else 4500.0
        # null the phantom's fat: mean T1 of subcutaneous and marrow fat (mr_physics.md section 3)
        t1_fat = 0.5 * (props.t1_ms["fat"] + props.t1_ms["marrow_fat"])
        ti = acq.stir_ti_ms or round(stir_null_inversion_time_ms(t1_fat, tr))
        fluid = dict(kind="stir", repetition_time_ms=tr, echo_time_ms=50.0 if hi else 45.0, inversion_time_ms=float(ti),
                     flip_angle_deg=150.0, echo_train_length=13)
    elif kind == "pd_fs":
        fluid = dict(kind="pd_fs", repetition_time_ms=3500.0 if hi else 3000.0, echo_time_ms=35.0,
                     inversion_time_ms=None, flip_angle_deg=150.0, echo_train_length=9)
    else:
        fluid = dict(kind="t2_fs", repetition_time_ms=4500.0 if hi else 4000.0, echo_time_ms=70.0,
                     inversion_time_ms=None, flip_angle_deg=150.0, echo_train_length=15)
    t1 = dict(kind="t1", repetition_time_ms=700.0 if hi else 550.0, echo_time_ms=10.0 if hi else 12.0,
              inversion_time_ms=None, flip_angle_deg=150.0, echo_train_length=3)
    out = {"cor_fluid": SeriesProtocol(series_number=_SERIES_NUMBERS["cor_fluid"], **fluid, **common)}
    if acq.with_t1:
        out["cor_t1"] = SeriesProtocol(series_number=_SERIES_NUMBERS["cor_t1"], **t1, **common)
    if acq.with_axial:
        out["ax_fluid"] = SeriesProtocol(series_number=_SERIES_NUMBERS["ax_fluid"], **fluid, **common)
    return out


def _signal_vectors(props, protocol: SeriesProtocol):
    return compartment_signals(props, protocol.kind, protocol.repetition_time_ms, protocol.echo_time_ms,
                               protocol.inversion_time_ms)


# --------------------------------------------------------------------------- generation
def _models(spec: PhantomSpec, rng_r, rng_l) -> list[HipModel]:
    m = np.asarray(spec.midpoint_lps_mm, float)
    half = np.array([spec.head_separation_mm / 2.0, 0.0, 0.0])
    return [HipModel(spec.right, "right", m - half, m[0], rng_r), HipModel(spec.left, "left", m + half, m[0], rng_l)]


def build_scene(spec: PhantomSpec) -> Scene:
    """The anatomical scene of ``spec`` (deterministic)."""
    ss = np.random.SeedSequence([spec.seed, 7])
    rng_r, rng_l = (np.random.default_rng(s) for s in ss.spawn(2))
    return Scene(_models(spec, rng_r, rng_l), spec.midpoint_lps_mm, spec.subcutaneous_fat_mm, spec.bladder_ml)


def generate_study(spec: PhantomSpec) -> SyntheticStudy:
    """Simulate a study in memory.

    Parameters
    ----------
    spec : PhantomSpec

    Returns
    -------
    SyntheticStudy
        Series (coronal fluid-sensitive first, coronal T1, optional axial
        fluid-sensitive), truth masks on the fluid grid, edema fraction, bias
        field, noise sigma and the truth dictionary.

    Examples
    --------
    >>> from bmepipe.phantom import PhantomSpec, AcquisitionSpec, generate_study
    >>> spec = PhantomSpec.random(3, right="toh", left="normal",
    ...                           acquisition=AcquisitionSpec(matrix=128, acquired_matrix=(128, 128), slices=12))
    >>> study = generate_study(spec)
    >>> study.fluid.signal.shape
    (12, 128, 128)
    """
    acq = spec.acquisition
    rng_props, rng_bias = (np.random.default_rng(s) for s in np.random.SeedSequence([spec.seed, 11]).spawn(2))
    noise_seed = acq.noise_seed if acq.noise_seed is not None else spec.seed
    props = sample_tissue_properties(acq.field_strength_t, rng_props)
    protocols = _protocols(acq, props)
    scene = build_scene(spec)
    centre = np.asarray(spec.midpoint_lps_mm, float) + np.asarray(acq.center_offset_lps_mm, float)
    bias_coef = rng_bias.normal(size=9)

    cor = coronal_geometry(acq, centre)
    cor_names = [n for n in ("cor_fluid", "cor_t1") if n in protocols]
    rendered = render(scene, cor, acq.slice_thickness_mm, [_signal_vectors(props, protocols[n]) for n in cor_names],
                      supersample=acq.supersample, truth=True)
    if not rendered.reference.any():
        raise ConfigError("the field of view does not contain the gluteal reference muscle (SNR is undefined)")
    bias = bias_field(cor, acq.bias_amplitude, bias_coef, centre)
    fs = acq.fluid_kind.endswith("_fs")
    eta = fat_sat_efficiency(cor, acq, centre) if fs else None

    series = []
    grids = {"cor_fluid": (cor, rendered, 0, bias, eta), "cor_t1": (cor, rendered, 1, bias, None)}
    if "ax_fluid" in protocols:
        ax = axial_geometry(acq, centre)
        ax_r = render(scene, ax, acq.slice_thickness_mm, [_signal_vectors(props, protocols["ax_fluid"])],
                      supersample=acq.supersample, truth=False)
        ax_bias = bias_field(ax, acq.bias_amplitude, bias_coef, centre, reference=cor)
        grids["ax_fluid"] = (ax, ax_r, 0, ax_bias, fat_sat_efficiency(ax, acq, centre) if fs else None)
    for i, name in enumerate(protocols):
        geom, rend, idx, b, eta_map = grids[name]
        fat_part = rend.fat[idx] if eta_map is None else rend.fat[idx] * (1.0 - eta_map)
        obj = (rend.water[idx] + fat_part) * b
        snr = acq.snr if name != "cor_t1" else (acq.snr_t1 or 2.0 * acq.snr)
        ref = rend.reference
        if not ref.any():
            raise ConfigError(f"series {name}: no voxel is entirely gluteal muscle (SNR is undefined)")
        sigma = float(obj[ref].mean()) / snr
        rng = np.random.default_rng([noise_seed, 97, i])
        series.append(SimulatedSeries(name, acquire(obj, acq.acquired_matrix, sigma, rng), geom, protocols[name],
                                      sigma, float(snr)))
    study = SyntheticStudy(spec=spec, series=series, labels=rendered.labels, edema_fraction=rendered.edema_fraction,
                           bias_field=bias, fat_sat_map=eta, truth={}, study_info=StudyInfo.from_seed(spec.seed),
                           reference_mask=rendered.reference)
    study.truth = _truth(study, scene, props)
    return study


# --------------------------------------------------------------------------- truth
def _arc_angles(model: HipModel, inside, plane: str, n: int = 3600):
    """Angles (deg, from superior towards lateral or anterior) of head-surface points where ``inside``."""
    phi = np.linspace(-np.pi, np.pi, n, endpoint=False)
    q = np.zeros((n, 3))
    q[:, 2] = np.cos(phi)
    q[:, 0 if plane == "coronal" else 1] = np.sin(phi) * (1 if plane == "coronal" else -1)  # anterior = -v
    return np.degrees(phi), inside(q)


def _necrosis_truth(model: HipModel, vox_ml: float, head_ml: float, mask: np.ndarray) -> dict:
    sp = model.spec
    if model.lens_d is None:
        return {"present": False, "extent_pct": 0.0, "volume_ml": 0.0}
    R, D, a = model.R, model.lens_d, model.a

    def inside(q):
        p = R * q
        return (np.linalg.norm(p - D * a, axis=1) < R) & (p @ model.n < model.d1)

    angles = {}
    for plane in ("coronal", "sagittal"):
        phi, ins = _arc_angles(model, inside, plane)
        angles[plane] = float(ins.sum() * 360.0 / len(phi))
    # JIC type on the mid-coronal plane: weight-bearing portion from 45 deg medial (regions.md cone)
    # to the lateral acetabular edge; thirds from medial (Sugano et al. 2002, clinical.md).
    phi, ins = _arc_angles(model, inside, "coronal")
    qc = np.column_stack([np.sin(np.radians(phi)), np.zeros_like(phi), np.cos(np.radians(phi))])
    covered = (qc @ model.o) < 0
    edge = float(phi[(np.abs(phi) < 90) & covered].max())
    wb = (phi >= -45) & (phi <= edge)
    jic = None
    if (ins & wb).any():
        lat_end = float(phi[ins & (np.abs(phi) < 90)].max())
        third = (edge + 45.0) / 3.0
        jic = "A" if lat_end <= -45 + third else "B" if lat_end <= -45 + 2 * third else "C1" if lat_end <= edge else "C2"
    analytic_ml = lens_volume_mm3(R, D) / 1000.0
    vol = float(mask.sum()) * vox_ml
    return {
        "present": True,
        "extent_pct": round(100.0 * vol / head_ml, 3) if head_ml > 0 else 0.0,
        "volume_ml": round(vol, 4),
        "extent_pct_analytic": round(sp.necrosis_extent_pct, 3),
        "volume_ml_analytic": round(analytic_ml, 4),
        "segment_axis_lps": [round(float(x), 6) for x in model.dir_to_lps(a)],
        "lens_distance_mm": round(D, 4),
        "content": sp.necrosis_content,
        "band_thickness_mm": sp.band_thickness_mm,
        "rim_thickness_mm": sp.rim_thickness_mm,
        "jic_type": jic,
        "acetabular_edge_angle_deg": round(edge, 2),
        "kerboul_angle_deg": {"coronal": round(angles["coronal"], 2), "sagittal": round(angles["sagittal"], 2),
                              "combined": round(angles["coronal"] + angles["sagittal"], 2)},
    }


def _collapse_truth(model: HipModel) -> float:
    if model.spec.collapse_mm <= 0:
        return 0.0
    th, ph = np.meshgrid(np.radians(np.linspace(0, 45, 91)), np.radians(np.linspace(0, 360, 361)), indexing="ij")
    q = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], axis=-1)
    return float(model.collapse_depth(q).max())


def _line_truth(model: HipModel) -> dict:
    sp = model.spec
    if sp.line_length_mm <= 0:
        return {"present": False, "length_mm": 0.0, "thickness_mm": 0.0}
    # centre curve on the mid-coronal plane: the footprint's lateral arc (b lies in that plane)
    th = np.linspace(-model.line_half_angle, model.line_half_angle, 4001)
    r = model.line_radius(th)
    if sp.collapse_mm > 0:
        q = np.cos(th)[:, None] * model.b + np.sin(th)[:, None] * model.e1
        r = r - model.collapse_depth(q)
    x, y = r * np.cos(th), r * np.sin(th)
    length = float(np.sum(np.hypot(np.diff(x), np.diff(y))))
    return {"present": True, "length_mm": round(length, 3), "thickness_mm": round(sp.line_thickness_mm, 3),
            "depth_mm": round(sp.line_depth_mm, 3), "length_mm_nominal": round(sp.line_length_mm, 3),
            "centre_axis_lps": [round(float(x), 6) for x in model.dir_to_lps(model.b)],
            "shape": "parallel to the articular surface (convex towards it)"}


def _truth(study: SyntheticStudy, scene: Scene, props) -> dict:
    spec, acq, g = study.spec, study.spec.acquisition, study.geometry
    vox_ml = float(np.prod(g.spacing_mm)) / 1000.0
    sides = {}
    for model in scene.hips:
        side = model.side
        lab = {s: study.labels[f"{side}_{s}"] for s in STRUCTURES}
        regions = {r: {"volume_ml": round(float(lab[r].sum()) * vox_ml, 4)} for r in REGIONS}
        bme = lab["bme"]
        head_ml = regions["femoral_head"]["volume_ml"]
        d = hip_summary(model)
        collapse = _collapse_truth(model)
        d.update(
            regions=regions,
            bme={"volume_ml": round(float(bme.sum()) * vox_ml, 4),
                 "fraction": {r: round(float((bme & lab[r]).sum()) / max(int(lab[r].sum()), 1), 4) for r in REGIONS},
                 "peak_edema_fraction": model.spec.bme_peak, "extent": model.spec.bme_extent if model.spec.bme_peak > 0 else None,
                 "margin_mm": model.spec.bme_margin_mm, "medial_sparing": model.spec.bme_medial_sparing,
                 "threshold_edema_fraction": 0.3},
            necrosis=_necrosis_truth(model, vox_ml, head_ml, lab["necrosis"]),
            collapse_mm=round(collapse, 3),
            subchondral_line=_line_truth(model),
            effusion_ml=round(float(lab["effusion"].sum()) * vox_ml, 4),
            effusion_ml_requested=model.spec.effusion_ml,
        )
        if d["necrosis"]["present"]:
            # ARCO 2019 (clinical.md): III = subchondral fracture/collapse, IIIA <= 2 mm, IIIB > 2 mm;
            # a precollapse segment is I-II (the radiograph, which separates I from II, is not simulated).
            d["necrosis"]["arco_stage"] = "I-II" if collapse <= 0 else ("IIIA" if collapse <= 2.0 else "IIIB")
        sides[side] = d
    series = []
    for s in study.series:
        p = s.protocol
        series.append({
            "name": s.name, "kind": p.kind, "series_number": p.series_number,
            "plane": "axial" if s.name.startswith("ax") else "coronal",
            "repetition_time_ms": p.repetition_time_ms, "echo_time_ms": p.echo_time_ms,
            "inversion_time_ms": p.inversion_time_ms, "flip_angle_deg": p.flip_angle_deg,
            "echo_train_length": p.echo_train_length, "slice_thickness_mm": p.slice_thickness_mm,
            "size": list(s.geometry.size), "spacing_mm": list(s.geometry.spacing_mm),
            "origin_lps_mm": list(s.geometry.origin_lps_mm), "direction": list(s.geometry.direction),
            "snr": s.snr, "noise_sigma": s.noise_sigma, "snr_reference": "gluteal muscles (voxels entirely muscle)",
        })
    acq_d = acq.to_dict()
    acq_d.update(seed=spec.seed, noise_seed=acq.noise_seed if acq.noise_seed is not None else spec.seed, series=series,
                 snr_definition="mean biased noise-free signal of the reference tissue / sigma of the real noise per pixel",
                 bias_definition="peak-to-peak of the multiplicative field over the coronal fluid-sensitive volume")
    return {
        "phantom_version": PHANTOM_VERSION,
        "coordinate_system": "LPS, mm (patient right = negative x)",
        "seed": spec.seed,
        "grid": {"size": list(g.size), "spacing_mm": list(g.spacing_mm), "origin_lps_mm": list(g.origin_lps_mm),
                 "direction": list(g.direction), "series": "cor_fluid"},
        "label_scheme": LABEL_SCHEME,
        "label_files": [f"labels/{side}_{s}.nii.gz" for side in SIDES for s in STRUCTURES],
        "truth_rules": "regions.md: masks >= 1/2 voxel (line >= 1/4); BME = >= 1/2 femoral marrow with mean e >= 0.3",
        "sides": sides,
        "acquisition": acq_d,
        "body": {"head_separation_mm": spec.head_separation_mm, "subcutaneous_fat_mm": spec.subcutaneous_fat_mm,
                 "bladder_ml": spec.bladder_ml, "midpoint_lps_mm": list(spec.midpoint_lps_mm)},
        "tissues": props.as_dict(),
    }


# --------------------------------------------------------------------------- writing / reading
def _sitk_image(array: np.ndarray, geometry: Geometry):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing(geometry.spacing_mm)
    img.SetOrigin(geometry.origin_lps_mm)
    img.SetDirection(geometry.direction)
    return img


def _localizer_image(study: SyntheticStudy):
    """A GRE-like localizer signal from the anatomy (T1-ish contrast) at arbitrary points."""
    from .anatomy import CARTILAGE, CORTEX, FAT, FIBROUS, FLOW_VOID, FLUID, GLUTEAL, GRANULATION, MARROW, MUSCLE, URINE

    scene = build_scene(study.spec)
    lut = np.zeros(256, np.float32)
    for code, value in ((FAT, 1.0), (MUSCLE, 0.45), (GLUTEAL, 0.45), (URINE, 0.35), (CORTEX, 0.02), (CARTILAGE, 0.5),
                        (FLUID, 0.4), (FIBROUS, 0.1), (GRANULATION, 0.4), (FLOW_VOID, 0.6)):
        lut[code] = value
    rng = np.random.default_rng([study.spec.seed, 5])

    def image(points):
        code, ff, e = scene.sample_codes(points)
        v = lut[code]
        v = np.where(code == MARROW, 0.4 + 0.55 * ff * (1 - e), v)
        return v + 0.02 * np.abs(rng.standard_normal(len(v)) + 1j * rng.standard_normal(len(v)))

    return image


def write_study(study: SyntheticStudy, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write DICOM series and truth files (layout in the module docstring), atomically.

    Everything is written into a temporary folder next to ``out_dir`` and
    renamed at the end, so ``out_dir`` is either absent or complete.

    Parameters
    ----------
    study : SyntheticStudy
    out_dir : path
    overwrite : bool
        Replace an existing ``out_dir``; otherwise an existing non-empty folder is an error.

    Returns
    -------
    Path
        ``out_dir``.
    """
    import SimpleITK as sitk
    from pydicom import dcmread

    from bmepipe.io.atomic import atomic_write_text
    from bmepipe.privacy import safe_filename

    from .dicom_writer import write_localizer, write_mr_series

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputError("output folder exists and is not empty (use overwrite)", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        dicom = tmp / "dicom"
        acq = study.spec.acquisition
        for s in study.series:
            folder = dicom / f"{s.protocol.series_number:02d}_series"
            files = write_mr_series(s.signal, s.geometry, s.protocol, study.study_info, folder, uid_seed=study.spec.seed)
            desc = str(dcmread(files[0], stop_before_pixels=True).SeriesDescription)
            folder.rename(dicom / f"{s.protocol.series_number:02d}_{safe_filename(desc)}")
        if acq.with_localizer:
            folder = dicom / "01_series"
            files = write_localizer(np.asarray(study.spec.midpoint_lps_mm), study.study_info, folder, vendor=acq.vendor,
                                    series_number=_SERIES_NUMBERS["localizer"], fov_mm=450.0, matrix=256,
                                    uid_seed=study.spec.seed, image=_localizer_image(study),
                                    field_strength_t=acq.field_strength_t)
            desc = str(dcmread(files[0], stop_before_pixels=True).SeriesDescription)
            folder.rename(dicom / f"01_{safe_filename(desc)}")
        truth_dir = tmp / "truth"
        (truth_dir / "labels").mkdir(parents=True)
        g = study.geometry
        for name, mask in study.labels.items():
            sitk.WriteImage(_sitk_image(mask.astype(np.uint8), g), str(truth_dir / "labels" / f"{name}.nii.gz"), True)
        sitk.WriteImage(_sitk_image(study.label_map(), g), str(truth_dir / "label_map.nii.gz"), True)
        sitk.WriteImage(_sitk_image(study.edema_fraction.astype(np.float32), g), str(truth_dir / "edema_fraction.nii.gz"), True)
        atomic_write_text(truth_dir / "truth.json", json.dumps(study.truth, indent=1, default=_json_default) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write phantom study ({exc.strerror or exc})", out) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def load_truth(study_dir: str | os.PathLike, *, images: bool = False):
    """Read a phantom study's truth back.

    Parameters
    ----------
    study_dir : path
        A folder written by :func:`write_study` (or its ``truth`` subfolder).
    images : bool
        Return SimpleITK images instead of arrays.

    Returns
    -------
    truth : dict
        ``truth.json``.
    masks : dict
        ``'<side>_<structure>'`` -> bool array ``[slice, row, column]`` (or image),
        plus ``'label_map'`` (uint8) and ``'edema_fraction'`` (float32).
    """
    import SimpleITK as sitk

    root = Path(study_dir)
    tdir = root / "truth" if (root / "truth").is_dir() else root
    path = tdir / "truth.json"
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no truth/truth.json: not a phantom study folder", root) from None
    except (ValueError, OSError) as exc:
        raise InputError(f"unreadable truth.json ({exc})", path) from None
    masks = {}
    files = {f"{side}_{s}": tdir / "labels" / f"{side}_{s}.nii.gz" for side in SIDES for s in STRUCTURES}
    files.update(label_map=tdir / "label_map.nii.gz", edema_fraction=tdir / "edema_fraction.nii.gz")
    for name, f in files.items():
        if not f.is_file():
            raise InputError(f"missing truth file {f.name}", f)
        img = sitk.ReadImage(str(f))
        if images:
            masks[name] = img
        else:
            arr = sitk.GetArrayFromImage(img)
            masks[name] = arr.astype(bool) if name not in ("label_map", "edema_fraction") else arr
    return truth, masks


# --------------------------------------------------------------------------- suites
def make_suite(n_cases: int, seed: int = 0, *, small: bool = False) -> list[PhantomSpec]:
    """A balanced set of study specs: every pattern on each side, varied acquisitions.

    Case ``i`` gets right pattern ``PATTERNS[i % 4]`` and left pattern
    ``PATTERNS[(i + 1 + i // 4) % 4]``, so each block of 4 cases (0-3, 4-7, ...) shows every
    pattern on each side; SNR (8-40), bias (0-0.5), field strength, vendor, fluid kind,
    resolution and obliquity (0-10 degrees) are drawn per case.

    Parameters
    ----------
    n_cases : int
    seed : int
    small : bool
        Use small matrices, fewer slices and centre-point in-plane sampling (fast CI suites).
    """
    if n_cases < 1:
        raise ConfigError("n_cases must be >= 1")
    rng = np.random.default_rng([seed, 2024])
    specs = []
    for i in range(n_cases):
        right, left = PATTERNS[i % 4], PATTERNS[(i + 1 + i // 4) % 4]
        field_t = (1.5, 3.0)[i % 2]
        fluid = ("stir", "stir", "pd_fs", "t2_fs")[int(rng.integers(4))]
        if small:
            matrix = int(rng.choice([128, 160, 192]))
            slices = int(rng.integers(14, 19))
        else:
            matrix = int(rng.choice([256, 320, 384, 512]))
            slices = int(rng.integers(24, 33))
        acq_rows = int(min(matrix, round(matrix * rng.uniform(0.5, 1.0) / 16) * 16 or 16))
        acq_cols = int(min(acq_rows, round(acq_rows * rng.uniform(0.75, 1.0) / 16) * 16 or 16))
        acq = AcquisitionSpec(
            field_strength_t=field_t, vendor=("siemens", "ge", "philips")[i % 3], fluid_kind=fluid,
            fov_mm=float(rng.uniform(340, 400)), matrix=matrix, acquired_matrix=(acq_rows, acq_cols),
            slice_thickness_mm=float(rng.choice([3.0, 3.5, 4.0, 5.0])), slice_gap_mm=float(rng.uniform(0.3, 1.0)),
            slices=slices, obliquity_deg=float(rng.uniform(-10, 10)) if rng.random() < 0.5 else 0.0,
            tilt_deg=float(rng.uniform(-4, 4)) if rng.random() < 0.3 else 0.0,
            center_offset_lps_mm=tuple(float(v) for v in rng.normal(0, [5, 4, 8])),
            snr=float(rng.uniform(8, 40)), bias_amplitude=float(rng.uniform(0, 0.5)),
            fat_sat_efficiency=float(rng.uniform(0.85, 0.98)) if rng.random() < 0.8 else float(rng.uniform(0.2, 0.6)),
            fat_sat_falloff=float(rng.uniform(0, 0.6)), with_axial=bool(rng.random() < 0.25),
            with_localizer=bool(rng.random() < 0.4), supersample=(1, 1, 3) if small else None,
        )
        specs.append(PhantomSpec.random(int(seed) * 1000 + i, right=right, left=left, acquisition=acq))
    return specs
