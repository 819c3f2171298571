"""The browser's share of a logout: the receiver, the middleware's cookie and {% giosg_logout %},
through Django's real login and logout views."""

from __future__ import annotations

import logging
import re
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.core import signing
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings

from django_giosg import browser_logout
from django_giosg.browser_logout import LOGOUT_COOKIE, LOGOUT_COOKIE_AGE, LOGOUT_SALT, Cleanup
from django_giosg.session import ROOMS_SESSION_KEY, SESSION_KEY

from .conftest import VISITOR
from .settings import ROOM_ID

pytestmark = pytest.mark.django_db

BROWSER_ROOM = "0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe"
LOGOUT_SCRIPT = re.compile(
    r'<script src="/static/django_giosg/logout\.js" defer data-mode="logout" data-rooms="([^"]*)">'
)
CLOSE_SCRIPT = (
    '<script src="/static/django_giosg/logout.js" defer data-mode="close" data-rooms="">'
)


@pytest.fixture
def browser() -> Client:
    """A browser logged in through the login view, with a captured visitor id."""
    get_user_model().objects.create_user("ada", password="pw-ada-1815")
    client = Client()
    response = client.post("/accounts/login/", {"username": "ada", "password": "pw-ada-1815"})
    assert response.status_code == 302
    session = client.session
    session[SESSION_KEY] = VISITOR
    session.save()
    return client


def logout_rooms(page: bytes) -> list[list[str]]:
    """The rooms of each logout script on the page."""
    return [rooms.split() for rooms in LOGOUT_SCRIPT.findall(page.decode())]


def log_out(browser: Client) -> HttpResponse:
    response = browser.post("/accounts/logout/")
    assert response.status_code == 302
    return response  # type: ignore[return-value]


def test_the_first_page_after_a_logout_renders_the_tag_exactly_once(browser: Client) -> None:
    assert logout_rooms(browser.get("/").content) == []
    response = log_out(browser)
    cookie = response.cookies[LOGOUT_COOKIE]
    assert cookie["max-age"] == LOGOUT_COOKIE_AGE
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["secure"]

    page = browser.get("/")
    assert "anonymous" in page.content.decode()
    assert logout_rooms(page.content) == [[ROOM_ID]]
    assert page.cookies[LOGOUT_COOKIE]["max-age"] == 0  # consumed
    assert logout_rooms(browser.get("/").content) == []
    assert logout_rooms(browser.get("/").content) == []


def test_redirects_and_non_html_responses_do_not_consume_it(browser: Client) -> None:
    log_out(browser)
    redirect = browser.get("/go/")  # renders the tag but answers with a redirect
    assert redirect.status_code == 302
    assert LOGOUT_COOKIE not in redirect.cookies
    data = browser.get("/data/")
    assert data["Content-Type"] == "application/json"
    assert LOGOUT_COOKIE not in data.cookies
    assert logout_rooms(browser.get("/").content) == [[ROOM_ID]]
    assert logout_rooms(browser.get("/").content) == []


def test_a_logout_view_that_renders_a_page_shows_it_there_and_sets_no_cookie(
    browser: Client,
) -> None:
    response = browser.post("/accounts/logged-out/")
    assert response.status_code == 200
    assert logout_rooms(response.content) == [[ROOM_ID]]
    assert LOGOUT_COOKIE not in response.cookies
    assert logout_rooms(browser.get("/").content) == []


def test_the_rooms_include_those_the_browser_reported(browser: Client) -> None:
    session = browser.session
    session[ROOMS_SESSION_KEY] = [BROWSER_ROOM, ROOM_ID]
    session.save()
    log_out(browser)
    assert logout_rooms(browser.get("/").content) == [[ROOM_ID, BROWSER_ROOM]]


def test_a_logout_without_a_visitor_id_still_cleans_the_browser(browser: Client) -> None:
    session = browser.session
    del session[SESSION_KEY]
    session.save()
    log_out(browser)
    assert logout_rooms(browser.get("/").content) == [[ROOM_ID]]


def test_the_cookie_is_secure_with_the_session_cookie(browser: Client) -> None:
    with override_settings(SESSION_COOKIE_SECURE=True):
        response = browser.post("/accounts/logout/", secure=True)
    assert response.cookies[LOGOUT_COOKIE]["secure"]


