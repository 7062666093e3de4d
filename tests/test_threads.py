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
