"""Receivers and tasks at their edges: odd signals, errors caught at the boundary, the budget."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory

from django_giosg import browser_logout, limits, receivers, tasks
from django_giosg.client import GiosgClient
from django_giosg.conf import get_settings
from django_giosg.models import State, VisitorLink, write_db
from django_giosg.services import workflows
from django_giosg.services.results import Result
from django_giosg.session import SESSION_KEY

from .conftest import VISITOR

pytestmark = pytest.mark.django_db

Capture = Callable[..., Any]


def request_with_visitor() -> Any:
    request = RequestFactory().get("/")
    request.session = SessionStore()
    request.session[SESSION_KEY] = VISITOR
    return request


def test_signals_without_a_request_or_user_do_nothing(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    user = get_user_model().objects.create_user("ann")
    with django_capture_on_commit_callbacks(using=write_db(VisitorLink)) as callbacks:
        user_logged_in.send(type(user), request=None, user=user)
        # (not sent: Django's own last_login receiver cannot take user=None)
        receivers.on_user_logged_in(type(user), request=request_with_visitor(), user=None)
        user_logged_out.send(type(user), request=None, user=user)
        receivers.on_user_pre_delete(type(user), instance=None)
        receivers.on_user_pre_delete(type(user), instance=get_user_model()(username="new"))
    assert callbacks == []
    assert not VisitorLink.objects.exists()


def test_a_logout_without_a_user_detaches_the_sessions_visitor(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    user = get_user_model().objects.create_user("ann")
    link = VisitorLink.objects.create(visitor_id=VISITOR, user=user, state=State.ATTACHED)
    with django_capture_on_commit_callbacks(using=write_db(VisitorLink)) as callbacks:
        user_logged_out.send(type(user), request=request_with_visitor(), user=None)
    assert len(callbacks) == 1
    link.refresh_from_db()
    assert link.state == State.PENDING_DETACH


def test_a_login_without_a_visitor_id_waits_for_the_capture(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    user = get_user_model().objects.create_user("ann")
    request = RequestFactory().get("/")
    request.session = SessionStore()
    with django_capture_on_commit_callbacks(using=write_db(VisitorLink)) as callbacks:
        user_logged_in.send(type(user), request=request, user=user)
    assert callbacks == []


def test_an_error_in_a_receiver_never_reaches_the_login(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(tasks, "bind_visitor", broken)
    monkeypatch.setattr(tasks, "release_visitor", broken)
    monkeypatch.setattr(tasks, "release_user", broken)
    user = get_user_model().objects.create_user("ann", password="pw-1815")
    browser = Client()
    session = browser.session
    session[SESSION_KEY] = VISITOR
    session.save()
    with caplog.at_level(logging.ERROR, "django_giosg"):
        login = browser.post("/accounts/login/", {"username": "ann", "password": "pw-1815"})
        logout = browser.post("/accounts/logout/")
        user.delete()
    assert (login.status_code, logout.status_code) == (302, 302)
    assert "could not attach the visitor at login" in caplog.text
    assert "could not detach the visitor at logout" in caplog.text
    assert "could not detach a deleted user's visitors" in caplog.text


# -- tasks ---------------------------------------------------------------------------------------


def test_a_task_does_nothing_while_disabled(settings: Any) -> None:
    settings.GIOSG = {"ENABLED": False}
    assert tasks.attach_task.call(1) == {"link_id": 1, "skipped": ["GIOSG is disabled"]}


def test_a_task_catches_and_logs_everything(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> Result:
        raise RuntimeError("bug")

    monkeypatch.setattr(workflows, "detach", broken)
    with caplog.at_level(logging.ERROR, "django_giosg"):
        assert tasks.detach_task.call(7) == {"link_id": 7, "failed": ["RuntimeError"]}
    assert "the broken of link 7 failed; giosg_sweep retries it" in caplog.text


def test_a_task_that_cannot_be_enqueued_is_left_to_the_sweep(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Unreachable:
        name = "attach_task"

        def enqueue(self, link_id: int) -> None:
            raise ConnectionError("the broker is down")

    with caplog.at_level(logging.ERROR, "django_giosg"):
        tasks._enqueue(Unreachable(), 3)
    assert "could not enqueue attach_task for link 3; giosg_sweep will pick it up" in caplog.text


def test_calls_in_a_request_share_one_budget_and_make_no_retries(client: GiosgClient) -> None:
    settings = get_settings()
    assert limits.call_limits(client, settings) == (None, settings.max_retries)
    with limits.request_budget():
        deadline, retries = limits.call_limits(client, settings)
        assert retries == 0
        assert deadline == client.deadline_after(settings.inline_budget)
        client._clock.now += 1.5  # type: ignore[attr-defined]
        assert limits.call_limits(client, settings) == (deadline, 0)  # not renewed
    assert limits.call_limits(client, settings) == (None, settings.max_retries)


def test_a_failing_attach_never_fails_a_capture(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database on fire")

    get_user_model().objects.create_user("ann", password="pw-1815")
    browser = Client()
    assert browser.login(username="ann", password="pw-1815")
    monkeypatch.setattr(tasks, "bind_visitor", broken)
    with caplog.at_level(logging.ERROR, "django_giosg"):
        response = browser.post(
            "/giosg/visitor/", {"visitor_id": VISITOR}, content_type="application/json"
        )
    assert response.status_code == 204
    assert browser.session[SESSION_KEY] == VISITOR
    assert "could not attach the captured visitor" in caplog.text


def test_entry_points_change_nothing_while_disabled(settings: Any) -> None:
    settings.GIOSG = {"ENABLED": False}
    user = get_user_model().objects.create_user("ann")
    tasks.bind_visitor(user, VISITOR)
    assert not VisitorLink.objects.exists()


def test_a_login_in_the_request_hides_an_earlier_logouts_cleanup() -> None:
    request = RequestFactory().get("/")
    browser_logout.note_logout(request, ["room"])
    assert browser_logout.pending_logout_rooms(request) == ["room"]
    browser_logout.note_login(request)
    assert browser_logout.pending_logout_rooms(request) is None


def test_the_middleware_works_without_a_session() -> None:
    from django.http import HttpResponse

    from django_giosg.middleware import GiosgMiddleware, visitor_before_view

    request = RequestFactory().get("/")
    response = GiosgMiddleware(lambda request: HttpResponse("ok"))(request)
    assert response.status_code == 200
    assert visitor_before_view(request) == (None, [])


def test_the_middleware_does_not_make_pages_vary_on_the_cookie() -> None:
    browser = Client()
    session = browser.session
    session[SESSION_KEY] = VISITOR
    session.save()
    assert "Vary" not in browser.get("/data/")
    assert "Cookie" in browser.get("/").get("Vary", "")  # the page itself uses the session
