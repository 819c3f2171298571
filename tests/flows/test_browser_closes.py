"""The browser learns of every ending, once, and only this browser: through Django's test client,
the real auth views, the middleware and ``giosg_sweep``, against the simulator.

Also the checks the middleware runs after a logout's view (see ``test_races.py`` for the races
themselves), and what they cost a browser that has nothing to learn.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_giosg import session, tasks
from django_giosg.browser_logout import LOGOUT_COOKIE
from django_giosg.device import DEVICE_COOKIE, known_device
from django_giosg.models import State, VisitorLink, write_db
from django_giosg.testing import GiosgSimulator

from ..browsing import OTHER_VISITOR, PASSWORD, VISITOR, Browser, expected, make_user, sweep
from ..conftest import LinkClock

pytestmark = pytest.mark.django_db(transaction=True)

CLOSE = 'logout.js" defer data-mode="close" data-rooms=""'


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    settings.GIOSG = {**settings.GIOSG, "ROOM_IDS": giosg_simulator.room_ids[:2]}
    return giosg_simulator


def bound_browser() -> Browser:
    """A browser that captured ``VISITOR`` and logged in as ann: bound."""
    browser = Browser()
    browser.capture()
    browser.login(make_user("ann"))
    return browser


def expired_and_swept(browser: Browser, link_clock: LinkClock) -> None:
    """The browser's session ends (its cookie with it) and the sweep detaches its binding."""
    browser.http.cookies.pop(django_settings.SESSION_COOKIE_NAME)
    link_clock.advance(14 * 24 * 3600 + 3600)
    assert "1 expired" in sweep()


def link_queries(browser: Browser, path: str = "/", **headers: str) -> tuple[Any, int]:
    with CaptureQueriesContext(connections[write_db(VisitorLink)]) as queries:
        response = browser.http.get(path, headers=headers)
    table = VisitorLink._meta.db_table
    return response, sum(table in query["sql"] for query in queries.captured_queries)


