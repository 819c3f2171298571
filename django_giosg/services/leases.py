"""One visitor at a time: attaches and detaches of one visitor never overlap.

Without it, the old binding's deletes could remove keys the new binding has just set (the keys
have the same names). The lease is a :class:`~django_giosg.models.VisitorLease` row, taken with a
conditional update or an insert (so it works on SQLite too), and it expires by itself if its
holder dies.

Trying for a held lease writes nothing into the database's log: the insert skips a conflict
(``INSERT … ON CONFLICT DO NOTHING``) instead of failing on the unique visitor id, where the
database can (every one Django supports but Oracle). A waiter tries again after a growing pause
(up to half a second), not every few milliseconds for as long as the holder works.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db import IntegrityError, connections, transaction

from .. import clock
from ..client import GiosgClient
from ..logs import short_id
from ..models import VisitorLease, write_db

#: Seconds between two tries to take a busy visitor's lease: the first pause (most work on one
#: visitor takes a round trip or a few), half as long again after each try, up to the longest
#: (a login waiting within its INLINE_BUDGET notices the holder's end at most that late).
LEASE_POLL = 0.05
LEASE_POLL_MAX = 0.5
#: How much longer than its work a lease lasts: the work stops at its deadline, but it still
#: writes its outcome to the database and lets go of the lease after that. A lease expiring
#: between the last call and that write would let the next worker in too early.
LEASE_MARGIN = 1.0


class VisitorBusy(Exception):
    """Another attach or detach of the visitor held its lease longer than we could wait."""


def _take_lease(visitor_id: str, seconds: float) -> str | None:
    """Take the visitor's lease for ``seconds`` unless someone holds it: its holder id, or
    ``None``. Usually nobody does (two queries: the insert, and whether it was ours); a lease
    its holder left to expire is taken over."""
    now = clock.now()
    holder = uuid.uuid4().hex
    expires_at = now + timedelta(seconds=seconds)
    if _insert(VisitorLease(visitor_id=visitor_id, holder=holder, expires_at=expires_at)):
        return holder
    expired = VisitorLease.objects.filter(visitor_id=visitor_id, expires_at__lte=now)
    return holder if expired.update(holder=holder, expires_at=expires_at) else None


def _insert(lease: VisitorLease) -> bool:
    """Insert ``lease`` unless the visitor has one already; whether it was inserted."""
    database = write_db(VisitorLease)
    if connections[database].features.supports_ignore_conflicts:
        VisitorLease.objects.bulk_create([lease], ignore_conflicts=True)
        mine = VisitorLease.objects.filter(visitor_id=lease.visitor_id, holder=lease.holder)
        inserted: bool = mine.exists()
        return inserted
    try:  # Oracle: the unique visitor id refuses a second insert
        with transaction.atomic(using=database):
            lease.save(force_insert=True)
    except IntegrityError:
        return False
    return True


@contextmanager
def visitor_lease(visitor_id: str, client: GiosgClient, deadline: float) -> Iterator[None]:
    """Hold the visitor's lease until ``deadline`` (the work's own deadline, so the work never
    outlives it), waiting for it at most as long; raises :class:`VisitorBusy` after that."""
    pause = LEASE_POLL
    while True:
        left = client.time_left(deadline)
        holder = _take_lease(visitor_id, max(left, 0.0) + LEASE_MARGIN)
        if holder is not None:
            break
        if left <= LEASE_POLL:
            raise VisitorBusy(
                f"another attach or detach of visitor {short_id(visitor_id)} was still running"
            )
        client.pause(min(pause, left - LEASE_POLL / 2))  # a last try just before the deadline
        pause = min(pause * 1.5, LEASE_POLL_MAX)
    try:
        yield
    finally:
        VisitorLease.objects.filter(visitor_id=visitor_id, holder=holder).delete()


def prune_leases(now: datetime) -> int:
    """Delete the leases expired by ``now`` (left behind by workers that died)."""
    deleted: int = VisitorLease.objects.filter(expires_at__lt=now).delete()[0]
    return deleted
