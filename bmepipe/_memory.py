"""Give freed memory back to the operating system between pipeline stages.

glibc keeps freed blocks of up to 32 MB (one float32 slice stack of a 512 x 512 x 30 series is 31 MB) in
its heaps for reuse, and every thread has its own heap, so a study's peak resident memory grows with
garbage from earlier stages. ``malloc_trim(0)`` at a stage boundary returns it (a few milliseconds).
Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_free_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return None


def release_free_memory() -> None:
    """Return the C heap's free memory to the operating system (glibc ``malloc_trim``); no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
