"""Per-study jobs the batch can run: ``analyze`` (the full pipeline), ``inspect``, or your own.

A job is a picklable callable ``job(ref, out_dir) -> dict | None``: ``ref`` is a
:class:`~bmepipe.batch.StudyRef` (``ref.files`` lists the study's files),
``out_dir`` an empty folder for its outputs. A returned dict is written as
``out_dir/report.json`` unless the job wrote that file itself. Raising any
exception marks the study failed with a one-line reason.
"""

from __future__ import annotations

import functools
import importlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .._version import __version__
from ..errors import ConfigError, NoUsableSeriesError

__all__ = ["resolve_job", "inspect_job", "analyze_job", "stage_files", "load_ref", "analyze_available"]

INSPECT_SCHEMA = "bmepipe.batch.inspect/1"


# ---------------------------------------------------------------------------- inputs
def stage_files(ref, dest: Union[str, "os.PathLike[str]"]) -> Path:
    """Symbolic links to the study's files under ``dest``, keeping their relative layout.

    For loaders that scan a folder: a study spread over several folders, or
    sharing a folder with other studies, becomes one folder holding exactly its
    files (cheap: no data are copied).
    """
    dest = Path(dest)
    files = [os.path.abspath(f) for f in ref.files]
    base = os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""
    for f in files:
        link = dest / os.path.relpath(f, base)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f, link)
    return dest


def load_ref(ref, scratch: Union[str, "os.PathLike[str]"]):
    """Load exactly the study's files with :func:`bmepipe.io.load_study`.

    Uses ``load_study(files=...)`` when the loader accepts a file list, otherwise
    stages symbolic links in ``scratch`` (removed afterwards).
    """
    import inspect
    import shutil

    from ..io import load_study

    if "files" in inspect.signature(load_study).parameters:
        return load_study(files=list(ref.files))
    staged = stage_files(ref, scratch)
    try:
        return load_study(staged)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


# ---------------------------------------------------------------------------- analyze
def _analyze_function() -> Optional[Callable]:
    try:
        from .. import analyze  # type: ignore[attr-defined]
    except ImportError:
        return None
    if not callable(analyze):  # a module bmepipe.analyze holding the function
        analyze = getattr(analyze, "analyze", None)
    return analyze if callable(analyze) else None


def analyze_available() -> bool:
    """True when ``bmepipe.analyze`` (the full per-study pipeline) is installed."""
    return _analyze_function() is not None


def analyze_job(ref, out_dir: Path, **params: Any) -> Optional[dict]:
    """Run the full pipeline on one study: the only place that knows how to call ``bmepipe.analyze``.

    The study's files are staged as symbolic links in ``out_dir/_input`` (removed
    afterwards) and passed as a folder; ``analyze`` writes ``report.json``,
    ``report.html``, label maps and DICOM SEG/SR into ``out_dir``. If ``analyze``
    takes a ``pseudonym`` it gets the study's folder name, so the report and the
    cohort table name the study alike.
    """
    import inspect
    import shutil

    analyze = _analyze_function()
    if analyze is None:
        raise ConfigError("bmepipe.analyze is not available in this installation; use the 'inspect' job")
    if "pseudonym" in inspect.signature(analyze).parameters:
        params.setdefault("pseudonym", ref.study_id)
    staged = stage_files(ref, Path(out_dir) / "_input")
    try:
        result = analyze(staged, out_dir=out_dir, **params)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if isinstance(result, dict):
        return result
    to_dict = getattr(result, "to_dict", None)
    return to_dict() if callable(to_dict) else None


