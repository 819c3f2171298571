"""The browser side end to end: Chromium loads the test site (Django's live server), whose tags
load the simulator's stand-in for giosg's loader, the static scripts and the capture endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import override_settings
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from django_giosg.models import State, VisitorLink
from django_giosg.session import SESSION_KEY
from django_giosg.testing import GiosgSimulator

from ..browsing import sweep
from .conftest import Browser

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.browser]

VISITOR = "5f0c1e9b3a7d4c2e8b6a9d0f1e2c3b4a"


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator) -> Iterator[GiosgSimulator]:
    """The simulator, whose loader stand-in gives this browser the visitor id ``VISITOR``."""
    loader = f"{giosg_simulator.loader_url}?visitor_id={VISITOR}"
    with override_settings(GIOSG={**settings.GIOSG, "LOADER_URL": loader}):
        yield giosg_simulator


def stored_visitor_id(browser: Browser) -> Any:
    cookies = {c["name"]: c["value"] for c in browser.context.cookies()}
    session_key = cookies.get(settings.SESSION_COOKIE_NAME)
    return SessionStore(session_key).get(SESSION_KEY) if session_key else None


def captures(browser: Browser) -> list[int]:
    """Start recording the statuses of the page's captures."""
    statuses: list[int] = []
    browser.page.on(
        "response",
        lambda response: (
            statuses.append(response.status) if response.url.endswith("/giosg/visitor/") else None
        ),
    )
    return statuses


def visit_and_capture(browser: Browser, url: str) -> list[int]:
    """Open ``url`` and wait until the page has captured the visitor id into the session;
    the statuses of the page's captures, recorded from then on."""
    statuses = captures(browser)
    browser.page.goto(url)
    browser.wait_until(lambda: statuses == [204])
    assert stored_visitor_id(browser) == VISITOR
    return statuses


def giosg_is_ready(browser: Browser) -> None:
    browser.page.wait_for_function("() => window.giosg && window.giosg.unpackedVisitorCid")


def test_the_visitor_id_reaches_the_session_once(
    live_server: LiveServer, giosg: GiosgSimulator, browser: Browser
) -> None:
    statuses = visit_and_capture(browser, f"{live_server.url}/")

    browser.page.reload()  # the session knows the id now: the page does not send it again
    giosg_is_ready(browser)
    browser.page.wait_for_timeout(500)
    assert statuses == [204]
    assert browser.errors == []
    assert [call.endpoint for call in giosg.calls] == ["loader", "loader"]  # no REST call


