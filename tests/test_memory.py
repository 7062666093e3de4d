"""bmepipe._memory: one glibc heap for the pipeline's threads, unless the user chose otherwise."""

from __future__ import annotations

import sys

import pytest

from bmepipe import _memory


@pytest.fixture
def mallopt_calls(monkeypatch):
    """The ``mallopt`` calls made, through a stand-in C library; the allocator's environment cleared."""
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(_memory, "_libc", lambda: FakeLibc())
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("BMEPIPE_MALLOC_ARENAS", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    return calls


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc malloc.h
THRESHOLDS = [(M_MMAP_THRESHOLD, 256 << 20), (M_TRIM_THRESHOLD, 2**31 - 1)]


@pytest.mark.parametrize("env, calls", [
    ({"MALLOC_ARENA_MAX": "4"}, THRESHOLDS),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, THRESHOLDS),
    ({"MALLOC_MMAP_THRESHOLD_": "131072"}, [(M_ARENA_MAX, 1)]),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, [(M_ARENA_MAX, 1)]),
    ({"BMEPIPE_MALLOC_ARENAS": "keep", "MALLOC_ARENA_MAX": "4"}, []),
])
def test_the_users_choice_is_left_alone(monkeypatch, mallopt_calls, env, calls):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _memory.use_one_heap.__wrapped__() is (calls != [] and "MALLOC_ARENA_MAX" not in env
                                                  and "arena_max" not in env.get("GLIBC_TUNABLES", ""))
    assert mallopt_calls == calls


def test_one_arena_and_the_thresholds_are_asked_for_by_default(mallopt_calls):
    assert _memory.use_one_heap.__wrapped__() is True
    assert mallopt_calls == THRESHOLDS + [(M_ARENA_MAX, 1)]


def test_an_old_glibc_gets_its_largest_mmap_threshold(monkeypatch, mallopt_calls):
    """glibc < 2.27 refuses mmap thresholds above 32 MB: the next try is 32 MB, and only then the trim threshold."""
    calls = []

    class OldLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 0 if param == M_MMAP_THRESHOLD and value > 32 << 20 else 1

    monkeypatch.setattr(_memory, "_libc", lambda: OldLibc())
    assert _memory.use_one_heap.__wrapped__() is True
    assert calls == [(M_MMAP_THRESHOLD, 256 << 20), (M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 2**31 - 1),
                     (M_ARENA_MAX, 1)]


def test_no_trim_threshold_without_an_mmap_threshold(monkeypatch, mallopt_calls):
    calls = []

    class Refusing:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 0 if param == M_MMAP_THRESHOLD else 1

    monkeypatch.setattr(_memory, "_libc", lambda: Refusing())
    _memory.use_one_heap.__wrapped__()
    assert all(param != M_TRIM_THRESHOLD for param, _ in calls)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_real_glibc_accepts_it(monkeypatch):
    if _memory._libc() is None:
        pytest.skip("not glibc")
    for key in ("MALLOC_ARENA_MAX", "BMEPIPE_MALLOC_ARENAS", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_",
                "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(key, raising=False)
    assert _memory.use_one_heap.__wrapped__() is True  # glibc's mallopt reports success
    libc = _memory._libc()
    assert libc.mallopt(M_MMAP_THRESHOLD, 256 << 20) == 1 or libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
    assert libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
