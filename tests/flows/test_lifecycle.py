"""Login sets the variables, logout ends the chats: against the simulator over real HTTP, through
Django's test client, the real auth views and the immediate task backend.

These tests are transactional, so that ``transaction.on_commit`` runs the tasks as in production.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import connections
from django.test import override_settings

from django_giosg import signals
from django_giosg.browser_logout import LOGOUT_COOKIE
from django_giosg.models import State, VisitorLink
from django_giosg.testing import GiosgSimulator

from ..browsing import (
    OTHER_VISITOR,
    PASSWORD,
    VISITOR,
    Browser,
    expected,
    make_user,
    only_link,
    same_device,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    """The simulator with 6 owned rooms and 1 shared one, 2 rooms per page (4 pages); variables
    are set in the first 2 owned rooms."""
    sim = giosg_simulator
    while len(sim.world.owned_room_ids) < 6:
        sim.world.add_room()
    sim.page_size = 2
    settings.GIOSG = {**settings.GIOSG, "ROOM_IDS": sim.room_ids[:2], "INLINE_BUDGET": 2.0}
    return sim


# -- login ---------------------------------------------------------------------------------------


def test_capture_then_login_sets_the_variables_in_every_room(giosg: GiosgSimulator) -> None:
    ann = make_user("ann", "Ann", "Smith")
    browser = Browser()
    browser.capture()
    assert giosg.requests() == 0  # anonymous: nobody is told anything
    browser.login(ann)
    assert giosg.variables(VISITOR) == expected(giosg, ann, "Ann Smith")
    link = only_link()
    assert link.state == State.ATTACHED
    assert link.user == ann
    assert link.keys == {room: ["username", "user_id"] for room in giosg.room_ids[:2]}
    assert link.attempts == 0
    assert link.last_error == ""
    assert link.session_expires_at is not None
    assert giosg.requests("set_variable") == 4


def test_login_then_capture_sets_them_when_the_id_arrives(giosg: GiosgSimulator) -> None:
    ann = make_user("ann")
    browser = Browser()
    browser.login(ann)
    assert giosg.requests() == 0
    assert not VisitorLink.objects.exists()
    browser.capture()
    assert giosg.variables(VISITOR) == expected(giosg, ann, "ann")  # no full name: username
    assert only_link().state == State.ATTACHED
    browser.capture()  # the same id again changes nothing
    assert giosg.requests("set_variable") == 4


def test_browser_rooms_get_the_variables_too(giosg: GiosgSimulator, settings: Any) -> None:
    settings.GIOSG = {**settings.GIOSG, "USE_BROWSER_ROOMS": True}
    ann = make_user("ann")
    browser = Browser()
    browser.login(ann)
    extra, shared = giosg.room_ids[4], giosg.shared_room_ids[0]
    browser.capture(rooms=[extra, shared])  # the shared room is not the organization's
    assert set(giosg.variables(VISITOR)) == {*giosg.room_ids[:2], extra}
    assert only_link().browser_rooms == [extra]


def test_a_changed_id_detaches_the_old_one_and_attaches_the_new(giosg: GiosgSimulator) -> None:
    ann = make_user("ann")
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    browser = Browser()
    browser.capture(VISITOR)
    browser.login(ann)
    browser.capture(OTHER_VISITOR)
    assert giosg.variables(VISITOR) == {}
    assert giosg.open_chats(VISITOR) == []
    assert giosg.variables(OTHER_VISITOR) == expected(giosg, ann, "ann")
    states = dict(VisitorLink.objects.values_list("visitor_id", "state"))
    assert states == {VISITOR: State.DETACHED, OTHER_VISITOR: State.ATTACHED}


def test_logging_in_before_a_logouts_page_was_shown_closes_only(giosg: GiosgSimulator) -> None:
    """The chats of before the login still close, but the new login's variables stay."""
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    assert LOGOUT_COOKIE in browser.logout().cookies
    browser.capture()
    browser.login(ann)
    page = browser.http.get("/").content.decode()
    assert 'logout.js" defer data-mode="close"' in page
    assert "logout.js" not in browser.http.get("/").content.decode()
    assert giosg.variables(VISITOR) == expected(giosg, ann, "ann")


