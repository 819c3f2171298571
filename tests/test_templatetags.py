"""The template tags: what they render (escaped, with the CSP nonce), and when nothing."""

from __future__ import annotations

import logging
from html.parser import HTMLParser
from typing import Any

import django
import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpRequest
from django.template import Context, Template
from django.test import Client, RequestFactory, override_settings

from django_giosg import browser_logout
from django_giosg.session import SESSION_KEY

from .conftest import VISITOR, giosg_settings
from .settings import ORGANIZATION_ID, ROOM_ID

LOADER = f"https://giosg.test/live2/{ORGANIZATION_ID}"


class Scripts(HTMLParser):
    """The <script> elements of a fragment, with their attributes and body; in a ``fragment``,
    any other markup or text fails the test."""

    def __init__(self, html: str, *, fragment: bool = True) -> None:
        super().__init__(convert_charrefs=True)
        self.fragment = fragment
        self.scripts: list[dict[str, str | None]] = []
        self.bodies: list[str] = []
        self.open = 0
        self.feed(html)
        self.close()
        assert self.open == 0, "a <script> is not closed"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "script":
            assert not self.fragment, f"unexpected <{tag}>"
            return
        self.scripts.append(dict(attrs))
        self.bodies.append("")
        self.open += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.open -= 1
        else:
            assert not self.fragment, f"unexpected </{tag}>"

    def handle_data(self, data: str) -> None:
        if self.open:
            self.bodies[-1] += data
        else:
            assert not (self.fragment and data.strip()), f"text outside the scripts: {data!r}"


def render(tag: str, request: HttpRequest | None = None, **context: Any) -> str:
    if request is not None:
        context["request"] = request
    return Template("{% load giosg %}{% " + tag + " %}").render(Context(context))


def scripts_of(html: str) -> list[dict[str, str | None]]:
    parsed = Scripts(html)
    assert parsed.bodies == [""] * len(parsed.scripts), "no inline JavaScript"
    return parsed.scripts


@pytest.fixture
def request_() -> HttpRequest:
    request = RequestFactory().get("/")
    request.session = SessionStore()
    return request


# -- {% giosg_script %} -------------------------------------------------------------------


def test_script_loads_the_queue_then_giosg() -> None:
    html = render("giosg_script")
    assert scripts_of(html) == [
        {
            "src": "/static/django_giosg/queue.js",
            "data-organization-id": ORGANIZATION_ID,
            "data-host": "https://giosg.test",
        },
        {"src": LOADER, "async": None},
    ]
    assert f'src="{LOADER}"' in html  # LOADER_URL literally


def test_script_uses_a_configured_loader_url() -> None:
    loader = "http://127.0.0.1:8765/live2/x?visitor_id=1&delay_ms=5"
    with giosg_settings(LOADER_URL=loader):
        html = render("giosg_script")
    assert scripts_of(html)[1]["src"] == loader
    assert scripts_of(html)[0]["data-host"] == "http://127.0.0.1:8765"
    assert 'src="http://127.0.0.1:8765/live2/x?visitor_id=1&amp;delay_ms=5"' in html


def test_script_escapes_what_it_renders() -> None:
    with giosg_settings(LOADER_URL='https://giosg.test/live2/"><script>alert(1)</script>'):
        html = render("giosg_script")
    assert "<script>alert" not in html
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert scripts_of(html)[1]["src"] == 'https://giosg.test/live2/"><script>alert(1)</script>'


# -- {% giosg_capture %} ------------------------------------------------------------------


def test_capture_carries_its_configuration_in_data_attributes(request_: HttpRequest) -> None:
    html = render("giosg_capture", request_)
    [script] = scripts_of(html)
    token = script.pop("data-csrf-token")
    assert token
    assert request_.META["CSRF_COOKIE"]  # get_token() also has the cookie sent
    assert script == {
        "src": "/static/django_giosg/capture.js",
        "defer": None,
        "data-endpoint": "/giosg/visitor/",
        "data-visitor-id": "",
        "data-wait-ms": "15000",
        "data-csrf-header": "X-Csrftoken",
    }
    assert 'data-endpoint="/giosg/visitor/"' in html  # the endpoint's URL literally


def test_capture_knows_the_stored_visitor_id_and_the_settings(request_: HttpRequest) -> None:
    request_.session[SESSION_KEY] = VISITOR
    with giosg_settings(CAPTURE_WAIT_MS=2500, USE_BROWSER_ROOMS=True):
        [script] = scripts_of(render("giosg_capture", request_))
    assert script["data-visitor-id"] == VISITOR
    assert script["data-wait-ms"] == "2500"
    assert script["data-send-rooms"] == "true"


def test_capture_names_a_custom_csrf_header(request_: HttpRequest) -> None:
    with override_settings(CSRF_HEADER_NAME="HTTP_X_XSRF_TOKEN"):
        [script] = scripts_of(render("giosg_capture", request_))
    assert script["data-csrf-header"] == "X-Xsrf-Token"


