"""django_giosg.middleware: the request's duties at their edges, under WSGI and ASGI."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.test import AsyncClient, Client, RequestFactory
from django.utils import timezone

from django_giosg import limits, middleware, request_notes, session, tasks
from django_giosg.browser_logout import LOGOUT_COOKIE
from django_giosg.limits import CallLimits
from django_giosg.middleware import GiosgMiddleware
from django_giosg.models import State, VisitorLink
from django_giosg.request_notes import visitor_before_view
from django_giosg.session import SESSION_KEY
from django_giosg.testing import GiosgSimulator

from .browsing import PASSWORD, VISITOR, Browser, device_flag, expected, make_user, only_link

pytestmark = pytest.mark.django_db


def test_the_middleware_works_without_a_session() -> None:
    request = RequestFactory().get("/")
    response = GiosgMiddleware(lambda request: HttpResponse("ok"))(request)
    assert isinstance(response, HttpResponse)
    assert response.status_code == 200
    assert visitor_before_view(request) == (None, [])


def test_the_middleware_does_not_make_pages_vary_on_the_cookie() -> None:
    browser = Client()
    session = browser.session
    session[SESSION_KEY] = VISITOR
    session.save()
    assert "Vary" not in browser.get("/data/")
    assert "Cookie" in browser.get("/").get("Vary", "")  # the page itself uses the session


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


def test_a_bind_with_nothing_to_attach_notes_nothing_to_check() -> None:
    request = RequestFactory().get("/")
    request_notes.confirm_after_view(request, None)
    assert request_notes.after_view(request) is None
    request_notes.confirm_after_view(request, 7)
    assert request_notes.after_view(request) == request_notes.After(bound=[7])


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


@pytest.mark.django_db(transaction=True)
def test_errors_of_the_checks_before_and_after_the_view_never_break_the_page(
    giosg_simulator: GiosgSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    browser = Browser()
    browser.login(make_user("ann"))

    def broken(*args: object) -> bool:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(tasks, "take_browser_closes", broken)
    monkeypatch.setattr(session, "still_stored", broken)
    with caplog.at_level(logging.ERROR, "django_giosg"):
        browser.capture()  # a bind: its session is read again after the view
        browser.http.cookies.pop(settings.SESSION_COOKIE_NAME)  # the session ended
        assert browser.http.get("/").status_code == 200  # no binding: looks for closes
    assert "could not look for this browser's ended bindings" in caplog.text
    assert "could not check the session's bindings after the view" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_only_a_session_whose_key_the_browser_sent_is_read_again_after_a_bind(
    giosg_simulator: GiosgSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logout in another request can only delete a session whose key it has. ``login()``
    rotates the key: the new one reaches the browser with the answer, so the login's bind needs
    no query. A logged-in capture binds in the browser's session, which is read again."""
    asked: list[str | None] = []
    real = session.still_stored

    def recorded(store: SessionStore) -> bool | None:
        asked.append(store.session_key)
        return real(store)

    monkeypatch.setattr(session, "still_stored", recorded)
    browser = Browser()
    browser.capture()
    browser.login(make_user("ann"))
    assert asked == []
    assert only_link().state == State.ATTACHED
    browser.capture("f" * 32)  # another visitor id: a bind in the session the browser sent
    assert asked == [browser.http.cookies[settings.SESSION_COOKIE_NAME].value]


# -- under ASGI ----------------------------------------------------------------------------------


def test_the_middleware_follows_the_mode_of_the_handler_it_wraps() -> None:
    """Django gives an async-capable middleware an async ``get_response`` under ASGI; the
    middleware is then a coroutine function itself, so no thread hop is added."""
    assert (GiosgMiddleware.sync_capable, GiosgMiddleware.async_capable) == (True, True)

    async def async_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    in_async = GiosgMiddleware(async_view)
    assert in_async.async_mode
    assert iscoroutinefunction(in_async)
    in_sync = GiosgMiddleware(lambda request: HttpResponse("ok"))
    assert not in_sync.async_mode
    assert not iscoroutinefunction(in_sync)
    response = async_to_sync(in_async)(RequestFactory().get("/"))
    assert response.status_code == 200


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    settings.GIOSG = {**settings.GIOSG, "ROOM_IDS": giosg_simulator.room_ids[:2]}
    return giosg_simulator