# ---------------------------------------------------------------------------- inspect
def _volume_summaries(ref, out_dir: Path) -> tuple[list[dict], list[str]]:
    """(one dict per usable volume, reasons for what was set aside) using bmepipe.io."""
    study = load_ref(ref, out_dir / "_input")
    volumes = [
        {
            "series_instance_uid": v.meta.series_instance_uid,
            "series_description": v.meta.series_description,
            "series_number": v.meta.series_number,
            "sequence_class": v.meta.sequence_class,
            "sequence_kind": v.meta.sequence_kind,
            "sequence_confidence": float(v.meta.sequence_confidence),
            "plane": v.meta.plane,
            "slices": int(v.meta.slice_count),
            "rows": int(v.meta.rows),
            "columns": int(v.meta.columns),
            "spacing_mm": [float(s) for s in v.meta.spacing_mm],
        }
        for v in study.volumes
    ]
    return volumes, [f"{s.path}: {s.reason}" for s in study.skipped]


def _volume_summaries_fallback(ref, out_dir: Path) -> tuple[list[dict], list[str]]:
    """Stand-in until bmepipe.io.load_study lands: decode every image, check each stack's slice spacing.

    Deliberately minimal (no multi-frame, no repairs): series are grouped by
    SeriesInstanceUID, sorted along the slice normal and rejected when pixel data
    cannot be decoded or slices are missing (a gap > 1.5 x the median spacing).
    """
    import numpy as np
    from pydicom import dcmread

    series: dict[str, list] = {}
    skipped: list[str] = []
    for f in ref.files:
        try:
            ds = dcmread(f)
        except Exception as exc:  # noqa: BLE001
            skipped.append(f"{f}: unreadable DICOM ({type(exc).__name__})")
            continue
        if str(ds.get("Modality", "")) != "MR" or "PixelData" not in ds:
            skipped.append(f"{f}: not an MR image (Modality {ds.get('Modality', '?')})")
            continue
        series.setdefault(str(ds.SeriesInstanceUID), []).append((f, ds))
    volumes = []
    for uid, items in series.items():
        first = items[0][1]
        desc = str(first.get("SeriesDescription", ""))
        try:
            for f, ds in items:
                try:
                    ds.pixel_array
                except Exception as exc:  # noqa: BLE001
                    raise ValueError(f"{f}: pixel data cannot be decoded ({type(exc).__name__})") from None
            iop = np.asarray(first.ImageOrientationPatient, float)
            normal = np.cross(iop[:3], iop[3:])
            pos = np.sort([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))) for _, ds in items])
            if len(pos) < 3:
                raise ValueError(f"series {desc!r}: {len(pos)} image(s), not a volume")
            steps = np.diff(pos)
            if steps.min() <= 1e-3 or steps.max() > 1.5 * np.median(steps):
                raise ValueError(f"series {desc!r}: slices missing or unevenly spaced "
                                 f"(steps {steps.min():.2f}-{steps.max():.2f} mm)")
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        scanning = " ".join(map(str, np.atleast_1d(first.get("ScanningSequence", ""))))
        options = " ".join(map(str, np.atleast_1d(first.get("ScanOptions", ""))))
        if "IR" in scanning.split():
            cls, kind = "fluid_sensitive", "stir"
        elif "FS" in options.split():
            cls, kind = "fluid_sensitive", "fat_suppressed"
        elif float(first.get("RepetitionTime", 0) or 0) < 1000:
            cls, kind = "t1", "t1"
        else:
            cls, kind = "other", "other"
        plane = ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]
        volumes.append({
            "series_instance_uid": uid, "series_description": desc,
            "series_number": int(first.get("SeriesNumber", 0) or 0), "sequence_class": cls,
            "sequence_kind": kind, "sequence_confidence": 0.5, "plane": plane, "slices": len(items),
            "rows": int(first.Rows), "columns": int(first.Columns),
            "spacing_mm": [float(first.PixelSpacing[1]), float(first.PixelSpacing[0]), float(np.median(steps))],
        })
    return volumes, skipped


def _pick(volumes: list[dict], sequence_class: str) -> Optional[dict]:
    """The coronal volume of that class with the highest classification confidence (then series number)."""
    candidates = [v for v in volumes if v["sequence_class"] == sequence_class]
    if not candidates:
        return None
    return min(candidates, key=lambda v: (v["plane"] != "coronal", -v["sequence_confidence"], v["series_number"] or 0))


