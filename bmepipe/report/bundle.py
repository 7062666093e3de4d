"""Write every output of one analysis into its folder, in the stable layout.

``report.json`` is written last, so its presence means the folder is complete.

The DICOM SEG and the SR (pure-Python highdicom work) are each built in a
forked child process while this process writes the label maps and renders the
figures, so the work spreads over the cores instead of taking turns on the GIL;
the SR does not wait for the SEG, it references the segments of the SEG's
:func:`~bmepipe.report.plan_segmentation`. Children are forked only on Linux,
when this process runs no other Python thread (forking is then safe) and
:func:`bmepipe._threads.max_threads` allows two: for about a second three
processes share the cores. Otherwise the DICOM objects are built on threads
(``BMEPIPE_THREADS=1``: one after the other, in this process). Either way
every file is the same, byte for byte. :func:`preload` does the first-use
work (imports, highdicom's tables) once, for a process that will write many
analyses (a batch worker calls it before its first study): its children then
inherit it.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from bmepipe._threads import max_threads
from bmepipe.errors import BmepipeError, DicomReadError, OutputError
from bmepipe.io.atomic import atomic_write_text

from .figures import overlay_figures
from .html import render_html
from .json_report import dumps_report
from .labels import write_label_maps
from .schema import SIDES, STRUCTURES, to_jsonable
from .seg import build_segmentation, plan_segmentation, write_dicom_seg
from .sr import build_measurement_report, write_dicom_sr

__all__ = ["OUTPUT_FILES", "load_dicom_tables", "preload", "read_source_datasets", "write_outputs"]

PathLike = Union[str, "os.PathLike[str]"]

#: Files besides the label maps, relative to the output folder.
OUTPUT_FILES = {"report_json": "report.json", "report_html": "report.html",
                "dicom_seg": "dicom/seg.dcm", "dicom_sr": "dicom/sr.dcm"}


def read_source_datasets(source_files: Sequence[PathLike]) -> list:
    """Read the source series for SEG/SR (``VolumeMeta.source_files``; a repeated multi-frame file is read once).

    Headers only: the SEG and SR take geometry and references from them, never pixels.
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    datasets, seen = [], set()
    for path in source_files:
        if os.fspath(path) in seen:
            continue
        seen.add(os.fspath(path))
        try:
            datasets.append(dcmread(path, stop_before_pixels=True))
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise DicomReadError(f"cannot re-read the source image ({type(exc).__name__})", path) from exc
    return datasets


def preload() -> None:
    """Import and initialise what :func:`write_outputs` needs on first use (about 0.8 s of CPU).

    highdicom and the DICOM tables it reads on its first object, matplotlib and its font list, the
    report schema validator. For a process that writes many analyses (a batch worker): done once
    here, the write stage and the children it forks for the DICOM objects find all of it done,
    instead of each child reading highdicom's tables again. Calling it twice is cheap. Do not call
    it on a thread that may still run when :func:`write_outputs` starts (it forks only when no
    other thread runs).
    """
    import highdicom  # noqa: F401
    import matplotlib.figure  # noqa: F401
    from matplotlib import font_manager, patheffects  # noqa: F401
    from matplotlib.backends import backend_agg  # noqa: F401
    from PIL import PngImagePlugin  # noqa: F401
    from skimage import measure  # noqa: F401

    from .schema import SCHEMA_VERSION, _validator

    _validator(SCHEMA_VERSION)
    font_manager.findfont("DejaVu Sans")
    load_dicom_tables()


def load_dicom_tables() -> None:
    """Read highdicom's tables of the standard (22 MB of JSON, 0.3 s of CPU) once per process.

    The forked children that build the SEG and the SR inherit them when this process has read them (a
    batch worker does, through :func:`preload`); otherwise each child reads them itself, beside the
    other, which costs the analysis less than reading them here first. Uses highdicom's private API:
    does nothing if that moved.
    """
    with contextlib.suppress(ImportError, AttributeError):
        from highdicom import _standard_utils

        _standard_utils.get_module_attribute_map()
        _standard_utils.get_iod_module_map()
        _standard_utils.get_sop_class_iod_map()


