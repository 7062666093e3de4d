"""Run per-study jobs in a separate, killable process.

A :class:`WorkerSlot` owns one long-lived child process (``python -m
bmepipe.batch._child``) and hands it one study at a time over a pipe. The child
imports the heavy libraries once and runs study after study; the slot kills it
(with its whole process group) when a study exceeds its timeout or when the
batch is interrupted, and starts a fresh one for the next study. A crash of the
child (segfault, out-of-memory kill) costs only the study it was running.

Plain :mod:`subprocess` rather than :mod:`multiprocessing`: Dask worker
processes are daemonic and may not start multiprocessing children, and the
same code must run the same way locally and on Dask.

The child dies with the thread that started it (Linux ``PR_SET_PDEATHSIG``,
plus a parent-pid check elsewhere), so a killed batch leaves no process writing
into its output folder. It runs with :mod:`faulthandler` on: when it dies of a
signal, the Python stack it was in is in the study's ``job.log`` and becomes the
study's ``error.txt``.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["WorkerSlot", "Interrupted", "one_line_error", "dumps", "crash_stack"]


#: Environment variables that cap the threads of numerical libraries (read when they initialise) and
#: bmepipe's own per-hip threads (``bmepipe._threads``).
THREAD_LIMIT_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                          "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "BMEPIPE_THREADS")


class Interrupted(Exception):
    """The batch was stopped while a study was running (the study stays unfinished)."""


def one_line_error(exc: BaseException) -> str:
    """``"<path>: <problem>"`` for bmepipe errors, ``"<Type>: <message>"`` otherwise; always one line."""
    from ..errors import BmepipeError

    if isinstance(exc, BmepipeError):
        return str(exc)
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` for a worker process (cloudpickle for lambdas and closures)."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle  # lambdas and closures from the Python API (cloudpickle comes with dask)

        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return str(-code)


class WorkerSlot:
    """One child process that runs studies one at a time, killable at any moment.

    Parameters
    ----------
    max_studies : int, optional
        Replace the child by a fresh one after this many studies (bounds memory
        leaks of long batches); ``None``: keep it until it fails or times out.
    threads : int, optional
        Thread limit of the numerical libraries in the child (OpenMP, BLAS, ITK);
        ``None`` leaves their defaults (usually every core).
    stop : threading.Event, optional
        Set by the batch on Ctrl-C: the running study is abandoned (child killed)
        and :meth:`run` raises :class:`Interrupted`.
    """

    def __init__(self, max_studies: Optional[int] = None, threads: Optional[int] = None,
                 stop: Optional[threading.Event] = None) -> None:
        self.max_studies = max_studies
        self.threads = threads
        self.stop = stop or threading.Event()
        self._proc: Optional[subprocess.Popen] = None
        self._send: Optional[Connection] = None
        self._recv: Optional[Connection] = None
        self._count = 0

    # ------------------------------------------------------------------ child lifecycle
    def _start(self) -> None:
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        # The child sees the same modules as we do (jobs defined in scripts or test folders); the
        # interpreter's own folders (stdlib, site-packages) it has anyway.
        own = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
        paths = [p for p in sys.path if p and os.path.isdir(p) and not os.path.abspath(p).startswith(own)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        if self.threads:
            env.update({name: str(int(self.threads)) for name in THREAD_LIMIT_VARIABLES})
        # -P: the current folder is not put first on the child's path (``-m`` would), so a ``bmepipe`` folder
        # there cannot shadow the bmepipe this process runs (Python >= 3.11).
        safe_path = ["-P"] if sys.version_info >= (3, 11) else []
        try:
            self._proc = subprocess.Popen(
                [sys.executable, *safe_path, "-m", "bmepipe.batch._child", str(req_r), str(resp_w), str(os.getpid())],
                pass_fds=(req_r, resp_w), stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # own process group: killable as a whole, deaf to the terminal's Ctrl-C
            )
        finally:
            os.close(req_r)
            os.close(resp_w)
        self._send = Connection(req_w, readable=False)
        self._recv = Connection(resp_r, writable=False)
        self._count = 0

    def close(self, kill: bool = False) -> None:
        """Stop the child (politely unless ``kill``); the slot can be used again afterwards."""
        proc, self._proc = self._proc, None
        for conn in (self._send, self._recv):
            if conn is not None:
                try:
                    conn.close()  # EOF on its request pipe: an idle child exits by itself
                except OSError:
                    pass
        self._send = self._recv = None
        if proc is None:
            return
        if not kill:
            try:
                proc.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    # ------------------------------------------------------------------ one study
    def run(self, job: Callable, ref: Any, out_dir: Path, timeout_s: Optional[float]) -> dict:
        """Run ``job(ref, out_dir)`` in the child.

        Returns
        -------
        dict
            ``ok`` (bool), ``error`` (one line or None), ``traceback`` (str or
            None), ``job_s`` (float, wall time of the job in the child).

        Raises
        ------
        Interrupted
            ``stop`` was set while waiting.
        """
        if self._proc is None or self._proc.poll() is not None:
            self.close(kill=True)
            self._start()
        t0 = time.perf_counter()
        deadline = None if timeout_s is None else t0 + float(timeout_s)
        try:
            self._send.send_bytes(dumps((job, ref, str(out_dir))))
        except (BrokenPipeError, OSError):
            self.close(kill=True)
            return _failure("worker process could not be reached", t0)
        while True:
            if self.stop.is_set():
                self.close(kill=True)
                raise Interrupted("batch interrupted")
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.perf_counter()))
            try:
                ready = self._recv.poll(wait)
            except (EOFError, OSError):
                ready = True
            if ready:
                try:
                    result = pickle.loads(self._recv.recv_bytes())
                except (EOFError, OSError):  # the child died: find out how
                    code = self._proc.wait()
                    self.close(kill=True)
                    how = f"signal {_signal_name(code)}" if code < 0 else f"exit code {code}"
                    return _failure(f"worker process died ({how}) while analysing the study", t0,
                                    crash_stack(Path(out_dir) / "job.log"))
                self._count += 1
                if self.max_studies and self._count >= self.max_studies:
                    self.close()
                return result
            if deadline is not None and time.perf_counter() >= deadline:
                self.close(kill=True)
                return _failure(f"timed out after {timeout_s:g} s (worker process killed)", t0)


def _failure(message: str, t0: float, tb: Optional[str] = None) -> dict:
    return {"ok": False, "error": message, "traceback": tb, "job_s": time.perf_counter() - t0}


def crash_stack(log_path: Path) -> Optional[str]:
    """The :mod:`faulthandler` dump a crashed child left at the end of ``job.log`` (None if there is none)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))  # the dump is short and comes last
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    start = text.rfind("Fatal Python error:")
    if start < 0:
        return None
    # the list of loaded extension modules says nothing about the study
    lines = [ln for ln in text[start:].splitlines() if not ln.startswith("Extension modules:")]
    return "\n".join(lines).strip() + "\n"