def inspect_job(ref, out_dir: Path) -> dict:
    """Load the study, choose its fluid-sensitive and T1 series, write ``inputs.json``; no analysis.

    A quick, complete pass over a cohort (what is there, what would be used,
    which studies cannot be loaded) that also exercises the batch machinery.

    Raises
    ------
    NoUsableSeriesError
        No fluid-sensitive series could be loaded.
    """
    from ..io.atomic import atomic_write_text
    import json

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    try:
        from ..io import load_study  # noqa: F401
    except ImportError:
        volumes, skipped = _volume_summaries_fallback(ref, out_dir)
        loader = "fallback"
    else:
        volumes, skipped = _volume_summaries(ref, out_dir)
        loader = "bmepipe.io.load_study"
    t_load = time.perf_counter() - t0
    # messages name files: staged links -> the original files, relative to the root, identifiers redacted
    base = os.path.commonpath([os.path.dirname(f) for f in ref.files]) if ref.files else ""
    skipped = [ref.scrub(str(s).replace(str(out_dir / "_input"), base)) for s in skipped]
    fluid, t1 = _pick(volumes, "fluid_sensitive"), _pick(volumes, "t1")
    if fluid is None:
        why = f" (set aside: {skipped[0]}{' ...' if len(skipped) > 1 else ''})" if skipped else ""
        raise NoUsableSeriesError(f"no usable fluid-sensitive MR series among {len(volumes)} volume(s){why}",
                                  path=os.path.commonpath(ref.files) if ref.files else None)
    used = [dict(role="fluid_sensitive", **fluid)] + ([dict(role="t1", **t1)] if t1 else [])
    inputs = {"series_used": used, "volumes_found": len(volumes), "set_aside": skipped, "loader": loader}
    atomic_write_text(out_dir / "inputs.json", json.dumps(inputs, indent=1) + "\n")
    flags = [{"name": "t1_missing", "value": t1 is None, "threshold": None, "flagged": t1 is None,
              "message": "no T1 series: marrow fat cannot be checked" if t1 is None else ""}]
    return {
        "schema_version": INSPECT_SCHEMA,
        "inputs": inputs,
        "qc": {"flags": flags},
        "timings_s": {"load": round(t_load, 4), "total": round(time.perf_counter() - t0, 4)},
        "software": {"version": __version__},
    }


# ---------------------------------------------------------------------------- resolution
def resolve_job(job: Union[None, str, Callable] = None, params: Optional[dict] = None) -> tuple[Callable, str]:
    """The job callable and its name (recorded in every DONE.json and part of the resume key).

    Parameters
    ----------
    job : None, 'auto', 'analyze', 'inspect', 'MODULE:FUNCTION' or callable
        ``None``/``'auto'``: ``analyze`` when installed, else ``inspect``.
    params : dict, optional
        Keyword arguments bound to the job (``analyze`` options or your own).
    """
    params = dict(params or {})
    if job is None or job == "auto":
        job = "analyze" if analyze_available() else "inspect"
    if job == "analyze":
        if not analyze_available():
            raise ConfigError("bmepipe.analyze is not available in this installation; use --job inspect")
        func, name = analyze_job, "analyze"
    elif job == "inspect":
        func, name = inspect_job, "inspect"
    elif isinstance(job, str):
        module, _, attr = job.partition(":")
        if not module or not attr:
            raise ConfigError(f"job must be 'analyze', 'inspect' or MODULE:FUNCTION, got {job!r}")
        try:
            func = functools.reduce(getattr, attr.split("."), importlib.import_module(module))
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot import job {job!r} ({type(exc).__name__}: {exc})") from None
        if not callable(func):
            raise ConfigError(f"job {job!r} is not callable")
        name = job
    elif callable(job):
        func = job
        name = f"{getattr(job, '__module__', '?')}:{getattr(job, '__qualname__', type(job).__name__)}"
    else:
        raise ConfigError(f"job must be a name or a callable, got {type(job).__name__}")
    return (functools.partial(func, **params) if params else func), name
