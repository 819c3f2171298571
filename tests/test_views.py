"""The capture endpoint (django_giosg.views) through Django's test client, CSRF checks on,
against the simulator."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from django_giosg import tasks, views
from django_giosg.models import VisitorLink
from django_giosg.session import CAPTURES_SESSION_KEY, ROOMS_SESSION_KEY, SESSION_KEY
from django_giosg.testing import GiosgSimulator

from .browsing import Browser, device_flag, make_user
from .conftest import VISITOR, giosg_settings

pytestmark = pytest.mark.django_db

OTHER = "8a60b202474547dbb8ce19737e4c166f"
URL = "/giosg/visitor/"


class Site:
    """A browser on the test site: it has loaded a page, so it holds a CSRF token."""

    def __init__(self) -> None:
        self.http = Client(enforce_csrf_checks=True)
        self.http.get("/")
        self.token = self.http.cookies["csrftoken"].value

    def post(
        self, body: bytes | str, content_type: str | None, *, token: bool = True
    ) -> HttpResponse:
        headers = {"X-CSRFToken": self.token} if token else {}
        if content_type is not None:  # in a header: the test client drops it for empty bodies
            headers["Content-Type"] = content_type
        return self.http.generic("POST", URL, body, headers=headers)  # type: ignore[return-value]

    def capture(self, visitor_id: object = VISITOR, **fields: object) -> HttpResponse:
        return self.post(json.dumps({"visitor_id": visitor_id, **fields}), "application/json")

    def session(self) -> dict[str, Any]:
        return dict(self.http.session.items())


@pytest.fixture
def site() -> Site:
    return Site()


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, empty_cache: None) -> Iterator[GiosgSimulator]:
    """The simulator with three own rooms, and browser rooms on (so a capture may call giosg)."""
    while len(giosg_simulator.world.owned_room_ids) < 3:
        giosg_simulator.world.add_room()
    with override_settings(GIOSG={**settings.GIOSG, "USE_BROWSER_ROOMS": True}):
        yield giosg_simulator


def error_of(response: HttpResponse) -> str:
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    assert body["error"]
    return body["error"]


# -- accepted -----------------------------------------------------------------------------


def test_the_url_is_named() -> None:
    assert reverse("django_giosg:capture") == URL


def test_a_json_capture_is_stored_in_the_session(site: Site) -> None:
    response = site.capture()
    assert response.status_code == 204
    assert response.content == b""
    assert site.session()[SESSION_KEY] == VISITOR


def test_json_with_a_charset_and_unknown_keys_is_accepted(site: Site) -> None:
    body = json.dumps({"visitor_id": VISITOR, "page": "/x", "rooms": None})
    assert site.post(body, "application/json; charset=utf-8").status_code == 204
    assert site.session()[SESSION_KEY] == VISITOR


def test_an_urlencoded_form_is_accepted(site: Site) -> None:
    body = f"visitor_id={VISITOR}&unknown=1"
    assert site.post(body, "application/x-www-form-urlencoded").status_code == 204
    assert site.session()[SESSION_KEY] == VISITOR


def test_a_multipart_form_with_the_token_as_a_field_is_accepted(site: Site) -> None:
    response = site.http.post(URL, {"visitor_id": VISITOR, "csrfmiddlewaretoken": site.token})
    assert response.status_code == 204
    assert site.session()[SESSION_KEY] == VISITOR


def test_an_unchanged_id_answers_204_without_saving_the_session(site: Site) -> None:
    assert site.capture().status_code == 204
    before = site.session()
    response = site.capture()
    assert response.status_code == 204
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert site.session() == before


def test_a_changed_id_replaces_the_old_one(site: Site) -> None:
    site.capture()
    assert site.capture(OTHER).status_code == 204
    assert site.session()[SESSION_KEY] == OTHER


def test_an_anonymous_capture_calls_nobody(site: Site, giosg_simulator: GiosgSimulator) -> None:
    assert site.capture(rooms=giosg_simulator.world.owned_room_ids).status_code == 204
    assert giosg_simulator.calls == []
    assert ROOMS_SESSION_KEY not in site.session()  # USE_BROWSER_ROOMS is off


def test_with_giosg_disabled_the_id_is_still_stored(site: Site, giosg: GiosgSimulator) -> None:
    with giosg_settings(ENABLED=False):
        assert site.capture(rooms=giosg.world.owned_room_ids).status_code == 204
    assert site.session()[SESSION_KEY] == VISITOR
    assert ROOMS_SESSION_KEY not in site.session()
    assert giosg.calls == []


# -- browser rooms ---------------------------------------------------------------------------


def test_only_rooms_the_organization_owns_are_kept(site: Site, giosg: GiosgSimulator) -> None:
    owned = giosg.world.owned_room_ids
    shared = giosg.world.shared_room_ids
    assert owned
    assert shared
    unknown = "00000000-0000-4000-8000-000000000000"
    rooms = [shared[0], owned[1].upper(), unknown, "lobby", f"{{{owned[2]}}}", owned[0], owned[1]]
    assert site.capture(rooms=rooms).status_code == 204
    assert site.session()[ROOMS_SESSION_KEY] == [owned[1], owned[0]]
    assert [call.endpoint for call in giosg.calls] == ["list_rooms"]


def test_the_room_list_is_cached(site: Site, giosg: GiosgSimulator) -> None:
    owned = giosg.world.owned_room_ids
    site.capture(rooms=owned[:1])
    site.capture(OTHER, rooms=owned[1:2])
    assert giosg.requests("list_rooms") == 1
    assert site.session()[ROOMS_SESSION_KEY] == owned[1:2]


def test_without_the_cache_every_capture_with_rooms_asks(
    site: Site, giosg: GiosgSimulator
) -> None:
    owned = giosg.world.owned_room_ids
    with giosg_settings(ROOMS_CACHE_TTL=0):
        site.capture(rooms=owned[:1])
        site.capture(OTHER, rooms=owned[:1])
        site.capture(OTHER)  # no rooms: nothing to check
    assert giosg.requests("list_rooms") == 2


def test_rooms_of_the_same_visitor_add_up(site: Site, giosg: GiosgSimulator) -> None:
    owned = giosg.world.owned_room_ids
    site.capture(rooms=owned[:1])
    response = site.capture(rooms=owned[1:2])
    assert response.status_code == 204
    assert settings.SESSION_COOKIE_NAME in response.cookies  # the session was saved
    assert site.session()[ROOMS_SESSION_KEY] == owned[:2]


def test_a_form_sends_rooms_as_repeated_fields(site: Site, giosg: GiosgSimulator) -> None:
    owned = giosg.world.owned_room_ids
    body = f"visitor_id={VISITOR}&rooms={owned[0]}&rooms={owned[1]}"
    assert site.post(body, "application/x-www-form-urlencoded").status_code == 204
    assert site.session()[ROOMS_SESSION_KEY] == owned[:2]


@pytest.mark.parametrize(
    "fault", [{"hang": True}, {"status": 503}, {"status": 429, "retry_after": "0"}]
)
def test_when_giosg_cannot_say_the_id_is_kept_and_the_rooms_are_not(
    site: Site, giosg: GiosgSimulator, caplog: pytest.LogCaptureFixture, fault: dict[str, Any]
) -> None:
    giosg.add_fault("list_rooms", **fault)
    budget = 0.5
    started = time.monotonic()
    with giosg_settings(INLINE_BUDGET=budget), caplog.at_level(logging.WARNING, "django_giosg"):
        response = site.capture(rooms=giosg.world.owned_room_ids)
    assert response.status_code == 204
    assert time.monotonic() - started < budget + 3  # bounded by the budget, not the timeout
    assert site.session()[SESSION_KEY] == VISITOR
    assert ROOMS_SESSION_KEY not in site.session()
    assert giosg.requests("list_rooms") == 1  # no retries inside a request
    assert "none kept" in caplog.text
    assert giosg.api_token not in caplog.text


# -- rejected: the order of the checks --------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_other_methods_get_405(site: Site, method: str) -> None:
    response = getattr(site.http, method)(URL, headers={"X-CSRFToken": site.token})
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_method_is_checked_before_size(site: Site) -> None:
    body = json.dumps({"visitor_id": "x" * 5000})
    response = site.http.put(URL, body, content_type="application/json")
    assert response.status_code == 405


def test_without_a_csrf_token_403_but_a_declared_body_too_large_413_first(site: Site) -> None:
    body = json.dumps({"visitor_id": VISITOR})
    assert site.post(body, "application/json", token=False).status_code == 403
    body = json.dumps({"visitor_id": "x" * 5000})
    response = site.post(body, "application/json", token=False)
    assert response.status_code == 413  # decided by the header, before the CSRF check
    assert "2048 bytes" in error_of(response)


def test_a_wrong_csrf_token_gets_403(site: Site) -> None:
    site.token = "x" * 64
    assert site.capture().status_code == 403


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps({"visitor_id": "a" * 5000}), "application/json"),
        (f"visitor_id={'a' * 5000}", "application/x-www-form-urlencoded"),
        ("not json at all " * 200, "application/json"),
        ("x" * 3000, "text/plain"),
    ],
)
def test_a_body_over_the_limit_gets_413_before_it_is_parsed(
    site: Site, body: str, content_type: str
) -> None:
    response = site.post(body, content_type)
    assert response.status_code == 413
    assert "2048 bytes" in error_of(response)


def test_absurdly_deep_json_is_invalid_json(site: Site) -> None:
    deep = "[" * 100_000 + "]" * 100_000  # deeper than any recursion limit
    with giosg_settings(CAPTURE_MAX_BODY=len(deep)):
        response = site.post(deep, "application/json")
    assert response.status_code == 400
    assert error_of(response) == "the body is not valid JSON"


def test_the_limit_itself_is_allowed(site: Site) -> None:
    template = {"visitor_id": VISITOR, "padding": ""}
    padding = 2048 - len(json.dumps(template))  # CAPTURE_MAX_BODY's default
    exact = json.dumps({**template, "padding": "p" * padding})
    assert len(exact) == 2048
    assert site.post(exact, "application/json").status_code == 204
    assert site.post(exact + " ", "application/json").status_code == 413


def test_the_limit_is_a_setting(site: Site) -> None:
    small = json.dumps({"visitor_id": VISITOR})
    with giosg_settings(CAPTURE_MAX_BODY=len(small)):
        assert site.post(small, "application/json").status_code == 204
        assert site.post(small + " ", "application/json").status_code == 413


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("", "application/json", "not valid JSON"),
        ("{visitor_id: 1}", "application/json", "not valid JSON"),
        (b"\xff\xfe\x00{", "application/json", "not valid JSON"),
        ("[]", "application/json", "must be an object"),
        (json.dumps(VISITOR), "application/json", "must be an object"),
        ("null", "application/json", "must be an object"),
        ("{}", "application/json", "visitor_id is required"),
        (json.dumps({"visitor_id": None}), "application/json", "not null"),
        (json.dumps({"visitor_id": 8119566026}), "application/json", "not int"),
        (json.dumps({"visitor_id": [VISITOR]}), "application/json", "not list"),
        (json.dumps({"visitor_id": "../x"}), "application/json", "does not look like"),
        (json.dumps({"visitor_id": "<script>"}), "application/json", "does not look like"),
        (json.dumps({"visitor_id": "ö" * 32}), "application/json", "does not look like"),
        (json.dumps({"visitor_id": VISITOR + "\n"}), "application/json", "does not look like"),
        (json.dumps({"visitor_id": VISITOR + "a"}), "application/json", "does not look like"),
        (json.dumps({"visitor_id": VISITOR, "rooms": "r"}), "application/json", "rooms must"),
        (json.dumps({"visitor_id": VISITOR, "rooms": [1]}), "application/json", "rooms must"),
        (json.dumps({"visitor_id": VISITOR, "rooms": {}}), "application/json", "rooms must"),
        (VISITOR, "text/plain", "send the visitor id as JSON"),
        (f"visitor_id={VISITOR}", None, "send the visitor id as JSON"),
        ("x=1", "application/x-www-form-urlencoded", "visitor_id is required"),
        (f"rooms={VISITOR}", "application/x-www-form-urlencoded", "visitor_id is required"),
        (
            f"visitor_id={VISITOR}&visitor_id={OTHER}",
            "application/x-www-form-urlencoded",
            "send one visitor_id",
        ),
        ("visitor_id=%2E%2E%2Fx", "application/x-www-form-urlencoded", "does not look like"),
        (
            f"visitor_id={VISITOR}%0A",
            "application/x-www-form-urlencoded",
            "does not look like",
        ),
        ("--b\r\nbroken", "multipart/form-data; boundary=b", "visitor_id is required"),
        (f"visitor_id={VISITOR}", "multipart/form-data", "cannot be parsed"),
    ],
)
def test_malformed_bodies_get_400_with_a_json_error_and_change_nothing(
    site: Site,
    giosg: GiosgSimulator,
    body: str | bytes,
    content_type: str | None,
    message: str,
) -> None:
    site.capture(OTHER)  # a session with a visitor id already
    before = site.session()
    response = site.post(body, content_type)
    assert response.status_code == 400
    assert message in error_of(response)
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert site.session() == before
    assert giosg.calls == []


# -- rate ---------------------------------------------------------------------------------


def ids(count: int) -> list[str]:
    return [f"{index:032x}" for index in range(1, count + 1)]


def test_over_the_rate_429_and_nothing_changes(site: Site, giosg: GiosgSimulator) -> None:
    with giosg_settings(CAPTURE_RATE=3):
        for visitor in ids(3):
            assert site.capture(visitor).status_code == 204
        before = site.session()
        response = site.capture(OTHER, rooms=giosg.world.owned_room_ids)
        assert response.status_code == 429
        assert "3 different visitor ids" in error_of(response)
        assert site.session() == before
        assert settings.SESSION_COOKIE_NAME not in response.cookies
        assert giosg.calls == []
        # an id captured within the hour may come back
        assert site.capture(ids(3)[0]).status_code == 204
        assert site.session()[SESSION_KEY] == ids(3)[0]


def test_rejected_requests_do_not_count(site: Site) -> None:
    with giosg_settings(CAPTURE_RATE=2):
        for _ in range(5):
            assert site.capture("not-an-id").status_code == 400
        assert site.capture(ids(1)[0]).status_code == 204
        assert site.capture(ids(2)[1]).status_code == 204
        assert site.capture(OTHER).status_code == 429


def test_validation_comes_before_the_rate(site: Site) -> None:
    with giosg_settings(CAPTURE_RATE=1):
        site.capture()
        assert site.capture("../x").status_code == 400
        assert site.capture(OTHER).status_code == 429


def test_the_hour_slides(site: Site) -> None:
    with giosg_settings(CAPTURE_RATE=2):
        site.capture(ids(1)[0])
        site.capture(ids(2)[1])
        session = site.http.session
        captures = session[CAPTURES_SESSION_KEY]
        captures[ids(1)[0]] = time.time() - 3601  # captured more than an hour ago
        session[CAPTURES_SESSION_KEY] = captures
        session.save()
        assert site.capture(OTHER).status_code == 204
        assert site.capture(VISITOR).status_code == 429


def test_the_rate_is_per_session() -> None:
    with giosg_settings(CAPTURE_RATE=1):
        first, second = Site(), Site()
        assert first.capture().status_code == 204
        assert first.capture(OTHER).status_code == 429
        assert second.capture(OTHER).status_code == 204


def test_the_rate_per_user_holds_across_sessions(giosg: GiosgSimulator) -> None:
    """Finding 4 of the security review: one account ran 10 logins with 11 new ids each."""
    ann = get_user_model().objects.create_user("ann")
    accepted, limited = [], []
    rooms = giosg.world.owned_room_ids[:1]
    with giosg_settings(CAPTURE_RATE=3, USER_CAPTURE_RATE=4, ROOMS_CACHE_TTL=0):
        for login in range(3):
            site = Site()
            site.http.force_login(ann)
            for visitor in ids(9)[login * 3 : login * 3 + 3]:
                before = site.session()
                response = site.capture(visitor, rooms=rooms)
                if response.status_code == 204:
                    accepted.append(visitor)
                    continue
                assert response.status_code == 429
                assert error_of(response) == USER_RATE_LIMITED.format(4)
                assert site.session() == before
                limited.append(visitor)
    assert accepted == ids(4)
    assert limited == ids(9)[4:]
    assert set(VisitorLink.objects.values_list("visitor_id", flat=True)) == set(ids(4))
    posted = {
        call.path.split("/visitors/")[1][:32] for call in giosg.calls if call.method == "POST"
    }
    assert posted <= set(ids(4))
    # a refused capture asks giosg nothing, not even for the browser's rooms
    assert len([call for call in giosg.calls if call.endpoint == "list_rooms"]) == 4


def test_a_bind_that_finds_the_user_over_the_rate_after_all_gets_429(
    giosg: GiosgSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view asks first; a concurrent bind of the user may still get in before this one."""
    ann = get_user_model().objects.create_user("ann")
    site = Site()
    site.http.force_login(ann)
    with giosg_settings(USER_CAPTURE_RATE=1):
        assert site.capture(VISITOR).status_code == 204
        before = site.session()
        monkeypatch.setattr(tasks, "over_user_rate", lambda user, visitor_id: False)
        response = site.capture(OTHER)
    assert response.status_code == 429
    assert error_of(response) == USER_RATE_LIMITED.format(1)
    assert site.session() == before
    assert list(VisitorLink.objects.values_list("visitor_id", flat=True)) == [VISITOR]


