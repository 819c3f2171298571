"""Django's error reports (the DEBUG page, the HTML error e-mail, the text report) of every
client error, over real sockets: never the API token, and with ``DEBUG`` off no value sent.

Django hides the variables marked ``sensitive_variables`` only while ``DEBUG`` is off, so the
token must not be in any frame's locals at all: the reports show the locals of every frame of the
exception and of the exceptions chained to it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from django.test import override_settings
from django.views.debug import ExceptionReporter

from django_giosg.client import GiosgClient
from django_giosg.errors import GiosgConfigurationError, GiosgError
from django_giosg.testing import GiosgSimulator

from .conftest import CHAT, ORG, ORG_URL, ROOM, VISITOR

TOKEN = f"tok-{secrets.token_hex(8)}"

#: Made at run time: the reports show the source lines around each frame, so no secret is in them.
VALUE = f"Alice {secrets.token_hex(8)}"

Call = Callable[[GiosgClient], object]

CALLS: dict[str, Call] = {
    "set_variable": lambda giosg: giosg.set_variable(ROOM, VISITOR, "name", VALUE),
    "delete_variable": lambda giosg: giosg.delete_variable(ROOM, VISITOR, "name"),
    "iter_rooms": lambda giosg: list(giosg.iter_rooms()),
    "iter_open_chats": lambda giosg: list(giosg.iter_open_chats(ROOM, VISITOR)),
    "end_chat": lambda giosg: giosg.end_chat(CHAT),
    "get_chat": lambda giosg: giosg.get_chat(CHAT),
    "check_credentials": lambda giosg: giosg.check_credentials(),
}

FAULTS: dict[str, dict[str, Any]] = {
    "400": {"status": 400},
    "401": {"status": 401},
    "404": {"status": 404},
    "429": {"status": 429},
    "500": {"status": 500},
    "dropped": {"drop": True},
    "timed out": {"hang": True},
}


def reports(error: BaseException) -> list[str]:
    """The HTML report (the DEBUG page and the error e-mail) and the text report."""
    reporter = ExceptionReporter(None, type(error), error, error.__traceback__)
    return [reporter.get_traceback_html(), reporter.get_traceback_text()]


def failure(call: Call, giosg: GiosgClient) -> GiosgError:
    """The error ``call`` raises (caught here, so that no test frame holds anything secret)."""
    try:
        call(giosg)
    except GiosgError as error:
        return error
    raise AssertionError("the call did not fail")


@pytest.fixture
def simulated(giosg_simulator: GiosgSimulator) -> Iterator[GiosgClient]:
    """A client of the simulator with one retry and short timeouts."""
    with GiosgClient(
        api_token=giosg_simulator.api_token,
        organization_id=giosg_simulator.organization_id,
        base_url=giosg_simulator.base_url,
        timeout=(0.5, 0.3),
        max_retries=1,
        sleep=lambda _seconds: None,
    ) as giosg:
        yield giosg


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG", "no DEBUG"])
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", CALLS)
def test_reports_of_client_errors_hold_no_token_and_without_debug_no_value(
    name: str, fault: str, debug: bool, simulated: GiosgClient, giosg_simulator: GiosgSimulator
) -> None:
    giosg_simulator.add_fault("*", **FAULTS[fault])
    error = failure(CALLS[name], simulated)
    with override_settings(DEBUG=debug):
        shown = reports(error)
    assert all(giosg_simulator.api_token not in report for report in shown)
    if not debug:
        assert all(VALUE not in report for report in shown)
    assert all(simulated.organization_id in report for report in shown)  # the frames are there


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG", "no DEBUG"])
def test_reports_of_a_bad_answer_and_a_passed_deadline_hold_no_token(debug: bool) -> None:
    giosg = GiosgClient(api_token=TOKEN, organization_id=ORG, base_url="https://giosg.test")
    with responses.RequestsMock() as mocked:
        mocked.get(f"{ORG_URL}/owned_chats/{CHAT}", body=f"not JSON, {TOKEN}")
        errors = [
            failure(lambda giosg: giosg.get_chat(CHAT), giosg),
            failure(lambda late: late.set_variable(ROOM, VISITOR, "n", VALUE, deadline=0), giosg),
        ]
    with override_settings(DEBUG=debug):
        shown = [report for error in errors for report in reports(error)]
    assert all(TOKEN not in report for report in shown)
    if not debug:
        assert all(VALUE not in report for report in shown)


@pytest.mark.parametrize("token", [f"{TOKEN}\n", f"{TOKEN}\u00e9", f" {TOKEN}"])
def test_a_token_that_cannot_go_into_a_header_is_refused_before_any_call(token: str) -> None:
    """A token with a newline (read from a file) made ``http.client`` raise a ``ValueError``
    with the header, token and all, in its message, which the tasks log."""
    with pytest.raises(GiosgConfigurationError) as caught:
        GiosgClient(api_token=token, organization_id=ORG)
    assert TOKEN not in str(caught.value)
    assert str(caught.value).startswith('GIOSG["API_TOKEN"] must be printable ASCII')
