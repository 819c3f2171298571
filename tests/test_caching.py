"""Pages that show one browser's visitor id or cleanup are never cached for another browser:
neither by ``cache_page`` nor by Django's site-wide cache, and every cache outside Django is told
``private, no-store`` (finding 8 of the security review)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.http import HttpResponse
from django.test import override_settings

from django_giosg.testing import GiosgSimulator

from .browsing import OTHER_VISITOR, VISITOR, Browser, make_user

pytestmark = pytest.mark.django_db

SITE_WIDE_CACHE = [
    "django.middleware.cache.UpdateCacheMiddleware",
    *settings.MIDDLEWARE,
    "django.middleware.cache.FetchFromCacheMiddleware",
]
CLEANUP_SCRIPT = "django_giosg/logout.js"


@pytest.fixture
def site_wide_cache() -> Iterator[None]:
    with override_settings(MIDDLEWARE=SITE_WIDE_CACHE, CACHE_MIDDLEWARE_SECONDS=600):
        yield


def kept_private(response: HttpResponse) -> bool:
    directives = {part.strip() for part in response["Cache-Control"].split(",")}
    vary = {part.strip().lower() for part in response.get("Vary", "").split(",")}
    return {"private", "no-store"} <= directives and "cookie" in vary


def logged_out_browser(user: AbstractUser) -> Browser:
    """A browser whose user has just logged out: its next page shows the cleanup."""
    browser = Browser()
    browser.capture()
    browser.login(user)
    browser.logout()
    return browser


@pytest.mark.parametrize("url", ["/cached/", "/"])
def test_a_page_with_the_sessions_visitor_id_is_private(
    url: str, giosg: GiosgSimulator, site_wide_cache: None
) -> None:
    """``/cached/`` under ``cache_page`` and the site-wide cache, ``/`` under the site-wide."""
    first = Browser()
    first.capture(VISITOR)
    page = first.http.get(url)
    assert VISITOR in page.content.decode()
    other = Browser()
    assert VISITOR not in other.http.get(url).content.decode()
    assert kept_private(page)  # type: ignore[arg-type]


def test_the_site_wide_cache_never_shows_a_browser_its_old_visitor_id(
    giosg: GiosgSimulator, site_wide_cache: None
) -> None:
    browser = Browser()
    browser.capture(VISITOR)
    assert VISITOR in browser.http.get("/").content.decode()
    browser.capture(OTHER_VISITOR)  # the same cookies: the same key in the site-wide cache
    again = browser.http.get("/").content.decode()
    assert OTHER_VISITOR in again
    assert VISITOR not in again


@pytest.mark.parametrize("url", ["/cached-cleanup/", "/cleanup-only/", "/cached/", "/"])
def test_a_page_with_one_browsers_cleanup_is_private(
    url: str, giosg: GiosgSimulator, site_wide_cache: None
) -> None:
    left = logged_out_browser(make_user("ann"))
    page = left.http.get(url)
    assert CLEANUP_SCRIPT in page.content.decode()
    for other in (Browser(), Browser()):
        assert CLEANUP_SCRIPT not in other.http.get(url).content.decode()
    assert kept_private(page)  # type: ignore[arg-type]


def test_a_page_without_anything_of_the_browsers_stays_cacheable(
    giosg: GiosgSimulator, site_wide_cache: None
) -> None:
    first = Browser().http.get("/cleanup-only/")
    assert "private" not in first.get("Cache-Control", "")
    assert "max-age=600" in first["Cache-Control"]
