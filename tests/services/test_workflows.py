"""services.workflows: attach and detach against mocked HTTP (``responses``): each answer giosg may
give, the records on the link, the backoff and the signals; and what happens meanwhile."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from django.contrib.auth.models import AbstractUser
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone
from django.views.debug import ExceptionReporter
from django.views.decorators.debug import sensitive_variables

from django_giosg import signals
from django_giosg.client import GiosgClient
from django_giosg.limits import CallLimits
from django_giosg.models import Action, State, VisitorLease, VisitorLink
from django_giosg.services import leases, workflows
from django_giosg.services.results import Outcome

from ..conftest import CHAT, ORG, ORG_URL, ROOM, VISITOR, load_settings
from .conftest import ROOM_2, SHARED, VARIABLES_URL, link_for, two_rooms

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache")]

OTHER_ORG = "33333333-56e1-11e5-9c5e-6c4008c08dfe"
DELETE_URL = re.compile(rf"{ORG_URL}/rooms/[^/]+/visitors/{VISITOR}/variables/[^/]+$")


def plan_variables(user: Any) -> dict[str, object]:
    """A VARIABLES callable given by its dotted path."""
    return {"plan": "gold", "nickname": None, "bad key!": "x", "level": 3}


def bodies(mocked: responses.RequestsMock) -> list[bytes]:
    return sorted(bytes(call.request.body or b"") for call in mocked.calls)  # type: ignore[arg-type]


def chat(chat_id: str = CHAT, room_org: str = ORG) -> dict[str, object]:
    return {"id": chat_id, "room_id": ROOM, "room_organization_id": room_org, "is_ended": False}


def page(*results: dict[str, object]) -> dict[str, object]:
    return {"next": None, "previous": None, "results": list(results)}


def rooms_page(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{ORG_URL}/rooms",
        json=page(
            {"id": ROOM, "organization_id": ORG, "is_shared": False},
            {"id": SHARED, "organization_id": OTHER_ORG, "is_shared": True},
        ),
    )


def chats_of(mocked: responses.RequestsMock, room: str, *chats: dict[str, object]) -> None:
    mocked.get(f"{ORG_URL}/rooms/{room}/visitors/{VISITOR}/chats", json=page(*chats))


# -- attach --------------------------------------------------------------------------------------


def test_attach_sets_every_key_in_every_room(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    mocked.post(VARIABLES_URL, status=201, json={})
    link = link_for(user)
    result = workflows.attach(link.pk, client, two_rooms())
    assert result.ok
    assert result.set == {ROOM: ["username", "user_id"], ROOM_2: ["username", "user_id"]}
    assert bodies(mocked) == sorted(
        [
            b'{"key": "username", "value": "Ann Smith"}',
            f'{{"key": "user_id", "value": "{user.pk}"}}'.encode(),
        ]
        * 2
    )
    link.refresh_from_db()
    assert link.state == State.ATTACHED
    assert link.keys == result.set
    assert link.next_attempt_at is None


@pytest.mark.parametrize(
    "variables",
    [f"{__name__}.plan_variables", plan_variables],
    ids=["dotted path", "callable"],
)
def test_a_custom_callable_none_values_and_invalid_keys(
    client: GiosgClient,
    mocked: responses.RequestsMock,
    user: AbstractUser,
    caplog: pytest.LogCaptureFixture,
    variables: object,
) -> None:
    mocked.post(VARIABLES_URL, status=201, json={})
    link = link_for(user)
    with caplog.at_level(logging.WARNING, "django_giosg"):
        result = workflows.attach(link.pk, client, two_rooms(VARIABLES=variables, ROOM_IDS=[ROOM]))
    assert result.set == {ROOM: ["plan", "level"]}
    assert bodies(mocked) == [
        b'{"key": "level", "value": "3"}',
        b'{"key": "plan", "value": "gold"}',
    ]
    assert "'bad key!'" in caplog.text
    assert "skipped" in caplog.text


def test_variables_that_are_empty_attach_without_keys(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    link = link_for(user)
    result = workflows.attach(link.pk, client, two_rooms(VARIABLES=lambda user: None))
    assert result.ok
    assert len(mocked.calls) == 0
    link.refresh_from_db()
    assert link.state == State.ATTACHED
    assert link.keys == {}


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        (lambda user: ["not", "a", "mapping"], "must return a mapping or None, not list"),
        ("tests.nowhere.variables", "cannot be imported"),
        (lambda user: {"x": 1 / 0}, 'GIOSG["VARIABLES"] raised ZeroDivisionError'),
    ],
    ids=["not a mapping", "not importable", "raises"],
)
def test_a_broken_variables_callable_is_recorded(
    client: GiosgClient,
    mocked: responses.RequestsMock,
    user: AbstractUser,
    variables: object,
    error: str,
) -> None:
    link = link_for(user)
    result = workflows.attach(link.pk, client, two_rooms(VARIABLES=variables))
    assert not result.ok
    assert len(mocked.calls) == 0
    link.refresh_from_db()
    assert link.state == State.PENDING_ATTACH
    assert error in link.last_error
    assert link.attempts == 1


def test_only_a_pending_attach_is_attached(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    for state in (State.ATTACHED, State.PENDING_DETACH, State.DETACHED, State.FAILED):
        link = link_for(user, state=state)
        result = workflows.attach(link.pk, client, two_rooms())
        assert result.skipped == ["the link is not pending attach"]
    assert workflows.attach(12345, client, two_rooms()).skipped == [
        "the link is not pending attach"
    ]
    assert len(mocked.calls) == 0


def test_a_room_giosg_does_not_know_is_skipped_and_the_room_list_refreshed(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    cache.set(f"django_giosg:rooms:{ORG}", [[ROOM, True], [ROOM_2, True]])
    mocked.post(f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/variables", status=201, json={})
    mocked.post(f"{ORG_URL}/rooms/{ROOM_2}/visitors/{VISITOR}/variables", status=404, json={})
    link = link_for(user)
    result = workflows.attach(link.pk, client, two_rooms())
    assert result.ok
    assert result.set == {ROOM: ["username", "user_id"]}
    assert result.skipped == [f"room {ROOM_2}: not found for this visitor"] * 2
    assert cache.get(f"django_giosg:rooms:{ORG}") is None
    link.refresh_from_db()
    assert link.keys == {ROOM: ["username", "user_id"]}


def test_an_attach_without_its_user_detaches_instead(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    rooms_page(mocked)
    chats_of(mocked, ROOM)
    chats_of(mocked, SHARED)
    link = link_for(None)
    result = workflows.attach(link.pk, client, two_rooms())
    assert result.cancelled
    assert result.ok
    link.refresh_from_db()
    assert link.state == State.DETACHED


def test_failures_back_off_and_end_failed_with_one_signal(
    client: GiosgClient,
    mocked: responses.RequestsMock,
    user: AbstractUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mocked.post(VARIABLES_URL, status=400, json={"detail": "no"})
    failures: list[tuple[str, str]] = []

    def failed(sender: object, link: VisitorLink, action: str, error: str, **kw: Any) -> None:
        failures.append((action, error))

    signals.visitor_failed.connect(failed)
    settings = two_rooms(SWEEP_MAX_ATTEMPTS=3, SWEEP_BACKOFF=10.0)
    link = link_for(user)
    try:
        for attempt in (1, 2):
            before = timezone.now()
            workflows.attach(link.pk, client, settings)
            link.refresh_from_db()
            assert link.state == State.PENDING_ATTACH
            assert link.attempts == attempt
            assert link.failed_action == "attach"
            assert link.next_attempt_at is not None
            low, high = 10.0 * 2 ** (attempt - 1) * 0.5, 10.0 * 2 ** (attempt - 1) * 1.5
            delay = (link.next_attempt_at - before).total_seconds()
            assert low - 1 <= delay <= high + 1
        with caplog.at_level(logging.ERROR, "django_giosg"):
            workflows.attach(link.pk, client, settings)
        link.refresh_from_db()
        assert link.state == State.FAILED
        assert link.attempts == 3
        assert link.next_attempt_at is None
        assert "gave up on the attach" in caplog.text
        workflows.attach(link.pk, client, settings)  # failed is final: skipped, no signal
    finally:
        signals.visitor_failed.disconnect(failed)
    assert len(failures) == 1
    assert failures[0][0] == "attach"
    assert "400" in failures[0][1]


# -- detach --------------------------------------------------------------------------------------


def test_detach_ends_owned_chats_skips_shared_ones_and_deletes_the_keys(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    rooms_page(mocked)
    chats_of(mocked, ROOM, chat(), chat("c-foreign", room_org=OTHER_ORG))
    chats_of(mocked, SHARED, chat("c-shared", room_org=OTHER_ORG))
    mocked.patch(f"{ORG_URL}/owned_chats/{CHAT}", json={**chat(), "is_ended": True})
    mocked.delete(DELETE_URL, status=204)
    link = link_for(user, state=State.ATTACHED, keys={ROOM: ["username", "user_id"]})
    result = workflows.detach(link.pk, client, two_rooms())
    assert result.ok
    assert result.ended == [CHAT]
    assert sorted(result.skipped) == [
        "chat c-foreign: room of another organization",
        "chat c-shared: room of another organization",
    ]
    assert sorted(result.deleted[ROOM]) == ["user_id", "username"]
    link.refresh_from_db()
    assert link.state == State.DETACHED
    assert link.keys == {}


def test_a_chat_without_its_rooms_owner_in_a_shared_room_is_left_alone(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    """Neither the room (shared to us, no owner listed) nor the chat names another organization:
    the room's ``is_shared`` alone says the chat is not ours to end."""
    mocked.get(f"{ORG_URL}/rooms", json=page({"id": SHARED, "is_shared": True}))
    unlabelled = {"id": "c-unlabelled", "room_id": SHARED, "is_ended": False}
    chats_of(mocked, SHARED, unlabelled)
    link = link_for(user, state=State.ATTACHED, keys={})
    result = workflows.detach(link.pk, client, two_rooms(ROOM_IDS=[SHARED]))
    assert result.ok
    assert result.ended == []
    assert result.skipped == ["chat c-unlabelled: room of another organization"]
    assert [call.request.method for call in mocked.calls] == ["GET", "GET"]


