"""Running one workflow's independent giosg calls at once, and collecting what they did.

Jobs run in a bounded thread pool, may add jobs (a page of rooms starts its rooms' chat lists),
report through a :class:`Collector` and never touch the database: that stays in the calling thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from django.views.decorators.debug import sensitive_variables

from ..conf import GiosgSettings
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
    """At most ``max_workers`` jobs of one workflow at once, on the process's shared threads;
    jobs may add jobs; leaving the ``with`` block waits for all.

    The threads are shared (:func:`_shared_executor`) so that a workflow does not start and stop
    its own threads: starting 32 of them costs milliseconds of a logout's CPU. Each workflow keeps
    its own queue, so that one workflow's many jobs cannot hold up another's beyond its
    ``max_workers`` threads. An exception a job did not expect is recorded as a failure rather
    than lost.
    """

    def __init__(self, max_workers: int, collector: Collector, *, threads: int = 0) -> None:
        self._executor = _shared_executor(max(threads, max_workers))
        self._max_workers = max_workers
        self._collector = collector
        self._waiting: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._running = 0
        self._pending = 0
        self._done = threading.Condition()

    @classmethod
    def of(cls, settings: GiosgSettings, collector: Collector) -> JobPool:
        """``MAX_WORKERS`` jobs at once, on as many shared threads as the process's client has
        connections (``MAX_CONNECTIONS``), so that concurrent workflows need not queue."""
        return cls(settings.max_workers, collector, threads=settings.max_connections)

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
            self._executor.submit(self._run, job, args)
        except BaseException:  # (the interpreter is shutting down): not pending, then
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
            with self._done:
                self._pending -= 1
                self._done.notify_all()
                if not self._waiting:
                    self._running -= 1
                    return
                job, args = self._waiting.popleft()  # this thread goes on with the next job

    def join(self) -> None:
        with self._done:
            self._done.wait_for(lambda: self._pending == 0)


_executor_lock = threading.Lock()
_executor: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, executor)


def _shared_executor(threads: int) -> ThreadPoolExecutor:
    """The process's thread pool for workflow jobs, with at least ``threads`` threads (started
    as needed, then kept). A forked child builds its own: the parent's threads are not there."""
    global _executor
    pid = os.getpid()
    with _executor_lock:
        if _executor is None or _executor[0] != pid or _executor[1] < threads:
            # (A smaller one is dropped, not shut down: a workflow may still be submitting to
            # it. Once nothing refers to it, its idle threads end.)
            executor = ThreadPoolExecutor(threads, thread_name_prefix="django-giosg")
            _executor = (pid, threads, executor)
        return _executor[2]
