"""Whatever a browser (or an attacker) sends, the capture endpoint answers without a 5xx, and a
refused request leaves the session as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_giosg.session import SESSION_KEY

from .conftest import VISITOR

pytestmark = pytest.mark.django_db

URL = "/giosg/visitor/"

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/json; charset=nonsense",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-16",
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data; boundary=",
        "text/plain",
        "application/octet-stream",
    ]
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
VISITOR_IDS = st.one_of(
    st.just(VISITOR),
    st.sampled_from([VISITOR.upper(), VISITOR + "\n", VISITOR[1:], "../x", "<script>"]),
    st.text(max_size=40),
)
JSON_OBJECTS = (
    st.fixed_dictionaries(
        {"visitor_id": VISITOR_IDS}, optional={"rooms": JSON_VALUES, "other": JSON_VALUES}
    )
    | JSON_VALUES
).map(lambda data: json.dumps(data).encode())
FORMS = st.lists(
    st.tuples(st.sampled_from(["visitor_id", "rooms", "x"]), VISITOR_IDS), max_size=4
).map(lambda fields: "&".join(f"{key}={value}" for key, value in fields).encode())
MULTIPART = st.lists(st.tuples(st.sampled_from(["visitor_id", "rooms"]), VISITOR_IDS)).map(
    lambda fields: (
        "".join(
            f'--xyz\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
            for key, value in fields
        ).encode()
        + b"--xyz--\r\n"
    )
)
BODIES = st.binary(max_size=300) | JSON_OBJECTS | FORMS | MULTIPART | st.binary(min_size=2049)
# Bodies with their own content type, and anything with any content type.
REQUESTS = st.one_of(
    st.tuples(
        JSON_OBJECTS, st.sampled_from(["application/json", "application/json; charset=utf-8"])
    ),
    st.tuples(FORMS, st.just("application/x-www-form-urlencoded")),
    st.tuples(MULTIPART, st.just("multipart/form-data; boundary=xyz")),
    st.tuples(BODIES, CONTENT_TYPES),
)


@pytest.mark.slow
@given(sent=REQUESTS)
@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_body_and_content_type_gets_a_server_error(sent: tuple[bytes, str | None]) -> None:
    body, content_type = sent
    browser = Client(enforce_csrf_checks=True)
    browser.get("/")
    token = browser.cookies["csrftoken"].value
    session = browser.session
    session[SESSION_KEY] = "0" * 32
    session.save()
    assert session.session_key
    browser.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    before: dict[str, Any] = dict(browser.session.items())

    headers = {"X-CSRFToken": token}
    if content_type is not None:
        headers["Content-Type"] = content_type
    with override_settings(GIOSG={**settings.GIOSG, "USE_BROWSER_ROOMS": False}):
        response = browser.generic("POST", URL, body, headers=headers)

    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics shows the mix
    assert response.status_code in {204, 400, 409, 411, 413}
    if response.status_code == 204:
        assert browser.session[SESSION_KEY] == VISITOR
    else:
        assert list(json.loads(response.content)) == ["error"]
        assert dict(browser.session.items()) == before
