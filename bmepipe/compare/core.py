"""Follow-up comparison of two studies of the same patient, per hip."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from bmepipe._threads import map_in_threads, single_threaded_blas
from bmepipe.errors import DifferentPatientError, FollowupOrderError, InputError

__all__ = ["CompareResult", "CompareParams", "StudyOutputs", "compare", "compare_outputs", "trajectory",
           "study_identity", "check_pair",
           "COMPARE_SCHEMA_VERSION", "COMPARE_KIND"]

COMPARE_SCHEMA_VERSION = "1.1.0"
#: Value of the ``kind`` field that tells a compare.json from a report.json.
COMPARE_KIND = "bmepipe-compare"
SIDES = ("right", "left")
CHANGE_MAPS = ("resolved", "persisted", "new")
#: Follow-up pattern labels under which a new or grown subchondral line counts as progression. Not ``avn_like``:
#: there the line measure also reads the necrotic segment's low-signal border, and on 36 development hips
#: (phantom pairs, seeds 7701-7718) it "grew" by 6-10 mm on two of six stable AVN hips, which were then called
#: progressing. An AVN's subchondral fracture is still progression when the surface collapses (collapse rule).
LINE_PATTERNS = ("sif_like",)


@dataclass(frozen=True)
class CompareParams:
    """Thresholds of the trajectory statement (all approximate, project choices, not from the literature).

    Parameters
    ----------
    min_bme_ml : float
        BME below this volume counts as none (so ``new`` means none then, some now). 2 ml: issue 11 states
        the pipeline's BME volume accuracy (change within 15 %) only above 2 ml; smaller volumes are not
        measured reliably enough to call new or resolving edema.
    relative_change : float
        Relative BME change beyond which BME counts as shrinking or growing (0.3 = 30 %).
    collapse_increase_mm : float
        Deepening of the articular collapse that counts as progression (1-2 mm separates stages in
        ARCO 2019 [approx]).
    line_increase_mm : float
        Lengthening of the subchondral line that counts as grown.
    """

    min_bme_ml: float = 2.0
    relative_change: float = 0.3
    collapse_increase_mm: float = 1.0
    line_increase_mm: float = 3.0


@dataclass
class CompareResult:
    """What :func:`compare` produced.

    Attributes
    ----------
    report : dict
        The content of ``compare.json``.
    maps : dict
        ``{side: {'resolved'|'persisted'|'new': bool ndarray}}`` on the baseline fluid-sensitive grid.
    baseline, followup : AnalysisResult
    transforms : dict
        ``{side: SimpleITK.Euler3DTransform}`` mapping baseline points to follow-up points.
    reference : SimpleITK.Image, optional
        The baseline grid when there is no baseline analysis (:func:`compare_outputs`).
    outputs : dict of str -> Path
    """

    report: dict
    maps: dict
    baseline: Any = None
    followup: Any = None
    transforms: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    reference: Any = None

    @property
    def grid(self):
        """SimpleITK image whose grid the change maps are on (the baseline fluid-sensitive grid)."""
        return self.reference if self.reference is not None else self.baseline.normalized.fluid

    @property
    def sides(self) -> dict:
        return self.report["sides"]


def study_identity(study) -> dict:
    """Patient identity and study date from the fluid-sensitive (else first) series' first file.

    Returned values are for comparison only: never log or print them.
    """
    import pydicom

    volumes = list(getattr(study, "volumes", ()))
    if not volumes:
        raise InputError("no image series to identify the patient", getattr(study, "root", None))
    files = [f for v in volumes for f in v.meta.source_files[:1]]
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    get = lambda k: str(ds.get(k, "") or "").strip()  # noqa: E731
    return {"patient_id": get("PatientID"), "patient_name": get("PatientName"),
            "birth_date": get("PatientBirthDate"), "study_date": get("StudyDate"), "file": files[0]}


def check_pair(a: dict, b: dict, *, force: bool = False, path=None) -> Optional[int]:
    """Refuse different patients (unless ``force``) and a follow-up older than the baseline.

    Returns the interval in days (None when a StudyDate is missing).
    """
    if not force:
        for key, what in (("patient_id", "PatientID"), ("patient_name", "PatientName"),
                          ("birth_date", "PatientBirthDate")):
            if a[key] and b[key] and a[key] != b[key]:
                raise DifferentPatientError(f"baseline and follow-up differ in {what}: not the same patient "
                                            "(use --force to compare anyway)", path)
    try:
        d0 = _dt.datetime.strptime(a["study_date"], "%Y%m%d")
        d1 = _dt.datetime.strptime(b["study_date"], "%Y%m%d")
    except ValueError:
        return None
    if d1 < d0:
        raise FollowupOrderError("the follow-up StudyDate is earlier than the baseline's", path)
    return (d1 - d0).days


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def _diff(then, now):
    if then is None or now is None:
        return None
    return float(now) - float(then)


def trajectory(side: dict, params: CompareParams = CompareParams()) -> tuple[str, list]:
    """Trajectory label (``resolving``, ``stable``, ``progressing``, ``new``) of one side and the evidence.

    ``side`` holds ``bme.volume_ml``, ``avn.collapse_mm``, ``avn.necrotic_extent_pct`` and
    ``sif.line_length_mm`` as ``{'then', 'now'}`` pairs, and optionally ``avn.surface_deepening_mm``
    (the collapse change measured on the registered pair, :func:`~bmepipe.compare.registration.surface_deepening_mm`),
    which replaces the difference of the two independent collapse measurements when present.

    Rules, in order: a side with BME below ``min_bme_ml`` then and above it now, and no structural progression,
    is ``new``; collapse deepened by ``collapse_increase_mm``, a necrotic segment appeared, the subchondral line
    appeared or grew by ``line_increase_mm``, or BME grew by ``relative_change`` is ``progressing``; BME shrank by
    ``relative_change`` is ``resolving``; anything else is ``stable``. A line counts only when the follow-up's
    pattern label is in :data:`LINE_PATTERNS` (it is listed in the evidence either way).
    """
    ev = []
    v0, v1 = side["bme"]["volume_ml"]["then"] or 0.0, side["bme"]["volume_ml"]["now"] or 0.0
    c0, c1 = side["avn"]["collapse_mm"]["then"] or 0.0, side["avn"]["collapse_mm"]["now"] or 0.0
    deepening = side["avn"].get("surface_deepening_mm")
    n0, n1 = side["avn"]["necrotic_extent_pct"]["then"] or 0.0, side["avn"]["necrotic_extent_pct"]["now"] or 0.0
    l0, l1 = side["sif"]["line_length_mm"]["then"] or 0.0, side["sif"]["line_length_mm"]["now"] or 0.0
    rel = (v1 - v0) / v0 if v0 >= params.min_bme_ml else None
    progress = []
    if deepening is not None:
        # measured on the registered pair against the baseline head sphere (see surface_deepening_mm)
        ev.append({"feature": "surface_deepening_mm", "then": 0.0, "now": deepening,
                   "threshold": f"+{params.collapse_increase_mm}"})
        if deepening >= params.collapse_increase_mm:
            progress.append("collapse deepened")
    elif c1 - c0 >= params.collapse_increase_mm:
        progress.append("collapse deepened")
        ev.append({"feature": "collapse_mm", "then": c0, "now": c1, "threshold": f"+{params.collapse_increase_mm}"})
    if n0 == 0 and n1 > 0:
        progress.append("new necrotic segment")
        ev.append({"feature": "necrotic_extent_pct", "then": n0, "now": n1, "threshold": "> 0"})
    if l1 - l0 >= params.line_increase_mm:
        # a line counts where the follow-up's pattern assessment takes it as a finding (fracture line of SIF);
        # next to diffuse edema (toh_like) or a necrotic segment's border (avn_like) it is not evidence of it
        credible = (_get(side, "pattern", "now") or "") in LINE_PATTERNS
        if credible:
            progress.append("subchondral line new or grown")
        ev.append({"feature": "line_length_mm", "then": l0, "now": l1,
                   "threshold": f"+{params.line_increase_mm}" + ("" if credible else
                                                                  " (not counted: follow-up pattern not sif_like)")})
    ev.append({"feature": "bme_volume_ml", "then": v0, "now": v1,
               "threshold": f"{params.min_bme_ml} ml present; {params.relative_change:+.0%} relative"})
    if v0 < params.min_bme_ml and v1 >= params.min_bme_ml and not progress:
        return "new", ev
    if progress or (rel is not None and rel >= params.relative_change):
        return "progressing", ev
    if rel is not None and rel <= -params.relative_change:
        return "resolving", ev
    return "stable", ev


def _study_entry(report: dict, study_date: Optional[str]) -> dict:
    """Pseudonym (as in the study's report.json) and ISO study date (from DICOM ``YYYYMMDD``); no identifiers."""
    d = study_date or ""
    iso = f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else None
    return {"pseudonym": _get(report, "inputs", "study", "pseudonym"), "study_date": iso}


def _pair(a, b, *keys, digits=3):
    t, n = _get(a, *keys), _get(b, *keys)
    r = lambda x: None if x is None else round(float(x), digits)  # noqa: E731
    return {"then": r(t), "now": r(n), "change": r(_diff(t, n))}


def _study(source):
    from bmepipe.analysis import AnalysisResult
    from bmepipe.io import load_study

    if isinstance(source, AnalysisResult):
        return source.study
    return load_study(source) if isinstance(source, (str, Path)) or hasattr(source, "__fspath__") else source


def _analysis(source, study, config):
    from bmepipe.analysis import AnalysisResult, analyze

    return source if isinstance(source, AnalysisResult) else analyze(study, None, config=config)


def _side_failed(sa: dict, sb: dict) -> Optional[dict]:
    for s, which in ((sa, "baseline"), (sb, "follow-up")):
        if not isinstance(s, dict) or s.get("status") != "analysed":
            return {"status": "failed", "reason": f"side not analysed in {which}"}
    return None


def _compare_sides(report_a: dict, report_b: dict, hips_a: dict, hips_b: dict, fixed, moving, masks_a: dict,
                   masks_b: dict, params: CompareParams, method: str):
    """Per side: registration, BME change maps, then/now measurements and trajectory.

    ``hips_*`` are ``{side: {'center', 'radius', 'surface'}}`` (surface points may be None), ``fixed`` and
    ``moving`` the images registered (baseline and follow-up grids), ``masks_*`` ``{side: {'bme': array}}``.
    """
    from .registration import register_hip, resample_mask, surface_deepening_mm

    vox_ml = float(np.prod(fixed.GetSpacing())) / 1000.0

    def one_side(side):
        sa, sb = _get(report_a, "sides", side), _get(report_b, "sides", side)
        ha, hb = hips_a.get(side) or {}, hips_b.get(side) or {}
        empty = np.zeros(fixed.GetSize()[::-1], dtype=bool)
        failed = _side_failed(sa, sb)
        if failed is None and (ha.get("center") is None or hb.get("center") is None):
            failed = {"status": "failed", "reason": "no femoral head centre to register from"}
        if failed is not None:
            return failed, {k: empty for k in CHANGE_MAPS}, None
        tx, residual = register_hip(fixed, moving, ha["center"], hb["center"])
        deepening = surface_deepening_mm(ha.get("surface"), hb.get("surface"), ha["center"], ha["radius"], tx)
        bme0 = np.asarray(masks_a[side]["bme"], bool)
        bme1 = resample_mask(masks_b[side]["bme"], moving, fixed, tx)
        side_maps = {"resolved": bme0 & ~bme1, "persisted": bme0 & bme1, "new": bme1 & ~bme0}
        registration = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in residual.items()}
        rec = {
            "status": "compared",
            "registration": {**registration, "method": method},
            "bme": {"volume_ml": _pair(sa, sb, "bme", "volume_ml"),
                    "fraction": {r: _pair(sa, sb, "bme", "fraction", r)
                                 for r in (_get(sa, "bme", "fraction") or {})},
                    **{f"{k}_ml": round(float(m.sum()) * vox_ml, 3) for k, m in side_maps.items()}},
            "avn": {"necrotic_extent_pct": _pair(sa, sb, "avn", "necrotic_extent_pct"),
                    "collapse_mm": _pair(sa, sb, "avn", "collapse_mm"),
                    "surface_deepening_mm": None if deepening is None else round(deepening, 3)},
            "sif": {"line_length_mm": _pair(sa, sb, "sif", "line_length_mm"),
                    "line_thickness_mm": _pair(sa, sb, "sif", "line_thickness_mm")},
            "effusion_ml": _pair(sa, sb, "effusion_ml"),
            "pattern": {"then": _get(sa, "pattern", "label"), "now": _get(sb, "pattern", "label")},
        }
        v = rec["bme"]["volume_ml"]
        rec["bme"]["volume_ml"]["relative_change"] = (
            round(v["change"] / v["then"], 4) if v["change"] is not None and v["then"] else None)
        label, evidence = trajectory(rec, params)
        rec["trajectory"] = {"label": label, "evidence": evidence}
        return rec, side_maps, tx

    # the hips are registered independently: one thread each
    sides, maps, transforms = {}, {}, {}
    for side, (rec, side_maps, tx) in zip(SIDES, map_in_threads(one_side, SIDES)):
        sides[side], maps[side] = rec, side_maps
        if tx is not None:
            transforms[side] = tx
    return sides, maps, transforms


