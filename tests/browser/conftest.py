"""A real headless browser: Debian's Chromium driven by Playwright, one fresh profile per test.

Without Playwright or ``/usr/bin/chromium`` these tests are skipped, unless
``DJANGO_GIOSG_REQUIRE_BROWSER`` is set (``.ci/run`` sets it): then they fail. A skip is also
written to the file ``DJANGO_GIOSG_SKIPPED`` names, for ``scripts/test``'s closing summary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Playwright

CHROMIUM = "/usr/bin/chromium"
# Without these, Chromium reaches out to Google's services, which the closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("DJANGO_GIOSG_REQUIRE_BROWSER"):
        pytest.fail(f"the browser tests must run here, but {reason}")
    summary = os.environ.get("DJANGO_GIOSG_SKIPPED")
    if summary:
        with open(summary, "a", encoding="utf-8") as log:
            log.write(f"browser tests: {reason}\n")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright for one test module. Its sync API keeps an event loop in the main thread, so
    Django's ORM must be told that the test code is synchronous after all."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as instance:
            yield instance
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Browser:
    """A page in a fresh Chromium profile, and the errors the page reported."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait for something the page does in the background; a generous bound, not a
        benchmark. Waiting through Playwright lets it deliver the page's events meanwhile."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {timeout} s")
            self.page.wait_for_timeout(50)


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[Browser]:
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        browser = Browser(context, page)
        page.on("pageerror", lambda error: browser.errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                browser.errors.append(message.text) if message.type == "error" else None
            ),
        )
        page.set_default_timeout(15_000)
        yield browser
    finally:
        context.close()
