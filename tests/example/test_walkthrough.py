"""A person walks through the demo in Chromium: scripts/demo's site and simulator, the loader
stand-in's chat box, the "What giosg sees" panel. Saves the screenshot the README shows when
``DJANGO_GIOSG_UPDATE_SCREENSHOT=1`` (to docs/demo.png), else into the test's folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from example_project import settings as example
from tests.browser.conftest import Browser

from .conftest import ROOT, Demo, StartDemo, free_port

SCREENSHOT = ROOT / "docs" / "demo.png"
ROOMS = example.DEMO_ROOM_IDS


@pytest.fixture
def demo(start_demo: StartDemo) -> Iterator[Demo]:
    demo = start_demo("--port", str(free_port())).wait_until_ready()
    yield demo
    assert demo.stop() == 0


def panel_rooms(browser: Browser) -> list[str]:
    """Each configured room's text in the panel ("" while it is not there)."""
    sections = [browser.page.locator(f'#giosg-panel [data-room="{room}"]') for room in ROOMS]
    return [section.inner_text() if section.count() else "" for section in sections]


def test_a_person_walks_through_the_demo(demo: Demo, browser: Browser, tmp_path: Path) -> None:
    page = browser.page
    page.set_viewport_size({"width": 1280, "height": 760})
    page.goto(demo.url)
    visitor = page.locator("#panel-visitor-id")
    visitor.wait_for()  # captured into the session, and shown by the panel
    visitor_id = visitor.inner_text()
    assert len(visitor_id) == 32

    page.click("#login")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "demo")
    page.click("#submit-login")
    assert page.inner_text("#user") == "alice"
    browser.wait_until(lambda: all("Alice Example" in text for text in panel_rooms(browser)))

    page.click("#giosg-sim-chat-toggle")
    page.fill("#giosg-sim-chat-input", "Hello, is anyone there?")
    page.press("#giosg-sim-chat-input", "Enter")
    page.locator('#giosg-panel .chat[data-state="open"]').wait_for()
    assert "Hello, is anyone there?" in page.inner_text("#giosg-sim-chat-lines")
    assert "Hello, is anyone there?" in page.inner_text("#giosg-panel")

    update = os.environ.get("DJANGO_GIOSG_UPDATE_SCREENSHOT")
    shot = SCREENSHOT if update else tmp_path / "demo.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")

    page.click("#logout")
    assert page.inner_text("#user") == "not logged in"
    browser.wait_until(
        lambda: (
            page.locator('#giosg-panel .chat[data-state="ended"]').count() == 1
            and page.locator('#giosg-panel .chat[data-state="open"]').count() == 0
            and page.locator("#giosg-panel .variables").count() == 0
        )
    )
    # the browser's share of the logout: the chat box shows the chat closed
    browser.wait_until(lambda: page.inner_text("#giosg-sim-chat-toggle") == "Chat ended")

    sim = demo.simulator_url
    state = requests.get(f"{sim}_simulator/visitors/{visitor_id}", timeout=10).json()
    chats = [chat for room in state["rooms"].values() for chat in room["chats"]]
    assert [chat["is_ended"] for chat in chats] == [True]
    assert all(room["variables"] == {} for room in state["rooms"].values())
    assert browser.errors == []
