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
    return calls


@pytest.mark.parametrize("env", [{"MALLOC_ARENA_MAX": "4"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                                 {"BMEPIPE_MALLOC_ARENAS": "keep"}])
def test_the_users_choice_is_left_alone(monkeypatch, mallopt_calls, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _memory.use_one_heap.__wrapped__() is False
    assert mallopt_calls == []


def test_one_arena_is_asked_for_by_default(mallopt_calls):
    assert _memory.use_one_heap.__wrapped__() is True
    assert mallopt_calls == [(-8, 1)]  # M_ARENA_MAX (glibc malloc.h)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_real_glibc_accepts_it(monkeypatch):
    if _memory._libc() is None:
        pytest.skip("not glibc")
    for key in ("MALLOC_ARENA_MAX", "BMEPIPE_MALLOC_ARENAS", "GLIBC_TUNABLES"):
        monkeypatch.delenv(key, raising=False)
    assert _memory.use_one_heap.__wrapped__() is True  # glibc's mallopt reports success
