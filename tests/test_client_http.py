"""The client over real sockets: keep-alive, the pool under concurrency, bounded waits."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from django_giosg.client import GiosgClient
from django_giosg.errors import GiosgUnavailable

from .conftest import CHAT, ORG


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.connections = 0
        self.release = threading.Event()
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; http.server's default HTTP/1.0 closes
    wbufsize = 65536  # one write per response: headers and body apart stall on delayed ACKs
    server: Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self) -> None:
        if self.path.endswith("/owned_chats/hang"):
            self.server.release.wait(30)  # hangs past any client timeout
            return
        if self.path.endswith("/owned_chats/slow"):
            time.sleep(0.05)
        body = json.dumps({"id": CHAT, "is_ended": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


def make_client(server: Server, **options: object) -> GiosgClient:
    host, port = server.server_address[:2]
    return GiosgClient(
        api_token="t",
        organization_id=ORG,
        base_url=f"http://{host!s}:{port}",
        **options,  # type: ignore[arg-type]
    )


def test_repeated_calls_reuse_one_connection(server: Server) -> None:
    with make_client(server) as client:
        for _ in range(10):
            client.get_chat(CHAT)
    assert server.connections == 1


def test_concurrent_calls_share_a_pool_of_max_workers_connections(server: Server) -> None:
    # MAX_WORKERS threads at once: each holds one pooled connection at a time, none is discarded.
    with make_client(server, pool_size=8) as client, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: client.get_chat("slow"), range(40)))
    assert 1 <= server.connections <= 8


def test_more_concurrent_calls_than_connections_wait_for_one(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """However many threads call at once (several requests' workflows), the pool opens no more
    connections than it keeps, and discards none (each would be a new TLS handshake later)."""
    with make_client(server, pool_size=2) as client, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: client.get_chat("slow"), range(40)))
        list(pool.map(lambda _: client.get_chat("slow"), range(40)))
    assert server.connections == 2
    assert "pool is full" not in caplog.text


def test_a_call_waits_for_a_free_connection_only_until_its_deadline(server: Server) -> None:
    with make_client(server, pool_size=1, max_retries=0) as client:
        holder = threading.Thread(target=_hang, args=(client,), daemon=True)
        holder.start()
        deadline = time.monotonic() + 5
        while server.connections < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(GiosgUnavailable, match="waiting for a free connection") as waited:
            client.end_chat(CHAT, deadline=client.deadline_after(0.2))
        assert 0.15 < time.monotonic() - started < 0.9  # before the holder's call ends
        assert waited.value.uncertain == 0  # it was never sent
        holder.join(10)
    assert server.connections == 1


def _hang(client: GiosgClient) -> None:
    with contextlib.suppress(GiosgUnavailable):
        client.get_chat("hang", deadline=client.deadline_after(1.0))


def test_a_hanging_server_is_bounded_by_the_deadline(server: Server) -> None:
    with make_client(server, timeout=(5.0, 5.0), max_retries=3) as client:
        started = time.monotonic()
        with pytest.raises(GiosgUnavailable, match="timed out"):
            client.get_chat("hang", deadline=client.deadline_after(0.3))
        elapsed = time.monotonic() - started
    assert elapsed < 3.0  # generous: the deadline is 0.3 s, the socket timeout alone 5 s


def test_a_refused_connection_is_unavailable(server: Server) -> None:
    host, port = server.server_address[:2]
    server.shutdown()
    server.server_close()
    client = GiosgClient(
        api_token="t",
        organization_id=ORG,
        base_url=f"http://{host!s}:{port}",
        max_retries=1,
        sleep=lambda _: None,
    )
    with client, pytest.raises(GiosgUnavailable, match="connection failed"):
        client.get_chat(CHAT)