def write_outputs(
    out_dir: PathLike,
    report: Mapping,
    masks: Mapping[str, Mapping[str, np.ndarray]],
    reference_image,
    source_datasets: Sequence,
    *,
    t1_zyx: Optional[np.ndarray] = None,
    uid_seed: Optional[int] = 0,
    dicom: bool = True,
    html: bool = True,
    labels: bool = True,
) -> dict[str, Path]:
    """Write report.json, report.html, the label maps, the DICOM SEG and SR of one analysis.

    Parameters
    ----------
    out_dir : path
        Output folder (created).
    report : dict
        The report (schema :data:`bmepipe.report.SCHEMA_VERSION`); ``outputs`` is filled in here.
    masks : dict
        ``{side: {structure: bool ndarray [slice, row, column]}}`` on the fluid-sensitive grid.
    reference_image : SimpleITK.Image
        The fluid-sensitive series (geometry of the label maps, background of the figures).
    source_datasets : sequence of pydicom.Dataset
        That series' DICOM datasets (see :func:`read_source_datasets`).
    t1_zyx : ndarray, optional
        T1 volume registered onto the fluid-sensitive grid, shown beside it in the figures.
    uid_seed : int or None
        DICOM UIDs derived from the source series, this seed and the report
        content (same input and parameters, same files; different parameters,
        different UIDs). ``None``: random UIDs and the current time.
    dicom, html, labels : bool
        Write the DICOM objects / the HTML page / the NIfTI label maps.

    Returns
    -------
    dict of str -> Path
        Every file written: the keys of :data:`OUTPUT_FILES` and ``labels/<side>_<structure>``.
    """
    import SimpleITK as sitk

    out = Path(out_dir)
    report = to_jsonable(report)
    outputs = {f"labels/{s}_{t}": f"labels/{s}_{t}.nii.gz" for s in SIDES for t in STRUCTURES} if labels else {}
    skipped = ({"dicom_seg", "dicom_sr"} if not dicom else set()) | ({"report_html"} if not html else set())
    outputs.update({k: v for k, v in OUTPUT_FILES.items() if k not in skipped})
    report["outputs"] = dict(sorted(outputs.items()))
    json_path = out / OUTPUT_FILES["report_json"]
    json_text = dumps_report(report, json_path)  # validates: refuse before writing anything

    # A report.json left by an earlier run would make a folder this run fails to finish look complete.
    _remove_stale(json_path)
    dicom_jobs: list = []
    try:
        if dicom:
            seed = None
            if uid_seed is not None:  # the report's content joins the seed: other parameters, other UIDs
                seed = f"{uid_seed}:{hashlib.sha256(json_text.encode()).hexdigest()[:16]}"
            any_mask = any(np.any(m) for per_side in masks.values() for m in per_side.values() if m is not None)
            plan = plan_segmentation(masks, source_datasets, include_empty=not any_mask, uid_seed=seed,
                                     reference_image=reference_image)
            options = dict(uid_seed=seed, content_datetime=report.get("created"))
            dicom_jobs.append(_Background(_write_seg, out, masks, source_datasets, reference_image, plan,
                                          not any_mask, options))
            dicom_jobs.append(_Background(_write_sr, out, report["sides"], source_datasets, plan, options))
        label_files = write_label_maps(masks, reference_image, out) if labels else {}
        if html:
            fluid = sitk.GetArrayFromImage(reference_image)
            spacing = reference_image.GetSpacing()[::-1]
            figures = overlay_figures(fluid, t1_zyx, masks, spacing, direction=reference_image.GetDirection())
            html_file = _write_text(out / OUTPUT_FILES["report_html"], render_html(report, figures), "HTML report")
    except BaseException:
        for job in dicom_jobs:  # the DICOM objects end before this error is raised; their own errors are secondary
            with contextlib.suppress(BaseException):
                job.result()
        raise
    written = {f"labels/{key}": path for key, path in label_files.items()}
    errors: list = []
    for job in dicom_jobs:  # wait for both, then raise the first error (an interrupt before any other)
        try:
            written.update(job.result())
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise next((e for e in errors if not isinstance(e, Exception)), errors[0])
    if html:
        written["report_html"] = html_file
    written["report_json"] = _write_text(json_path, json_text, "report")
    return written


