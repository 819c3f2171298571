"""Running one workflow's independent giosg calls at once, and collecting what they did.

Jobs run in a bounded thread pool, may add jobs (a page of rooms starts its rooms' chat lists),
report through a :class:`Collector` and never touch the database: that stays in the calling thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
    """A bounded thread pool whose jobs may add jobs; leaving the ``with`` block waits for all.

    An exception a job did not expect is recorded as a failure rather than lost.
    """

    def __init__(self, max_workers: int, collector: Collector) -> None:
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="django-giosg")
        self._collector = collector
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
        self._executor.shutdown(wait=True)

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        with self._done:
            self._pending += 1
        self._executor.submit(self._run, job, args)

    @sensitive_variables("args")  # a job's arguments may be values sent to giosg
    def _run(self, job: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            job(*args)
        except Exception as err:  # a bug, not giosg: keep the workflow's result honest
            logger.exception("django-giosg: an unexpected error in %s", job.__name__)
            self._collector.unexpected = True
            self._collector.failed(f"unexpected {type(err).__name__} in {job.__name__}")
        finally:
            with self._done:
                self._pending -= 1
                self._done.notify_all()

    def join(self) -> None:
        with self._done:
            self._done.wait_for(lambda: self._pending == 0)