# -- logout -----------------------------------------------------------------------------------


def test_logout_ends_the_chats_over_room_pages_and_deletes_the_variables(
    giosg: GiosgSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    giosg.seed_visitor(VISITOR, open_chats=1, ended_chats=1)  # in all 7 rooms
    shared_room = giosg.state(VISITOR)["rooms"][giosg.shared_room_ids[0]]
    [shared_chat] = [chat["id"] for chat in shared_room["chats"] if not chat["is_ended"]]
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    calls_before = len(giosg.calls)
    with caplog.at_level(logging.INFO, "django_giosg"):
        browser.logout()
    assert giosg.open_chats(VISITOR) == [shared_chat]  # left to the room's owner, and logged
    assert f"Chat {shared_chat} of visitor {VISITOR[:6]}…" in caplog.text
    assert VISITOR not in caplog.text
    assert giosg.variables(VISITOR) == {}
    link = only_link()
    assert link.state == State.DETACHED
    assert link.keys == {}
    logout_calls = giosg.calls[calls_before:]
    endpoints = [call.endpoint for call in logout_calls]
    assert endpoints.count("list_rooms") == 4  # 7 rooms, 2 per page
    assert endpoints.count("list_chats") == 7
    assert endpoints.count("end_chat") == 6  # never the shared room's chat
    assert endpoints.count("delete_variable") == 4
    assert not any(shared_chat in call.path for call in logout_calls)


def test_logout_of_a_link_without_variables_still_ends_its_chats(
    giosg: GiosgSimulator, settings: Any
) -> None:
    settings.GIOSG = {**settings.GIOSG, "VARIABLES": lambda user: {}}  # a consent hook said no
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:3], open_chats=2)
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    assert giosg.requests("set_variable") == 0
    assert only_link().state == State.ATTACHED
    browser.logout()
    assert giosg.open_chats(VISITOR) == []
    assert only_link().state == State.DETACHED


def test_a_repeated_detach_changes_nothing_more(giosg: GiosgSimulator) -> None:
    from django_giosg import tasks

    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1])
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    browser.logout()
    requests = giosg.requests()
    link = only_link()
    assert tasks.detach_task.call(link.pk)["skipped"] == ["the link is detached already"]
    assert giosg.requests() == requests


# -- one visitor, one user ----------------------------------------------------------------------


def test_another_users_login_detaches_the_first_and_keeps_the_visitor(
    giosg: GiosgSimulator,
) -> None:
    ann, bob = make_user("ann", "Ann", "Smith"), make_user("bob", "Bob", "Jones")
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    browser = Browser()
    browser.capture()
    browser.login(ann)
    browser.login(bob)  # login() of another user flushes the session
    assert browser.visitor_id() == VISITOR  # kept: capture.js need not post it again
    assert giosg.variables(VISITOR) == expected(giosg, bob, "Bob Jones")
    assert giosg.open_chats(VISITOR) == []  # ann's chat does not follow the device to bob
    states = dict(VisitorLink.objects.values_list("user__username", "state"))
    assert states == {"ann": State.DETACHED, "bob": State.ATTACHED}