def asgi_browser() -> Callable[..., HttpResponseBase]:
    """Requests through Django's ASGI handler (``AsyncClient``), one call at a time."""
    browser = AsyncClient()

    def send(method: str, path: str, **data: Any) -> HttpResponseBase:
        response: HttpResponseBase = async_to_sync(getattr(browser, method))(path, **data)
        return response

    return send


@pytest.mark.django_db(transaction=True)
def test_capture_login_logout_and_the_logout_cookie_over_asgi(
    giosg: GiosgSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through Django's ASGI handler (``AsyncClient``), with the middleware in async mode: the
    same giosg state and the same cookie as under WSGI, and the request's budget reaches the
    calls made from the middleware's threads."""
    awaited: list[str] = []
    real_acall = GiosgMiddleware.__acall__

    async def spy(self: GiosgMiddleware, request: HttpRequest) -> HttpResponseBase:
        awaited.append(request.path)
        return await real_acall(self, request)

    monkeypatch.setattr(GiosgMiddleware, "__acall__", spy)
    limits_seen: list[CallLimits] = []
    real_call_limits = limits.call_limits

    def recording_call_limits(*args: Any) -> CallLimits:
        limits_seen.append(real_call_limits(*args))
        return limits_seen[-1]

    monkeypatch.setattr(tasks, "call_limits", recording_call_limits)
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    ann = make_user("ann")
    send = asgi_browser()
    body = {"visitor_id": VISITOR}
    assert (
        send("post", "/giosg/visitor/", data=body, content_type="application/json").status_code
        == 204
    )
    login = send("post", "/accounts/login/", data={"username": "ann", "password": PASSWORD})
    assert login.status_code == 302
    assert giosg.variables(VISITOR) == expected(giosg, ann, "ann")
    assert limits_seen
    assert all(seen.deadline is not None and seen.max_retries == 0 for seen in limits_seen)

    logout = send("post", "/accounts/logout/")
    assert logout.status_code == 302
    assert giosg.variables(VISITOR) == {}
    assert giosg.open_chats(VISITOR) == []
    assert LOGOUT_COOKIE in logout.cookies
    page = send("get", "/")
    assert "logout.js" in page.content.decode()  # type: ignore[attr-defined]
    assert page.cookies[LOGOUT_COOKIE]["max-age"] == 0
    assert "logout.js" not in send("get", "/").content.decode()  # type: ignore[attr-defined]
    assert only_link().state == State.DETACHED
    assert awaited == ["/giosg/visitor/", "/accounts/login/", "/accounts/logout/", "/", "/"]


@pytest.mark.django_db(transaction=True)
def test_a_session_that_lost_its_user_is_noticed_over_asgi(giosg: GiosgSimulator) -> None:
    """The middleware's own duty, from its thread under ASGI: a password changed elsewhere
    flushes the session on its next request, and the binding is detached."""
    ann = make_user("ann")
    send = asgi_browser()
    send("post", "/giosg/visitor/", data={"visitor_id": VISITOR}, content_type="application/json")
    send("post", "/accounts/login/", data={"username": "ann", "password": PASSWORD})
    assert giosg.variables(VISITOR) == expected(giosg, ann, "ann")
    ann.set_password("changed-on-another-device")
    ann.save()
    assert send("get", "/data/").status_code == 200
    assert giosg.variables(VISITOR) == {}
    assert only_link().state == State.DETACHED


@pytest.mark.parametrize("rate", [None, 1], ids=["under the rate", "over USER_CAPTURE_RATE"])
def test_a_session_bound_on_a_later_page_notes_its_binding_only_when_bound(
    giosg: GiosgSimulator, settings: Any, rate: int | None
) -> None:
    """A visitor id captured while GIOSG was off, by a logged-in user, is bound on the next page
    once it is on; over the user's rate it is not, and the browser notes no binding."""
    ann = make_user("ann")
    VisitorLink.objects.create(visitor_id="f" * 32, user=ann)  # the user's one id this hour
    browser = Browser()
    giosg_on = settings.GIOSG
    settings.GIOSG = {**giosg_on, "ENABLED": False}
    browser.http.force_login(ann)  # type: ignore[arg-type]
    browser.capture()
    settings.GIOSG = {**giosg_on, "USER_CAPTURE_RATE": rate}
    browser.http.get("/")
    bound = VisitorLink.objects.filter(visitor_id=VISITOR).exists()
    assert bound is (rate is None)
    assert device_flag(browser) is bound
    assert (browser.visitor_id() == VISITOR) is bound  # over the rate: reported again later