def test_already_gone_counts_as_done(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    rooms_page(mocked)
    # a visitor giosg never saw in a room: 404 for its chats, which means no chats
    mocked.get(f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/chats", status=404, json={})
    chats_of(mocked, SHARED)
    mocked.delete(DELETE_URL, status=404, json={"detail": "Not found."})
    link = link_for(user, state=State.ATTACHED, keys={ROOM: ["username"]})
    result = workflows.detach(link.pk, client, two_rooms())
    assert result.ok
    assert result.deleted == {ROOM: ["username"]}
    link.refresh_from_db()
    assert link.state == State.DETACHED


@pytest.mark.parametrize(("ended", "ok"), [(True, True), (False, False)])
def test_a_chat_giosg_refuses_to_end_is_read_again(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser, ended: bool, ok: bool
) -> None:
    rooms_page(mocked)
    chats_of(mocked, ROOM, chat())
    chats_of(mocked, SHARED)
    mocked.patch(f"{ORG_URL}/owned_chats/{CHAT}", status=400, json={"detail": "locked"})
    mocked.get(f"{ORG_URL}/owned_chats/{CHAT}", json={**chat(), "is_ended": ended})
    link = link_for(user, state=State.ATTACHED)
    result = workflows.detach(link.pk, client, two_rooms())
    assert result.ok is ok
    assert result.ended == ([CHAT] if ended else [])
    link.refresh_from_db()
    assert link.state == (State.DETACHED if ok else State.PENDING_DETACH)


def test_a_failed_detach_keeps_the_keys_not_deleted_yet(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    mocked.get(f"{ORG_URL}/rooms", status=503)
    mocked.delete(f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/variables/username", status=204)
    mocked.delete(f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/variables/user_id", status=503)
    link = link_for(user, state=State.ATTACHED, keys={ROOM: ["username", "user_id"]})
    result = workflows.detach(link.pk, client, two_rooms(), limits=CallLimits(max_retries=0))
    assert not result.ok
    assert any(failure.startswith("listing the rooms") for failure in result.failed)
    link.refresh_from_db()
    assert link.state == State.PENDING_DETACH
    assert link.keys == {ROOM: ["user_id"]}
    assert link.failed_action == "detach"
    assert link.attempts == 1


def test_detach_cancels_a_pending_attach_and_skips_a_detached_link(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    rooms_page(mocked)
    chats_of(mocked, ROOM)
    chats_of(mocked, SHARED)
    link = link_for(user)  # pending_attach
    assert workflows.detach(link.pk, client, two_rooms()).ok
    link.refresh_from_db()
    assert link.state == State.DETACHED
    calls = len(mocked.calls)
    assert workflows.detach(link.pk, client, two_rooms()).skipped == [
        "the link is detached already"
    ]
    assert workflows.attach(link.pk, client, two_rooms()).skipped == [
        "the link is not pending attach"
    ]
    assert len(mocked.calls) == calls


# -- what happens meanwhile ---------------------------------------------------------------------


def meanwhile(monkeypatch: pytest.MonkeyPatch, change: Callable[[], object]) -> None:
    """Run ``change`` just as the visitor's lease is taken (another worker got there first)."""
    take = leases._take_lease

    def take_after_change(visitor_id: str, seconds: float) -> str | None:
        change()
        return take(visitor_id, seconds)

    monkeypatch.setattr(leases, "_take_lease", take_after_change)


def detached_by_another_worker(link_id: int) -> None:
    link = VisitorLink.objects.get(pk=link_id)
    assert link.begin_detach()
    assert link.mark_detached()


def test_an_attach_overtaken_before_its_lease_does_nothing(
    client: GiosgClient,
    mocked: responses.RequestsMock,
    user: AbstractUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = link_for(user)
    meanwhile(monkeypatch, lambda: VisitorLink.objects.all().release(timezone.now()))
    assert workflows.attach(link.pk, client, two_rooms()).skipped == [
        "the link is not pending attach"
    ]
    assert len(mocked.calls) == 0


def test_a_detach_overtaken_before_its_lease_does_nothing(
    client: GiosgClient,
    mocked: responses.RequestsMock,
    user: AbstractUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = link_for(user, state=State.ATTACHED)
    meanwhile(monkeypatch, lambda: detached_by_another_worker(link.pk))
    assert workflows.detach(link.pk, client, two_rooms()).skipped == [
        "the link is detached already"
    ]
    assert len(mocked.calls) == 0


def test_a_busy_visitor_is_recorded_on_a_detach_too(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    VisitorLease.objects.create(
        visitor_id=VISITOR, holder="other", expires_at=timezone.now() + timedelta(minutes=5)
    )
    link = link_for(user, state=State.ATTACHED)
    result = workflows.detach(
        link.pk, client, two_rooms(), limits=CallLimits(client.deadline_after(0.01))
    )
    assert not result.ok
    link.refresh_from_db()
    assert (link.state, link.attempts, link.failed_action) == (State.PENDING_DETACH, 1, "detach")


def test_an_attach_waits_for_the_previous_binding_to_be_detached(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    mocked.get(f"{ORG_URL}/rooms", status=503)
    previous = link_for(None, state=State.PENDING_DETACH)
    link = link_for(user)
    result = workflows.attach(link.pk, client, two_rooms(), limits=CallLimits(max_retries=0))
    assert result.failed == ["the visitor's previous binding could not be detached first"]
    assert not any(call.request.method == "POST" for call in mocked.calls)
    link.refresh_from_db()
    previous.refresh_from_db()
    assert (link.state, link.attempts) == (State.PENDING_ATTACH, 1)
    assert (previous.state, previous.attempts) == (State.PENDING_DETACH, 1)


def test_failing_chat_calls_fail_the_detach(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    rooms_page(mocked)
    chats_of(mocked, ROOM, chat())
    mocked.get(f"{ORG_URL}/rooms/{SHARED}/visitors/{VISITOR}/chats", status=500)
    mocked.patch(f"{ORG_URL}/owned_chats/{CHAT}", status=403, json={})
    mocked.get(f"{ORG_URL}/owned_chats/{CHAT}", status=403, json={})
    link = link_for(user, state=State.ATTACHED)
    result = workflows.detach(link.pk, client, two_rooms(), limits=CallLimits(max_retries=0))
    assert sorted(failure.split(":")[0] for failure in result.failed) == [
        f"ending chat {CHAT}",
        f"listing the chats in room {SHARED}",
    ]


def test_an_unexpected_error_in_a_call_is_a_failure_not_a_crash(
    client: GiosgClient,
    mocked: responses.RequestsMock,
    user: AbstractUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rooms_page(mocked)
    chats_of(mocked, ROOM)
    chats_of(mocked, SHARED)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(client, "delete_variable", broken)
    link = link_for(user, state=State.ATTACHED, keys={ROOM: ["username"]})
    result = workflows.detach(link.pk, client, two_rooms())
    assert result.failed == ["unexpected RuntimeError in _delete"]


def test_the_previous_binding_is_detached_before_the_new_one_is_set(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    rooms_page(mocked)
    chats_of(mocked, ROOM)
    chats_of(mocked, SHARED)
    mocked.delete(DELETE_URL, status=204)
    mocked.post(VARIABLES_URL, status=201, json={})
    previous = link_for(None, state=State.PENDING_DETACH, keys={ROOM: ["username"]})
    link = link_for(user)
    assert workflows.attach(link.pk, client, two_rooms()).ok
    methods = [call.request.method for call in mocked.calls]
    assert methods.index("POST") > methods.index("DELETE")
    assert methods.count("POST") == 4
    previous.refresh_from_db()
    assert previous.state == State.DETACHED


@pytest.mark.django_db(transaction=True)
def test_an_attach_overtaken_during_its_calls_undoes_them(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    from django.db import connections

    link = link_for(user)

    def logout_meanwhile(request: Any) -> tuple[int, dict[str, str], str]:
        try:  # a logout in another request, while the variables are being set
            VisitorLink.objects.filter(pk=link.pk).release(timezone.now())
        finally:
            connections.close_all()
        return 201, {}, "{}"

    mocked.add_callback("POST", VARIABLES_URL, callback=logout_meanwhile)
    rooms_page(mocked)
    chats_of(mocked, ROOM)
    chats_of(mocked, SHARED)
    mocked.delete(DELETE_URL, status=204)
    result = workflows.attach(link.pk, client, two_rooms())
    assert result.cancelled
    assert result.ok
    deleted = [call for call in mocked.calls if call.request.method == "DELETE"]
    assert len(deleted) == 4  # every key it had set
    link.refresh_from_db()
    assert link.state == State.DETACHED


def test_an_unexpected_error_while_setting_a_variable_is_reported_without_its_value(
    client: GiosgClient,
    user: AbstractUser,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pool logs an unexpected error with its traceback; an error e-mail (``DEBUG`` off)
    shows the frames' variables but the values sent."""

    @sensitive_variables()  # as the client's own set_variable is
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("not a giosg error")

    monkeypatch.setattr(client, "set_variable", broken)
    with caplog.at_level(logging.ERROR, "django_giosg"):
        workflows.attach(link_for(user).pk, client, two_rooms())
    logged = [record for record in caplog.records if record.exc_info]
    assert logged
    with override_settings(DEBUG=False):
        for record in logged:
            assert record.exc_info is not None
            reporter = ExceptionReporter(None, *record.exc_info)
            for report in (reporter.get_traceback_html(), reporter.get_traceback_text()):
                assert "Ann Smith" not in report
                assert "_set_variable" in report  # the frame is there, its value hidden


# -- writes that got no answer -------------------------------------------------------------------


SETTLE = 120


def test_a_set_answered_only_on_its_retry_is_recorded_as_unsettled(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser, link_clock: Any
) -> None:
    now = link_clock.set(timezone.now())
    mocked.post(VARIABLES_URL, body=requests.ReadTimeout())
    mocked.post(VARIABLES_URL, status=201, json={})
    link = link_for(user)
    result = workflows.attach(link.pk, client, load_settings(SETTLE_DELAY=SETTLE))
    assert result.ok
    assert not result.settling  # its own late set carries its own value
    link.refresh_from_db()
    assert link.state == State.ATTACHED
    assert link.sets_unsettled_until == now + timedelta(seconds=SETTLE)
    assert link.deletes_unsettled_until is None


def test_an_attach_after_anothers_unanswered_writes_sets_again_once_they_settled(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser, link_clock: Any
) -> None:
    now = link_clock.set(timezone.now())
    until = now + timedelta(seconds=30)
    link_for(None, state=State.DETACHED, deletes_unsettled_until=until)
    link_for(None, state=State.DETACHED, sets_unsettled_until=now - timedelta(seconds=1))
    mocked.post(VARIABLES_URL, status=201, json={})
    attached: list[object] = []
    signals.visitor_attached.connect(attached.append, dispatch_uid="t")
    try:
        link = link_for(user)
        result = workflows.attach(link.pk, client, load_settings())
    finally:
        signals.visitor_attached.disconnect(dispatch_uid="t")
    assert result.ok
    assert result.settling
    link.refresh_from_db()
    assert (link.state, link.next_attempt_at) == (State.PENDING_ATTACH, until)
    assert link.keys == {ROOM: ["username", "user_id"]}
    assert attached == []  # not attached for good yet
    link_clock.set(until + timedelta(seconds=1))
    result = workflows.attach(link.pk, client, load_settings())
    link.refresh_from_db()
    assert (result.settling, link.state, link.next_attempt_at) == (False, State.ATTACHED, None)
    assert len(mocked.calls) == 4  # both keys, twice


def test_a_detach_after_unanswered_sets_settles_then_deletes_again(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser, link_clock: Any
) -> None:
    now = link_clock.set(timezone.now())
    until = now + timedelta(seconds=30)
    rooms_page(mocked)
    chats_of(mocked, ROOM, chat())
    chats_of(mocked, SHARED)
    mocked.patch(f"{ORG_URL}/owned_chats/{CHAT}", json={**chat(), "is_ended": True})
    mocked.delete(DELETE_URL, status=404, json={})
    keys = {ROOM: ["username", "user_id"]}
    link = link_for(user, state=State.ATTACHED, keys=keys, sets_unsettled_until=until)
    result = workflows.detach(link.pk, client, load_settings())
    assert result.ok
    assert result.settling
    link.refresh_from_db()
    assert (link.state, link.next_attempt_at, link.keys) == (State.SETTLING, until, keys)
    # Too early (a task, the admin): nothing is called, it still waits.
    calls = len(mocked.calls)
    early = workflows.detach(link.pk, client, load_settings())
    assert early.outcome is Outcome.SKIPPED
    assert early.settling
    assert len(mocked.calls) == calls
    link_clock.set(until)  # the time it is due: settled
    again = workflows.detach(link.pk, client, load_settings())
    assert (again.action, again.ok, again.ended) == (Action.SETTLE, True, [])
    assert sorted(again.deleted[ROOM]) == ["user_id", "username"]
    new_calls = [call.request.method for call in mocked.calls][calls:]
    assert new_calls == ["DELETE", "DELETE"]  # the keys only: no room list, no chats
    link.refresh_from_db()
    assert (link.state, link.keys) == (State.DETACHED, {})


def test_a_failed_detach_with_unanswered_sets_keeps_every_key(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser, link_clock: Any
) -> None:
    """A key deleted now may be set again by a late set: all of them are deleted again."""
    now = link_clock.set(timezone.now())
    mocked.get(f"{ORG_URL}/rooms", status=400, json={})
    mocked.delete(DELETE_URL, status=204)
    keys = {ROOM: ["username", "user_id"]}
    link = link_for(
        user, state=State.ATTACHED, keys=keys, sets_unsettled_until=now + timedelta(seconds=30)
    )
    result = workflows.detach(link.pk, client, load_settings())
    assert not result.ok
    assert sorted(result.deleted[ROOM]) == ["user_id", "username"]
    link.refresh_from_db()
    assert (link.state, link.keys) == (State.PENDING_DETACH, keys)


def test_unanswered_deletes_are_recorded(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser, link_clock: Any
) -> None:
    now = link_clock.set(timezone.now())
    mocked.get(f"{ORG_URL}/rooms", json=page())
    mocked.delete(DELETE_URL, body=requests.ReadTimeout())
    mocked.delete(DELETE_URL, status=404, json={})
    link = link_for(user, state=State.ATTACHED, keys={ROOM: ["username"]})
    result = workflows.detach(link.pk, client, load_settings(SETTLE_DELAY=SETTLE))
    assert result.ok
    assert not result.settling  # a late delete of its own key harms nobody here
    link.refresh_from_db()
    assert link.state == State.DETACHED
    assert link.deletes_unsettled_until == now + timedelta(seconds=SETTLE)


def test_a_settle_that_keeps_failing_ends_failed_as_a_settle(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    mocked.delete(DELETE_URL, status=400, json={})
    link = link_for(user, state=State.SETTLING, keys={ROOM: ["username"]})
    settings = load_settings(SWEEP_MAX_ATTEMPTS=2)
    first = workflows.detach(link.pk, client, settings)
    link.refresh_from_db()
    assert (first.outcome, link.state, link.failed_action) == (
        Outcome.RETRYING,
        State.SETTLING,
        Action.SETTLE,
    )
    second = workflows.detach(link.pk, client, settings)
    link.refresh_from_db()
    assert (second.outcome, link.state, link.failed_action) == (
        Outcome.FAILED,
        State.FAILED,
        Action.SETTLE,
    )
    assert link.keys == {ROOM: ["username"]}
    mocked.replace(responses.DELETE, DELETE_URL, status=204)
    retried = workflows.detach(link.pk, client, settings)  # settles again: no chats
    link.refresh_from_db()
    assert (retried.ok, link.state) == (True, State.DETACHED)
    assert {call.request.method for call in mocked.calls} == {"DELETE"}


def test_a_settle_that_finds_the_visitor_busy_is_counted_as_a_settle(
    client: GiosgClient, user: AbstractUser
) -> None:
    VisitorLease.objects.create(
        visitor_id=VISITOR, holder="other", expires_at=timezone.now() + timedelta(minutes=5)
    )
    link = link_for(user, state=State.SETTLING, keys={ROOM: ["username"]})
    limits = CallLimits(client.deadline_after(0.01))
    result = workflows.detach(link.pk, client, load_settings(), limits=limits)
    assert (result.action, result.outcome) == (Action.SETTLE, Outcome.RETRYING)
    link.refresh_from_db()
    assert (link.state, link.attempts, link.failed_action) == (State.SETTLING, 1, Action.SETTLE)
    assert link.next_attempt_at is not None


def test_an_attach_leaves_a_settling_binding_of_the_visitor_to_its_settle(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    """Its chats are ended and its keys deleted: the attach does not wait for it, nor end chats
    for it (they may be the new user's)."""
    link_for(None, state=State.SETTLING, keys={ROOM: ["username"]}, next_attempt_at=timezone.now())
    mocked.post(VARIABLES_URL, status=201, json={})
    link = link_for(user)
    assert workflows.attach(link.pk, client, load_settings()).ok
    assert {call.request.method for call in mocked.calls} == {"POST"}


def test_the_record_of_unanswered_sets_survives_an_error_after_them(
    client: GiosgClient,
    mocked: responses.RequestsMock,
    user: AbstractUser,
    link_clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worst case is written before anything is sent: an error after the sends (here the
    cache, dropping the room list), a killed worker or a lease run out cannot lose it."""
    now = link_clock.set(timezone.now())
    mocked.post(
        f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/variables", body=requests.ReadTimeout()
    )
    mocked.post(f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/variables", status=201, json={})
    mocked.post(f"{ORG_URL}/rooms/{ROOM_2}/visitors/{VISITOR}/variables", status=404, json={})

    def cache_down(settings: object) -> None:
        raise RuntimeError("the cache is down")

    monkeypatch.setattr(workflows, "forget_rooms", cache_down)
    link = link_for(user)
    with pytest.raises(RuntimeError):
        workflows.attach(link.pk, client, two_rooms(SETTLE_DELAY=SETTLE))
    link.refresh_from_db()
    assert link.sets_unsettled_until == now + timedelta(seconds=SETTLE)


def test_a_bug_in_a_set_keeps_the_worst_case(
    client: GiosgClient, user: AbstractUser, link_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = link_clock.set(timezone.now())

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug after sending")

    monkeypatch.setattr(client, "set_variable", broken)
    link = link_for(user)
    assert not workflows.attach(link.pk, client, load_settings(SETTLE_DELAY=SETTLE)).ok
    link.refresh_from_db()
    assert link.sets_unsettled_until == now + timedelta(seconds=SETTLE)


def test_writes_all_answered_take_the_worst_case_back(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser, link_clock: Any
) -> None:
    link_clock.set(timezone.now())
    earlier = timezone.now() - timedelta(hours=1)
    mocked.post(VARIABLES_URL, status=201, json={})
    mocked.get(f"{ORG_URL}/rooms", json=page())
    mocked.delete(DELETE_URL, status=204)
    link = link_for(user, sets_unsettled_until=earlier)
    assert workflows.attach(link.pk, client, load_settings()).ok
    link.refresh_from_db()
    assert (link.state, link.sets_unsettled_until) == (State.ATTACHED, earlier)
    assert workflows.detach(link.pk, client, load_settings()).ok
    link.refresh_from_db()
    assert (link.state, link.deletes_unsettled_until) == (State.DETACHED, None)


def test_a_detach_whose_chats_ended_but_deletes_failed_settles(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    """Its retries delete the keys and end no chat: the visitor's chats may be the next
    user's by then."""
    rooms_page(mocked)
    chats_of(mocked, ROOM, chat())
    chats_of(mocked, SHARED)
    mocked.patch(f"{ORG_URL}/owned_chats/{CHAT}", json={**chat(), "is_ended": True})
    mocked.delete(DELETE_URL, status=500, json={})
    link = link_for(user, state=State.ATTACHED, keys={ROOM: ["username"]})
    result = workflows.detach(link.pk, client, load_settings(MAX_RETRIES=0))
    assert (result.action, result.outcome, result.ended) == (
        Action.SETTLE,
        Outcome.RETRYING,
        [CHAT],
    )
    link.refresh_from_db()
    assert (link.state, link.attempts, link.failed_action) == (State.SETTLING, 1, Action.SETTLE)
    assert link.keys == {ROOM: ["username"]}


def test_a_detach_whose_chats_did_not_all_end_stays_pending(
    client: GiosgClient, mocked: responses.RequestsMock, user: AbstractUser
) -> None:
    rooms_page(mocked)
    chats_of(mocked, ROOM, chat())
    mocked.get(f"{ORG_URL}/rooms/{SHARED}/visitors/{VISITOR}/chats", status=500, json={})
    mocked.patch(f"{ORG_URL}/owned_chats/{CHAT}", json={**chat(), "is_ended": True})
    mocked.delete(DELETE_URL, status=500, json={})
    link = link_for(user, state=State.ATTACHED, keys={ROOM: ["username"]})
    result = workflows.detach(link.pk, client, load_settings(MAX_RETRIES=0))
    assert result.action == Action.DETACH
    link.refresh_from_db()
    assert (link.state, link.failed_action) == (State.PENDING_DETACH, Action.DETACH)
