"""Follow-up comparison of two studies of the same patient, per hip."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from bmepipe.errors import DifferentPatientError, FollowupOrderError, InputError

__all__ = ["CompareResult", "CompareParams", "compare", "trajectory", "study_identity", "COMPARE_SCHEMA_VERSION"]

COMPARE_SCHEMA_VERSION = "1.0.0"
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
    outputs : dict of str -> Path
    """

    report: dict
    maps: dict
    baseline: Any = None
    followup: Any = None
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
    ``sif.line_length_mm`` as ``{'then', 'now'}`` pairs.
    """
    ev = []
    v0, v1 = side["bme"]["volume_ml"]["then"] or 0.0, side["bme"]["volume_ml"]["now"] or 0.0
    c0, c1 = side["avn"]["collapse_mm"]["then"] or 0.0, side["avn"]["collapse_mm"]["now"] or 0.0
    n0, n1 = side["avn"]["necrotic_extent_pct"]["then"] or 0.0, side["avn"]["necrotic_extent_pct"]["now"] or 0.0
    l0, l1 = side["sif"]["line_length_mm"]["then"] or 0.0, side["sif"]["line_length_mm"]["now"] or 0.0
    rel = (v1 - v0) / v0 if v0 >= params.min_bme_ml else None
    progress = []
    if c1 - c0 >= params.collapse_increase_mm:
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
    from .registration import register_hip, resample_mask

    # identity and order first: refusing costs no analysis
    study_a, study_b = _study(baseline), _study(followup)
    interval = check_pair(study_identity(study_a), study_identity(study_b), force=force,
                          path=followup if isinstance(followup, (str, Path)) else None)
    a = _analysis(baseline, study_a, config)
    b = _analysis(followup, study_b, config)
    fixed, moving = a.normalized.fluid, b.normalized.fluid
    vox_ml = float(np.prod(fixed.GetSpacing())) / 1000.0
    sides, maps = {}, {}
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
                    "collapse_mm": _pair(sa, sb, "avn", "collapse_mm")},
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
    report = {"schema_version": COMPARE_SCHEMA_VERSION, "interval_days": interval,
              "disclaimer": "Research use only: measured change, not a diagnosis.",
              "parameters": {k: getattr(params, k) for k in params.__dataclass_fields__},
              "sides": sides}
    result = CompareResult(report=report, maps=maps, baseline=a, followup=b)
    if out_dir is not None:
        from .output import write_compare

        result.outputs = write_compare(result, out_dir)
    return result
