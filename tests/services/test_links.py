"""services.links: the row changes entry points ask for (bind, release, reset)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from django_giosg.models import State, VisitorLink, VisitorLinkQuerySet, VisitorOrigin, write_db
from django_giosg.services import links, origins

from ..browsing import HOUR
from ..conftest import VISITOR, LinkClock
from .conftest import ROOM_2, SHARED, link_for, two_rooms

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache")]


KIOSK, PHONE = "a" * 64, "b" * 64  # device digests: two browsers


def first_read_before_the_winner(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The next bind's first read of the visitor's live link comes before a concurrent bind
    created it; the reads, as they happen."""
    real_first = VisitorLinkQuerySet.first
    reads: list[object] = []

    def read_before_the_winner(self: VisitorLinkQuerySet) -> VisitorLink | None:
        reads.append(self)
        return None if len(reads) == 1 else real_first(self)

    monkeypatch.setattr(VisitorLinkQuerySet, "first", read_before_the_winner)
    return reads


def test_a_user_switch_in_the_same_browser_supersedes_the_live_link(user: AbstractUser) -> None:
    bob = get_user_model().objects.create_user("bob")
    first = links.bind(user, VISITOR, two_rooms(), device=KIOSK)
    second = links.bind(bob, VISITOR, two_rooms(), device=KIOSK)
    assert first.attach is not None
    assert second.detach == [first.attach]
    assert second.switched
    states = dict(VisitorLink.objects.values_list("pk", "state"))
    assert states == {first.attach: State.PENDING_DETACH, second.attach: State.PENDING_ATTACH}
    assert VisitorLink.objects.get(pk=second.attach).device == KIOSK