# ====================================================================== child side
def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _run_one(job: Callable, ref: Any, out_dir: Path) -> dict:
    """Run one job with stdout/stderr captured into ``out_dir/job.log``."""
    from ..io.atomic import atomic_write_text

    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "job.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        report = job(ref, out_dir)
        if isinstance(report, dict) and not (out_dir / "report.json").exists():
            atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1, default=_json_default) + "\n")
        result = {"ok": True, "error": None, "traceback": None}
    except Exception as exc:  # noqa: BLE001 - isolate the study: any error becomes its failure
        result = {"ok": False, "error": one_line_error(exc), "traceback": traceback.format_exc()}
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    try:
        if log_path.stat().st_size == 0:
            log_path.unlink()
    except OSError:
        pass
    result["job_s"] = time.perf_counter() - t0
    return result


def main(argv: Optional[list[str]] = None) -> int:
    """Child entry point (``python -m bmepipe.batch._child REQ_FD RESP_FD PARENT_PID``)."""
    import faulthandler

    req_fd, resp_fd, parent_pid = (int(v) for v in (argv or sys.argv[1:]))
    _die_with_parent(parent_pid)
    # A crash in an extension (segfault, abort) writes the Python stack to fd 2, which is the study's
    # job.log while a job runs: the parent turns it into the study's error.txt.
    faulthandler.enable(all_threads=True)
    recv = Connection(req_fd, writable=False)
    send = Connection(resp_fd, readable=False)
    while True:
        try:
            message = recv.recv_bytes()
        except EOFError:
            return 0
        try:
            job, ref, out_dir = pickle.loads(message)
        except Exception as exc:  # noqa: BLE001 - e.g. the job's module is not importable here
            result = {"ok": False, "error": f"cannot load the job in the worker process: {one_line_error(exc)}",
                      "traceback": traceback.format_exc(), "job_s": 0.0}
        else:
            result = _run_one(job, ref, Path(out_dir))
        send.send_bytes(pickle.dumps(result))

