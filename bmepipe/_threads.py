"""Run the two hips of a study (or the two studies of a compare) side by side on two threads.

NumPy, SciPy's ``ndimage`` and SimpleITK release the GIL in their heavy loops, so the independent work
of the right and the left hip overlaps on a 2-core machine. Each side's computation reads shared inputs
and writes only its own result, so the output does not depend on the thread schedule.

``BMEPIPE_THREADS=1`` in the environment turns this off (a batch with as many workers as cores gains
nothing from it).

The pipeline's parallelism is these threads (and the batch's processes): BLAS runs on one thread inside
:func:`bmepipe.analyze` and :func:`bmepipe.compare` (:func:`single_threaded_blas`).
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Optional, TypeVar

from threadpoolctl import threadpool_limits

T = TypeVar("T")
R = TypeVar("R")


_budget = threading.local()  # .threads: the limit map_in_threads(threads_each=...) set for this thread's task


def max_threads() -> int:
    """Threads bmepipe may use for one study: ``BMEPIPE_THREADS`` or the usable cores, at most 2; inside a task
    of :func:`map_in_threads` with ``threads_each``, that number."""
    limit = getattr(_budget, "threads", None)
    if limit is not None:
        return limit
    env = os.environ.get("BMEPIPE_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


def map_in_threads(fn: Callable[[T], R], items: Iterable[T], *, threads_each: Optional[int] = None) -> list[R]:
    """``[fn(x) for x in items]``, in order, on up to :func:`max_threads` threads.

    ``threads_each``: :func:`max_threads` inside each task while they run side by side (``compare`` runs its
    two analyses with one thread each: nested hip and QC threads on top only added switching, 5 % of the time);
    by default the tasks keep the caller's. It bounds bmepipe's own threads, not ITK's pool inside a filter.
    An exception raised by ``fn`` is re-raised here, as in the serial loop.
    """
    if threads_each is not None and threads_each < 1:
        raise ValueError(f"threads_each must be at least 1, got {threads_each}")
    items = list(items)
    workers = min(max_threads(), len(items))
    if workers <= 1:
        return [fn(x) for x in items]
    budget = threads_each if threads_each is not None else getattr(_budget, "threads", None)  # else the caller's

    def task(x):  # on a thread of this call's own pool: no budget of its own before
        _budget.threads = budget
        try:
            return fn(x)
        finally:
            _budget.threads = None

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bmepipe-side") as pool:
        return list(pool.map(task, items))


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


def single_threaded_blas(fn: Callable[..., R]) -> Callable[..., R]:
    """Run ``fn`` with BLAS (OpenBLAS, MKL) limited to one thread, restored afterwards.

    The pipeline's matrix products are small (``(N, 3) @ (3, 3)`` coordinate maps); OpenBLAS's own thread
    pool on top of the two hips' threads oversubscribes the cores, and its threads' hand-offs then cost
    far more than the product: 100 ms instead of 1 ms for the 270,000 head-ray points of one hip when the
    other core was busy (measured here, OpenBLAS 0.3.31). The limit is process-wide: overlapping calls
    (compare's two analyses inside its own call, or a user's threads) share one limit, and the last
    call to finish restores the user's setting.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _blas_users, _blas_limiter
        with _blas_lock:
            if _blas_users == 0:
                _blas_limiter = threadpool_limits(limits=1, user_api="blas")
            _blas_users += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with _blas_lock:
                _blas_users -= 1
                if _blas_users == 0:
                    _blas_limiter.restore_original_limits()
                    _blas_limiter = None

    return wrapper