def test_nothing_happens_while_disabled(browser: Client) -> None:
    with override_settings(GIOSG={"ENABLED": False}):
        response = log_out(browser)
        assert LOGOUT_COOKIE not in response.cookies
        assert logout_rooms(browser.get("/").content) == []


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        signing.dumps([ROOM_ID], salt="another.salt"),
        signing.dumps({"rooms": [ROOM_ID]}, salt=LOGOUT_SALT),
        signing.dumps({"rooms": [ROOM_ID], "remove": "yes"}, salt=LOGOUT_SALT),
        signing.dumps({"rooms": "r", "remove": True}, salt=LOGOUT_SALT),
        signing.dumps("rooms", salt=LOGOUT_SALT),
        signing.dumps([ROOM_ID, 7], salt=LOGOUT_SALT),
    ],
)
def test_a_forged_cookie_renders_nothing_and_is_removed(value: str) -> None:
    browser = Client()
    browser.cookies[LOGOUT_COOKIE] = value
    response = browser.get("/")
    assert logout_rooms(response.content) == []
    assert response.cookies[LOGOUT_COOKIE]["max-age"] == 0


def test_a_stale_cookie_renders_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    real_time = time.time
    monkeypatch.setattr(
        "django.core.signing.time.time", lambda: real_time() - LOGOUT_COOKIE_AGE - 5
    )
    value = signing.dumps([ROOM_ID], salt=LOGOUT_SALT, compress=True)
    monkeypatch.undo()
    browser = Client()
    browser.cookies[LOGOUT_COOKIE] = value
    response = browser.get("/")
    assert logout_rooms(response.content) == []
    assert response.cookies[LOGOUT_COOKIE]["max-age"] == 0


def test_a_valid_cookie_on_a_non_html_response_is_left_alone() -> None:
    browser = Client()
    browser.cookies[LOGOUT_COOKIE] = signing.dumps([ROOM_ID], salt=LOGOUT_SALT)
    assert LOGOUT_COOKIE not in browser.get("/data/").cookies
    assert logout_rooms(browser.get("/").content) == [[ROOM_ID]]


# -- the receiver, called the ways third-party code calls it ---------------------------------


def test_a_signal_without_a_request_or_user_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, "django_giosg"):
        user_logged_out.send(sender=None, request=None, user=None)
        user_logged_out.send(sender=None)
    assert caplog.records == []


def test_a_request_without_a_session_still_gets_the_configured_rooms() -> None:
    request = RequestFactory().get("/")
    user_logged_out.send(sender=None, request=request, user=None)
    assert browser_logout.pending_cleanup(request) == Cleanup((ROOM_ID,), remove=True)


def test_a_broken_configuration_never_breaks_the_logout(
    browser: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        override_settings(GIOSG={**settings.GIOSG, "ROOM_IDS": "not a list"}),
        caplog.at_level(logging.ERROR, "django_giosg"),
    ):
        response = log_out(browser)
    assert LOGOUT_COOKIE not in response.cookies
    assert "could not detach the visitor at logout" in caplog.text
    assert "anonymous" in browser.get("/").content.decode()


def test_a_login_in_the_request_turns_an_earlier_logouts_cleanup_into_close_only() -> None:
    """Removing the variables would remove the new user's, set in the same request."""
    request = RequestFactory().get("/")
    browser_logout.note_logout(request, ["room"])
    assert browser_logout.pending_cleanup(request) == Cleanup(("room",), remove=True)
    browser_logout.note_login(request)
    assert browser_logout.pending_cleanup(request) == Cleanup((), remove=False)


def test_a_close_never_weakens_a_logout_noted_in_the_same_request() -> None:
    request = RequestFactory().get("/")
    browser_logout.note_close(request)
    assert browser_logout.pending_cleanup(request) == Cleanup()
    browser_logout.note_logout(request, ["room"])
    browser_logout.note_close(request)
    assert browser_logout.pending_cleanup(request) == Cleanup(("room",), remove=True)


def test_a_login_rewrites_a_pending_logout_cookie_as_close_only(browser: Client) -> None:
    log_out(browser)
    response = browser.post("/accounts/login/", {"username": "ada", "password": "pw-ada-1815"})
    assert response.status_code == 302
    assert signing.loads(response.cookies[LOGOUT_COOKIE].value, salt=LOGOUT_SALT) == {
        "rooms": [],
        "remove": False,
    }
    page = browser.get("/").content.decode()
    assert CLOSE_SCRIPT in page
    assert logout_rooms(page.encode()) == []
    assert CLOSE_SCRIPT not in browser.get("/").content.decode()


def test_a_cookie_from_before_close_only_cleanups_still_renders_a_logout() -> None:
    browser = Client()
    browser.cookies[LOGOUT_COOKIE] = signing.dumps([ROOM_ID], salt=LOGOUT_SALT)
    assert logout_rooms(browser.get("/").content) == [[ROOM_ID]]
