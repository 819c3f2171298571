"""The session's binding and the sweep at their edges: odd values, errors, disabled, locks."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone

from django_giosg import middleware, session, tasks
from django_giosg.conf import get_settings
from django_giosg.models import State, VisitorLink, write_db
from django_giosg.services import sweep as sweeping
from django_giosg.services import workflows
from django_giosg.services.results import Result
from django_giosg.testing import GiosgSimulator

from .browsing import VISITOR, Browser, attached, lost_detach, make_user, only_link, sweep
from .conftest import LinkClock


@pytest.mark.parametrize(
    "value",
    [None, "ann", {"user": 1, "expires": 1.0}, {"user": "1", "expires": "soon"}, {"user": "1"}],
)
def test_a_malformed_binding_in_the_session_is_no_binding(value: object) -> None:
    assert session.get_binding({session.BINDING_SESSION_KEY: value}) is None


def test_a_binding_round_trips_through_the_session() -> None:
    store = SessionStore()
    expires_at = timezone.now() + timedelta(days=1)
    assert session.record_binding(store, "7", expires_at) == expires_at
    assert session.get_binding(store) == session.SessionBinding("7", expires_at.timestamp())
    assert not session.expiry_moved(
        session.SessionBinding("7", expires_at.timestamp()), expires_at + timedelta(seconds=59), 60
    )
    assert session.expiry_moved(
        session.SessionBinding("7", expires_at.timestamp()), expires_at - timedelta(seconds=60), 60
    )


def test_without_authentication_middleware_nothing_counts_as_a_lost_user() -> None:
    assert middleware._is_user(RequestFactory().get("/"), "7")


def test_a_response_that_is_not_saved_records_no_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SessionStore()
    session.set_visitor_id(store, VISITOR)
    session.record_binding(store, "7", timezone.now())
    store.set_expiry(3600)  # moved by almost two weeks, and the session is modified
    noted: list[object] = []
    monkeypatch.setattr(tasks, "follow_session_expiry", lambda *args: noted.append(args))
    middleware._refresh_expiry(store, HttpResponse(status=500))  # SessionMiddleware won't save
    assert noted == []
    middleware._refresh_expiry(store, HttpResponse())
    assert len(noted) == 1


@pytest.mark.django_db
def test_entry_helpers_do_nothing_while_disabled(settings: Any) -> None:
    ann = make_user("ann")
    link = VisitorLink.objects.create(visitor_id=VISITOR, user=ann, state=State.ATTACHED)
    settings.GIOSG = {**settings.GIOSG, "ENABLED": False}
    store = SessionStore()
    session.set_visitor_id(store, VISITOR)
    tasks.bind_session(ann, store)
    tasks.follow_session_expiry(VISITOR, str(ann.pk), timezone.now())
    tasks.release_visitor(VISITOR)
    assert session.get_binding(store) is None
    link.refresh_from_db()
    assert (link.state, link.session_expires_at) == (State.ATTACHED, None)


# -- through the site ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_error_while_keeping_the_binding_never_breaks_the_page(
    giosg_simulator: GiosgSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    browser = Browser()
    browser.capture()
    ann = make_user("ann")
    browser.login(ann)
    ann.set_password("changed")
    ann.save()

    def broken(*args: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(tasks, "release_visitor", broken)
    with caplog.at_level(logging.ERROR, "django_giosg"):
        assert browser.http.get("/data/").status_code == 200
    assert "could not keep the session's binding in step" in caplog.text


# -- the sweep at its edges ---------------------------------------------------------------------


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    settings.GIOSG = {**settings.GIOSG, "ROOM_IDS": giosg_simulator.room_ids[:1]}
    return giosg_simulator


@pytest.mark.django_db(transaction=True)
def test_a_bug_in_one_link_leaves_it_for_a_later_sweep(
    giosg: GiosgSimulator,
    link_clock: LinkClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = attached(giosg, VISITOR, make_user("ann"))
    lost_detach(link)
    now = link_clock.advance(get_settings().pending_stale_after)

    def broken(*args: object, **kwargs: object) -> Result:
        raise RuntimeError("a bug")

    monkeypatch.setattr(workflows, "detach", broken)
    with caplog.at_level(logging.ERROR, "django_giosg"):
        assert "1 due link(s): 0 done, 1 to retry" in sweep()
    assert f"the sweep could not work link {link.pk}" in caplog.text
    link.refresh_from_db()
    assert link.state == State.PENDING_DETACH
    assert link.next_attempt_at == now + timedelta(seconds=get_settings().pending_stale_after)


@pytest.mark.django_db(transaction=True)
def test_a_link_another_worker_finished_first_is_skipped(
    giosg: GiosgSimulator, link_clock: LinkClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = attached(giosg, VISITOR, make_user("ann"))
    lost_detach(link)
    link_clock.advance(get_settings().pending_stale_after)
    real_detach = workflows.detach

    def overtaken(link_id: int, *args: Any, **kwargs: Any) -> Result:
        real_detach(link_id, *args, **kwargs)  # a worker's detach_task, just before ours
        return real_detach(link_id, *args, **kwargs)

    monkeypatch.setattr(workflows, "detach", overtaken)
    assert "1 due link(s): 0 done, 0 to retry, 0 failed, 1 skipped" in sweep()
    assert only_link().state == State.DETACHED


@pytest.mark.django_db(transaction=True)
def test_the_limit_is_shared_by_expired_and_due_links(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    ann = make_user("ann")
    expiring = attached(giosg, VISITOR, ann, expires_at=timezone.now())
    lost_detach(attached(giosg, "f" * 32, ann))
    link_clock.advance(get_settings().pending_stale_after)
    assert "1 expired and 0 due link(s): 1 done" in sweep("--limit", "1")
    expiring.refresh_from_db()
    assert expiring.state == State.DETACHED
    assert "0 expired and 1 due link(s): 1 done" in sweep("--limit", "1")


@pytest.mark.django_db(transaction=True)
def test_where_the_database_skips_locked_rows_the_sweep_locks_its_candidates(
    giosg: GiosgSimulator,
    link_clock: LinkClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite has no row locks; this runs the PostgreSQL/MySQL path of taking a link (its
    ``FOR UPDATE SKIP LOCKED`` clause is left out by Django on SQLite)."""
    lost_detach(attached(giosg, VISITOR, make_user("ann")))
    link_clock.advance(get_settings().pending_stale_after)
    database = connections[write_db(VisitorLink)]
    monkeypatch.setattr(database.features, "has_select_for_update_skip_locked", True)
    locked: list[bool] = []
    real_take = sweeping._take_unchanged

    def take(links: Any, *args: Any) -> VisitorLink | None:
        locked.append(links.query.select_for_update and database.in_atomic_block)
        return real_take(links, *args)

    monkeypatch.setattr(sweeping, "_take_unchanged", take)
    assert "0 expired and 1 due link(s): 1 done" in sweep()
    assert locked == [True, True, True]  # expired: none; due: the link, then none left