def test_one_visitor_id_stays_with_the_browser_that_reported_it(giosg: GiosgSimulator) -> None:
    """Replaces "the last login wins": a visitor id is no secret, so another browser's capture
    or login must not end its chats or put another name on them (the security review's finding
    1); giosg gives each browser its own id, so the id stays with its first browser."""
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    ann, bob = make_user("ann"), make_user("bob")
    first, second = Browser(), Browser()
    first.capture()
    first.login(ann)
    refused = second.http.post(
        "/giosg/visitor/", {"visitor_id": VISITOR}, content_type="application/json"
    )
    assert refused.status_code == 409
    second.login(bob)  # a 302: logged in, with nothing to bind
    assert giosg.variables(VISITOR) == expected(giosg, ann, "ann")
    assert len(giosg.open_chats(VISITOR)) == 1
    assert dict(VisitorLink.objects.values_list("user__username", "state")) == {
        "ann": State.ATTACHED
    }
    first.logout()
    first.capture()
    first.login(bob)  # the browser the id belongs to binds it to whoever logs in there
    assert giosg.variables(VISITOR) == expected(giosg, bob, "bob")


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
@pytest.mark.parametrize("devices", ["one browser", "two browsers"])
def test_two_concurrent_logins_end_with_one_attached_link(
    giosg: GiosgSimulator, round_: int, devices: str
) -> None:
    """In one browser (two tabs of a kiosk) the later bind supersedes the earlier. In two
    browsers that both report the id (it used to be "the last login wins"), the first claim
    keeps it: the users are logged in already and their captures race; the loser gets a 409.
    Either way one link ends attached, with its user's variables only.

    The first login's four variables arrive late, the second's at once: without the lease on
    the visitor, the late ones would overwrite the second user's, or its undo delete them."""
    giosg.add_fault("set_variable", latency=0.3, times=4)
    users = [make_user("ann"), make_user("bob")]
    browsers = [Browser(), Browser()]
    if devices == "one browser":
        same_device(*browsers)
        for browser in browsers:
            browser.capture()
    else:
        for browser, user in zip(browsers, users, strict=True):
            browser.login(user)
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    captures: list[int] = []

    def log_in(browser: Browser, user: AbstractUser) -> None:
        try:
            start.wait()
            if devices == "one browser":
                browser.login(user)
            else:
                captures.append(
                    browser.http.post(
                        "/giosg/visitor/", {"visitor_id": VISITOR}, content_type="application/json"
                    ).status_code
                )
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=log_in, args=pair) for pair in zip(browsers, users, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    attached = list(VisitorLink.objects.filter(state=State.ATTACHED))
    assert len(attached) == 1
    others = VisitorLink.objects.exclude(pk=attached[0].pk)
    if devices == "one browser":
        assert set(others.values_list("state", flat=True)) <= {State.DETACHED}
    else:
        assert sorted(captures) == [204, 409]
        assert not others.exists()  # the other capture bound nothing
    winner = attached[0].user
    assert winner is not None
    # exactly the winner's variables: none of the loser's, none lost
    assert giosg.variables(VISITOR) == expected(giosg, winner, winner.get_username())


# -- deletion and the switch ----------------------------------------------------------------------


def test_deleting_a_user_detaches_their_visitors(giosg: GiosgSimulator) -> None:
    ann = make_user("ann")
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1])
    browser = Browser()
    browser.capture()
    browser.login(ann)
    ann.delete()
    assert giosg.variables(VISITOR) == {}
    assert giosg.open_chats(VISITOR) == []
    link = only_link()
    assert link.state == State.DETACHED
    assert link.user is None


def test_disabled_calls_nobody_and_links_nothing(giosg: GiosgSimulator, settings: Any) -> None:
    settings.GIOSG = {**settings.GIOSG, "ENABLED": False}
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    browser.capture(OTHER_VISITOR)
    browser.logout()
    ann.delete()
    assert giosg.requests() == 0
    assert not VisitorLink.objects.exists()


# -- signals ------------------------------------------------------------------------------------


def test_attached_and_detached_are_signalled(giosg: GiosgSimulator) -> None:
    seen: list[tuple[str, Any]] = []

    def attached(sender: object, link: VisitorLink, result: Any, **kwargs: Any) -> None:
        seen.append(("attached", result.set))

    def detached(sender: object, link: VisitorLink, result: Any, **kwargs: Any) -> None:
        seen.append(("detached", result.deleted))

    signals.visitor_attached.connect(attached)
    signals.visitor_detached.connect(detached)
    try:
        browser = Browser()
        browser.capture()
        browser.login(make_user("ann"))
        browser.logout()
    finally:
        signals.visitor_attached.disconnect(attached)
        signals.visitor_detached.disconnect(detached)
    keys = {room: ["username", "user_id"] for room in giosg.room_ids[:2]}
    assert [(name, {r: sorted(k) for r, k in rooms.items()}) for name, rooms in seen] == [
        ("attached", {r: sorted(k) for r, k in keys.items()}),
        ("detached", {r: sorted(k) for r, k in keys.items()}),
    ]


