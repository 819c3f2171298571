"""services.leases: one attach or detach of a visitor at a time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import responses
from django.contrib.auth.models import AbstractUser
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_giosg.client import GiosgClient
from django_giosg.limits import CallLimits
from django_giosg.models import State, VisitorLease, write_db
from django_giosg.services import leases, workflows

from ..conftest import VISITOR, FakeClock
from .conftest import VARIABLES_URL, link_for, two_rooms

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache")]


def test_a_visitor_held_by_another_worker_is_retried_later(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    VisitorLease.objects.create(
        visitor_id=VISITOR, holder="other", expires_at=timezone.now() + timedelta(minutes=5)
    )
    link = link_for(user)
    result = workflows.attach(
        link.pk, client, two_rooms(), limits=CallLimits(client.deadline_after(0.01))
    )
    assert result.failed == [
        f"another attach or detach of visitor {VISITOR[:6]}… was still running"
    ]
    assert len(mocked.calls) == 0
    link.refresh_from_db()
    assert link.state == State.PENDING_ATTACH
    assert link.attempts == 1


def test_the_wait_for_a_lease_moves_the_clients_clock_until_the_deadline(
    client: GiosgClient, clock: FakeClock
) -> None:
    """The wait pauses on the client's own clock, which a test replaces: a lease never let go
    ends the wait at the deadline at once, instead of hanging the test."""
    VisitorLease.objects.create(
        visitor_id=VISITOR, holder="other", expires_at=timezone.now() + timedelta(minutes=5)
    )
    deadline = client.deadline_after(0.2)
    with pytest.raises(leases.VisitorBusy), leases.visitor_lease(VISITOR, client, deadline):
        pytest.fail("the lease was held by another worker")
    assert clock.sleeps[:2] == pytest.approx([leases.LEASE_POLL, 1.5 * leases.LEASE_POLL])
    assert 0 < client.time_left(deadline) <= leases.LEASE_POLL


def test_a_long_wait_tries_less_and_less_often(client: GiosgClient, clock: FakeClock) -> None:
    """Not every 50 ms for as long as the holder works: the pause grows by half up to half a
    second, and the last try comes just before the deadline."""
    VisitorLease.objects.create(
        visitor_id=VISITOR, holder="other", expires_at=timezone.now() + timedelta(minutes=5)
    )
    deadline = client.deadline_after(10.0)
    with pytest.raises(leases.VisitorBusy), leases.visitor_lease(VISITOR, client, deadline):
        pytest.fail("the lease was held by another worker")
    growing = [0.05, 0.075, 0.1125, 0.16875, 0.253125, 0.3796875, leases.LEASE_POLL_MAX]
    assert clock.sleeps[:7] == pytest.approx(growing)
    assert max(clock.sleeps) == leases.LEASE_POLL_MAX
    assert len(clock.sleeps) == 24  # (200 at a steady 50 ms)
    assert 0 < client.time_left(deadline) <= leases.LEASE_POLL


def test_trying_for_a_held_lease_makes_no_query_fail(client: GiosgClient) -> None:
    """A failed INSERT is an ERROR line in PostgreSQL's log on every try: a waiter must not
    make one."""
    VisitorLease.objects.create(
        visitor_id=VISITOR, holder="other", expires_at=timezone.now() + timedelta(minutes=5)
    )
    failed: list[str] = []

    def record_failures(execute: Any, sql: str, *args: Any) -> Any:
        try:
            return execute(sql, *args)
        except Exception as err:
            failed.append(f"{type(err).__name__}: {sql}")
            raise

    deadline = client.deadline_after(1.0)
    with (
        connections[write_db(VisitorLease)].execute_wrapper(record_failures),
        pytest.raises(leases.VisitorBusy),
        leases.visitor_lease(VISITOR, client, deadline),
    ):
        pytest.fail("the lease was held by another worker")
    assert failed == []
    assert VisitorLease.objects.get().holder == "other"


def test_a_free_visitor_is_leased_by_an_insert(client: GiosgClient) -> None:
    """The usual case, on the path of every login and logout: the insert, and whether it was
    ours (then, on leaving, the delete)."""
    held = leases.visitor_lease(VISITOR, client, client.deadline_after(1.0))
    with CaptureQueriesContext(connections[write_db(VisitorLease)]) as taking:
        held.__enter__()
    held.__exit__(None, None, None)
    assert len(taking.captured_queries) == 2
    assert not VisitorLease.objects.exists()
    with leases.visitor_lease(VISITOR, client, client.deadline_after(1.0)):
        lease = VisitorLease.objects.get()
        assert lease.visitor_id == VISITOR
        assert lease.holder != "other"
    assert not VisitorLease.objects.exists()


def test_without_insert_on_conflict_the_unique_id_refuses_a_second_lease(
    client: GiosgClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Oracle has no ``INSERT … ON CONFLICT DO NOTHING``: a failed insert says the lease is
    held."""
    features = connections[write_db(VisitorLease)].features
    monkeypatch.setattr(features, "supports_ignore_conflicts", False)
    with leases.visitor_lease(VISITOR, client, client.deadline_after(1.0)):
        assert VisitorLease.objects.count() == 1
        second = leases.visitor_lease(VISITOR, client, client.deadline_after(0.01))
        with pytest.raises(leases.VisitorBusy), second:
            pytest.fail("the lease was held")
    assert not VisitorLease.objects.exists()


def test_an_expired_lease_is_taken_over_and_released(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    VisitorLease.objects.create(
        visitor_id=VISITOR, holder="dead", expires_at=timezone.now() - timedelta(seconds=1)
    )
    mocked.post(VARIABLES_URL, status=201, json={})
    link = link_for(user)
    assert workflows.attach(link.pk, client, two_rooms()).ok
    assert not VisitorLease.objects.exists()
