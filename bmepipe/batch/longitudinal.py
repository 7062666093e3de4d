"""The longitudinal table: how each hip changed between consecutive studies of the same patient.

Built from what the batch left on disk, never from a run's memory. Studies are grouped by the salted
patient pseudonym of ``DONE.json`` and ordered by StudyDate, read from the study's own DICOM SR (else SEG)
written by ``analyze`` (``OUT/studies/<study>/dicom/sr.dcm``; the date stays out of the table). Every
consecutive pair of a patient's finished studies is compared with :func:`bmepipe.compare.compare_outputs`
(report.json and label maps; the images are not kept by the batch), and its outputs go to::

    OUT/longitudinal/<patient>/<baseline study>_to_<followup study>/compare.json, compare.html, labels/

A pair whose ``compare.json`` is newer than both studies' ``DONE.json`` is read back, not recomputed, so a
resumed batch gives the same table. Columns (one row per patient, side and interval; units in the names):

==============================================  =====================================================
patient                                         salted PatientID pseudonym
side                                            ``right`` / ``left``
baseline_study, followup_study                  study folder pseudonyms
interval_days                                   days between the StudyDates
status, error                                   ``compared`` / ``failed`` and the one-line reason
bme_volume_then_ml, bme_volume_now_ml
bme_change_ml, bme_change_pct                   now - then; relative to then (%)
bme_resolved_ml, bme_persisted_ml, bme_new_ml   registered BME change maps
avn_necrotic_extent_then_pct, ..._now_pct
avn_collapse_then_mm, avn_collapse_now_mm
sif_line_length_then_mm, ..._now_mm
effusion_then_ml, effusion_now_ml
pattern_then, pattern_now                       pattern labels of the two report.json
trajectory                                      ``resolving`` / ``stable`` / ``progressing`` / ``new``
registration_center_mismatch_mm                 registration residual at the head centre
compare_dir                                     the pair's folder, relative to OUT
==============================================  =====================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Union

from ..privacy import safe_filename
from .engine import DONE_NAME, study_folders
from .summary import typed_frame, write_table

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["build_longitudinal", "write_longitudinal", "read_study_outputs", "study_date", "COLUMNS"]

PathLike = Union[str, "os.PathLike[str]"]
SIDES = ("right", "left")
_PAIRS = [  # (column stem, path inside compare.json sides.<side>, unit suffix)
    ("bme_volume", ("bme", "volume_ml"), "ml"),
    ("avn_necrotic_extent", ("avn", "necrotic_extent_pct"), "pct"),
    ("avn_collapse", ("avn", "collapse_mm"), "mm"),
    ("sif_line_length", ("sif", "line_length_mm"), "mm"),
    ("effusion", ("effusion_ml",), "ml"),
]
COLUMNS = (["patient", "side", "baseline_study", "followup_study", "interval_days", "status", "error"]
           + ["bme_volume_then_ml", "bme_volume_now_ml", "bme_change_ml", "bme_change_pct", "bme_resolved_ml",
              "bme_persisted_ml", "bme_new_ml"]
           + [f"{stem}_{when}_{unit}" for stem, _, unit in _PAIRS[1:] for when in ("then", "now")]
           + ["pattern_then", "pattern_now", "trajectory", "registration_center_mismatch_mm", "compare_dir"])
_TEXT = {"patient", "side", "baseline_study", "followup_study", "status", "error", "pattern_then", "pattern_now",
         "trajectory", "compare_dir"}


def study_date(folder: PathLike) -> Optional[str]:
    """StudyDate (``YYYYMMDD``) of an analysed study, from the DICOM SR or SEG that analyze wrote; else None."""
    import pydicom

    for name in ("sr.dcm", "seg.dcm"):
        path = Path(folder) / "dicom" / name
        if path.is_file():
            try:
                value = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyDate"])
                            .get("StudyDate", "") or "").strip()
            except (OSError, ValueError, pydicom.errors.InvalidDicomError):
                continue
            if len(value) == 8 and value.isdigit():
                return value
    return None


def read_study_outputs(folder: PathLike):
    """:class:`bmepipe.compare.StudyOutputs` of one finished study folder (report.json, label maps, date)."""
    import numpy as np
    import SimpleITK as sitk

    from ..compare import StudyOutputs
    from ..errors import InputError
    from ..report.labels import label_path
    from ..report.schema import STRUCTURES

    folder = Path(folder)
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"report.json unreadable ({type(exc).__name__})", folder) from None
    labels, reference = {}, None
    for side in SIDES:
        labels[side] = {}
        for structure in STRUCTURES:
            path = label_path(folder, side, structure)
            if not path.is_file():
                continue
            try:
                img = sitk.ReadImage(str(path))
            except RuntimeError:
                raise InputError(f"label map {path.name} unreadable", folder) from None
            reference = img if reference is None else reference
            labels[side][structure] = sitk.GetArrayFromImage(img) > 0
    if reference is None:
        raise InputError("no label maps (labels/<side>_<structure>.nii.gz)", folder)
    for side in SIDES:  # a missing map is an empty one
        labels[side].setdefault("bme", np.zeros(reference.GetSize()[::-1], bool))
    return StudyOutputs(report=report, labels=labels, reference=reference, study_date=study_date(folder))


def _done(folder: Path) -> dict:
    try:
        data = json.loads((folder / DONE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _compare_pair(out: Path, patient: str, a: Path, b: Path, params) -> tuple[dict, Path]:
    """compare.json of one pair: read back when newer than both studies and made by the same schema and
    parameters, else computed and written."""
    from ..compare import COMPARE_SCHEMA_VERSION, CompareParams, compare_outputs, validate_compare
    from ..errors import OutputError

    pair_dir = out / "longitudinal" / safe_filename(patient) / f"{safe_filename(a.name)}_to_{safe_filename(b.name)}"
    done_json = pair_dir / "compare.json"
    if done_json.is_file() and all(done_json.stat().st_mtime >= (f / DONE_NAME).stat().st_mtime for f in (a, b)):
        used = params or CompareParams()
        wanted = json.loads(json.dumps({k: getattr(used, k) for k in used.__dataclass_fields__}))
        try:
            report = json.loads(done_json.read_text(encoding="utf-8"))
            validate_compare(report, done_json)
            if report.get("schema_version") == COMPARE_SCHEMA_VERSION and report.get("parameters") == wanted:
                return report, pair_dir
        except (OSError, ValueError, OutputError):  # broken: recompute
            pass
    result = compare_outputs(read_study_outputs(a), read_study_outputs(b), pair_dir, params=params)
    return result.report, pair_dir


def _rows(patient: str, a: Path, b: Path, report: Optional[dict], pair_dir: Optional[str],
          error: Optional[str]) -> list[dict]:
    rows = []
    for side in SIDES:
        row = {"patient": patient, "side": side, "baseline_study": a.name, "followup_study": b.name,
               "compare_dir": pair_dir, "interval_days": (report or {}).get("interval_days")}
        s = ((report or {}).get("sides") or {}).get(side) or {}
        if error is not None or s.get("status") != "compared":
            rows.append({**row, "status": "failed", "error": error or s.get("reason") or "not compared"})
            continue
        row.update(status="compared", error=None)
        for stem, keys, unit in _PAIRS:
            pair = s
            for k in keys:
                pair = pair.get(k) or {}
            row[f"{stem}_then_{unit}"], row[f"{stem}_now_{unit}"] = pair.get("then"), pair.get("now")
        v = s["bme"]["volume_ml"]
        rel = v.get("relative_change")
        row.update(bme_change_ml=v.get("change"), bme_change_pct=None if rel is None else round(100.0 * rel, 2),
                   bme_resolved_ml=s["bme"].get("resolved_ml"), bme_persisted_ml=s["bme"].get("persisted_ml"),
                   bme_new_ml=s["bme"].get("new_ml"), pattern_then=s["pattern"].get("then"),
                   pattern_now=s["pattern"].get("now"), trajectory=s["trajectory"]["label"],
                   registration_center_mismatch_mm=s["registration"].get("center_mismatch_mm"))
        rows.append(row)
    return rows


def build_longitudinal(out: PathLike, study_ids: Optional[Iterable[str]] = None, params=None) -> "pd.DataFrame":
    """The longitudinal table of a batch output folder (see the module notes); empty without repeat studies.

    Parameters
    ----------
    out : path
        Batch output folder (``OUT/studies/<study>/``).
    study_ids : iterable of str, optional
        Only these studies (the cohort of the last run); default every finished study folder.
    params : bmepipe.compare.CompareParams, optional

    Returns
    -------
    pandas.DataFrame
        One row per patient, side and consecutive pair of studies, sorted by patient, baseline date, side.
        A pair that cannot be compared (no study date, a failed comparison) has rows with status ``failed``.
    """
    from ..compare import CompareParams
    from ..errors import BmepipeError

    out = Path(out)
    params = params or CompareParams()
    wanted = None if study_ids is None else set(study_ids)
    by_patient: dict[str, list[tuple[str, str, Path]]] = {}
    for folder in study_folders(out):
        done = _done(folder)
        if (wanted is not None and folder.name not in wanted) or done.get("status") != "ok" or not done.get("patient"):
            continue
        if not (folder / "report.json").is_file():
            continue  # e.g. the inspect job: nothing to compare
        by_patient.setdefault(done["patient"], []).append((study_date(folder) or "", folder.name, folder))
    rows: list[dict] = []
    for patient in sorted(by_patient):
        studies = sorted(by_patient[patient])
        for (d0, _, a), (d1, _, b) in zip(studies, studies[1:]):
            report, pair_dir, error = None, None, None
            if not d0 or not d1:
                error = "no StudyDate in the study outputs: cannot order the studies"
            else:
                try:
                    report, path = _compare_pair(out, patient, a, b, params)
                    pair_dir = path.relative_to(out).as_posix()
                except BmepipeError as exc:  # one failed pair must not lose the table
                    error = f"comparison failed: {exc.message}"
                except (RuntimeError, ValueError, OSError, KeyError, TypeError) as exc:
                    # e.g. SimpleITK, a full disk, an odd report.json: the type only (messages may hold paths)
                    error = f"comparison failed: {type(exc).__name__}"
            rows.extend(_rows(patient, a, b, report, pair_dir, error))
    return typed_frame(rows, list(COLUMNS), _TEXT)


def write_longitudinal(df: "pd.DataFrame", out: PathLike) -> tuple[Path, Path]:
    """Write ``longitudinal.csv`` and ``longitudinal.parquet`` into ``out`` atomically; returns both paths."""
    return write_table(df, out, "longitudinal")