# -- giosg in trouble ---------------------------------------------------------------------------

TROUBLE: dict[str, dict[str, Any]] = {
    "down": {"down": True},
    "hangs": {"hang": True},
    "503": {"status": 503},
    "429": {"status": 429, "retry_after": "1"},
}


def make_trouble(sim: GiosgSimulator, kind: str) -> None:
    options = dict(TROUBLE[kind])
    if options.pop("down", False):
        sim.down()
    else:
        sim.add_fault("*", **options)


def no_secrets_in(records: list[logging.LogRecord], *secrets: str) -> None:
    for record in records:
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        for secret in secrets:
            assert secret not in text, record.getMessage()


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(TROUBLE))
def test_giosg_in_trouble_never_fails_a_login(
    giosg: GiosgSimulator, settings: Any, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    settings.GIOSG = {**settings.GIOSG, "INLINE_BUDGET": 1.0}
    ann = make_user("ann", "Secret", "Name")
    browser = Browser()
    browser.capture()
    make_trouble(giosg, kind)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        browser.login(ann)
    waited = time.monotonic() - started
    assert waited < 1.0 + 3.0  # bounded by INLINE_BUDGET, whatever giosg does
    link = only_link()
    assert link.state == State.PENDING_ATTACH
    assert link.attempts == 1
    assert link.failed_action == "attach"
    assert link.last_error
    assert link.next_attempt_at is not None
    no_secrets_in(caplog.records, giosg.api_token, "Secret Name", PASSWORD)
    assert giosg.api_token not in link.last_error
    assert "Secret" not in link.last_error


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(TROUBLE))
def test_giosg_in_trouble_never_fails_a_logout(
    giosg: GiosgSimulator, settings: Any, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    settings.GIOSG = {**settings.GIOSG, "INLINE_BUDGET": 1.0}
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1])
    ann = make_user("ann", "Secret", "Name")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    make_trouble(giosg, kind)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        response = browser.logout()
    waited = time.monotonic() - started
    assert waited < 1.0 + 3.0
    assert LOGOUT_COOKIE in response.cookies  # the browser's share still happens
    assert "anonymous" in browser.http.get("/").content.decode()
    link = only_link()
    assert link.state == State.PENDING_DETACH
    assert link.attempts == 1
    assert link.last_error
    assert link.keys == {room: ["username", "user_id"] for room in giosg.room_ids[:2]}
    no_secrets_in(caplog.records, giosg.api_token, "Secret Name", PASSWORD)


@pytest.mark.slow
def test_one_request_shares_one_budget(giosg: GiosgSimulator, settings: Any) -> None:
    """A changed id's detach and attach together wait at most INLINE_BUDGET (plus slack)."""
    settings.GIOSG = {**settings.GIOSG, "INLINE_BUDGET": 1.0}
    ann = make_user("ann")
    browser = Browser()
    browser.capture(VISITOR)
    browser.login(ann)
    giosg.add_fault("*", hang=True)
    started = time.monotonic()
    browser.capture(OTHER_VISITOR)
    assert time.monotonic() - started < 1.0 + 1.5
    states = dict(VisitorLink.objects.values_list("visitor_id", "state"))
    assert states == {VISITOR: State.PENDING_DETACH, OTHER_VISITOR: State.PENDING_ATTACH}


@pytest.mark.slow
def test_a_worker_retries_each_call(giosg: GiosgSimulator, settings: Any) -> None:
    """Outside a request (a worker, a shell) calls are retried: one 503 changes nothing."""
    from django_giosg import tasks

    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    with override_settings(GIOSG={**settings.GIOSG, "ENABLED": False}):
        browser.login(ann)  # no link yet
    link = VisitorLink.objects.create(visitor_id=VISITOR, user=ann)
    giosg.add_fault("set_variable", status=503, times=1)
    result = tasks.attach_task.call(link.pk)
    assert result["ok"]
    link.refresh_from_db()
    assert link.state == State.ATTACHED
    assert giosg.requests("set_variable") == 5  # one retried