def _report(interval, studies: dict, params: CompareParams, sides: dict) -> dict:
    return {"schema_version": COMPARE_SCHEMA_VERSION, "kind": COMPARE_KIND, "interval_days": interval,
            "studies": studies, "disclaimer": "Research use only: measured change, not a diagnosis.",
            "parameters": {k: getattr(params, k) for k in params.__dataclass_fields__}, "sides": sides}


@single_threaded_blas
def compare(baseline: Union[str, Path, Any], followup: Union[str, Path, Any], out_dir=None, *,
            force: bool = False, config=None, params: CompareParams = CompareParams()) -> CompareResult:
    """Measure how each hip changed between a baseline and a follow-up study of the same patient.

    Parameters
    ----------
    baseline, followup : path, Study or AnalysisResult
        Study folders, loaded studies, or existing analyses (reused, not recomputed).
    out_dir : path, optional
        Writes ``compare.json``, ``compare.html`` and ``labels/<side>_bme_{resolved,persisted,new}.nii.gz``.
    force : bool
        Compare even when the patient identifiers differ.

    Raises
    ------
    DifferentPatientError, FollowupOrderError
    """
    from bmepipe._memory import use_one_heap

    use_one_heap()  # before the analyses' threads start (bmepipe._memory)
    # identity and order first: refusing costs no analysis
    study_a, study_b = _study(baseline), _study(followup)
    id_a, id_b = study_identity(study_a), study_identity(study_b)
    interval = check_pair(id_a, id_b, force=force, path=followup if isinstance(followup, (str, Path)) else None)
    # the two analyses are independent: one thread each (their heavy steps release the GIL), and no threads of
    # their own (the two hips, the QC): the cores are already busy
    a, b = map_in_threads(lambda pair: _analysis(pair[0], pair[1], config), ((baseline, study_a), (followup, study_b)),
                          threads_each=1)

    def hips(analysis):
        return {side: {"center": g.head_center_lps_mm, "radius": g.head_radius_mm,
                       "surface": g.surface_points_lps_mm} for side, g in analysis.segmentation.sides.items()}

    sides, maps, transforms = _compare_sides(a.report, b.report, hips(a), hips(b), a.normalized.fluid,
                                             b.normalized.fluid, a.masks, b.masks, params, "fluid-sensitive images")
    report = _report(interval, {"baseline": _study_entry(a.report, id_a.get("study_date")),
                                "followup": _study_entry(b.report, id_b.get("study_date"))}, params, sides)
    result = CompareResult(report=report, maps=maps, baseline=a, followup=b, transforms=transforms)
    if out_dir is not None:
        from .output import write_compare

        result.outputs = write_compare(result, out_dir)
    return result