USER_RATE_LIMITED = (
    "this account bound {} different visitor ids, or bound them too often, within the hour; "
    "try again later"
)


def test_the_rate_per_user_counts_bindings_too(giosg: GiosgSimulator) -> None:
    """Two ids captured in turn: each capture ends one binding and makes another."""
    ann = get_user_model().objects.create_user("ann")
    site = Site()
    site.http.force_login(ann)
    statuses = []
    with giosg_settings(CAPTURE_RATE=2, USER_CAPTURE_RATE=2):
        for turn in range(10):
            statuses.append(site.capture((VISITOR, OTHER)[turn % 2]).status_code)
    # 2 ids times BINDINGS_PER_ID; then the id the session holds is unchanged (204), the other not
    assert statuses == [204] * 6 + [429, 204] * 2
    assert VisitorLink.objects.count() == 6


def test_a_login_over_the_rate_per_user_binds_nothing_and_still_logs_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ann = make_user("ann")
    with giosg_settings(USER_CAPTURE_RATE=1):
        first = Browser()
        first.capture(ids(1)[0])
        first.login(ann)
        second = Browser()
        second.capture(OTHER)
        with caplog.at_level(logging.WARNING, "django_giosg"):
            second.login(ann)
    assert "at USER_CAPTURE_RATE (1 visitor ids, 3 bindings within the hour)" in caplog.text
    assert second.http.session["_auth_user_id"] == str(ann.pk)
    assert second.visitor_id() is None  # reported again by the next page, bound then
    assert device_flag(first)  # a browser with a binding (its logout releases it)
    assert not device_flag(second)  # one without
    assert list(VisitorLink.objects.values_list("visitor_id", flat=True)) == [ids(1)[0]]


