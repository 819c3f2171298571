"""The server itself: HTTP/1.1 keep-alive, Content-Length on every answer, start and stop."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from django_giosg.testing import GiosgSimulator

from .conftest import API, VISITOR


@pytest.fixture
def conn(sim: GiosgSimulator) -> Iterator[http.client.HTTPConnection]:
    connection = http.client.HTTPConnection(sim.host, sim.port, timeout=5)
    yield connection
    connection.close()


def exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    response.read()
    return response


def test_every_answer_has_a_content_length_and_keeps_the_connection(
    sim: GiosgSimulator, conn: http.client.HTTPConnection, room: str
) -> None:
    token = {"Authorization": f"Token {sim.api_token}"}
    as_json = {**token, "Content-Type": "application/json"}
    org = f"/api/v5/orgs/{sim.organization_id}"
    variables = f"{org}/rooms/{room}/visitors/{VISITOR}/variables"
    (chat,) = sim.seed_visitor(VISITOR, rooms=[room])
    sim.add_fault("users_me", status=503, times=1)
    cases = [
        ("GET", f"{org}/rooms", None, token, 200),
        ("POST", variables, b'{"key": "k", "value": "v"}', as_json, 201),
        ("DELETE", f"{variables}/k", None, token, 204),
        ("POST", variables, b"{", as_json, 400),
        ("GET", f"{org}/rooms", None, {}, 401),
        ("GET", "/api/v5/orgs/other/rooms", None, token, 403),
        ("GET", "/nothing", None, token, 404),
        ("PUT", variables, b"{}", as_json, 405),
        ("PATCH", f"{org}/owned_chats/{chat}", b"x", token, 415),
        ("GET", "/api/v5/users/me", None, token, 503),
        ("GET", sim.loader_url.removeprefix(sim.base_url), None, {}, 200),
        ("GET", "/_simulator/stats", None, {}, 200),
        ("DELETE", "/_simulator/faults", None, {"Content-Type": "application/json"}, 204),
        ("DELETE", "/_simulator/faults", None, {}, 415),
        ("GET", "/_simulator/stats", None, {"Host": "evil.example"}, 403),
    ]
    for method, path, body, headers, status in cases:
        response = exchange(conn, method, path, body, headers)
        assert response.status == status, (method, path)
        assert response.getheader("Content-Length") is not None, (method, path)
        assert response.getheader("Connection") != "close", (method, path)
        assert response.version == 11
    assert sim.connections == 1  # all over one connection


def test_one_connection_serves_many_requests(api: API, sim: GiosgSimulator) -> None:
    for _ in range(20):
        assert api.get("rooms").status_code == 200
    assert sim.connections == 1
    assert sim.requests("list_rooms") == 20
    assert sim.requests() == 20


def test_each_new_connection_is_counted(sim: GiosgSimulator) -> None:
    for _ in range(3):
        requests.get(f"{sim.base_url}/api/v5/users/me", timeout=5)  # a new session each time
    assert sim.connections == 3
    assert sim.stats() == {"requests": {"users_me": 3}, "connections": 3}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Transfer-Encoding": "chunked"}, 411),
        ({"Content-Length": "many"}, 400),
        ({"Content-Length": "-5"}, 400),
        ({"Content-Length": "2000000"}, 413),
    ],
)
def test_bodies_without_a_usable_length_close_the_connection(
    sim: GiosgSimulator, headers: dict[str, str], status: int
) -> None:
    with socket.create_connection((sim.host, sim.port), timeout=5) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /api/v5/users/me HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == f"HTTP/1.1 {status} {http.client.responses[status]}".encode()
    assert b"Connection: close" in rest
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["detail"]


def test_a_control_request_without_a_host_is_refused(sim: GiosgSimulator) -> None:
    """HTTP/1.0 allows no Host; the control API answers only a loopback one."""
    with socket.create_connection((sim.host, sim.port), timeout=5) as sock:
        sock.sendall(b"GET /_simulator/ HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert list(json.loads(body)) == ["error"]


def test_the_call_log(api: API, sim: GiosgSimulator, room: str) -> None:
    api.post(api.variables(room), json={"key": "k", "value": "v"})
    api.get(api.chats(room), params={"is_ended": "false"})
    api.get("/nothing")
    first, second, third = sim.calls
    assert (first.method, first.endpoint, first.status, first.body) == (
        "POST",
        "set_variable",
        201,
        {"key": "k", "value": "v"},
    )
    assert (second.endpoint, second.query, second.body) == ("list_chats", "is_ended=false", None)
    assert (third.endpoint, third.status) == ("other", 404)
    assert (
        first.as_dict()["path"]
        == f"/api/v5/orgs/{sim.organization_id}/rooms/{room}/visitors/{VISITOR}/variables"
    )


def test_the_loader(sim: GiosgSimulator, api: API) -> None:
    response = requests.get(sim.loader_url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/javascript"
    assert "visitorGidDeferred" in response.text
    assert requests.get(f"{sim.base_url}/live2/other-org", timeout=5).status_code == 404
    assert requests.post(sim.loader_url, timeout=5).status_code == 405
    assert sim.requests("loader") == 3


def test_start_stop_and_context_manager() -> None:
    simulator = GiosgSimulator()
    with simulator:
        url = f"{simulator.base_url}/api/v5/users/me"
        assert requests.get(url, timeout=5).status_code == 401
        with pytest.raises(RuntimeError, match="already running"):
            simulator.start()
    assert not simulator.is_up
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
    with simulator:  # again, on the same port
        assert requests.get(url, timeout=5).status_code == 401
    simulator.stop()  # stopping a stopped simulator is harmless


def test_a_given_port_is_used() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with GiosgSimulator(port=port) as simulator:
        assert simulator.port == port
        assert simulator.base_url == f"http://127.0.0.1:{port}"


def test_stop_ends_a_hanging_request_at_once() -> None:
    threads_before = threading.active_count()
    simulator = GiosgSimulator(hang_limit=60).start()
    simulator.add_fault(hang=True)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            requests.get(f"{simulator.base_url}/api/v5/users/me", timeout=30)
        except requests.RequestException as err:
            errors.append(err)

    thread = threading.Thread(target=call)
    thread.start()
    while not simulator.calls:
        time.sleep(0.01)
    started = time.monotonic()
    simulator.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert isinstance(errors[0], requests.ConnectionError)
    deadline = time.monotonic() + 5  # the handler's thread ends too, not only the socket
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == threads_before


def test_settings_point_at_the_simulator(sim: GiosgSimulator) -> None:
    assert sim.settings(MAX_RETRIES=1) == {
        "API_TOKEN": sim.api_token,
        "ORGANIZATION_ID": sim.organization_id,
        "ROOM_IDS": sim.room_ids,
        "API_BASE_URL": sim.base_url,
        "MAX_RETRIES": 1,
    }


def test_ids_repeat_under_a_seed() -> None:
    """Room and chat ids, and so the URLs that faults are drawn from, repeat for a seed."""
    first, again, other = GiosgSimulator(seed=5), GiosgSimulator(seed=5), GiosgSimulator(seed=6)
    assert first.room_ids == again.room_ids != other.room_ids
    chats = first.seed_visitor(VISITOR)
    assert again.seed_visitor(VISITOR) == chats
    first.reset()
    assert first.seed_visitor(VISITOR) == chats


def test_seeding_needs_known_rooms_and_counts(sim: GiosgSimulator) -> None:
    with pytest.raises(ValueError, match="unknown rooms"):
        sim.seed_visitor(VISITOR, rooms=["nowhere"])
    with pytest.raises(ValueError, match="must be ≥ 0"):
        sim.seed_visitor(VISITOR, open_chats=-1)
    assert sim.state(VISITOR)["rooms"] == {}


def test_a_reset_connection_is_no_error(
    sim: GiosgSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that resets mid-request costs the simulator a debug line, not a traceback."""
    caplog.set_level(logging.DEBUG, "django_giosg.testing.server")
    with socket.create_connection((sim.host, sim.port), timeout=5) as sock:
        sock.sendall(b"GET /api/v5/users/me HTTP/1.1\r\nHost: x\r\nX-Long: ")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    deadline = time.monotonic() + 5
    while "ended" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "giosg simulator: connection from" in caplog.text


def test_a_simulator_bug_is_logged_and_answered(
    api: API,
    sim: GiosgSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(visitor_id: str) -> dict[str, object]:
        raise RuntimeError("bug")

    monkeypatch.setattr(sim.world, "state", broken)
    response = api.get(f"/_simulator/visitors/{VISITOR}")
    assert response.status_code == 500
    assert response.json() == {"error": "the simulator failed"}
    assert response.headers["Connection"] == "close"
    assert "giosg simulator: GET /_simulator/visitors/" in caplog.text
    assert "RuntimeError: bug" in caplog.text


def test_requests_are_logged_at_debug_level(api: API, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "django_giosg.testing.server")
    api.get("rooms")
    assert '"GET /api/v5/orgs/' in caplog.text
    assert 'HTTP/1.1" 200' in caplog.text
