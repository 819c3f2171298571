"""Running one workflow's independent giosg calls at once, and collecting what they did.

Jobs run in a bounded thread pool, may add jobs (a page of rooms starts its rooms' chat lists),
report through a :class:`Collector` and never touch the database: that stays in the calling thread.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any

from django.views.decorators.debug import sensitive_variables

from .results import Result

logger = logging.getLogger(__name__)


class Collector:
    """Thread-safe collection of one workflow's outcomes into its :class:`Result`."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self._lock = threading.Lock()
        #: A room answered 404: the cached room list is dropped afterwards, in the calling
        #: thread (a database cache must not be used from the pool's threads).
        self.room_missing = False
        #: A write that matters (a set, a key's delete) got no answer at least once: it may
        #: still land at giosg, late. Recorded on the link afterwards, in the calling thread.
        self.unsettled = False
        #: A job raised what nobody expected (a bug): whatever it sent may have landed.
        self.unexpected = False

    def uncertain(self, attempts: int) -> None:
        """A write had ``attempts`` of unknown outcome (see :class:`~django_giosg.client.Sent`)."""
        if attempts:
            self.unsettled = True

    def set(self, room: str, key: str) -> None:
        with self._lock:
            self.result.set.setdefault(room, []).append(key)

    def deleted(self, room: str, key: str) -> None:
        with self._lock:
            self.result.deleted.setdefault(room, []).append(key)

    def ended(self, chat_id: str) -> None:
        with self._lock:
            self.result.ended.append(chat_id)

    def skipped(self, what: str) -> None:
        with self._lock:
            self.result.skipped.append(what)

    def failed(self, what: str) -> None:
        with self._lock:
            self.result.failed.append(what)


class JobPool:
    """At most ``max_workers`` jobs of one workflow at once, on the process's kept threads
    (:data:`THREADS`); jobs may add jobs; leaving the ``with`` block waits for all.

    A workflow does not start and stop threads of its own: starting 32 of them costs
    milliseconds of a logout's CPU. Calls beyond ``MAX_CONNECTIONS`` wait in the client, within
    their deadline. An exception a job did not expect is recorded as a failure rather than lost.
    """

    def __init__(self, max_workers: int, collector: Collector) -> None:
        self._max_workers = max_workers
        self._collector = collector
        self._waiting: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._running = 0
        self._pending = 0
        self._done = threading.Condition()

    def __enter__(self) -> JobPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.join()

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        with self._done:
            self._pending += 1
            if self._running >= self._max_workers:
                self._waiting.append((job, args))
                return
            self._running += 1
        try:
            THREADS.run(partial(self._run, job, args))
        except BaseException:  # (no thread could be started): not pending, then
            with self._done:
                self._pending -= 1
                self._running -= 1
                self._done.notify_all()
            raise

    @sensitive_variables("args")  # a job's arguments may be values sent to giosg
    def _run(self, job: Callable[..., None], args: tuple[Any, ...]) -> None:
        while True:
            try:
                job(*args)
            except Exception as err:  # a bug, not giosg: keep the workflow's result honest
                logger.exception("django-giosg: an unexpected error in %s", job.__name__)
                self._collector.unexpected = True
                self._collector.failed(f"unexpected {type(err).__name__} in {job.__name__}")
            except BaseException:  # (SystemExit, a greenlet's timeout): this thread ends
                following = self._finished()
                if following is not None:
                    THREADS.run(partial(self._run, *following))
                raise
            following = self._finished()
            if following is None:
                return
            job, args = following  # this thread goes on with the workflow's next job

    def _finished(self) -> tuple[Callable[..., None], tuple[Any, ...]] | None:
        """A job is done: the workflow's next waiting job, if any, for the same thread."""
        with self._done:
            self._pending -= 1
            self._done.notify_all()
            if self._waiting:
                return self._waiting.popleft()
            self._running -= 1
            return None

    def join(self) -> None:
        with self._done:
            self._done.wait_for(lambda: self._pending == 0)


_numbers = itertools.count(1)  # the threads' names


class KeptThreads:
    """The process's threads for the workflows' jobs: a job runs on an idle kept thread, or on a
    new one when none is idle (each workflow bounds its own jobs, so there are never more than
    the workflows at once need); a thread idle for ``idle_timeout`` seconds ends, so that a burst
    does not leave its threads behind for good. Daemon threads: a call in flight does not hold up
    the process's exit. A forked child starts with none (the parent's are not there)."""

    def __init__(self, idle_timeout: float = 60.0) -> None:
        self.idle_timeout = idle_timeout
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job that no job has been promised to yet
        os.register_at_fork(after_in_child=self._forget)

    def run(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread takes this job
                start = False
            else:
                start = True
        if start:  # (started first: if it cannot be, nothing is queued)
            name = f"django-giosg-{next(_numbers)}"
            threading.Thread(target=self._work, name=name, daemon=True).start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # no job was promised to an idle thread: this one ends
                        self._idle -= 1
                        return
                continue  # a job was promised to this thread, and is on its way
            try:
                job()
            except BaseException:  # (jobs catch their exceptions; a thread must not die of one)
                logger.exception("django-giosg: a job failed")
            with self._lock:
                self._idle += 1

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._jobs = queue.SimpleQueue()
        self._idle = 0


#: The process's kept threads, shared by every workflow.
THREADS = KeptThreads()
