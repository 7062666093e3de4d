"""Run the two hips of a study side by side on two threads.

NumPy, SciPy's ``ndimage`` and SimpleITK release the GIL in their heavy loops, so the independent work
of the right and the left hip overlaps on a 2-core machine. Each side's computation reads shared inputs
and writes only its own result, so the output does not depend on the thread schedule.

``BMEPIPE_THREADS=1`` in the environment turns this off (a batch with as many workers as cores gains
nothing from it).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def max_threads() -> int:
    """Threads bmepipe may use for one study: ``BMEPIPE_THREADS`` or the usable cores, at most 2."""
    env = os.environ.get("BMEPIPE_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


def map_in_threads(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, in order, on up to :func:`max_threads` threads.

    An exception raised by ``fn`` is re-raised here, as in the serial loop.
    """
    items = list(items)
    workers = min(max_threads(), len(items))
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bmepipe-side") as pool:
        return list(pool.map(fn, items))