def test_another_browser_cannot_take_over_a_live_binding(
    user: AbstractUser, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 1 of the security review: knowing a visitor id is not enough."""
    bob = get_user_model().objects.create_user("bob")
    first = links.bind(user, VISITOR, two_rooms(), device=KIOSK, session_expires_at=_in(HOUR))
    with caplog.at_level(logging.INFO, "django_giosg"):
        second = links.bind(bob, VISITOR, two_rooms(), device=PHONE)
    assert second == links.BindPlan(refused=True)
    link = VisitorLink.objects.get()
    assert (link.pk, link.state, link.user) == (first.attach, State.PENDING_ATTACH, user)
    assert VISITOR not in caplog.text  # shortened in logs
    assert f"visitor {VISITOR[:6]}… belongs to another browser" in caplog.text


@pytest.mark.parametrize("device", ["", PHONE], ids=["a link made before 0003", "another device"])
def test_another_browser_takes_over_once_the_old_session_has_ended(
    user: AbstractUser, device: str
) -> None:
    """A visitor whose browser was not recorded (bound before 0003, or its origin lapsed)."""
    bob = get_user_model().objects.create_user("bob")
    settings = two_rooms()
    grace = timedelta(seconds=settings.expiry_grace)
    old = link_for(user, state=State.ATTACHED, device=device, session_expires_at=_in(-grace))
    plan = links.bind(bob, VISITOR, settings, device=KIOSK)
    assert plan.detach == [old.pk]
    assert not plan.switched  # the old browser is not this one
    old.refresh_from_db()
    assert old.state == State.PENDING_DETACH
    assert old.close_in_browser  # its browser closes the chat window on its next page


def test_a_session_just_within_its_grace_still_holds_its_visitor(user: AbstractUser) -> None:
    bob = get_user_model().objects.create_user("bob")
    settings = two_rooms()
    grace = timedelta(seconds=settings.expiry_grace)
    link_for(user, state=State.ATTACHED, device=PHONE, session_expires_at=_in(-grace + HOUR / 60))
    assert links.bind(bob, VISITOR, settings, device=KIOSK).refused


def test_the_same_user_binds_again_from_another_browser(user: AbstractUser) -> None:
    """Not another person's chats: the binding follows the user's newest browser."""
    link = link_for(user, state=State.ATTACHED, device=PHONE)
    assert links.bind(user, VISITOR, two_rooms(), device=KIOSK) == links.BindPlan()
    link.refresh_from_db()
    assert (link.state, link.device) == (State.ATTACHED, KIOSK)


def test_a_bind_that_loses_a_race_inside_a_transaction_supersedes_the_winner(
    user: AbstractUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As under ``ATOMIC_REQUESTS``: the insert that loses to a concurrent login is rolled back
    to a savepoint on the links' database, and the transaction goes on (a savepoint on another
    database would leave this one unusable)."""
    bob = get_user_model().objects.create_user("bob")
    winner = links.bind(bob, VISITOR, two_rooms(), device=KIOSK).attach
    reads = first_read_before_the_winner(monkeypatch)
    with transaction.atomic(using=write_db(VisitorLink)):
        plan = links.bind(user, VISITOR, two_rooms(), device=KIOSK)
        assert plan.detach == [winner]
        states = dict(VisitorLink.objects.values_list("pk", "state"))
    assert states == {winner: State.PENDING_DETACH, plan.attach: State.PENDING_ATTACH}
    assert len(reads) == 2


def test_release_visitor_touches_only_that_users_links(user: AbstractUser) -> None:
    bob = get_user_model().objects.create_user("bob")
    mine = link_for(user, state=State.DETACHED)
    theirs = link_for(bob, state=State.ATTACHED)
    assert links.release_visitor(VISITOR, user.pk, two_rooms()) == []
    theirs.refresh_from_db()
    assert theirs.state == State.ATTACHED
    assert links.release_visitor(VISITOR, bob.pk, two_rooms()) == [theirs.pk]
    mine.refresh_from_db()
    assert mine.state == State.DETACHED


def test_release_device_releases_every_live_link_made_in_that_browser(
    user: AbstractUser,
) -> None:
    """A browser has one session: whoever a live link of it binds, its logout ends it (a login
    of another user racing the logout may have bound one)."""
    bob = get_user_model().objects.create_user("bob")
    here = link_for(user, state=State.ATTACHED, device=KIOSK)
    elsewhere = VisitorLink.objects.create(
        visitor_id="e" * 32, user=user, state=State.ATTACHED, device=PHONE
    )
    bobs = VisitorLink.objects.create(
        visitor_id="f" * 32, user=bob, state=State.PENDING_ATTACH, device=KIOSK
    )
    detaching = VisitorLink.objects.create(
        visitor_id="d" * 32, user=user, state=State.PENDING_DETACH, device=KIOSK, attempts=3
    )
    assert sorted(links.release_device(KIOSK, two_rooms())) == sorted([here.pk, bobs.pk])
    states = dict(VisitorLink.objects.values_list("pk", "state"))
    assert states == {
        here.pk: State.PENDING_DETACH,
        elsewhere.pk: State.ATTACHED,
        bobs.pk: State.PENDING_DETACH,
        detaching.pk: State.PENDING_DETACH,
    }
    detaching.refresh_from_db()
    assert detaching.attempts == 3  # left to its own detach


def test_browser_closes_are_handed_out_once_per_device(user: AbstractUser) -> None:
    assert links.take_browser_closes(KIOSK) == links.BrowserCloses(close=False, live=False)
    closed = link_for(user, state=State.DETACHED, device=KIOSK, close_in_browser=True)
    live = VisitorLink.objects.create(
        visitor_id="e" * 32, user=user, state=State.ATTACHED, device=KIOSK
    )
    assert links.take_browser_closes(PHONE) == links.BrowserCloses(close=False, live=False)
    assert links.take_browser_closes(KIOSK) == links.BrowserCloses(close=True, live=True)
    assert links.take_browser_closes(KIOSK) == links.BrowserCloses(close=False, live=True)
    live.delete()
    assert links.take_browser_closes(KIOSK) == links.BrowserCloses(close=False, live=False)
    closed.refresh_from_db()
    assert not closed.close_in_browser


def test_a_visitor_id_belongs_to_the_browser_that_reported_it_first(user: AbstractUser) -> None:
    """Finding 1, for a visitor browsing anonymously: no live binding, but its id still is its
    browser's; another browser binds nothing (and so cannot end its chats by logging out)."""
    bob = get_user_model().objects.create_user("bob")
    assert origins.claim_visitor(VISITOR, KIOSK, two_rooms())  # the victim's anonymous capture
    assert links.bind(bob, VISITOR, two_rooms(), device=PHONE) == links.BindPlan(refused=True)
    assert not VisitorLink.objects.exists()
    assert links.bind(user, VISITOR, two_rooms(), device=KIOSK).attach is not None


def test_a_claim_that_keeps_losing_to_concurrent_claims_gives_up(
    user: AbstractUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_taken(**fields: object) -> VisitorOrigin:
        raise IntegrityError("UNIQUE constraint failed")

    monkeypatch.setattr(VisitorOrigin.objects, "create", always_taken)
    assert not origins.claim_visitor(VISITOR, KIOSK, two_rooms())


def test_a_visitor_origin_lapses_when_its_browser_has_not_reported_it_for_a_session_age(
    user: AbstractUser, link_clock: LinkClock
) -> None:
    start = link_clock.set(timezone.now())
    assert origins.claim_visitor(VISITOR, KIOSK, two_rooms())
    age = timedelta(seconds=django_settings.SESSION_COOKIE_AGE)
    link_clock.set(start + age - timedelta(seconds=1))
    assert not origins.claim_visitor(VISITOR, PHONE, two_rooms())
    assert origins.claim_visitor(VISITOR, KIOSK, two_rooms())  # reported again: seen now
    link_clock.set(start + age + timedelta(seconds=1))
    assert not origins.claim_visitor(VISITOR, PHONE, two_rooms())  # (lapsed without it)
    link_clock.set(start + 2 * age)
    assert origins.prune_origins(start + age) == 0
    assert origins.claim_visitor(VISITOR, PHONE, two_rooms())  # lapsed: the phone's now
    assert origins.prune_origins(start + 4 * age) == 1
    assert not VisitorOrigin.objects.exists()


def test_a_browser_reporting_its_visitor_again_within_expiry_refresh_writes_nothing(
    user: AbstractUser, link_clock: LinkClock
) -> None:
    """A login right after the capture: the origin was seen a moment ago, and a commit less
    matters there (on SQLite each is an fsync)."""
    start = link_clock.set(timezone.now())
    settings = two_rooms()
    assert origins.claim_visitor(VISITOR, KIOSK, settings)
    link_clock.set(start + timedelta(seconds=settings.expiry_refresh))
    assert origins.claim_visitor(VISITOR, KIOSK, settings)
    assert VisitorOrigin.objects.get().seen_at == start
    later = link_clock.set(start + timedelta(seconds=settings.expiry_refresh + 1))
    assert origins.claim_visitor(VISITOR, KIOSK, settings)
    assert VisitorOrigin.objects.get().seen_at == later


def _in(delta: timedelta) -> datetime:
    return timezone.now() + delta


def test_bind_of_an_attached_link_only_reattaches_for_new_rooms(user: AbstractUser) -> None:
    settings = two_rooms(USE_BROWSER_ROOMS=True)
    link = link_for(user, state=State.ATTACHED, browser_rooms=[ROOM_2])
    bind = partial(links.bind, user, VISITOR, settings, device=KIOSK)
    assert bind(browser_rooms=[ROOM_2]).attach is None
    assert bind(browser_rooms=[SHARED]).attach == link.pk
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
        binding = links.bind(user, VISITOR, two_rooms(), device=KIOSK)
    assert binding == links.BindPlan(attach=None, detach=[])
    assert f"Could not bind visitor {VISITOR[:6]}…" in caplog.text


# -- the rate per user ------------------------------------------------------------------------


def new_ids(count: int) -> list[str]:
    return [f"{index:032x}" for index in range(1, count + 1)]


def test_a_user_binds_at_most_user_capture_rate_new_visitor_ids_within_the_hour(
    user: AbstractUser, caplog: pytest.LogCaptureFixture
) -> None:
    limited = two_rooms(USER_CAPTURE_RATE=3)
    for visitor_id in new_ids(3):  # each from its own browser, as after as many logins
        assert links.bind(user, visitor_id, limited, device=visitor_id * 2).attach is not None
    with caplog.at_level(logging.WARNING, "django_giosg"):
        plan = links.bind(user, VISITOR, limited, device=KIOSK)
    assert plan == links.BindPlan(rate_limited=True)
    assert "at USER_CAPTURE_RATE (3 visitor ids, 9 bindings within the hour)" in caplog.text
    assert not VisitorLink.objects.filter(visitor_id=VISITOR).exists()
    assert not VisitorOrigin.objects.filter(visitor_id=VISITOR).exists()  # nothing claimed
    # The ids the user bound within the hour bind again, live or not.
    links.release_visitor(new_ids(1)[0], user.pk, limited)
    assert links.bind(user, new_ids(1)[0], limited, device=new_ids(1)[0] * 2).attach is not None
    assert links.bind(user, new_ids(2)[1], limited, device=new_ids(2)[1] * 2).refused is False
    # Another user has a rate of their own.
    bob = get_user_model().objects.create_user("bob")
    assert links.bind(bob, VISITOR, limited, device=KIOSK).attach is not None


def test_the_users_hour_slides(user: AbstractUser) -> None:
    limited = two_rooms(USER_CAPTURE_RATE=2)
    first, second = new_ids(2)
    links.bind(user, first, limited, device=KIOSK)
    links.bind(user, second, limited, device=PHONE)
    assert links.bind(user, VISITOR, limited, device=KIOSK).rate_limited
    links.release_visitor(first, user.pk, limited)
    VisitorLink.objects.filter(visitor_id=first).update(created_at=timezone.now() - HOUR)
    assert links.bind(user, VISITOR, limited, device=KIOSK).attach is not None


def test_a_live_binding_older_than_the_hour_binds_again_over_the_rate(user: AbstractUser) -> None:
    limited = two_rooms(USER_CAPTURE_RATE=1)
    links.bind(user, VISITOR, limited, device=KIOSK)
    VisitorLink.objects.update(created_at=timezone.now() - 2 * HOUR, state=State.ATTACHED)
    links.bind(user, new_ids(1)[0], limited, device=PHONE)
    plan = links.bind(
        user,
        VISITOR,
        two_rooms(USER_CAPTURE_RATE=1, USE_BROWSER_ROOMS=True),
        device=KIOSK,
        browser_rooms=[SHARED],
    )
    assert plan.attach is not None


def test_the_users_rate_is_counted_with_one_query(
    user: AbstractUser, django_assert_num_queries: Any
) -> None:
    limited = two_rooms(USER_CAPTURE_RATE=3)
    for visitor_id in new_ids(2):
        links.bind(user, visitor_id, limited, device=visitor_id * 2)
    database = write_db(VisitorLink)
    with django_assert_num_queries(1, using=database):
        assert links.over_user_rate(user.pk, VISITOR, limited) is False
    with django_assert_num_queries(1, using=database):  # the user's live id, bound first above
        assert links.over_user_rate(user.pk, new_ids(1)[0], limited) is False


def test_user_capture_rate_none_turns_the_limit_off(user: AbstractUser) -> None:
    unlimited = two_rooms(CAPTURE_RATE=1, USER_CAPTURE_RATE=None)
    for visitor_id in new_ids(5):
        assert links.bind(user, visitor_id, unlimited, device=visitor_id * 2).attach is not None


def test_of_concurrent_binds_over_the_users_rate_the_last_gives_way(
    user: AbstractUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bind reads the count before it inserts: another bind of the user may insert in
    between. The bind checks again after its insert, counting the links made before its own."""
    limited = two_rooms(USER_CAPTURE_RATE=2)
    first, concurrent = new_ids(2)
    links.bind(user, first, limited, device=KIOSK)
    real_claim = origins.claim_visitor

    def claim_while_another_bind_inserts(*args: Any, **kwargs: Any) -> bool:
        monkeypatch.setattr(links, "claim_visitor", real_claim)
        assert links.bind(user, concurrent, limited, device=PHONE).attach is not None
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(links, "claim_visitor", claim_while_another_bind_inserts)
    plan = links.bind(user, VISITOR, limited, device=KIOSK)
    assert plan.rate_limited
    assert plan.attach is None
    assert sorted(VisitorLink.objects.values_list("visitor_id", flat=True)) == [first, concurrent]