def test_capture_without_the_request_renders_nothing_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "django_giosg"):
        assert render("giosg_capture") == ""
    assert "django.template.context_processors.request" in caplog.text


@override_settings(ROOT_URLCONF="tests.urls_without_giosg")
def test_capture_without_the_urls_renders_nothing_and_says_why(
    request_: HttpRequest, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "django_giosg"):
        assert render("giosg_capture", request_) == ""
    assert 'include("django_giosg.urls")' in caplog.text


# -- the CSP nonce, from either source ----------------------------------------------------


ALL_TAGS = ["giosg_script", "giosg_capture", "giosg_logout"]


@pytest.mark.parametrize("tag", ALL_TAGS)
def test_the_nonce_of_djangos_csp_context_variable_is_used(
    tag: str, request_: HttpRequest
) -> None:
    browser_logout.note_logout(request_, [ROOM_ID])
    scripts = scripts_of(render(tag, request_, csp_nonce="n0nce+/="))
    assert scripts
    assert all(script["nonce"] == "n0nce+/=" for script in scripts)


@pytest.mark.parametrize("tag", ALL_TAGS)
def test_the_nonce_of_django_csp_on_the_request_is_used(tag: str, request_: HttpRequest) -> None:
    browser_logout.note_logout(request_, [ROOM_ID])
    request_.csp_nonce = "from-django-csp"  # type: ignore[attr-defined]
    scripts = scripts_of(render(tag, request_))
    assert scripts
    assert all(script["nonce"] == "from-django-csp" for script in scripts)


@pytest.mark.parametrize("tag", ALL_TAGS)
def test_without_a_nonce_there_is_no_nonce_attribute(tag: str, request_: HttpRequest) -> None:
    browser_logout.note_logout(request_, [ROOM_ID])
    html = render(tag, request_, csp_nonce=None)
    assert "nonce" not in html
    assert scripts_of(html)


def test_an_empty_nonce_is_no_nonce(request_: HttpRequest) -> None:
    assert "nonce" not in render("giosg_script", request_, csp_nonce="")


def test_a_nonce_is_escaped(request_: HttpRequest) -> None:
    html = render("giosg_script", request_, csp_nonce='"><b>')
    assert "&quot;&gt;&lt;b&gt;" in html
    assert all(script["nonce"] == '"><b>' for script in scripts_of(html))


@pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's own CSP support came with 6.0")
@pytest.mark.django_db
def test_djangos_csp_middleware_and_the_page_agree_on_the_nonce() -> None:
    csp_middleware = "django.middleware.csp.ContentSecurityPolicyMiddleware"
    engine: dict[str, Any] = settings.TEMPLATES[0]
    templates = [
        {
            **engine,
            "OPTIONS": {
                "context_processors": [
                    *engine["OPTIONS"]["context_processors"],
                    "django.template.context_processors.csp",
                ]
            },
        }
    ]
    from django.utils.csp import CSP  # type: ignore[import-not-found,unused-ignore]

    with override_settings(
        MIDDLEWARE=[*settings.MIDDLEWARE, csp_middleware],
        TEMPLATES=templates,
        SECURE_CSP={"script-src": [CSP.SELF, CSP.NONCE]},
    ):
        response = Client().get("/")
    header = response["Content-Security-Policy"]
    nonces = {
        script["nonce"] for script in Scripts(response.content.decode(), fragment=False).scripts
    }
    assert len(nonces) == 1
    assert f"'nonce-{nonces.pop()}'" in header


# -- {% giosg_logout %} and ENABLED -------------------------------------------------------


def test_logout_renders_nothing_without_a_logout(request_: HttpRequest) -> None:
    assert render("giosg_logout", request_) == ""
    assert render("giosg_logout") == ""  # no request: nothing, and no error


def test_logout_lists_the_rooms_of_the_logout(request_: HttpRequest) -> None:
    browser_logout.note_logout(request_, [ROOM_ID, "0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe"])
    [script] = scripts_of(render("giosg_logout", request_))
    assert script == {
        "src": "/static/django_giosg/logout.js",
        "defer": None,
        "data-mode": "logout",
        "data-rooms": f"{ROOM_ID} 0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe",
    }


def test_logout_after_a_binding_ended_without_a_logout_closes_only(request_: HttpRequest) -> None:
    browser_logout.note_close(request_)
    [script] = scripts_of(render("giosg_logout", request_))
    assert script == {
        "src": "/static/django_giosg/logout.js",
        "defer": None,
        "data-mode": "close",
        "data-rooms": "",
    }


@pytest.mark.parametrize("tag", ALL_TAGS)
def test_nothing_is_rendered_while_disabled(tag: str, request_: HttpRequest) -> None:
    browser_logout.note_logout(request_, [ROOM_ID])
    with override_settings(GIOSG={"ENABLED": False}):
        assert render(tag, request_, csp_nonce="n") == ""