def _remove_stale(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot replace the earlier report ({exc.strerror or exc})", path) from exc


def _write_text(path: Path, text: str, what: str) -> Path:
    try:
        return atomic_write_text(path, text)
    except OSError as exc:
        raise OutputError(f"cannot write the {what} ({exc.strerror or exc})", path) from exc


def _write_seg(out: Path, masks: Mapping, source_datasets: Sequence, reference_image, plan, include_empty: bool,
               options: dict) -> dict[str, Path]:
    """Build and write ``dicom/seg.dcm`` as planned; ``{"dicom_seg": path}``."""
    seg = build_segmentation(masks, source_datasets, include_empty=include_empty, reference_image=reference_image,
                             series_instance_uid=plan.series_instance_uid,
                             sop_instance_uid=plan.sop_instance_uid, **options)
    return {"dicom_seg": write_dicom_seg(seg, out / OUTPUT_FILES["dicom_seg"])}


def _write_sr(out: Path, sides: Mapping, source_datasets: Sequence, plan, options: dict) -> dict[str, Path]:
    """Build and write ``dicom/sr.dcm``, referencing the planned SEG; ``{"dicom_sr": path}``."""
    sr = build_measurement_report(sides, source_datasets, plan, **options)
    return {"dicom_sr": write_dicom_sr(sr, out / OUTPUT_FILES["dicom_sr"])}


class _Background:
    """``fn(*args)`` started now, beside the caller; :meth:`result` waits and returns it (or raises its error).

    A forked child process where that is safe (Linux, no other Python thread in this process, two
    threads allowed by ``BMEPIPE_THREADS``), else a thread. ``fn`` must be a module-level function
    whose result and errors pickle (bmepipe errors do); a child that dies without an answer (killed,
    out of memory) is replaced by running ``fn`` here.
    """

    def __init__(self, fn: Callable, *args: Any) -> None:
        self._fn, self._args = fn, args
        self._child = self._pool = self._future = None
        if max_threads() < 2:
            return  # no concurrency wanted: result() runs fn
        if _can_fork():
            try:
                self._child, self._receive = _fork(fn, args)
                return
            except OSError:  # no process to spare (limits, memory): a thread instead
                pass
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bmepipe-write")
        self._future = self._pool.submit(fn, *args)

    def result(self):
        if self._future is not None:
            try:
                return self._future.result()
            finally:
                self._pool.shutdown()
        if self._child is not None:
            try:
                ok, value = self._receive.recv()
            except EOFError:  # the child died without answering (killed, out of memory): do the work here
                pass
            else:
                if not ok:
                    raise value
                return value
            finally:
                self._receive.close()
                self._child.join()
        return self._fn(*self._args)


def _can_fork() -> bool:
    """Forking is safe: Linux, no other Python thread (none can hold a lock the child would need), no daemon."""
    import multiprocessing

    return sys.platform == "linux" and threading.active_count() == 1 and not multiprocessing.current_process().daemon


def _fork(fn: Callable, args: tuple):
    """Start ``fn(*args)`` in a forked child; ``(process, receiving end of the pipe its outcome comes down)``."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_run_and_send, args=(send, fn, args), daemon=True, name="bmepipe-write")
    # Frozen objects are left alone by the child's garbage collector, so their pages are not copied into the
    # child (Python's advice for fork). Skipped if the application froze objects itself.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        child.start()
    except BaseException:
        receive.close()
        raise
    finally:
        if freeze:
            gc.unfreeze()
        send.close()
    return child, receive


def _run_and_send(send, fn: Callable, args: tuple) -> None:
    """In the child: run ``fn(*args)`` and send ``(True, result)`` or ``(False, error)`` to the parent."""
    try:
        outcome = (True, fn(*args))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent, which raises it
        if not isinstance(exc, BmepipeError) and hasattr(exc, "add_note"):  # keep the child's traceback (3.11+)
            exc.add_note(traceback.format_exc())
        outcome = (False, exc)
    try:
        send.send(outcome)
    except Exception:  # an error that does not pickle: its type and message still reach the parent
        send.send((False, OutputError(f"writing failed ({type(outcome[1]).__name__}: {outcome[1]})")))
    send.close()
