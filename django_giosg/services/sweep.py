"""The sweep: detach the links of expired sessions, retry due links, prune old ``detached`` links
(and lapsed leases and visitor origins).

Safe to run twice at once, in two processes: each link is taken by one sweep only
(:func:`_claim_next`). One sweep works ``SWEEP_CONCURRENCY`` links at once (:class:`_LinkWorkers`):
a backlog after a giosg outage is thousands of links, and one link's calls come in waves whose
tails leave most of the ``MAX_CONNECTIONS`` idle.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from django.db import connections, transaction

from .. import clock
from ..client import GiosgClient
from ..conf import GiosgSettings
from ..limits import DEFAULT_LIMITS, CallLimits
from ..logs import short_id
from ..models import Action, VisitorLink, VisitorLinkQuerySet, write_db
from . import workflows
from .leases import prune_leases
from .links import stale_after
from .origins import prune_origins
from .results import Outcome, Result

logger = logging.getLogger(__name__)

CLAIM_CANDIDATES = 10  # links read at a time when taking the next one; others may be faster

#: Takes one link for this sweep (a transition of the link); whether it did.
Claim = Callable[[VisitorLink], bool]

_counting = threading.Lock()  # (the report is counted from the link workers' threads)


@dataclass
class SweepReport:
    """What one :func:`sweep` did, or in a dry run would do; :meth:`line` is its summary.

    ``expired`` and ``due`` count the links taken; each of them ends ``done``, ``retrying``
    (failed again, due after the backoff), ``failed`` (given up) or ``skipped`` (another worker
    had done it meanwhile).
    """

    expired: int = 0
    due: int = 0
    done: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    pruned: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        if self.dry_run:
            return (
                f"giosg_sweep (dry run): would detach {self.expired} expired link(s), "
                f"retry {self.due} due link(s) and prune {self.pruned} detached link(s)."
            )
        return (
            f"giosg_sweep: {self.expired} expired and {self.due} due link(s): "
            f"{self.done} done, {self.retrying} to retry, {self.failed} failed, "
            f"{self.skipped} skipped; {self.pruned} detached link(s) pruned."
        )

    def count(self, outcome: Outcome) -> None:
        """One link worked, and how it stands now."""
        if outcome is Outcome.DONE:
            self.done += 1
        elif outcome is Outcome.SKIPPED:
            self.skipped += 1
        elif outcome is Outcome.FAILED:
            self.failed += 1
        else:
            self.retrying += 1


def _expired(settings: GiosgSettings, now: datetime) -> VisitorLinkQuerySet:
    """Live links whose session has ended: their recorded expiry + ``EXPIRY_GRACE`` has passed."""
    links: VisitorLinkQuerySet = VisitorLink.objects.expired(
        now - timedelta(seconds=settings.expiry_grace)
    )
    return links


def _prunable(settings: GiosgSettings, now: datetime) -> VisitorLinkQuerySet:
    """``detached`` links last changed more than ``PRUNE_AFTER_DAYS`` ago."""
    links: VisitorLinkQuerySet = VisitorLink.objects.prunable(
        now - timedelta(days=settings.prune_after_days)
    )
    return links


def _claim_next(links: VisitorLinkQuerySet, seen: set[int], claim: Claim) -> VisitorLink | None:
    """Take the next of ``links`` for this sweep, right before working it, so that two sweeps
    share the work. ``claim`` is a transition that moves it out of the selection: no two sweeps
    take the same link, and no sweep takes one twice (``seen``, kept in Python so that a long
    run sends no ever longer ``NOT IN`` list). Where the database can, the candidates are also
    locked, and rows another sweep holds are skipped (``SELECT … FOR UPDATE SKIP LOCKED``)."""
    database = write_db(VisitorLink)
    features = connections[database].features
    if not features.has_select_for_update_skip_locked:
        # SQLite: no row locks, and a transaction that reads then writes can fail at once with
        # "database is locked" when another one writes; each update commits on its own instead.
        return _take_unchanged(links[:CLAIM_CANDIDATES], seen, claim)
    with transaction.atomic(using=database):
        locked = links.select_for_update(skip_locked=True)
        if features.supports_select_for_update_with_limit:
            candidates: Iterable[VisitorLink] = locked[:CLAIM_CANDIDATES]
        else:  # Oracle cannot LIMIT a FOR UPDATE: read the candidates, then lock them by id
            ids = list(links.values_list("pk", flat=True)[:CLAIM_CANDIDATES])
            candidates = locked.filter(pk__in=ids)
        return _take_unchanged(candidates, seen, claim)


def _take_unchanged(
    candidates: Iterable[VisitorLink], seen: set[int], claim: Claim
) -> VisitorLink | None:
    for link in candidates:
        if link.pk in seen:
            # Taken (or lost to another sweep) once in this run already; a taken link leaves
            # the selection, so this only stops a run that would otherwise go round in circles.
            continue
        seen.add(link.pk)
        if claim(link):
            return link
    return None


def sweep(
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    limits: CallLimits = DEFAULT_LIMITS,
    stopping: Callable[[], bool] = lambda: False,
) -> SweepReport:
    """Detach the links of expired sessions, retry due links, prune old ``detached`` links.

    At most ``limit`` links are worked (expired ones first, then the longest due); the others
    wait for the next sweep. A dry run counts them and changes nothing. Once ``stopping()`` is
    true (the process was asked to stop), no more links are taken: the one being worked is
    finished, the rest wait for the next sweep.
    """
    now = clock.now()
    report = SweepReport(dry_run=dry_run)
    if dry_run:
        report.expired = _count(_expired(settings, now), limit)
        report.due = _count(VisitorLink.objects.due(now), _left(limit, report.expired))
        report.pruned = _prunable(settings, now).count()
        return report
    stale = stale_after(settings, now)
    seen: set[int] = set()
    # Inside a transaction (ATOMIC_REQUESTS, a caller's atomic block) the claims stay locked
    # until it commits, and other threads' connections would wait for them: work inline then.
    in_transaction = connections[write_db(VisitorLink)].in_atomic_block
    with _LinkWorkers(1 if in_transaction else settings.sweep_concurrency) as workers:
        while _left(limit, report.expired) != 0 and workers.take_slot(stopping):
            link = _claim_next(
                _expired(settings, now), seen, lambda link: link.claim_expired(now, stale)
            )
            if link is None:
                workers.give_back_slot()
                break
            report.expired += 1
            logger.info(
                "django-giosg: the session of visitor %s ended at %s; detaching it",
                short_id(link.visitor_id),
                link.session_expires_at,
            )
            workers.submit(_sweep_one, report, link, workflows.detach, client, settings, limits)
        while _left(limit, report.expired + report.due) != 0 and workers.take_slot(stopping):
            link = _claim_next(
                VisitorLink.objects.due(now), seen, lambda link: link.claim_due(now, stale)
            )
            if link is None:
                workers.give_back_slot()
                break
            report.due += 1
            workflow = workflows.attach if link.wants(Action.ATTACH) else workflows.detach
            workers.submit(_sweep_one, report, link, workflow, client, settings, limits)
    report.pruned, _ = _prunable(settings, now).delete()
    prune_leases(now)
    prune_origins(now)
    return report


def _count(links: VisitorLinkQuerySet, limit: int | None) -> int:
    count = links.count()
    return count if limit is None else min(count, limit)


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(limit - used, 0)


def _sweep_one(
    report: SweepReport,
    link: VisitorLink,
    workflow: Callable[..., Result],
    client: GiosgClient,
    settings: GiosgSettings,
    limits: CallLimits,
) -> None:
    try:
        result = workflow(link.pk, client, settings, limits=limits)
    except Exception:  # a bug or the database, not giosg: the next sweep takes the link again
        logger.exception("django-giosg: the sweep could not work link %s", link.pk)
        outcome = Outcome.RETRYING
    else:
        outcome = result.outcome
    with _counting:
        report.count(outcome)


class _LinkWorkers:
    """Up to ``count`` links worked at once. The sweep takes a slot before it claims a link (so
    that it never claims links it cannot work yet), then hands the link over; the link's work,
    and so all of its database work, runs in one thread. The threads are started as needed and
    close their database connections when the sweep ends: a sweep holds at most ``count`` + 1.
    With ``count`` 1 each link is worked in the calling thread.
    """

    def __init__(self, count: int) -> None:
        self._count = count
        self._slots = threading.Semaphore(count)
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def __enter__(self) -> _LinkWorkers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            return  # (a second Ctrl-C, SystemExit): no waiting for the links being worked
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def take_slot(self, stopping: Callable[[], bool]) -> bool:
        """Wait for a free slot; false (and no slot taken) once the sweep is stopping."""
        self._slots.acquire()
        if stopping():
            self._slots.release()
            return False
        return True

    def give_back_slot(self) -> None:
        self._slots.release()

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        """Work ``job(*args)`` in a free slot's thread (taken with :meth:`take_slot`)."""
        if self._count == 1:
            try:
                job(*args)
            finally:
                self._slots.release()
            return
        with self._lock:
            if not self._idle and len(self._threads) < self._count:
                # (Daemons: a process ended by a second signal does not wait for their links,
                # which a later sweep takes up again after PENDING_STALE_AFTER.)
                thread = threading.Thread(
                    target=self._work,
                    name=f"django-giosg-sweep-{len(self._threads)}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
            else:
                self._idle -= 1
        self._jobs.put((job, args))

    def _work(self) -> None:
        try:
            while (item := self._jobs.get()) is not None:
                job, args = item
                try:
                    job(*args)
                except BaseException:  # (the job catches its errors: a thread must not die)
                    logger.exception("django-giosg: a sweep worker's link failed")
                with self._lock:
                    self._idle += 1
                self._slots.release()
        finally:
            connections.close_all()  # this thread's own