# -- what Django itself refuses while reading a form ----------------------------------------


def test_a_form_in_another_charset_gets_a_json_400(site: Site) -> None:
    body = f"visitor_id={VISITOR}".encode("utf-16")
    response = site.post(body, "application/x-www-form-urlencoded; charset=utf-16")
    assert response.status_code == 400
    assert error_of(response) == "the form data cannot be parsed"


def test_too_many_form_fields_get_a_json_400(site: Site) -> None:
    body = "&".join(["x=1"] * 600)  # under CAPTURE_MAX_BODY, over Django's field limit
    with (
        override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=500),
        giosg_settings(CAPTURE_MAX_BODY=4096),
    ):
        response = site.post(body, "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert error_of(response) == "the form data cannot be parsed"


def test_a_form_too_large_for_django_gets_413(site: Site) -> None:
    body = f"visitor_id={VISITOR}&x={'y' * 1500}"  # under CAPTURE_MAX_BODY, over Django's limit
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        response = site.post(body, "application/x-www-form-urlencoded")  # read by the CSRF check
    assert response.status_code == 413
    assert error_of(response) == "the body is larger than 1000 bytes"


# -- bodies whose length the server does not know in advance ------------------------------


@pytest.mark.parametrize("length", ["many", "-1", "1e3", "0x10", "12, 12"])
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps({"visitor_id": VISITOR}), "application/json"),
        (f"visitor_id={VISITOR}", "application/x-www-form-urlencoded"),
        (
            '--b\r\nContent-Disposition: form-data; name="visitor_id"\r\n\r\n'
            f"{VISITOR}\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ],
    ids=["JSON", "urlencoded", "multipart"],
)
def test_a_content_length_that_is_no_number_gets_400(
    site: Site, length: str, body: str, content_type: str
) -> None:
    response: HttpResponse = site.http.generic(  # type: ignore[assignment]
        "POST",
        URL,
        body,
        content_type=content_type,
        headers={"X-CSRFToken": site.token},
        CONTENT_LENGTH=length,
    )
    assert response.status_code == 400
    assert error_of(response) == "the Content-Length header must be a number of bytes"
    assert site.session() == {}


