"""The lifecycle on real task workers: the requests only enqueue, the workers call giosg, and
giosg ends in the same state as with the immediate backend (:mod:`tests.flows.test_lifecycle`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_giosg.models import State, VisitorLink
from django_giosg.tasks import sweep_task
from django_giosg.testing import GiosgSimulator

from ..browsing import VISITOR, Browser, expected, make_user, only_link
from .conftest import Tasks

pytestmark = [pytest.mark.workers, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    """3 owned rooms, 2 per page; variables in the first 2; the visitor has an open chat in
    each."""
    sim = giosg_simulator
    while len(sim.world.owned_room_ids) < 3:
        sim.world.add_room()
    sim.page_size = 2
    settings.GIOSG = {**settings.GIOSG, "ROOM_IDS": sim.room_ids[:2]}
    sim.seed_visitor(VISITOR, rooms=sim.room_ids, open_chats=1)
    return sim


def states() -> dict[str, str]:
    return dict(VisitorLink.objects.values_list("user__username", "state"))


def test_capture_login_and_logout(giosg: GiosgSimulator, worker: Tasks) -> None:
    ann = make_user("ann", "Ann", "Smith")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    [attach] = worker.drain()
    assert attach["action"] == "attach"
    assert attach["ok"]
    assert giosg.variables(VISITOR) == expected(giosg, ann, "Ann Smith")
    assert only_link().state == State.ATTACHED
    browser.logout()
    [detach] = worker.drain()
    assert detach["ok"]
    assert giosg.variables(VISITOR) == {}
    assert giosg.open_chats(VISITOR) == []
    assert only_link().state == State.DETACHED
    assert giosg.requests("end_chat") == 3  # each chat ended once
    assert giosg.requests("delete_variable") == 4  # 2 keys in 2 rooms, each deleted once


def test_login_then_capture(giosg: GiosgSimulator, worker: Tasks) -> None:
    ann = make_user("ann")
    browser = Browser()
    browser.login(ann)
    assert worker.drain() == []
    browser.capture()
    worker.drain()
    assert giosg.variables(VISITOR) == expected(giosg, ann, "ann")
    assert only_link().state == State.ATTACHED


def test_a_user_switch(giosg: GiosgSimulator, worker: Tasks) -> None:
    ann, bob = make_user("ann"), make_user("bob", "Bob", "Jones")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    browser.login(bob)  # enqueues ann's detach and bob's attach, which waits for it
    assert all(result["ok"] for result in worker.drain())
    assert giosg.variables(VISITOR) == expected(giosg, bob, "Bob Jones")
    assert giosg.open_chats(VISITOR) == []  # ann's chats do not follow the browser to bob
    assert states() == {"ann": State.DETACHED, "bob": State.ATTACHED}


def test_an_expired_session_is_ended_by_the_sweep_task(
    giosg: GiosgSimulator, worker: Tasks
) -> None:
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    worker.drain()
    VisitorLink.objects.update(session_expires_at=timezone.now() - timedelta(hours=1))
    sweep_task.enqueue()
    [report] = worker.drain()
    assert report["expired"] == 1
    assert report["done"] == 1
    assert giosg.variables(VISITOR) == {}
    assert giosg.open_chats(VISITOR) == []
    assert only_link().state == State.DETACHED
