"""The job pool: each workflow's bound, the process's kept threads, and what jobs report."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from django_giosg.models import Action
from django_giosg.services.pool import THREADS, Collector, JobPool, KeptThreads
from django_giosg.services.results import Result

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


def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


class Ran:
    """A job that notes the thread it ran on; :meth:`wait` waits for its next run."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.names: list[str] = []
        self._ran = threading.Event()

    def __call__(self) -> None:
        self.names.append(self.label or threading.current_thread().name)
        self._ran.set()

    def wait(self) -> bool:
        ran = self._ran.wait(WAIT)
        self._ran.clear()
        return ran


def test_at_most_max_workers_jobs_of_a_workflow_run_at_once() -> None:
    gate = Gate()
    with JobPool(3, collector()) as pool:
        for _ in range(10):
            pool.submit(gate.job)
        eventually(lambda: gate.running == 3)
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


def test_workflows_share_the_processs_kept_threads() -> None:
    def names(count: int) -> set[str]:
        seen: set[str] = set()
        barrier = threading.Barrier(count, timeout=WAIT)

        def job() -> None:
            seen.add(threading.current_thread().name)
            barrier.wait()  # all at once: each on a thread of its own

        with JobPool(count, collector()) as pool:
            for _ in range(count):
                pool.submit(job)
        return seen

    first = names(4)  # (this one may start threads)
    alive = {thread.name for thread in threading.enumerate()}
    second = names(4)
    assert second <= alive  # threads that were there already: none started for it
    assert all(name.startswith("django-giosg-") for name in first)


def test_workflows_at_once_do_not_wait_for_each_other() -> None:
    """However many run at once (logouts in a threaded server, links of a sweep), each gets its
    own ``max_workers`` jobs running: nothing queues behind another workflow."""
    barrier = threading.Barrier(12, timeout=WAIT)

    def meet() -> None:
        barrier.wait()  # broken (an error) unless all 12 run at once

    pools = [JobPool(2, collector()) for _ in range(6)]
    for pool in pools:
        for _ in range(2):
            pool.submit(meet)
    for pool in pools:
        pool.join()
    assert not barrier.broken


def test_one_workflows_queue_does_not_hold_up_another() -> None:
    gate = Gate()
    ran = threading.Event()
    with JobPool(2, collector()) as busy:
        for _ in range(20):
            busy.submit(gate.job)
        with JobPool(2, collector()) as other:
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


def test_a_job_ending_its_thread_is_still_counted_done(caplog: pytest.LogCaptureFixture) -> None:
    done: list[int] = []

    def exits() -> None:
        raise SystemExit(3)

    pool = JobPool(1, collector())
    pool.submit(exits)
    pool.submit(done.append, 1)
    waiting = threading.Thread(target=pool.join, daemon=True)
    waiting.start()
    waiting.join(WAIT)
    assert not waiting.is_alive()  # (it would wait for ever if the job were not counted)
    assert done == [1]
    eventually(lambda: "a job failed" in caplog.text)  # (logged by its thread, as it ends)
    assert "a job failed" in caplog.text


def test_a_job_that_cannot_be_started_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = JobPool(2, collector())

    def refuse(job: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(THREADS, "run", refuse)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        pool.submit(print)
    pool.join()  # returns: nothing is pending


def test_a_thread_that_cannot_be_started_leaves_no_job_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads = KeptThreads()
    refused, later = Ran("refused"), Ran("later")
    real_start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError):
        threads.run(refused)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    threads.run(later)
    assert later.wait()
    time.sleep(0.05)
    assert refused.names == []


def test_idle_threads_end_and_new_ones_start_when_needed() -> None:
    threads = KeptThreads(idle_timeout=0.05)
    ran = Ran()
    threads.run(ran)
    assert ran.wait()
    eventually(lambda: ran.names[0] not in {thread.name for thread in threading.enumerate()})
    assert ran.names[0] not in {thread.name for thread in threading.enumerate()}  # it ended
    threads.run(ran)
    assert ran.wait()
    assert ran.names[1] != ran.names[0]


def test_a_kept_thread_takes_the_next_job() -> None:
    threads = KeptThreads()
    ran = Ran()
    for _ in range(3):
        threads.run(ran)
        assert ran.wait()
        eventually(lambda: threads._idle == 1)  # (back to idle)
    assert len(set(ran.names)) == 1


def test_a_forked_child_starts_without_the_parents_threads() -> None:
    threads = KeptThreads()
    ran = Ran()
    threads.run(ran)
    assert ran.wait()
    eventually(lambda: threads._idle == 1)
    threads._forget()  # what os.fork() runs in the child
    assert threads._idle == 0  # the parent's idle thread is not there: the next job starts one
    threads.run(ran)
    assert ran.wait()
    assert ran.names[1] != ran.names[0]