def test_the_first_page_after_a_swept_expiry_closes_once(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    browser = bound_browser()
    expired_and_swept(browser, link_clock)
    assert VisitorLink.objects.get().close_in_browser
    page = browser.http.get("/")
    assert CLOSE in page.content.decode()
    assert "private" in page["Cache-Control"]  # this browser's page: no cache keeps it
    assert "Cookie" in page["Vary"]
    assert not VisitorLink.objects.get().close_in_browser
    assert "logout.js" not in browser.http.get("/").content.decode()
    assert not Browser().http.get("/").content.decode().count("logout.js")


def test_a_scripts_fetch_does_not_take_the_close_that_a_page_must_show(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    browser = bound_browser()
    expired_and_swept(browser, link_clock)
    fetched = browser.http.get("/data/", headers={"Sec-Fetch-Dest": "empty"})
    assert LOGOUT_COOKIE not in fetched.cookies
    assert VisitorLink.objects.get().close_in_browser  # still due
    page = browser.http.get("/", headers={"Sec-Fetch-Dest": "document"})
    assert CLOSE in page.content.decode()


def test_a_browser_with_nothing_to_learn_costs_no_query(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    browser = bound_browser()
    browser.logout()  # the logout's own cleanup closes the chat window
    browser.http.get("/")
    assert link_queries(browser)[1] == 0
    assert link_queries(browser, "/data/")[1] == 0
    anonymous = Browser()
    anonymous.capture(OTHER_VISITOR)  # a device cookie, but no binding
    assert link_queries(anonymous)[1] == 0


def test_a_browser_whose_binding_is_not_swept_yet_asks_until_it_is(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    browser = bound_browser()
    browser.http.cookies.pop(django_settings.SESSION_COOKIE_NAME)  # the session ended
    page, queries = link_queries(browser)
    assert queries == 1  # one query per page until the sweep has detached the link
    assert "logout.js" not in page.content.decode()
    link_clock.advance(14 * 24 * 3600 + 3600)
    sweep()
    page, queries = link_queries(browser)
    assert CLOSE in page.content.decode()
    assert link_queries(browser)[1] == 0  # nothing more to learn: the cookie says so


def test_a_logout_after_a_password_change_elsewhere_still_detaches(
    giosg: GiosgSimulator,
) -> None:
    """Django flushes the session (its password hash no longer verifies) before it sends
    ``user_logged_out(user=None)``: the binding is taken from the session as it came in."""
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    ann = make_user("ann")
    first = Browser()
    first.capture()
    first.login(ann)
    second = Browser()
    second.capture(OTHER_VISITOR)
    second.login(ann)
    changed = second.http.post(
        "/accounts/password-change/",
        {
            "old_password": PASSWORD,
            "new_password1": "N3w-pw-1815!",
            "new_password2": "N3w-pw-1815!",
        },
    )
    assert changed.status_code == 302
    first.logout()
    assert giosg.variables(VISITOR) == {}
    assert giosg.open_chats(VISITOR) == []
    assert VisitorLink.objects.get(visitor_id=VISITOR).state == State.DETACHED


def test_a_logout_and_a_login_in_one_request_keep_the_new_binding(
    giosg: GiosgSimulator,
) -> None:
    browser = bound_browser()
    make_user("bob")
    assert browser.http.get("/switch-to/bob/").status_code == 302
    assert giosg.variables(VISITOR) == expected(giosg, make_user_named("bob"), "bob")
    assert VisitorLink.objects.get(user__username="bob").state == State.ATTACHED


def make_user_named(username: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


def test_a_logout_whose_view_fails_releases_nothing_more_after_it(
    giosg: GiosgSimulator,
) -> None:
    """With ``ATOMIC_REQUESTS`` the failed view's logout is rolled back: the user is still
    logged in, so the browser's other bindings stay."""
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    here = VisitorLink.objects.get().device
    tasks.bind_visitor(ann, OTHER_VISITOR, device=here)  # e.g. a capture racing the logout
    assert browser.http.get("/logout-then-fail/").status_code == 500
    assert VisitorLink.objects.get(visitor_id=OTHER_VISITOR).state == State.ATTACHED
    assert browser.logout().status_code == 302  # a logout that works releases it
    assert VisitorLink.objects.get(visitor_id=OTHER_VISITOR).state == State.DETACHED


def test_a_session_just_written_counts_as_stored_even_where_reads_lag(
    giosg: GiosgSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions read from a replica that lags: ``exists()`` would not find a session this
    request has just written, so the check asks the database sessions are written to."""
    store = SessionStore()
    store["x"] = 1
    store.save()
    monkeypatch.setattr(SessionStore, "exists", lambda self, key: False)
    assert session.still_stored(store) is True
    store.delete()
    assert session.still_stored(store) is False


def test_responses_with_a_browsers_cookies_are_never_cached_for_another(
    giosg: GiosgSimulator, link_clock: LinkClock, settings: Any
) -> None:
    """Under the site-wide cache: the close of one browser's ended binding must not reach
    another browser through a cached page or cookie."""
    settings.MIDDLEWARE = [
        "django.middleware.cache.UpdateCacheMiddleware",
        *settings.MIDDLEWARE,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    settings.CACHE_MIDDLEWARE_SECONDS = 600
    browser = bound_browser()
    expired_and_swept(browser, link_clock)
    # A JSON answer, which varies on nothing by itself: the close is carried in the cookie.
    assert LOGOUT_COOKIE in browser.http.get("/data/").cookies
    other = Browser()
    other.http.cookies[DEVICE_COOKIE] = "not-a-device"  # (a request with cookies is cacheable)
    assert LOGOUT_COOKIE not in other.http.get("/data/").cookies


def test_the_device_is_known_to_the_request_that_made_it() -> None:
    from django.test import RequestFactory

    from django_giosg.device import device_of

    request = RequestFactory().get("/")
    assert known_device(request) is None
    made = device_of(request)
    assert known_device(request) == made


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
def test_signed_cookie_sessions_cannot_be_asked() -> None:
    from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieStore

    store = CookieStore()
    store["x"] = 1
    store.save()
    assert session.still_stored(store) is None
    assert session.still_stored(SessionStore()) is None  # never stored: nothing to ask


def test_a_capture_by_a_logged_in_user_after_the_sessions_end_binds_again(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    browser = bound_browser()
    expired_and_swept(browser, link_clock)
    browser.capture()
    browser.login(make_user_named("ann"))
    assert giosg.variables(VISITOR) == expected(giosg, make_user_named("ann"), "ann")
