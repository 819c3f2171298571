"""services.links: the row changes entry points ask for (bind, release, reset)."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction

from django_giosg.models import State, VisitorLink, VisitorLinkQuerySet, write_db
from django_giosg.services import links

from ..conftest import VISITOR
from .conftest import ROOM_2, SHARED, link_for, two_rooms

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache")]


def test_bind_supersedes_another_users_live_link(user: AbstractUser) -> None:
    bob = get_user_model().objects.create_user("bob")
    first = links.bind(user, VISITOR, two_rooms())
    second = links.bind(bob, VISITOR, two_rooms())
    assert first.attach is not None
    assert second.detach == [first.attach]
    states = dict(VisitorLink.objects.values_list("pk", "state"))
    assert states == {first.attach: State.PENDING_DETACH, second.attach: State.PENDING_ATTACH}


def test_a_bind_that_loses_a_race_inside_a_transaction_supersedes_the_winner(
    user: AbstractUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As under ``ATOMIC_REQUESTS``: the insert that loses to a concurrent login is rolled back
    to a savepoint on the links' database, and the transaction goes on (a savepoint on another
    database would leave this one unusable)."""
    bob = get_user_model().objects.create_user("bob")
    winner = links.bind(bob, VISITOR, two_rooms()).attach
    real_first = VisitorLinkQuerySet.first
    reads: list[object] = []

    def read_before_the_winner(self: VisitorLinkQuerySet) -> VisitorLink | None:
        reads.append(self)
        return None if len(reads) == 1 else real_first(self)

    monkeypatch.setattr(VisitorLinkQuerySet, "first", read_before_the_winner)
    with transaction.atomic(using=write_db(VisitorLink)):
        plan = links.bind(user, VISITOR, two_rooms())
        assert plan.detach == [winner]
        states = dict(VisitorLink.objects.values_list("pk", "state"))
    assert states == {winner: State.PENDING_DETACH, plan.attach: State.PENDING_ATTACH}
    assert len(reads) == 2


def test_bind_of_an_attached_link_only_reattaches_for_new_rooms(user: AbstractUser) -> None:
    settings = two_rooms(USE_BROWSER_ROOMS=True)
    link = link_for(user, state=State.ATTACHED, browser_rooms=[ROOM_2])
    assert links.bind(user, VISITOR, settings, browser_rooms=[ROOM_2]).attach is None
    assert links.bind(user, VISITOR, settings, browser_rooms=[SHARED]).attach == link.pk
    link.refresh_from_db()
    assert link.state == State.PENDING_ATTACH
    assert link.browser_rooms == [ROOM_2, SHARED]


def test_retry_resets_only_failed_links(user: AbstractUser) -> None:
    failed_attach = link_for(user, state=State.FAILED, failed_action="attach", attempts=10)
    failed_detach = VisitorLink.objects.create(
        visitor_id="f" * 32, state=State.FAILED, failed_action="detach", attempts=10
    )
    attached = VisitorLink.objects.create(visitor_id="e" * 32, state=State.ATTACHED)
    ids = [failed_attach.pk, failed_detach.pk, attached.pk]
    reset = links.reset_failed(ids, two_rooms())
    assert sorted(reset) == sorted([(failed_attach.pk, "attach"), (failed_detach.pk, "detach")])
    states = dict(VisitorLink.objects.values_list("pk", "state"))
    assert states[failed_attach.pk] == State.PENDING_ATTACH
    assert states[failed_detach.pk] == State.PENDING_DETACH
    assert states[attached.pk] == State.ATTACHED
    assert set(VisitorLink.objects.filter(pk__in=ids[:2]).values_list("attempts", flat=True)) == {
        0
    }


def test_retry_of_a_failed_attach_whose_visitor_moved_on_detaches(user: AbstractUser) -> None:
    failed = link_for(user, state=State.FAILED, failed_action="attach")
    link_for(user)  # a newer live link of the visitor
    assert links.reset_failed([failed.pk], two_rooms()) == [(failed.pk, "detach")]
    failed.refresh_from_db()
    assert failed.state == State.PENDING_DETACH


def test_bind_gives_up_loudly_when_every_try_loses_a_race(
    user: AbstractUser, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def always_taken(**fields: object) -> VisitorLink:
        raise IntegrityError("UNIQUE constraint failed")

    monkeypatch.setattr(VisitorLink.objects, "create", always_taken)
    with caplog.at_level(logging.ERROR, "django_giosg"):
        binding = links.bind(user, VISITOR, two_rooms())
    assert binding == links.BindPlan(attach=None, detach=[])
    assert f"Could not bind visitor {VISITOR}" in caplog.text