@pytest.mark.django_db
def test_a_link_changed_since_it_was_read_is_not_taken() -> None:
    now = timezone.now()
    first, second = (
        VisitorLink.objects.create(
            visitor_id=visitor * 32, state=State.PENDING_DETACH, next_attempt_at=now
        )
        for visitor in "ab"
    )
    read_before = VisitorLink.objects.get(pk=first.pk)
    VisitorLink.objects.filter(pk=first.pk).update(next_attempt_at=now + timedelta(hours=1))
    seen: set[int] = set()
    later = now + timedelta(minutes=10)
    candidates: Any = [read_before, second]  # as the sweep read them, one of them since taken
    taken = sweeping._take_unchanged(candidates, seen, lambda link: link.claim_due(now, later))
    assert taken is not None
    assert taken.pk == second.pk
    assert seen == {first.pk, second.pk}
    first.refresh_from_db()
    assert first.next_attempt_at == now + timedelta(hours=1)  # left to whoever took it
    # back in the selection within the same run (it should never be): not taken twice
    VisitorLink.objects.filter(pk=second.pk).update(next_attempt_at=now)
    assert (
        sweeping._take_unchanged(candidates, seen, lambda link: link.claim_due(now, later)) is None
    )
    assert VisitorLink.objects.get(pk=second.pk).next_attempt_at == now