@pytest.mark.parametrize("length", ["9" * 5000, "2049", "0" * 5000 + "4096"])
def test_a_content_length_over_the_limit_gets_413_however_long(site: Site, length: str) -> None:
    response: HttpResponse = site.http.generic(  # type: ignore[assignment]
        "POST",
        URL,
        json.dumps({"visitor_id": VISITOR}),
        content_type="application/json",
        headers={"X-CSRFToken": site.token},
        CONTENT_LENGTH=length,
    )
    assert response.status_code == 413
    assert "2048 bytes" in error_of(response)


def test_leading_zeros_in_a_content_length_are_no_error(site: Site) -> None:
    body = json.dumps({"visitor_id": VISITOR})
    response = site.http.generic(
        "POST",
        URL,
        body,
        content_type="application/json",
        headers={"X-CSRFToken": site.token},
        CONTENT_LENGTH="000" + str(len(body)),
    )
    assert response.status_code == 204


class Unreadable(io.BytesIO):
    """A request body that fails the test if anything reads it."""

    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("the body was read")

    def readline(self, size: int | None = -1) -> bytes:
        raise AssertionError("the body was read")


@pytest.mark.parametrize("token", [True, False], ids=["CSRF token", "no CSRF token"])
def test_a_declared_body_too_large_gets_413_before_anything_reads_it(
    site: Site, token: bool
) -> None:
    twenty_mb = 20 * 1024 * 1024
    request = RequestFactory().post(
        URL,
        b"",
        content_type="multipart/form-data; boundary=b",
        headers={"X-CSRFToken": site.token} if token else {},
        CONTENT_LENGTH=str(twenty_mb),
    )
    request._stream = Unreadable()
    request.COOKIES["csrftoken"] = site.token
    response = views.capture(request)
    assert response.status_code == 413
    assert "2048 bytes" in error_of(response)


