"""services.leases: one attach or detach of a visitor at a time."""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
from django.contrib.auth.models import AbstractUser
from django.utils import timezone

from django_giosg.client import GiosgClient
from django_giosg.limits import CallLimits
from django_giosg.models import State, VisitorLease
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
    assert len(clock.sleeps) >= 3
    assert set(clock.sleeps) == {leases.LEASE_POLL}
    assert client.time_left(deadline) <= leases.LEASE_POLL


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
