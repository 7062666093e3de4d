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
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .._version import __version__
from ..errors import ConfigError, NoUsableSeriesError

__all__ = ["resolve_job", "inspect_job", "analyze_job", "analyze_available"]

INSPECT_SCHEMA = "bmepipe.batch.inspect/1"


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


def analyze_job(ref, out_dir: Path, **params: Any) -> None:
    """Run the full pipeline on one study: the only place that knows how to call ``bmepipe.analyze``.

    ``analyze`` gets exactly the study's files (``load_study`` takes a file
    list, so a study spread over folders or sharing one is handled) and writes
    ``report.json`` (with stage timings), ``report.html``, label maps and DICOM
    SEG/SR into ``out_dir``. If ``analyze`` takes a ``pseudonym`` it gets the
    study's folder name, so the report and the cohort table name the study alike.
    ``params`` are :func:`bmepipe.analyze` keyword arguments (configuration overrides).
    """
    import inspect

    analyze = _analyze_function()
    if analyze is None:
        raise ConfigError("bmepipe.analyze is not available in this installation; use the 'inspect' job")
    accepted = inspect.signature(analyze).parameters
    if "pseudonym" in accepted:
        params.setdefault("pseudonym", ref.study_id)
    if "record_timings" in accepted:
        params.setdefault("record_timings", True)  # stage timings for the cohort table
    _preload_writer()
    analyze(list(ref.files), out_dir=out_dir, **params)


def _preload_writer() -> None:
    """A batch worker runs study after study: the writer's first-use work (highdicom's tables, 0.3 s of
    CPU) is done once here instead of in every study's SEG and SR children."""
    try:
        from ..report.bundle import preload
    except ImportError:
        return
    preload()


# ---------------------------------------------------------------------------- inspect
def inspect_job(ref, out_dir: Path) -> dict:
    """Load the study and choose its fluid-sensitive and T1 series (no analysis); write ``inputs.json``.

    A quick, complete pass over a cohort (what is there, what would be used,
    which studies cannot be loaded) with :func:`bmepipe.io.load_study` and
    :func:`bmepipe.io.select_series`; ``inputs`` has the layout of analyze's
    report.json.

    Raises
    ------
    NoUsableSeriesError
        Nothing loadable, or no fluid-sensitive series.
    """
    import json

    from ..analysis import report_inputs
    from ..io import load_study, select_series
    from ..io.atomic import atomic_write_text

    t0 = time.perf_counter()
    study = load_study(list(ref.files))
    t_load = time.perf_counter() - t0
    try:
        selection = select_series(study)
    except NoUsableSeriesError as err:  # say why the series that could have served were set aside
        aside = "; ".join(f"{s.path}: {s.reason}" for s in study.skipped[:3])
        aside += f"; and {len(study.skipped) - 3} more" if len(study.skipped) > 3 else ""
        raise NoUsableSeriesError(f"{err.message}; set aside: {aside}" if aside else err.message, err.path) from None
    inputs = report_inputs(study, selection)  # the "inputs" section of analyze's report.json
    inputs["study"]["pseudonym"] = ref.study_id
    atomic_write_text(Path(out_dir) / "inputs.json", json.dumps(inputs, indent=1) + "\n")
    no_t1 = selection.t1 is None
    return {
        "schema_version": INSPECT_SCHEMA,
        "inputs": inputs,
        "qc": {"flags": [{"name": "t1_missing", "value": no_t1, "threshold": None, "flagged": no_t1,
                          "message": "no T1 series: marrow fat cannot be checked" if no_t1 else ""}]},
        "timings_s": {"load": round(t_load, 4), "select": round(time.perf_counter() - t0 - t_load, 4)},
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
