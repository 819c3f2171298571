"""The simulator's HTTP server: threaded HTTP/1.1 with keep-alive on localhost.

``http.server`` speaks HTTP/1.0 and closes every connection unless told otherwise, and writes a
response's headers and body in separate TCP writes, which stalls each keep-alive request on
delayed ACKs for about 40 ms. So the handler speaks HTTP/1.1, always sends ``Content-Length``, and
buffers each response into one write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .api import GiosgAPI, Paginator, Request, Response, json_response, match
from .control import PREFIX, ControlAPI
from .faults import Fault, FaultPlan
from .world import DEFAULT_API_TOKEN, DEFAULT_ORGANIZATION_ID, Switches, World

logger = logging.getLogger(__name__)

MAX_BODY = 1_000_000
LOADER_PREFIX = "/live2/"


@dataclass(frozen=True)
class Call:
    """One API request as the simulator saw it. ``status`` is ``None`` when no answer was sent
    (a dropped or hung connection), and for a late one the status it took effect with, though
    no answer was sent; ``body`` is the JSON the client sent, if any."""

    method: str
    path: str
    query: str
    endpoint: str
    status: int | None
    outcome: str  # "answered", "dropped", "hung" or "late" (took effect, not answered)
    body: Any = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class GiosgSimulator:
    """A stateful giosg on ``http://127.0.0.1:<port>`` for tests, the example project and host
    projects. Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    ``room_ids`` (default: ``rooms`` random ones) are the organization's own rooms, in which
    variables are set; ``shared_rooms`` more rooms are shared to it by another organization.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_token: str = DEFAULT_API_TOKEN,
        organization_id: str = DEFAULT_ORGANIZATION_ID,
        room_ids: list[str] | None = None,
        rooms: int = 3,
        shared_rooms: int = 1,
        page_size: int = 50,
        seed: int = 0,
        switches: Switches | None = None,
        hang_limit: float = 60.0,
    ) -> None:
        self.host = host
        self.api_token = api_token
        self.world = World(
            organization_id=organization_id,
            room_ids=room_ids,
            rooms=rooms,
            shared_rooms=shared_rooms,
            switches=switches,
            seed=seed,
        )
        self.api = GiosgAPI(self.world, api_token, Paginator(page_size))
        self._initial_page_size = page_size
        self.faults = FaultPlan(seed)
        self.control = ControlAPI(self)
        self.hang_limit = hang_limit
        self._port = port
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._connections = 0
        self._calls: list[Call] = []
        self._release = threading.Event()
        self._shutdown = threading.Event()
        self._server: _Server | None = None
        self._up_timer: threading.Timer | None = None
        self._down = False  # down() was called (as opposed to stopped, or never started)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> GiosgSimulator:
        """Listen (on the given port, or a free one) and serve in a background thread."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the simulator is already running")
            self._listen()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and end the hangs; :meth:`start` may follow."""
        with self._lock:
            self._cancel_up_timer()
            self._down = False
            self._close()
            self._release_hangs()

    def __enter__(self) -> GiosgSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def down(self, seconds: float | None = None) -> None:
        """giosg is down: connections are refused (and open ones cut) until :meth:`up`, or for
        ``seconds``."""
        with self._lock:
            self._cancel_up_timer()
            self._close()
            self._down = True
            if seconds is not None:
                self._up_timer = threading.Timer(seconds, self.up)
                self._up_timer.daemon = True
                self._up_timer.start()

    def up(self) -> None:
        """Listen again on the same port after :meth:`down`."""
        with self._lock:
            self._cancel_up_timer()
            self._down = False
            if self._server is None:
                self._listen()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def request_shutdown(self) -> None:
        """Ask :meth:`wait` to return (SIGTERM to ``manage.py giosg_simulator``, or the control
        API's ``POST /_simulator/shutdown``)."""
        self._shutdown.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`request_shutdown` (true) or ``timeout`` seconds (false)."""
        return self._shutdown.wait(timeout)

    def _listen(self) -> None:
        server = _Server((self.host, self._port), self)
        self._port = server.server_address[1]
        self._server = server
        server.thread.start()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.open_lock:
            sockets = list(server.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)
        server.thread.join()

    def _cancel_up_timer(self) -> None:
        if self._up_timer is not None:
            self._up_timer.cancel()
            self._up_timer = None

    def _release_hangs(self) -> None:
        self._release.set()
        self._release = threading.Event()

    # -- where it is ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def page_size(self) -> int:
        """Items per page of every list; may be changed in a test (:meth:`reset` restores it)."""
        return self.api.paginator.page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        if type(value) is not int or value < 1:
            raise ValueError(f"page_size must be an integer ≥ 1, not {value!r}")
        self.api.paginator.page_size = value

    @property
    def organization_id(self) -> str:
        return self.world.organization_id

    @property
    def loader_url(self) -> str:
        """The loader stand-in, for ``LOADER_URL`` (and the default ``LOADER_URL`` too)."""
        return f"{self.base_url}{LOADER_PREFIX}{self.organization_id}"

    @property
    def room_ids(self) -> list[str]:
        """The organization's own rooms."""
        return self.world.owned_room_ids

    @property
    def shared_room_ids(self) -> list[str]:
        """Rooms another organization shares to this one."""
        return self.world.shared_room_ids

    def settings(self, **extra: Any) -> dict[str, Any]:
        """A ``GIOSG`` setting that points django-giosg at this simulator."""
        return {
            "API_TOKEN": self.api_token,
            "ORGANIZATION_ID": self.organization_id,
            "ROOM_IDS": self.room_ids,
            "API_BASE_URL": self.base_url,
            **extra,
        }

    def describe(self) -> dict[str, Any]:
        """What ``GET /_simulator/`` serves. Not :attr:`api_token`: a site pointed at the
        simulator may have adopted a real one, and whoever started the simulator knows it."""
        return {
            "base_url": self.base_url,
            "loader_url": self.loader_url,
            "organization_id": self.organization_id,
            "room_ids": self.room_ids,
            "shared_room_ids": self.shared_room_ids,
            "page_size": self.page_size,
            "seed": self.faults.seed,
            "switches": self.world.switches.as_dict(),
        }

    # -- control ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the start: the initial rooms and switches, no visitors, faults, calls or
        counts; requests hanging now are let go; listening again if it was down."""
        if self._down:
            self.up()
        self.world.reset()
        self.faults.clear()
        self.api.paginator.page_size = self._initial_page_size
        with self._lock:
            self._requests.clear()
            self._connections = 0
            self._calls.clear()
            self._release_hangs()

    def seed_visitor(
        self,
        visitor_id: str,
        *,
        rooms: list[str] | None = None,
        open_chats: int = 1,
        ended_chats: int = 0,
        variables: dict[str, str] | None = None,
    ) -> list[str]:
        """A visitor seen in ``rooms`` (default: all, shared ones included) with chats and
        variables in each; returns the open chats' ids."""
        return self.world.seed_visitor(
            visitor_id,
            rooms=rooms,
            open_chats=open_chats,
            ended_chats=ended_chats,
            variables=variables,
        )

    def state(self, visitor_id: str) -> dict[str, Any]:
        """What giosg holds about a visitor, room by room (see :meth:`World.state`)."""
        return self.world.state(visitor_id)

    def variables(self, visitor_id: str) -> dict[str, dict[str, str]]:
        """The visitor's variables by room (rooms without any left out)."""
        rooms = self.state(visitor_id)["rooms"]
        return {room: data["variables"] for room, data in rooms.items() if data["variables"]}

    def open_chats(self, visitor_id: str) -> list[str]:
        """The ids of the visitor's chats that have not ended, in any room."""
        rooms = self.state(visitor_id)["rooms"].values()
        return [chat["id"] for data in rooms for chat in data["chats"] if not chat["is_ended"]]

    def add_fault(self, endpoint: str = "*", **options: Any) -> Fault:
        """Add a :class:`~django_giosg.testing.Fault`; see it for the options."""
        fault = Fault(endpoint=endpoint, **options)
        self.faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_switches(self, **changes: Any) -> Switches:
        """Change behaviour switches (see :class:`~django_giosg.testing.Switches`)."""
        with self.world.lock:
            self.world.switches = self.world.switches.updated(**changes)
            return self.world.switches

    # -- observation -----------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """The API requests so far, oldest first (the control API's are not logged)."""
        with self._lock:
            return list(self._calls)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._lock:
            return self._connections

    def requests(self, endpoint: str | None = None) -> int:
        """API requests so far, to one endpoint or (``None``) in all."""
        with self._lock:
            if endpoint is None:
                return sum(self._requests.values())
            return self._requests[endpoint]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": dict(self._requests), "connections": self._connections}

    # -- called by the handler -------------------------------------------------------------------

    def _accepted(self) -> None:
        with self._lock:
            self._connections += 1

    def _record(self, call: Call) -> None:
        with self._lock:
            self._requests[call.endpoint] += 1
            self._calls.append(call)

    def _hang(self) -> None:
        self._release.wait(self.hang_limit)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: GiosgSimulator) -> None:
        self.simulator = simulator
        self.open_sockets: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(address, _Handler)
        self.thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="giosg-simulator", daemon=True
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection cut by :meth:`GiosgSimulator.down` or the client is no error here."""
        logger.debug("giosg simulator: connection from %s ended", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # one write per response (see the module docstring)
    server: _Server
    server_version = "giosg-simulator"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.open_lock:
            self.server.open_sockets.add(self.connection)
        self.server.simulator._accepted()

    def finish(self) -> None:
        with self.server.open_lock:
            self.server.open_sockets.discard(self.connection)
        with contextlib.suppress(OSError):  # the peer or down() cut the connection
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("giosg simulator: %s", format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        try:
            self._dispatch_request()
        except Exception:
            # A bug of the simulator: loud in the log, and an answer rather than a cut connection.
            logger.exception("giosg simulator: %s %s failed", self.command, self.path)
            self._send(json_response(500, {"error": "the simulator failed"}), close=True)

    def _dispatch_request(self) -> None:
        sim = self.server.simulator
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        host = self.headers.get("Host") or f"{sim.host}:{sim.port}"
        request = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers=self.headers,  # type: ignore[arg-type]  # a case-insensitive Message
            body=body,
            origin=f"http://{host}",
        )
        if url.path.startswith(PREFIX):
            response, after = sim.control.handle(request)
            self._send(response)
            if after is not None:
                self.wfile.flush()
                threading.Thread(target=after, daemon=True).start()
            return
        route, found, params = match(self.command, url.path)
        if url.path.startswith(LOADER_PREFIX):
            found = "loader"
        endpoint = found or "other"  # "other": unknown paths and wrong methods
        outcome = sim.faults.decide(endpoint, f"{self.command} {self.path}")
        if outcome.latency:
            time.sleep(outcome.latency)
        sent = _sent_json(request.body)
        if outcome.action in ("drop", "hang"):
            what = "dropped" if outcome.action == "drop" else "hung"
            sim._record(Call(request.method, request.path, url.query, endpoint, None, what, sent))
            if outcome.action == "hang":
                sim._hang()
            self.close_connection = True  # and no answer
            return
        if outcome.action == "late":
            self._apply_late(request, route, found, params, outcome.late, url.query, sent)
            return
        if outcome.action == "status":
            headers = {"Retry-After": outcome.retry_after} if outcome.retry_after else {}
            status = outcome.status or 500
            response = json_response(status, {"detail": "Simulated failure."}, headers)
        elif found == "loader":
            response = self._loader(request)
        else:
            response = sim.api.handle(request, route, found, params)
        sim._record(
            Call(
                request.method,
                request.path,
                url.query,
                endpoint,
                response.status,
                "answered",
                sent,
            )
        )
        self._send(response)

    def _apply_late(
        self,
        request: Request,
        route: Any,
        found: str | None,
        params: list[str],
        delay: float,
        query: str,
        sent: Any,
    ) -> None:
        """The request takes effect ``delay`` seconds from now, unless the simulator is stopped
        or reset meanwhile; no answer is sent."""
        sim = self.server.simulator
        released = sim._release
        self.close_connection = True
        if released.wait(delay):
            return  # stopped or reset: it never happened
        response = sim.api.handle(request, route, found, params)
        sim._record(
            Call(
                request.method,
                request.path,
                query,
                found or "other",
                response.status,
                "late",
                sent,
            )
        )

    def _loader(self, request: Request) -> Response:
        organization = request.path[len(LOADER_PREFIX) :].strip("/").lower()
        if request.method != "GET":
            return json_response(
                405, {"detail": f'Method "{request.method}" not allowed.'}, {"Allow": "GET"}
            )
        if organization != self.server.simulator.organization_id:
            return Response(
                404, b"/* giosg simulator: unknown organization */", "application/javascript"
            )
        script = resources.files(__package__).joinpath("loader.js").read_bytes()
        return Response(200, script, "application/javascript", {"Cache-Control": "no-store"})

    def _read_body(self) -> bytes | None:
        """The request body by its ``Content-Length``; ``None`` after answering a bad one."""
        if "Transfer-Encoding" in self.headers:
            self._send(json_response(411, {"detail": "Send a Content-Length."}), close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(json_response(400, {"detail": "Bad Content-Length."}), close=True)
            return None
        if length > MAX_BODY:
            self._send(json_response(413, {"detail": "Request body too large."}), close=True)
            return None
        return self.rfile.read(length)

    def _send(self, response: Response, *, close: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.body:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)


def _sent_json(body: bytes) -> Any:
    """The JSON a client sent, for the call log (``None`` when there is none)."""
    try:
        return json.loads(body) if body else None
    except (UnicodeDecodeError, ValueError):
        return None