@dataclass
class StudyOutputs:
    """What ``bmepipe analyze`` left on disk for one study, read back (see ``bmepipe.batch.longitudinal``).

    Attributes
    ----------
    report : dict
        The study's ``report.json``.
    labels : dict
        ``{side: {structure: bool ndarray [slice, row, column]}}`` from ``labels/<side>_<structure>.nii.gz``.
    reference : SimpleITK.Image
        An image on the label maps' grid (geometry only is used).
    study_date : str, optional
        DICOM ``YYYYMMDD``.
    """

    report: dict
    labels: dict
    reference: Any
    study_date: Optional[str] = None


@single_threaded_blas
def compare_outputs(baseline: StudyOutputs, followup: StudyOutputs, out_dir=None, *,
                    params: CompareParams = CompareParams()) -> CompareResult:
    """Compare two studies from their analysis outputs (report.json and label maps), without the images.

    The rigid registration per hip runs on images built from the bone label maps (femoral head, neck,
    intertrochanteric region, shaft, acetabulum; :func:`~bmepipe.compare.registration.label_image`),
    initialised from the report's head centres; BME is left out so that its change cannot pull the registration.
    The segmentation's surface points are not saved, so ``avn.surface_deepening_mm`` is null here and the
    trajectory uses the difference of the two reported collapse depths. The order and interval come from
    the study dates; identity checks are the caller's (the batch groups studies by patient pseudonym).

    Raises
    ------
    FollowupOrderError
        The follow-up's study date is before the baseline's.
    """
    from .registration import label_image

    interval = check_pair({"study_date": baseline.study_date or ""}, {"study_date": followup.study_date or ""},
                          force=True)
    fixed = label_image(baseline.labels, baseline.reference)
    moving = label_image(followup.labels, followup.reference)

    def hips(outputs):
        return {side: {"center": _get(outputs.report, "sides", side, "femoral_head", "center_lps_mm"),
                       "radius": _get(outputs.report, "sides", side, "femoral_head", "radius_mm"), "surface": None}
                for side in SIDES}

    sides, maps, transforms = _compare_sides(baseline.report, followup.report, hips(baseline), hips(followup),
                                             fixed, moving, baseline.labels, followup.labels, params,
                                             "bone label maps")
    report = _report(interval, {"baseline": _study_entry(baseline.report, baseline.study_date),
                                "followup": _study_entry(followup.report, followup.study_date)}, params, sides)
    result = CompareResult(report=report, maps=maps, transforms=transforms, reference=baseline.reference)
    if out_dir is not None:
        from .output import write_compare

        result.outputs = write_compare(result, out_dir)
    return result
