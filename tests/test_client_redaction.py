"""Neither the API token nor a variable's value may show in an error's text or repr, or a log."""

from __future__ import annotations

import logging
import traceback

import pytest
import requests
import responses

from django_giosg.client import GiosgClient
from django_giosg.conf import load
from django_giosg.errors import GiosgAPIError, GiosgError

from .conftest import ORG, ORG_URL, ROOM, TOKEN, VISITOR, FakeClock

VALUE = "Alice Secret-Surname"
VARIABLES_URL = f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/variables"


def leaks(text: str) -> bool:
    return TOKEN in text or VALUE in text


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500])
def test_errors_echoing_the_secrets_do_not_show_them(
    status: int,
    client: GiosgClient,
    mocked: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    echo = f'{{"detail": "bad value {VALUE!r} for token {TOKEN}"}}'
    mocked.post(VARIABLES_URL, status=status, body=echo, content_type="application/json")

    with caplog.at_level(logging.DEBUG), pytest.raises(GiosgError) as caught:
        client.set_variable(ROOM, VISITOR, "username", VALUE)

    error = caught.value
    shown = [str(error), repr(error), "".join(traceback.format_exception(error))]
    shown.append(getattr(error, "body", ""))
    shown += [record.getMessage() for record in caplog.records]
    shown += [caplog.text]
    if status in (429, 500):
        assert len(caplog.records) >= 3  # the retries were logged, without the secrets
    assert not any(leaks(text) for text in shown), shown
    if isinstance(error, GiosgAPIError):
        assert "***" in error.body  # the excerpt is kept, with the secrets replaced


def test_transport_errors_do_not_show_the_secrets(
    client: GiosgClient, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mocked.post(VARIABLES_URL, body=requests.ConnectionError("connection reset by peer"))
    with caplog.at_level(logging.DEBUG), pytest.raises(GiosgError) as caught:
        client.set_variable(ROOM, VISITOR, "username", VALUE)
    formatted = "".join(traceback.format_exception(caught.value))
    assert not leaks(formatted)
    assert not leaks(caplog.text)
    assert len(caplog.records) == 3


def test_the_client_and_the_settings_do_not_show_the_token(clock: FakeClock) -> None:
    giosg = GiosgClient(api_token=TOKEN, organization_id=ORG, sleep=clock.sleep, clock=clock)
    settings = load({"API_TOKEN": TOKEN, "ORGANIZATION_ID": ORG, "ROOM_IDS": [ROOM]})
    session = giosg._get_session()
    for shown in (repr(giosg), str(giosg), repr(settings), repr(session.auth)):
        assert TOKEN not in shown


def test_a_value_cut_by_the_excerpt_is_not_shown_in_part(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.post(VARIABLES_URL, status=400, body="x" * 495 + VALUE, content_type="text/plain")
    with pytest.raises(GiosgAPIError) as caught:
        client.set_variable(ROOM, VISITOR, "username", VALUE)
    assert caught.value.body == "x" * 495 + "***"


def test_an_unparseable_answer_echoing_the_token_does_not_show_it(
    client: GiosgClient, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    """A 200 that is not the JSON expected (a proxy's page, say) is an error with an excerpt of
    the body: the token it echoes is replaced."""
    page = f"<html>Bad gateway for Authorization: Token {TOKEN}</html>"
    mocked.get(f"{ORG_URL}/rooms", status=200, body=page, content_type="text/html")
    with caplog.at_level(logging.DEBUG), pytest.raises(GiosgAPIError) as caught:
        list(client.iter_rooms())
    error = caught.value
    assert error.body == "<html>Bad gateway for Authorization: Token ***</html>"
    shown = [str(error), repr(error), "".join(traceback.format_exception(error)), caplog.text]
    assert not any(leaks(text) for text in shown), shown
