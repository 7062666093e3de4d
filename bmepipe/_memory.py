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
``glibc.malloc.arena_max`` tunable the user set, and ``BMEPIPE_MALLOC_ARENAS=keep`` leaves the allocator
alone. Elsewhere than glibc it does nothing. It bounds the arenas glibc creates from then on: threads that
already had their own (a host application's, before the first analysis) may keep theirs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = ["use_one_heap"]

_M_ARENA_MAX = -8  # glibc malloc.h


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:  # not glibc (macOS, musl, Windows)
        return None


@functools.lru_cache(maxsize=1)
def use_one_heap() -> bool:
    """Make glibc serve every thread from one heap (see the module docstring); True if it was set."""
    if ("MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", "")
            or os.environ.get("BMEPIPE_MALLOC_ARENAS", "").lower() == "keep"):
        return False
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, 1) == 1)

