"""The cohort table: one row per study side, rebuilt from the study folders on disk.

When a patient has several studies, :func:`write_summary` also writes the longitudinal table
(``longitudinal.csv`` / ``.parquet``, :mod:`bmepipe.batch.longitudinal`).

Never from a run's memory: the table after an interrupted-and-resumed batch is
the same as after an uninterrupted one. Columns (units in the names):

======================================  ============================================================
study, patient                          study folder pseudonym, salted PatientID pseudonym
side                                    ``right`` / ``left``
status                                  side status from report.json (``analysed`` / ``failed``);
                                        ``failed`` for a failed study; ``ok`` when the job writes
                                        no per-side results (``inspect``)
error                                   one-line reason (failed study, or the side's reason)
job                                     job name
series_fluid, series_fluid_kind         SeriesDescription and sequence kind of the fluid-sensitive
series_t1, series_t1_kind               and T1 series used
femoral_head_center_{x,y,z}_mm          head centre, LPS
femoral_head_radius_mm
region_<region>_volume_ml               regions of regions.md (femoral_head ... acetabulum)
bme_volume_ml, bme_fraction_<region>    0..1
avn_necrotic_extent_pct, avn_collapse_mm, avn_jic_type, avn_kerboul_angle_deg
sif_line_length_mm, sif_line_thickness_mm, effusion_ml
pattern_label, pattern_score
qc_flags                                flagged QC checks (whole study or this side), ``;``-separated
n_files, n_series, software_version
time_total_s, time_job_s                wall time of the study, of the job inside its worker
time_<stage>_s                          report.json ``timings_s``
======================================  ============================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Union

from ..io.atomic import atomic_path, atomic_write_text
from ..report.schema import lookup as _get
from .engine import DONE_NAME, study_folders

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["build_summary", "write_summary", "SIDES", "REGIONS"]

PathLike = Union[str, "os.PathLike[str]"]
SIDES = ("right", "left")
#: Regions of shared/reference/regions.md, in that order (report.json ``regions.<region>``).
REGIONS = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")

_SCALARS = [  # (column, dotted path inside sides.<side>)
    ("femoral_head_radius_mm", "femoral_head.radius_mm"),
    ("bme_volume_ml", "bme.volume_ml"),
    ("avn_necrotic_extent_pct", "avn.necrotic_extent_pct"),
    ("avn_collapse_mm", "avn.collapse_mm"),
    ("avn_jic_type", "avn.jic_type"),
    ("avn_kerboul_angle_deg", "avn.kerboul_angle_deg"),
    ("sif_line_length_mm", "sif.line_length_mm"),
    ("sif_line_thickness_mm", "sif.line_thickness_mm"),
    ("effusion_ml", "effusion_ml"),
    ("pattern_label", "pattern.label"),
    ("pattern_score", "pattern.score"),
]
_TEXT = {"study", "patient", "side", "status", "error", "job", "series_fluid", "series_fluid_kind", "series_t1",
         "series_t1_kind", "avn_jic_type", "pattern_label", "qc_flags", "software_version"}


def _read_json(path: Path) -> tuple[Optional[dict], Optional[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"{path.name} unreadable ({type(exc).__name__})"
    return (data, None) if isinstance(data, dict) else (None, f"{path.name} is not a JSON object")


def _series(report: Optional[dict], role: str) -> tuple[Optional[str], Optional[str]]:
    for s in _get(report, "inputs.series_used") or []:
        if isinstance(s, Mapping) and s.get("role") == role:
            return s.get("series_description"), s.get("sequence_kind")
    return None, None


def _study_rows(folder: Path) -> list[dict]:
    done, _ = _read_json(folder / DONE_NAME)
    done = done or {}
    report, report_problem = _read_json(folder / "report.json")
    failed = done.get("status") != "ok" or report_problem is not None
    base: dict[str, Any] = {
        "study": done.get("study", folder.name),
        "patient": done.get("patient") or None,
        "job": done.get("job"),
    }
    fluid, fluid_kind = _series(report, "fluid_sensitive")
    t1, t1_kind = _series(report, "t1")
    base.update(series_fluid=fluid, series_fluid_kind=fluid_kind, series_t1=t1, series_t1_kind=t1_kind)
    flags = [f for f in (_get(report, "qc.flags") or []) if isinstance(f, Mapping) and f.get("flagged")]
    timings = _get(report, "timings_s") or {}
    rows = []
    for side in SIDES:
        row = dict(base, side=side)
        data = _get(report, f"sides.{side}")
        if failed:
            row.update(status="failed", error=done.get("error") or report_problem or "study failed")
        elif isinstance(_get(report, "sides"), Mapping):
            if isinstance(data, Mapping):
                row.update(status=data.get("status"), error=data.get("reason"))
            else:
                row.update(status="missing", error=f"no {side} side in report.json")
        else:
            row.update(status="ok", error=None)
        center = _get(data, "femoral_head.center_lps_mm")
        center = center if isinstance(center, list) and len(center) == 3 else [None] * 3
        for axis, value in zip("xyz", center):
            row[f"femoral_head_center_{axis}_mm"] = value
        for column, dotted in _SCALARS:
            row[column] = _get(data, dotted)
        for region in _regions(data, "regions"):
            row[f"region_{region}_volume_ml"] = _get(data, f"regions.{region}.volume_ml")
        for region in _regions(data, "bme.fraction"):
            row[f"bme_fraction_{region}"] = _get(data, f"bme.fraction.{region}")
        row["qc_flags"] = ";".join(str(f.get("name")) for f in flags if f.get("side") in (None, side)) or None
        row.update(n_files=done.get("n_files"), n_series=done.get("n_series"),
                   software_version=done.get("software_version"),
                   time_total_s=done.get("elapsed_s"), time_job_s=done.get("job_s"))
        if isinstance(timings, Mapping):
            for stage, seconds in timings.items():
                row[f"time_{stage}_s"] = seconds
        rows.append(row)
    return rows


def _regions(side: Any, dotted: str) -> list[str]:
    found = _get(side, dotted)
    extra = sorted(k for k in found if k not in REGIONS) if isinstance(found, Mapping) else []
    return list(REGIONS) + extra


def _columns(rows: list[dict]) -> list[str]:
    head = ["study", "patient", "side", "status", "error", "job", "series_fluid", "series_fluid_kind",
            "series_t1", "series_t1_kind", "femoral_head_center_x_mm", "femoral_head_center_y_mm",
            "femoral_head_center_z_mm", "femoral_head_radius_mm"]
    head += [f"region_{r}_volume_ml" for r in REGIONS] + ["bme_volume_ml"] + [f"bme_fraction_{r}" for r in REGIONS]
    head += [c for c, _ in _SCALARS if c not in head]
    head += ["qc_flags", "n_files", "n_series", "software_version", "time_total_s", "time_job_s"]
    seen = set(head)
    extra = sorted({k for row in rows for k in row if k not in seen})
    regions = [c for c in extra if c.startswith(("region_", "bme_fraction_"))]
    return head[:head.index("bme_volume_ml")] + regions + head[head.index("bme_volume_ml"):] + \
        [c for c in extra if c not in regions]


def build_summary(out: PathLike, study_ids: Optional[Iterable[str]] = None) -> "pd.DataFrame":
    """The cohort table from ``OUT/studies/*/DONE.json`` and ``report.json``.

    Parameters
    ----------
    out : path
        Batch output folder.
    study_ids : iterable of str, optional
        Only these studies (the cohort of the last run); a listed study without
        a finished folder gets rows with status ``not_run``. Default: every
        finished study folder.

    Returns
    -------
    pandas.DataFrame
        One row per study and side, sorted by study then side (right, left).
    """
    folders = {p.name: p for p in study_folders(out)}
    ids = sorted(folders) if study_ids is None else sorted(set(study_ids))
    rows: list[dict] = []
    for sid in ids:
        if sid in folders:
            rows.extend(_study_rows(folders[sid]))
        else:
            rows.extend({"study": sid, "side": side, "status": "not_run", "error": "no finished output"}
                        for side in SIDES)
    df = typed_frame(rows, _columns(rows), _TEXT)
    df["_side"] = df["side"].map({s: i for i, s in enumerate(SIDES)})
    return df.sort_values(["study", "_side"], kind="stable").drop(columns="_side").reset_index(drop=True)


def typed_frame(rows: list, columns: list, text: set) -> "pd.DataFrame":
    """A table of ``rows`` with the ``text`` columns as objects (None where missing), the others float64."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=columns)
    for column in columns:
        if column in text:
            df[column] = df[column].astype(object).where(df[column].notna(), None)
        else:
            df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    return df


def write_table(df: "pd.DataFrame", out: PathLike, name: str) -> tuple[Path, Path]:
    """Write ``<name>.csv`` and ``<name>.parquet`` into ``out`` atomically; returns both paths."""
    out = Path(out)
    csv_path = atomic_write_text(out / f"{name}.csv", df.to_csv(index=False, lineterminator="\n"))
    with atomic_path(out / f"{name}.parquet") as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow")
    return csv_path, out / f"{name}.parquet"


def write_summary(df: "pd.DataFrame", out: PathLike) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.parquet`` into ``out`` atomically; returns both paths."""
    paths = write_table(df, out, "summary")
    _write_longitudinal(df, Path(out))
    return paths


def _write_longitudinal(df: "pd.DataFrame", out: Path) -> None:
    """Also ``longitudinal.csv``/``.parquet`` when a patient has several studies (:mod:`.longitudinal`)."""
    studies = df.drop_duplicates("study") if "study" in df else df.iloc[:0]
    if "patient" in studies and (studies["patient"].dropna().value_counts() > 1).any():
        from .longitudinal import build_longitudinal, write_longitudinal

        write_longitudinal(build_longitudinal(out, study_ids=studies["study"]), out)
    else:  # no repeat studies (any more): a table from an earlier cohort in this folder would mislead
        for name in ("longitudinal.csv", "longitudinal.parquet"):
            (out / name).unlink(missing_ok=True)
