"""bmepipe._threads: the thread budget of tasks run side by side."""

from __future__ import annotations

import threading

from bmepipe import _threads


def test_tasks_run_with_their_budget_and_leave_none_behind(monkeypatch):
    monkeypatch.setenv("BMEPIPE_THREADS", "2")
    seen = []

    def task(x):
        inner = _threads.map_in_threads(lambda y: threading.get_ident(), [1, 2])  # nested: inline on one thread
        seen.append((x, _threads.max_threads(), len(set(inner)), threading.get_ident() in inner))
        return x * 10

    assert _threads.map_in_threads(task, [1, 2], threads_each=1) == [10, 20]
    assert sorted(seen) == [(1, 1, 1, True), (2, 1, 1, True)]
    assert _threads.max_threads() == 2  # the caller's own budget is untouched
    # without a budget the tasks see the caller's (BMEPIPE_THREADS)
    assert _threads.map_in_threads(lambda x: _threads.max_threads(), [1, 2]) == [2, 2]


def test_the_budget_is_reset_after_an_error_and_must_be_positive(monkeypatch):
    import pytest

    monkeypatch.setenv("BMEPIPE_THREADS", "2")

    def fails(x):
        raise RuntimeError(f"task {x}")

    with pytest.raises(RuntimeError, match="task 1"):
        _threads.map_in_threads(fails, [1, 2], threads_each=1)
    assert _threads.max_threads() == 2
    with pytest.raises(ValueError):
        _threads.map_in_threads(lambda x: x, [1, 2], threads_each=0)


def test_nested_tasks_keep_the_callers_budget(monkeypatch):
    monkeypatch.setenv("BMEPIPE_THREADS", "1")
    _threads._budget.threads = 2  # a budget set by an enclosing map_in_threads
    try:
        # two pool threads, and inside them the caller's budget, not the environment's
        assert _threads.map_in_threads(lambda x: (_threads.max_threads(), threading.get_ident()), [1, 2])[0][0] == 2
        _threads._budget.threads = 1
        assert _threads.map_in_threads(lambda x: _threads.max_threads(), [1, 2]) == [1, 1]  # inline, budget 1
    finally:
        _threads._budget.threads = None
