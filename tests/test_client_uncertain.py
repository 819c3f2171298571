"""The client counts the attempts of a write whose outcome is unknown: each may still take effect
at giosg, late. Mocked answers (``responses``) for each kind of failure, then the simulator's late
writes over real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, SSLError

from django_giosg.client import GiosgClient, Sent
from django_giosg.errors import GiosgAPIError, GiosgError, GiosgNotFound, GiosgUnavailable
from django_giosg.testing import GiosgSimulator

from .conftest import CHAT, ORG_URL, ROOM, VISITOR

VARIABLES = f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/variables"
CHAT_URL = f"{ORG_URL}/owned_chats/{CHAT}"

Call = Callable[[GiosgClient], object]
WRITES: dict[str, tuple[str, str, Call, int]] = {
    "set_variable": ("POST", VARIABLES, lambda c: c.set_variable(ROOM, VISITOR, "k", "v"), 201),
    "delete_variable": (
        "DELETE",
        f"{VARIABLES}/k",
        lambda c: c.delete_variable(ROOM, VISITOR, "k"),
        204,
    ),
    "end_chat": ("PATCH", CHAT_URL, lambda c: c.end_chat(CHAT), 200),
}


def refused() -> requests.ConnectionError:
    """What ``requests`` raises when nothing listens: the request never left."""
    reason = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


def tls_failed() -> requests.exceptions.SSLError:
    """The TLS handshake failed: the request never left."""
    reason = SSLError("certificate verify failed")
    return requests.exceptions.SSLError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


def dropped() -> requests.ConnectionError:
    """What ``requests`` raises when the connection closes after the request was sent."""
    return requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError()))


# Each first attempt's failure, and whether the request may have had its effect all the same.
FAILURES: dict[str, tuple[Callable[[], object], bool]] = {
    "read timeout": (lambda: {"body": requests.ReadTimeout()}, True),
    "dropped after sending": (lambda: {"body": dropped()}, True),
    "502 from a gateway": (lambda: {"status": 502}, True),
    "504 from a gateway": (lambda: {"status": 504}, True),
    "connect timeout": (lambda: {"body": requests.ConnectTimeout()}, False),
    "refused": (lambda: {"body": refused()}, False),
    "TLS handshake failed": (lambda: {"body": tls_failed()}, False),
    "TLS error while reading": (
        lambda: {"body": requests.exceptions.SSLError(SSLError("bad record mac"))},
        True,
    ),
    "500": (lambda: {"status": 500}, False),
    "503": (lambda: {"status": 503}, False),
    "429": (lambda: {"status": 429}, False),
}


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("failure", FAILURES)
def test_a_write_answered_after_a_failed_attempt_counts_it_if_it_may_have_arrived(
    client: GiosgClient, mocked: responses.RequestsMock, write: str, failure: str
) -> None:
    method, url, call, status = WRITES[write]
    first, may_have_arrived = FAILURES[failure]
    mocked.add(method, url, **first())  # type: ignore[arg-type]
    mocked.add(method, url, status=status)
    assert call(client) == Sent(uncertain=1 if may_have_arrived else 0)
    assert len(mocked.calls) == 2


@pytest.mark.parametrize("write", WRITES)
def test_a_write_answered_at_once_is_certain(
    client: GiosgClient, mocked: responses.RequestsMock, write: str
) -> None:
    method, url, call, status = WRITES[write]
    mocked.add(method, url, status=status)
    assert call(client) == Sent(uncertain=0)


@pytest.mark.parametrize("write", WRITES)
def test_a_failed_write_carries_its_uncertain_attempts(
    client: GiosgClient, mocked: responses.RequestsMock, write: str
) -> None:
    method, url, call, _status = WRITES[write]
    for body in (requests.ReadTimeout(), refused(), dropped(), requests.ReadTimeout()):
        mocked.add(method, url, body=body)
    with pytest.raises(GiosgUnavailable) as failed:
        call(client)
    assert failed.value.uncertain == 3  # of 4 attempts (MAX_RETRIES 3), the refused one is sure


def test_a_refusal_after_an_unanswered_attempt_carries_it(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    """The delete's first attempt may land late even though the second found the key gone:
    that late delete could remove a key set meanwhile."""
    mocked.delete(f"{VARIABLES}/k", body=requests.ReadTimeout())
    mocked.delete(f"{VARIABLES}/k", status=404, json={"detail": "Not found."})
    with pytest.raises(GiosgNotFound) as gone:
        client.delete_variable(ROOM, VISITOR, "k")
    assert gone.value.uncertain == 1


def test_a_passed_deadline_keeps_the_count(
    client: GiosgClient, mocked: responses.RequestsMock, clock: object
) -> None:
    mocked.post(VARIABLES, body=requests.ReadTimeout())
    deadline = client.deadline_after(0.6)  # the first backoff (0.5 s) fits, the second not
    with pytest.raises(GiosgUnavailable) as failed:
        client.set_variable(ROOM, VISITOR, "k", "v", deadline=deadline)
    assert failed.value.uncertain == 2


def test_a_deadline_passed_while_sleeping_keeps_the_count(
    mocked: responses.RequestsMock,
) -> None:
    """A sleep may overrun (a busy machine): the deadline is found passed before the next try."""
    now = [1000.0]

    def oversleep(seconds: float) -> None:
        now[0] += seconds * 3

    client = GiosgClient(
        api_token="t",
        organization_id=ORG_URL.rsplit("/", 1)[1],
        base_url=ORG_URL.split("/api/")[0],
        sleep=oversleep,
        clock=lambda: now[0],
        random=lambda: 0.5,
    )
    mocked.post(VARIABLES, body=requests.ReadTimeout())
    with client, pytest.raises(GiosgUnavailable, match="deadline exceeded") as failed:
        client.set_variable(ROOM, VISITOR, "k", "v", deadline=client.deadline_after(1.0))
    assert failed.value.uncertain == 1


def test_a_write_refused_outright_is_certain(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.post(VARIABLES, status=400, json={"detail": "Bad key."})
    with pytest.raises(GiosgAPIError) as refused_write:
        client.set_variable(ROOM, VISITOR, "k", "v")
    assert refused_write.value.uncertain == 0


def test_reads_count_nothing(client: GiosgClient, mocked: responses.RequestsMock) -> None:
    """A read has no effect that could land late."""
    mocked.get(CHAT_URL, body=requests.ReadTimeout())
    mocked.get(CHAT_URL, json={"id": CHAT, "is_ended": False})
    assert client.get_chat(CHAT).id == CHAT
    mocked.get(f"{ORG_URL}/rooms", body=requests.ReadTimeout())
    with pytest.raises(GiosgError) as failed:
        list(client.iter_rooms(max_retries=0))
    assert failed.value.uncertain == 0


# -- over real sockets ----------------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[GiosgSimulator]:
    with GiosgSimulator(room_ids=[ROOM]) as simulator:
        yield simulator


def real_client(sim: GiosgSimulator, **options: object) -> GiosgClient:
    return GiosgClient(
        api_token=sim.api_token,
        organization_id=sim.organization_id,
        base_url=sim.base_url,
        timeout=(1.0, 0.2),
        backoff_base=0.01,
        **options,  # type: ignore[arg-type]
    )


def wait_for(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    return check()


def test_a_write_giosg_applies_after_the_timeout_counts_as_uncertain(sim: GiosgSimulator) -> None:
    sim.add_fault("set_variable", late=0.5, times=1)
    with real_client(sim, max_retries=1) as client:
        assert client.set_variable(ROOM, VISITOR, "k", "v") == Sent(uncertain=1)
    assert [c.outcome for c in sim.calls] == ["answered"]  # the late one has not landed yet
    assert wait_for(lambda: len(sim.calls) == 2)
    assert sim.calls[-1].outcome == "late"


@pytest.mark.parametrize("fault", [{"drop": True}, {"hang": True}, {"late": 0.4}])
def test_unanswered_writes_over_real_sockets(
    sim: GiosgSimulator, fault: dict[str, object]
) -> None:
    sim.add_fault("delete_variable", **fault)
    with real_client(sim, max_retries=2) as client, pytest.raises(GiosgUnavailable) as failed:
        client.delete_variable(ROOM, VISITOR, "k")
    assert failed.value.uncertain == 3


def test_a_refused_connection_is_certain_over_real_sockets() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    client = GiosgClient(
        api_token="t",
        organization_id="o",
        base_url=f"http://127.0.0.1:{port}",
        max_retries=1,
        backoff_base=0.01,
    )
    with client, pytest.raises(GiosgUnavailable) as failed:
        client.set_variable(ROOM, VISITOR, "k", "v")
    assert failed.value.uncertain == 0
