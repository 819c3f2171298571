"""django_giosg.receivers at their edges: odd signals, and errors caught before they reach a
login or logout."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory

from django_giosg import receivers, session, tasks
from django_giosg.models import State, VisitorLink, write_db
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


def test_a_logout_without_a_user_detaches_what_its_own_session_bound(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    """A session that lost its user (``user_logged_out(user=None)``) still ends its binding."""
    user = get_user_model().objects.create_user("ann")
    link = VisitorLink.objects.create(visitor_id=VISITOR, user=user, state=State.ATTACHED)
    request = request_with_visitor()
    session.record_binding(request.session, str(user.pk))
    with django_capture_on_commit_callbacks(using=write_db(VisitorLink)) as callbacks:
        user_logged_out.send(type(user), request=request, user=None)
    assert len(callbacks) == 1
    link.refresh_from_db()
    assert link.state == State.PENDING_DETACH


def test_an_anonymous_logout_releases_nobody_elses_binding(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    """Finding 1 of the security review: capture a victim's visitor id anonymously, then POST
    the logout view; Django sends ``user_logged_out(user=None)``."""
    victim = get_user_model().objects.create_user("ann")
    link = VisitorLink.objects.create(visitor_id=VISITOR, user=victim, state=State.ATTACHED)
    with django_capture_on_commit_callbacks(using=write_db(VisitorLink)) as callbacks:
        user_logged_out.send(type(victim), request=request_with_visitor(), user=None)
    assert callbacks == []
    link.refresh_from_db()
    assert link.state == State.ATTACHED


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
