"""Run a per-study job over a cohort: resumable, failure-isolated, local processes or Dask.

Output layout::

    OUT/cohort.json                    per-cohort pseudonym salt (keep it private)
    OUT/batch.log                      one line per study, tracebacks of failures (no patient identifiers)
    OUT/studies/<study>/               one folder per study; DONE.json is its completion marker
    OUT/studies/<study>.partial-<tok>/ a study being written (never read; removed when finished or redone)
    OUT/summary.csv, summary.parquet   cohort table rebuilt from the study folders

A study is written into a ``.partial-<token>`` folder (its own per attempt, so
two attempts never share a folder), ``DONE.json`` is written last inside it,
then the folder is renamed to its final name. A study counts as finished when
its final folder holds a ``DONE.json`` with the same input fingerprint, job,
parameters hash and bmepipe version; anything else is redone. Killing the batch
at any moment therefore loses at most the studies that were running.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .._version import __version__
from ..errors import ConfigError, OutputError
from ..io.atomic import atomic_write_text
from .discover import StudyRef, discover_studies
from .jobs import resolve_job
from .worker import Interrupted, WorkerSlot, dumps, one_line_error

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "StudyOutcome",
    "BatchResult",
    "run_batch",
    "run_study",
    "is_finished",
    "params_hash",
    "load_cohort",
    "study_folders",
    "DONE_NAME",
    "DEFAULT_TIMEOUT_S",
]

PathLike = Union[str, "os.PathLike[str]"]
DONE_NAME = "DONE.json"
DONE_SCHEMA = "bmepipe.batch.done/1"
DEFAULT_TIMEOUT_S = 1800.0
_TEMP_RE = re.compile(r"\.(partial|old)-[0-9a-f]{8}$")
log = logging.getLogger("bmepipe.batch")


@dataclass(frozen=True)
class StudyOutcome:
    """What happened to one study in this run."""

    study_id: str
    status: str  # "ok", "failed" or "skipped" (finished in an earlier run)
    error: Optional[str] = None
    elapsed_s: float = 0.0
    traceback: Optional[str] = None


@dataclass
class BatchResult:
    """Counts and outputs of :func:`run_batch`."""

    out: Path
    job: str
    summary: "pd.DataFrame"
    n_studies: int
    n_skipped: int
    n_ok: int
    n_failed: int
    elapsed_s: float
    phases_s: dict = field(default_factory=dict)  # discover, run, summary

    @property
    def summary_csv(self) -> Path:
        return self.out / "summary.csv"

    @property
    def summary_parquet(self) -> Path:
        return self.out / "summary.parquet"


# ---------------------------------------------------------------------------- cohort, markers
def load_cohort(out: PathLike) -> dict:
    """``OUT/cohort.json``, created with a fresh random salt on first use."""
    path = Path(out) / "cohort.json"
    if path.exists():
        try:
            cohort = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(cohort.get("salt"), str) and cohort["salt"]:
                return cohort
        except (OSError, ValueError):
            pass
        raise OutputError("unreadable cohort file (it holds the pseudonym salt; restore it or use a new OUT)", path)
    cohort = {
        "salt": secrets.token_hex(16),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bmepipe_version": __version__,
        "note": "The salt makes the study pseudonyms; keep this file private and with the outputs.",
    }
    atomic_write_text(path, json.dumps(cohort, indent=1) + "\n")
    return cohort


def params_hash(job_name: str, params: Optional[dict] = None) -> str:
    """Hash of what determines a study's result besides its input (job and its parameters)."""
    text = json.dumps({"job": job_name, "params": params or {}}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def study_folders(out: PathLike) -> list[Path]:
    """Final study folders under ``OUT/studies`` (those holding DONE.json), sorted by name."""
    studies = Path(out) / "studies"
    if not studies.is_dir():
        return []
    return sorted(p for p in studies.iterdir()
                  if p.is_dir() and not _TEMP_RE.search(p.name) and (p / DONE_NAME).is_file())


def _read_done(folder: Path) -> Optional[dict]:
    try:
        done = json.loads((folder / DONE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def is_finished(out: PathLike, ref: StudyRef, phash: str, *, retry_failed: bool = False) -> bool:
    """True if ``ref`` was finished earlier with the same input, job, parameters and bmepipe version."""
    folder = Path(out) / "studies" / ref.study_id
    done = _read_done(folder)
    if done is None:
        return False
    same = (done.get("fingerprint") == ref.fingerprint and done.get("params_hash") == phash
            and done.get("software_version") == __version__)
    if not same:
        return False
    if done.get("status") == "ok":
        return True
    return done.get("status") == "failed" and not retry_failed


# ---------------------------------------------------------------------------- one study
def _finalize(partial: Path, final: Path) -> None:
    """Rename ``partial`` onto ``final``, replacing an older result; never loses the older one on failure."""
    for _ in range(10):  # another attempt of the same study may be finishing at the same moment
        try:
            os.rename(partial, final)
            return
        except FileNotFoundError:
            raise OutputError("unfinished study folder vanished (removed by another run?)", partial) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise OutputError(f"cannot move the finished study into place ({exc.strerror})", final) from exc
        old = final.with_name(f"{final.name}.old-{secrets.token_hex(4)}")
        try:
            os.rename(final, old)
        except FileNotFoundError:
            continue
        try:
            os.rename(partial, final)
        except OSError:
            with contextlib.suppress(OSError):
                os.rename(old, final)  # put the previous result back
            continue
        shutil.rmtree(old, ignore_errors=True)
        return
    raise OutputError("cannot move the finished study into place", final)


def _write_study(ref: StudyRef, out: Path, partial: Path, *, status: str, error: Optional[str],
                 tb: Optional[str], started: str, elapsed_s: float, job_s: Optional[float],
                 job_name: str, phash: str) -> None:
    if tb:
        atomic_write_text(partial / "error.txt", tb)
    done = {
        "schema": DONE_SCHEMA,
        "study": ref.study_id,
        "patient": ref.patient,
        "status": status,
        "error": error,
        "fingerprint": ref.fingerprint,
        "job": job_name,
        "params_hash": phash,
        "software_version": __version__,
        "n_files": ref.n_files,
        "n_series": ref.n_series,
        "modalities": list(ref.modalities),
        "started_utc": started,
        "elapsed_s": round(elapsed_s, 3),
        "job_s": None if job_s is None else round(job_s, 3),
        "host": socket.gethostname(),
    }
    atomic_write_text(partial / DONE_NAME, json.dumps(done, indent=1) + "\n")  # last: the completion marker
    _finalize(partial, out / "studies" / ref.study_id)


def run_study(
    ref: StudyRef,
    out: PathLike,
    job: Callable,
    *,
    job_name: str = "custom",
    phash: Optional[str] = None,
    timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
    slot: Optional[WorkerSlot] = None,
) -> StudyOutcome:
    """Run ``job`` on one study in a worker process and store the result in ``OUT/studies/<study_id>``.

    Never raises for a problem of the study itself (bad data, exception,
    crash, timeout): the study gets a folder whose DONE.json says ``failed`` and
    why, and the returned outcome says the same.

    Parameters
    ----------
    ref : StudyRef
    out : path
        Batch output folder.
    job : callable
        ``job(ref, out_dir) -> dict | None`` (see :mod:`bmepipe.batch.jobs`).
    job_name : str
        Recorded in DONE.json.
    phash : str, optional
        Parameters hash for resuming (default :func:`params_hash` of ``job_name``).
    timeout_s : float or None
        Wall-clock limit of the job; the worker process is killed when exceeded.
    slot : WorkerSlot, optional
        Reuse this worker process (default: a fresh one, closed afterwards).

    Raises
    ------
    Interrupted
        The slot was stopped (Ctrl-C): the study is left unfinished.
    """
    out = Path(out)
    studies = out / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    # each attempt writes its own folder; left-overs of killed attempts are removed by run_batch
    partial = studies / f"{ref.study_id}.partial-{secrets.token_hex(4)}"
    partial.mkdir()
    phash = phash or params_hash(job_name)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    if ref.problem:
        result = {"ok": False, "error": ref.problem, "traceback": None, "job_s": None}
    else:
        own = slot is None
        slot = slot or WorkerSlot()
        try:
            result = slot.run(job, ref, partial, timeout_s)
        finally:
            if own:
                slot.close(kill=True)
    status = "ok" if result["ok"] else "failed"
    error, tb = ref.scrub(result.get("error")), ref.scrub(result.get("traceback"))
    elapsed = time.perf_counter() - t0
    _write_study(ref, out, partial, status=status, error=error, tb=tb, started=started, elapsed_s=elapsed,
                 job_s=result.get("job_s"), job_name=job_name, phash=phash)
    return StudyOutcome(ref.study_id, status, error, elapsed, tb)


def _record_failure(ref: StudyRef, out: Path, error: str, job_name: str, phash: str) -> StudyOutcome:
    """A failed study folder written by the coordinating process (a Dask task that never reported)."""
    studies = out / "studies"
    partial = studies / f"{ref.study_id}.partial-{secrets.token_hex(4)}"
    partial.mkdir(parents=True)
    error = ref.scrub(error)
    _write_study(ref, out, partial, status="failed", error=error, tb=None,
                 started=datetime.now(timezone.utc).isoformat(timespec="seconds"), elapsed_s=0.0, job_s=None,
                 job_name=job_name, phash=phash)
    return StudyOutcome(ref.study_id, "failed", error)


# ---------------------------------------------------------------------------- executors
#: Longest time (s) the main thread waits for a study before it checks for Ctrl-C.
_POLL_S = 0.2


def _run_local(todo: list[StudyRef], out: Path, job: Callable, job_name: str, phash: str,
               timeout_s: Optional[float], workers: int, slot_options: dict,
               on_done: Callable[[StudyOutcome], None]) -> None:
    """``workers`` threads, each driving its own worker process (threads only wait; processes compute)."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    stop = threading.Event()
    slots: list[WorkerSlot] = []
    lock = threading.Lock()
    local = threading.local()

    def task(ref: StudyRef) -> StudyOutcome:
        slot = getattr(local, "slot", None)
        if slot is None:
            slot = local.slot = WorkerSlot(stop=stop, **slot_options)
            with lock:
                slots.append(slot)
        return run_study(ref, out, job, job_name=job_name, phash=phash, timeout_s=timeout_s, slot=slot)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bmepipe-batch")
    try:
        pending = {pool.submit(task, ref) for ref in todo}
        while pending:
            # a timed wait: the kernel may hand Ctrl-C's SIGINT to one of the pool's threads, and Python raises
            # KeyboardInterrupt only once this (main) thread runs again; an untimed wait slept on until the next
            # study finished, however long that took
            finished, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            for fut in finished:
                on_done(fut.result())
    except BaseException:
        stop.set()  # running studies are abandoned (their processes killed), queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        for slot in slots:
            slot.close(kill=stop.is_set())


_dask_local = threading.local()


def _dask_study(ref: StudyRef, out: str, job: Callable, job_name: str, phash: str,
                timeout_s: Optional[float], slot_options: dict) -> StudyOutcome:
    """The Dask task: the same :func:`run_study`, with one worker process per Dask worker thread."""
    slot = getattr(_dask_local, "slot", None)
    if slot is None:
        slot = _dask_local.slot = WorkerSlot(**slot_options)
    return run_study(ref, out, job, job_name=job_name, phash=phash, timeout_s=timeout_s, slot=slot)


def _run_dask(todo: list[StudyRef], out: Path, job: Callable, job_name: str, phash: str,
              timeout_s: Optional[float], slot_options: dict, client,
              on_done: Callable[[StudyOutcome], None]) -> None:
    from distributed import as_completed

    run = secrets.token_hex(4)
    futures = {
        client.submit(_dask_study, ref, str(out), job, job_name, phash, timeout_s, slot_options,
                      pure=False, key=f"bmepipe-batch-{run}-{ref.study_id}"): ref
        for ref in todo
    }
    try:
        for fut in as_completed(list(futures)):
            ref = futures[fut]
            try:
                outcome = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the study still gets its row
                outcome = _record_failure(ref, out, f"Dask task failed: {one_line_error(exc)}", job_name, phash)
            on_done(outcome)
    except BaseException:
        client.cancel(list(futures))
        raise


# ---------------------------------------------------------------------------- the batch
@contextlib.contextmanager
def _batch_log(path: Path):
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False  # the console shows the progress bar and the final counts instead
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(saved[0])
        log.propagate = saved[1]


def _remove_temporaries(out: Path) -> None:
    studies = out / "studies"
    if studies.is_dir():
        for p in studies.iterdir():
            if _TEMP_RE.search(p.name):
                shutil.rmtree(p, ignore_errors=True)


def run_batch(
    root: PathLike,
    out: PathLike,
    *,
    job: Union[None, str, Callable] = None,
    params: Optional[dict] = None,
    workers: int = 1,
    client: Any = None,
    timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
    names: str = "pseudonym",
    retry_failed: bool = False,
    force: bool = False,
    progress: Optional[bool] = False,
    max_studies_per_process: Optional[int] = 50,
    threads_per_study: Optional[int] = 1,
    on_study: Optional[Callable[[StudyOutcome], None]] = None,
) -> BatchResult:
    """Analyse every study under ``root`` into ``out``; resumable and failure-isolated.

    Parameters
    ----------
    root : path
        Folder holding the cohort's DICOM files, in any layout.
    out : path
        Output folder (created). Rerunning with the same ``out`` skips finished studies.
    job : None, 'analyze', 'inspect', 'MODULE:FUNCTION' or callable
        Per-study job (see :mod:`bmepipe.batch.jobs`); default ``analyze`` when
        installed, else ``inspect``.
    params : dict, optional
        Keyword arguments for the job. They are part of the resume key: changing
        them redoes every study.
    workers : int
        Studies analysed at once on this machine (one process each). Ignored with ``client``.
    client : dask.distributed.Client or str, optional
        Run on Dask instead: a client, or a scheduler address such as
        ``'tcp://10.0.0.5:8786'``. Workers need bmepipe installed and must see
        ``root`` and ``out`` under the same paths (a shared file system).
    timeout_s : float or None
        Per-study wall-clock limit in seconds; ``None`` for none.
    names : {'pseudonym', 'uid', 'patient'}
        Study folder naming (see :func:`bmepipe.batch.discover_studies`).
    retry_failed : bool
        Redo studies that failed in an earlier run (by default they are kept as failed).
    force : bool
        Redo every study.
    progress : bool or None
        Progress bar with ETA on stderr; ``None``: only when stderr is a terminal.
    max_studies_per_process : int or None
        Replace each worker process after this many studies (bounds memory growth).
    threads_per_study : int or None
        Thread limit of the numerical libraries inside each study's process
        (default 1: the batch is parallel across studies; use ``workers`` ~ cores).
        ``None`` leaves the libraries' defaults.
    on_study : callable, optional
        Called in this process with each :class:`StudyOutcome` as it finishes.

    Returns
    -------
    BatchResult
        Counts and the summary table (also written to ``summary.csv`` and
        ``summary.parquet``).

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C: running studies are abandoned and stay unfinished; the next run redoes them.
    """
    from tqdm.auto import tqdm

    from .summary import build_summary, write_summary

    if client is None and int(workers) < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if timeout_s is not None and not timeout_s > 0:
        raise ConfigError(f"timeout must be positive, got {timeout_s}")
    t0 = time.perf_counter()
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    func, job_name = resolve_job(job, params)
    try:
        dumps(func)
    except Exception as exc:  # noqa: BLE001 - fail before any study, not in every one
        raise ConfigError(f"the job cannot be sent to worker processes ({one_line_error(exc)})") from None
    phash = params_hash(job_name, params)
    slot_options = {"max_studies": max_studies_per_process, "threads": threads_per_study}
    cohort = load_cohort(out)
    own_client = None
    if isinstance(client, str):
        from distributed import Client

        client = own_client = Client(client)
    try:
        with _batch_log(out / "batch.log"):
            mode = f"dask {client.scheduler.address}" if client is not None else f"{workers} local worker(s)"
            log.info("batch start: bmepipe %s, job %s, %s, timeout %s s", __version__, job_name, mode, timeout_s)
            t_phase = time.perf_counter()
            refs = discover_studies(root, salt=cohort["salt"], names=names, exclude=[out],
                                    workers=int(workers) if client is None else 1)
            phases = {"discover": time.perf_counter() - t_phase}
            todo = [r for r in refs if force or not is_finished(out, r, phash, retry_failed=retry_failed)]
            n_skipped = len(refs) - len(todo)
            _remove_temporaries(out)  # studies left unfinished by a killed run
            log.info("%d studies found, %d finished earlier, %d to run", len(refs), n_skipped, len(todo))
            counts = {"ok": 0, "failed": 0}
            bar = tqdm(total=len(todo), unit="study", desc="bmepipe batch", disable=None if progress is None
                       else not progress, dynamic_ncols=True)

            def done(outcome: StudyOutcome) -> None:
                counts[outcome.status] = counts.get(outcome.status, 0) + 1
                if outcome.status == "ok":
                    log.info("study %s ok (%.1f s)", outcome.study_id, outcome.elapsed_s)
                else:
                    log.warning("study %s failed (%.1f s): %s", outcome.study_id, outcome.elapsed_s, outcome.error)
                    if outcome.traceback:
                        log.debug("study %s traceback:\n%s", outcome.study_id, outcome.traceback.rstrip())
                bar.set_postfix(failed=counts["failed"], refresh=False)
                bar.update(1)
                if on_study is not None:
                    on_study(outcome)

            t_phase = time.perf_counter()
            try:
                if client is not None:
                    _run_dask(todo, out, func, job_name, phash, timeout_s, slot_options, client, done)
                else:
                    _run_local(todo, out, func, job_name, phash, timeout_s, int(workers), slot_options, done)
            except (KeyboardInterrupt, Interrupted):
                log.warning("interrupted after %d of %d studies; unfinished ones will be redone",
                            counts["ok"] + counts["failed"], len(todo))
                raise KeyboardInterrupt from None
            finally:
                bar.close()
            phases["run"] = time.perf_counter() - t_phase
            t_phase = time.perf_counter()
            _remove_temporaries(out)
            summary = build_summary(out, study_ids=[r.study_id for r in refs])
            write_summary(summary, out)
            phases["summary"] = time.perf_counter() - t_phase
            elapsed = time.perf_counter() - t0
            log.info("batch end: %d run (%d failed), %d skipped, %.1f s (discover %.1f s, run %.1f s, summary %.1f s)",
                     counts["ok"] + counts["failed"], counts["failed"], n_skipped, elapsed, phases["discover"],
                     phases["run"], phases["summary"])
    finally:
        if own_client is not None:
            own_client.close()
    n_failed_total = int(sum((_read_done(out / "studies" / r.study_id) or {}).get("status") != "ok" for r in refs))
    return BatchResult(out=out, job=job_name, summary=summary, n_studies=len(refs), n_skipped=n_skipped,
                       n_ok=len(refs) - n_failed_total, n_failed=n_failed_total, elapsed_s=elapsed,
                       phases_s={k: round(v, 4) for k, v in phases.items()})
