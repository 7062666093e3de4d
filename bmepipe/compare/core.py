"""Follow-up comparison of two studies of the same patient, per hip."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from bmepipe.errors import DifferentPatientError, FollowupOrderError, InputError

__all__ = ["CompareResult", "CompareParams", "compare", "trajectory", "study_identity", "check_pair",
           "COMPARE_SCHEMA_VERSION", "COMPARE_KIND"]

COMPARE_SCHEMA_VERSION = "1.1.0"
#: Value of the ``kind`` field that tells a compare.json from a report.json.
COMPARE_KIND = "bmepipe-compare"
SIDES = ("right", "left")
CHANGE_MAPS = ("resolved", "persisted", "new")


@dataclass(frozen=True)
class CompareParams:
    """Thresholds of the trajectory statement (all approximate, project choices, not from the literature).

    Parameters
    ----------
    min_bme_ml : float
        BME below this volume counts as none (so ``new`` means none then, some now).
    relative_change : float
        Relative BME change beyond which BME counts as shrinking or growing (0.3 = 30 %).
    collapse_increase_mm : float
        Deepening of the articular collapse that counts as progression (1-2 mm separates stages in
        ARCO 2019 [approx]).
    line_increase_mm : float
        Lengthening of the subchondral line that counts as grown.
    """

    min_bme_ml: float = 0.5
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
    outputs : dict of str -> Path
    """

    report: dict
    maps: dict
    baseline: Any = None
    followup: Any = None
    transforms: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

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
    ``relative_change`` is ``resolving``; anything else is ``stable``.
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
        progress.append("subchondral line new or grown")
        ev.append({"feature": "line_length_mm", "then": l0, "now": l1, "threshold": f"+{params.line_increase_mm}"})
    ev.append({"feature": "bme_volume_ml", "then": v0, "now": v1,
               "threshold": f"{params.min_bme_ml} ml present; {params.relative_change:+.0%} relative"})
    if v0 < params.min_bme_ml and v1 >= params.min_bme_ml and not progress:
        return "new", ev
    if progress or (rel is not None and rel >= params.relative_change):
        return "progressing", ev
    if rel is not None and rel <= -params.relative_change:
        return "resolving", ev
    return "stable", ev


def _study_entry(analysis, identity: dict) -> dict:
    """Pseudonym (as in the study's report.json) and ISO study date; no patient identifiers."""
    d = identity.get("study_date") or ""
    iso = f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else None
    return {"pseudonym": _get(analysis.report, "inputs", "study", "pseudonym"), "study_date": iso}


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
    from .registration import register_hip, resample_mask, surface_deepening_mm

    # identity and order first: refusing costs no analysis
    study_a, study_b = _study(baseline), _study(followup)
    id_a, id_b = study_identity(study_a), study_identity(study_b)
    interval = check_pair(id_a, id_b, force=force, path=followup if isinstance(followup, (str, Path)) else None)
    a = _analysis(baseline, study_a, config)
    b = _analysis(followup, study_b, config)
    fixed, moving = a.normalized.fluid, b.normalized.fluid
    vox_ml = float(np.prod(fixed.GetSpacing())) / 1000.0
    sides, maps, transforms = {}, {}, {}
    for side in SIDES:
        sa, sb = a.report["sides"][side], b.report["sides"][side]
        ga, gb = a.segmentation.sides.get(side), b.segmentation.sides.get(side)
        empty = np.zeros(fixed.GetSize()[::-1], dtype=bool)
        maps[side] = {k: empty for k in CHANGE_MAPS}
        if sa["status"] != "analysed" or sb["status"] != "analysed" or ga is None or gb is None:
            sides[side] = {"status": "failed", "reason": "side not analysed in "
                           + ("baseline" if sa["status"] != "analysed" else "follow-up")}
            continue
        tx, residual = register_hip(fixed, moving, ga.head_center_lps_mm, gb.head_center_lps_mm)
        transforms[side] = tx
        deepening = surface_deepening_mm(ga.surface_points_lps_mm, gb.surface_points_lps_mm, ga.head_center_lps_mm,
                                         ga.head_radius_mm, tx)
        bme0 = a.masks[side]["bme"]
        bme1 = resample_mask(b.masks[side]["bme"], moving, fixed, tx)
        maps[side] = {"resolved": bme0 & ~bme1, "persisted": bme0 & bme1, "new": bme1 & ~bme0}
        rec = {
            "status": "compared",
            "registration": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in residual.items()},
            "bme": {"volume_ml": _pair(sa, sb, "bme", "volume_ml"),
                    "fraction": {r: _pair(sa, sb, "bme", "fraction", r)
                                 for r in (_get(sa, "bme", "fraction") or {})},
                    **{f"{k}_ml": round(float(m.sum()) * vox_ml, 3) for k, m in maps[side].items()}},
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
        sides[side] = rec
    report = {"schema_version": COMPARE_SCHEMA_VERSION, "kind": COMPARE_KIND, "interval_days": interval,
              "studies": {"baseline": _study_entry(a, id_a), "followup": _study_entry(b, id_b)},
              "disclaimer": "Research use only: measured change, not a diagnosis.",
              "parameters": {k: getattr(params, k) for k in params.__dataclass_fields__},
              "sides": sides}
    result = CompareResult(report=report, maps=maps, baseline=a, followup=b, transforms=transforms)
    if out_dir is not None:
        from .output import write_compare

        result.outputs = write_compare(result, out_dir)
    return result
