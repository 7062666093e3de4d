"""One C heap for all of the pipeline's threads (glibc), so freed image buffers are reused, not re-faulted.

glibc gives every thread its own heap ("arena") and keeps freed blocks of up to 32 MB (one float32 slice
stack of a 512 x 512 x 30 series is 31 MB) there for reuse by that thread only. The pipeline's stages run
on several threads (bias fields, motion check, QC, the two hips), so a buffer freed on one thread could not
serve the next stage's thread: resident memory grew with each stage's garbage. Trimming the heaps at every
stage boundary (``malloc_trim``, the earlier fix) kept the peak down but handed every page back to the
kernel, and each stage then paid to fault fresh zeroed pages in again: about 1.5 s of system time per
512 x 512 x 30 study on the 2-core machine. One arena (``mallopt(M_ARENA_MAX, 1)``) lets every thread
reuse what any other freed: on the benchmark study 0.4-0.6 s of system time instead of 1.5 s, 0.5 s less
wall time, and a lower peak over several studies (1.65 GB instead of 1.78 GB over four analyses in one
process). The allocations this pipeline makes are few and large, so the single arena's lock costs nothing
measurable.

:func:`use_one_heap` applies it once per process; it respects a ``MALLOC_ARENA_MAX`` or a
``glibc.malloc.arena_max`` tunable the user set (the thresholds below are still raised), and
``BMEPIPE_MALLOC_ARENAS=keep`` leaves the allocator alone. Elsewhere than glibc it does nothing. It bounds the arenas glibc creates from then on: threads that
already had their own (a host application's, before the first analysis) may keep theirs.

It also keeps image-sized blocks in that heap: glibc serves blocks above its mmap threshold (at most 32 MB,
and a float64 512 x 512 x 30 stack is 63 MB) with a fresh ``mmap`` whose pages are faulted in on first
touch and returned on ``free``, and it trims the heap's free top back to the kernel. With the thresholds at
:data:`MMAP_THRESHOLD_BYTES` and :data:`TRIM_THRESHOLD_BYTES` a freed stack serves the next one: on the
benchmark study the first analysis took 4.77 instead of 4.98 s (median of 6 fresh processes each, system
time 0.57 instead of 1.02 s) at the same peak memory (1039 MB), and a repeated ``compare`` 5.5-5.9 instead
of 6.1-6.5 s (system time 0.2 instead of 1.45 s). The price: a process (a batch worker, a Jupyter kernel)
holds its peak memory until it exits, also for what the host application frees later. A
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` (or the matching ``glibc.malloc`` tunable) the
user set is respected; Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` for its workers, so there glibc's
trimming stays.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = ["use_one_heap"]

_M_ARENA_MAX = -8  # glibc malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks below this size come from the heap and are reused after ``free`` (glibc's dynamic default stops at 32 MB).
MMAP_THRESHOLD_BYTES = 256 << 20
#: The largest mmap threshold glibc before 2.27 accepts (``HEAP_MAX_SIZE / 2``).
OLD_GLIBC_MMAP_THRESHOLD_BYTES = 32 << 20
#: Free memory at the heap's top up to this size stays in the process (glibc's default follows the mmap threshold):
#: the largest value ``mallopt`` takes (2 GB), so a process keeps its peak. Returning the two analyses of a
#: ``compare`` (1.6 GB) to the kernel cost the next one 1.2 s of system time faulting them in again.
TRIM_THRESHOLD_BYTES = 2**31 - 1


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:  # not glibc (macOS, musl, Windows)
        return None


def _user_set(variable: str, tunable: str) -> bool:
    return variable in os.environ or tunable in os.environ.get("GLIBC_TUNABLES", "")


@functools.lru_cache(maxsize=1)
def use_one_heap() -> bool:
    """Make glibc serve every thread from one heap that keeps image buffers (see the module docstring); True if
    the single arena was set."""
    if os.environ.get("BMEPIPE_MALLOC_ARENAS", "").lower() == "keep":
        return False
    libc = _libc()
    if libc is None:
        return False
    # setting either threshold ends glibc's dynamic adjustment of both: set both or neither
    user_thresholds = (_user_set("MALLOC_MMAP_THRESHOLD_", "mmap_threshold")
                       or _user_set("MALLOC_TRIM_THRESHOLD_", "trim_threshold"))
    # glibc before 2.27 refuses an mmap threshold above 32 MB; the trim threshold alone would then freeze the
    # mmap threshold at its 128 kB start, so it is only set once the mmap threshold was taken
    if not user_thresholds and any(libc.mallopt(_M_MMAP_THRESHOLD, size) == 1
                                   for size in (MMAP_THRESHOLD_BYTES, OLD_GLIBC_MMAP_THRESHOLD_BYTES)):
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    if _user_set("MALLOC_ARENA_MAX", "arena_max"):
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, 1) == 1)