def asgi_post(body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    """POST ``body`` through Django's ASGI handler without a Content-Length header, as a
    chunked upload arrives from an ASGI server."""
    secret = "s" * 32  # an unmasked CSRF secret is a valid token for itself
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", content_type.encode()),
            (b"cookie", f"csrftoken={secret}".encode()),
            (b"x-csrftoken", secret.encode()),
        ],
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected until the answer is sent
        raise AssertionError("unreachable")

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(dict(message))

    async_to_sync(ASGIHandler())(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, content


def test_a_form_without_content_length_gets_411(site: Site) -> None:
    response = site.post("", "application/x-www-form-urlencoded")  # (no body: no header)
    assert response.status_code == 411
    assert site.session() == {}


def test_over_asgi_a_form_without_content_length_gets_411() -> None:
    """Django's ASGI handler reads a body of unknown length whole, and the CSRF check would
    then parse it whole, whatever its size."""
    body = f"visitor_id={VISITOR}&x={'y' * 100_000}".encode()
    status, content = asgi_post(body, "application/x-www-form-urlencoded")
    assert status == 411
    assert json.loads(content) == {"error": "send form data with a Content-Length header"}


def test_over_asgi_a_large_body_without_content_length_gets_413() -> None:
    status, content = asgi_post(json.dumps({"visitor_id": "a" * 5000}).encode())
    assert status == 413
    assert "2048 bytes" in json.loads(content)["error"]


def test_over_asgi_a_small_body_without_content_length_is_parsed() -> None:
    status, content = asgi_post(b'{"visitor_id": "../x"}')
    assert status == 400
    assert "does not look like" in json.loads(content)["error"]


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