def test_scripts_run_under_a_strict_content_security_policy(
    live_server: LiveServer, giosg: GiosgSimulator, browser: Browser
) -> None:
    visit_and_capture(browser, f"{live_server.url}/csp/")
    assert browser.errors == []
    # the policy is enforced: a script without the nonce does not run
    ran = browser.page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.head.appendChild(script);
            return window.inlineRan === true;
        }"""
    )
    assert ran is False


def test_when_giosg_never_loads_the_page_gives_up_quietly(
    live_server: LiveServer, giosg_simulator: GiosgSimulator, browser: Browser
) -> None:
    blocked = f"{giosg_simulator.loader_url}?never_ready=1"
    statuses = captures(browser)
    with override_settings(
        GIOSG={**settings.GIOSG, "LOADER_URL": blocked, "CAPTURE_WAIT_MS": 300}
    ):
        browser.page.goto(f"{live_server.url}/")
        browser.page.wait_for_timeout(1000)
    assert browser.page.text_content("#user") == "anonymous"
    assert statuses == []
    assert browser.errors == []
    assert stored_visitor_id(browser) is None


def test_logout_closes_the_chats_and_removes_the_variables_in_the_browser(
    live_server: LiveServer, giosg: GiosgSimulator, browser: Browser
) -> None:
    get_user_model().objects.create_user("ada", password="pw-ada-1815")
    room = settings.GIOSG["ROOM_IDS"][0]
    giosg.seed_visitor(VISITOR, open_chats=1, variables={"username": "Ada"})
    assert giosg.open_chats(VISITOR)
    assert giosg.variables(VISITOR)[room] == {"username": "Ada"}

    page = browser.page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "pw-ada-1815")
    page.click("#login")
    assert page.text_content("#user") == "ada"
    giosg_is_ready(browser)
    assert giosg.open_chats(VISITOR)  # logging in closes nothing

    page.click("#logout")
    assert page.text_content("#user") == "anonymous"
    browser.wait_until(lambda: not giosg.open_chats(VISITOR))
    browser.wait_until(lambda: room not in giosg.variables(VISITOR))
    commands = page.evaluate("() => JSON.stringify(window.giosgSimulator.calls)")
    assert commands == (
        '[["chat","close",{"all":true,"hide":true,"clearHistory":true}],'
        f'["visitor","removeAll",[{{"id":"{room}"}}]]]'
    )

    page.reload()  # the cleanup ran on the first page only
    giosg_is_ready(browser)
    assert page.evaluate("() => window.giosgSimulator.calls.length") == 0
    assert browser.errors == []


def log_in(browser: Browser, url: str, username: str) -> None:
    page = browser.page
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}-1815")
    page.click("#login")
    assert page.text_content("#user") == username


def chat_as(browser: Browser, giosg: GiosgSimulator, line: str) -> None:
    """Start a chat in the widget, which keeps its history on the device."""
    giosg_is_ready(browser)
    browser.page.evaluate("line => window.giosgSimulator.say(line)", line)
    browser.wait_until(lambda: bool(giosg.open_chats(VISITOR)))
    assert browser.page.evaluate("() => window.giosgSimulator.history()") == [line]


def history_after_reload(browser: Browser) -> Any:
    browser.page.reload()
    giosg_is_ready(browser)
    return browser.page.evaluate(
        "() => [window.giosgSimulator.history(), window.giosgSimulator.calls]"
    )


def test_a_user_switch_closes_the_chat_and_clears_the_history_but_keeps_the_new_variables(
    live_server: LiveServer, giosg: GiosgSimulator, browser: Browser
) -> None:
    """The security review's finding 3: the next person on a shared device must neither see the
    previous user's chat nor scroll back through it; the new user's variables, set in the same
    request, must stay (close only: no removeAll)."""
    for name in ("ada", "bob"):
        get_user_model().objects.create_user(name, password=f"pw-{name}-1815")
    room = settings.GIOSG["ROOM_IDS"][0]
    log_in(browser, live_server.url, "ada")
    browser.wait_until(lambda: giosg.variables(VISITOR).get(room, {}).get("username") == "ada")
    chat_as(browser, giosg, "ada's secret")

    log_in(browser, live_server.url, "bob")  # the same browser: a user switch
    giosg_is_ready(browser)
    browser.wait_until(lambda: browser.page.evaluate("() => window.giosgSimulator.historyCleared"))
    commands = browser.page.evaluate("() => JSON.stringify(window.giosgSimulator.calls)")
    assert commands == '[["chat","close",{"all":true,"hide":true,"clearHistory":true}]]'
    assert "ada's secret" not in (browser.page.text_content("#giosg-sim-chat-lines") or "")
    assert giosg.open_chats(VISITOR) == []
    browser.wait_until(lambda: giosg.variables(VISITOR).get(room, {}).get("username") == "bob")
    browser.page.wait_for_timeout(300)
    assert giosg.variables(VISITOR)[room]["username"] == "bob"  # not removed by the browser
    assert history_after_reload(browser) == [[], []]  # once, and the history stays gone
    assert browser.errors == []


def test_the_first_page_after_a_swept_expiry_closes_the_chat_and_clears_the_history(
    live_server: LiveServer, giosg: GiosgSimulator, browser: Browser
) -> None:
    get_user_model().objects.create_user("ada", password="pw-ada-1815")
    log_in(browser, live_server.url, "ada")
    browser.wait_until(lambda: VisitorLink.objects.filter(state=State.ATTACHED).exists())
    chat_as(browser, giosg, "ada's secret")

    # The session expires (and is cleared from the store); the sweep detaches its binding.
    cookies = {c["name"]: c["value"] for c in browser.context.cookies()}
    SessionStore(cookies[settings.SESSION_COOKIE_NAME]).delete()
    VisitorLink.objects.update(session_expires_at=timezone.now() - timedelta(days=1))
    assert "1 expired" in sweep()
    assert giosg.open_chats(VISITOR) == []
    assert browser.page.evaluate("() => window.giosgSimulator.history()") == ["ada's secret"]

    browser.page.reload()  # the browser's next page
    assert browser.page.text_content("#user") == "anonymous"
    browser.wait_until(lambda: browser.page.evaluate("() => window.giosgSimulator.historyCleared"))
    history, commands = browser.page.evaluate(
        "() => [window.giosgSimulator.history(), window.giosgSimulator.calls]"
    )
    assert history == []
    assert commands == [["chat", "close", {"all": True, "hide": True, "clearHistory": True}]]
    assert history_after_reload(browser) == [[], []]  # once
    assert browser.errors == []
