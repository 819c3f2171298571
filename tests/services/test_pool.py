"""The job pool: each workflow's bound, the process's shared threads, and what jobs report."""

from __future__ import annotations

import threading
import time

import pytest

from django_giosg.conf import load
from django_giosg.models import Action
from django_giosg.services.pool import Collector, JobPool
from django_giosg.services.results import Result

from ..conftest import ORG, ROOM, TOKEN

WAIT = 10.0


def collector() -> Collector:
    return Collector(Result(1, Action.DETACH))


class Gate:
    """Jobs that wait until opened, counting how many ran at once."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.running = 0
        self.most = 0
        self.done = 0
        self._lock = threading.Lock()

    def job(self) -> None:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.open.wait(WAIT)
        with self._lock:
            self.running -= 1
            self.done += 1


def test_at_most_max_workers_jobs_of_a_workflow_run_at_once() -> None:
    gate = Gate()
    with JobPool(3, collector(), threads=8) as pool:
        for _ in range(10):
            pool.submit(gate.job)
        deadline = time.monotonic() + WAIT
        while gate.running < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # a fourth would have started by now
        assert gate.running == 3
        gate.open.set()
    assert gate.done == 10
    assert gate.most == 3


def test_leaving_the_block_waits_for_jobs_added_by_jobs() -> None:
    done = []

    def leaf(n: int) -> None:
        time.sleep(0.01)
        done.append(n)

    def branch(pool: JobPool) -> None:
        for n in range(5):
            pool.submit(leaf, n)

    with JobPool(2, collector()) as pool:
        pool.submit(branch, pool)
    assert sorted(done) == [0, 1, 2, 3, 4]


def test_workflows_share_the_processs_threads() -> None:
    def names(count: int) -> set[str]:
        seen: set[str] = set()
        barrier = threading.Barrier(count, timeout=WAIT)

        def job() -> None:
            seen.add(threading.current_thread().name)
            barrier.wait()  # all at once: each on a thread of its own

        with JobPool(count, collector(), threads=4) as pool:
            for _ in range(count):
                pool.submit(job)
        return seen

    first = names(4)  # (this one may start threads)
    alive = {thread.name for thread in threading.enumerate()}
    second = names(4)
    assert second <= alive  # threads that were there already: none started for it
    assert all(name.startswith("django-giosg") for name in first)


def test_one_workflows_queue_does_not_hold_up_another() -> None:
    gate = Gate()
    ran = threading.Event()
    with JobPool(2, collector(), threads=4) as busy:
        for _ in range(20):
            busy.submit(gate.job)
        with JobPool(2, collector(), threads=4) as other:
            other.submit(ran.set)
        assert ran.is_set()  # while the busy workflow still has 18 jobs waiting
        assert gate.done == 0
        gate.open.set()
    assert gate.done == 20


def test_an_unexpected_error_is_a_failure_and_the_other_jobs_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    collected = collector()
    done: list[int] = []

    def broken() -> None:
        raise KeyError("bug")

    with JobPool(1, collected) as pool:
        pool.submit(broken)
        pool.submit(done.append, 1)
    assert collected.unexpected
    assert collected.result.failed == ["unexpected KeyError in broken"]
    assert done == [1]
    assert "an unexpected error in broken" in caplog.text


def test_a_job_that_cannot_be_scheduled_is_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = JobPool(2, collector())

    def refuse(*args: object) -> None:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(pool._executor, "submit", refuse)
    with pytest.raises(RuntimeError, match="interpreter shutdown"):
        pool.submit(print)
    pool.join()  # returns: nothing is pending


def test_the_shared_threads_grow_with_max_connections_and_are_rebuilt_after_fork(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load(
        {
            "API_TOKEN": TOKEN,
            "ORGANIZATION_ID": ORG,
            "ROOM_IDS": [ROOM],
            "MAX_WORKERS": 2,
            "MAX_CONNECTIONS": 64,
        }
    )
    executor = JobPool.of(settings, collector())._executor
    assert executor._max_workers >= 64
    assert JobPool(2, collector())._executor is executor  # fewer are enough: the same one
    monkeypatch.setattr("django_giosg.services.pool.os.getpid", lambda: -1)  # a forked child
    assert JobPool(2, collector())._executor is not executor
