"""``giosg_sweep``: detach expired sessions' links, retry due links, prune old detached links.

Run it from cron every few minutes; it does the HTTP work itself, so no task worker is needed.
Where there is no cron (a container), ``--every SECONDS`` keeps it running, one sweep after
another, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from ... import tasks
from ...errors import GiosgConfigurationError
from ..arguments import positive_seconds, whole_number

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Command(BaseCommand):
    help = (
        "Detach the links of expired sessions, retry links whose time has come and prune "
        "old detached links. Prints one summary line; exits 0 even while giosg is down."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be done; change nothing and call nobody.",
        )
        parser.add_argument(
            "--limit",
            type=whole_number(1),
            metavar="N",
            help="Work at most N links in this run; the others wait for the next run.",
        )
        parser.add_argument(
            "--every",
            type=positive_seconds,
            metavar="SECONDS",
            help="Sweep again SECONDS after each sweep, until SIGTERM or SIGINT (where there is "
            "no cron). The link being worked is finished first; a second signal ends it at once.",
        )

    def handle(
        self, *args: Any, dry_run: bool, limit: int | None, every: float | None, **options: Any
    ) -> None:
        if every is None:
            self._write(self._sweep(limit=limit, dry_run=dry_run))
            return
        if dry_run:
            raise CommandError("--dry-run and --every do not go together: a dry run is one run.")
        if threading.current_thread() is not threading.main_thread():
            raise CommandError("--every needs the main thread: it stops on SIGTERM and SIGINT.")
        with _stop_signals() as stops:
            while True:
                self._write(self._round(limit, every, stopping=lambda: not stops.empty()))
                try:  # the pause; a signal ends it at once
                    received = stops.get(timeout=every)
                except queue.Empty:
                    continue
                self._write(f"giosg_sweep: stopped ({signal.Signals(received).name}).")
                return

    def _sweep(
        self,
        *,
        limit: int | None,
        dry_run: bool = False,
        stopping: Callable[[], bool] = lambda: False,
    ) -> str:
        try:
            report = tasks.run_sweep(limit=limit, dry_run=dry_run, stopping=stopping)
        except GiosgConfigurationError as err:
            raise CommandError(str(err)) from None
        if report is None:
            return "giosg_sweep: GIOSG is disabled (ENABLED = False); nothing done."
        return report.line()

    def _round(self, limit: int | None, every: float, stopping: Callable[[], bool]) -> str:
        """One sweep of ``--every``, which takes no more links once a stop was asked for (it
        finishes the links it is working: ``docker stop`` waits 10 s before it kills). Any
        error but the settings' is logged and the next round comes all the same: a periodic
        sweep must not die of one bad round (a database restart, a bug met by one link). The
        database connections are closed around it as around a request, so that weeks of
        rounds never reuse a dead or stale one."""
        close_old_connections()
        try:
            return self._sweep(limit=limit, stopping=stopping)
        except CommandError:
            raise
        except Exception as err:
            logger.exception("django-giosg: the sweep failed; the next one is in %s s", every)
            return f"giosg_sweep: the sweep failed ({type(err).__name__}); see the log."
        finally:
            close_old_connections()

    def _write(self, line: str) -> None:
        """Write a line and flush it, so that ``docker logs`` shows each round as it ends."""
        self.stdout.write(line)
        self.stdout.flush()


@contextmanager
def _stop_signals() -> Iterator[queue.SimpleQueue[int]]:
    """The first SIGTERM or SIGINT puts its number on the queue instead of ending the process,
    and gives both signals back to the previous handlers, so that a second one ends it at once
    (Ctrl-C twice). The previous handlers are back afterwards too (``call_command`` may run it
    in a longer process).

    A signal's handler runs between two bytecodes of the main thread, wherever it is. A
    ``threading.Event`` could deadlock there: its ``set()`` takes the lock its ``wait()`` holds
    for a moment on entry and exit. ``SimpleQueue.put()`` is reentrant, and ``get(timeout=…)``
    ends at once when a signal puts something."""
    stops: queue.SimpleQueue[int] = queue.SimpleQueue()

    def put_back() -> None:
        for number, handler in previous.items():
            # None: a handler installed outside Python, which cannot be put back; the default.
            signal.signal(number, signal.SIG_DFL if handler is None else handler)

    def stop(received: int, frame: object) -> None:
        stops.put(received)
        put_back()

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield stops
    finally:
        put_back()
