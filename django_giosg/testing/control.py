"""The simulator's own HTTP API under ``/_simulator/``, which cannot clash with giosg's ``/api/``.

For tests in other processes, the example project and the loader stand-in: the same operations as
the Python API of :class:`~django_giosg.testing.GiosgSimulator`. It needs no token, is not counted
in the request statistics and never faulted. It listens on localhost, where any web page the
machine's browser shows can send it requests, so every endpoint but ``browser/*`` answers only:

- requests whose ``Host`` is a loopback name, ``127.0.0.1``, ``localhost`` or ``[::1]`` with any
  port or none; others get 403 (a page whose own name was rebound to 127.0.0.1, DNS rebinding,
  must neither read the state nor change it);
- ``GET`` requests, or requests sent as ``Content-Type: application/json`` (parameters such as
  ``; charset=utf-8`` allowed); others get 415 (a page of any site may POST ``text/plain`` or a
  form without a CORS preflight, but not JSON).

Both refusals are ``{"error": message}``. The API token is not served: whoever starts the
simulator chooses it (``api_token=``, or ``GIOSG["API_TOKEN"]`` for ``manage.py
giosg_simulator``).

    GET    /_simulator/                 what the simulator is: organization, rooms, … (no token)
    GET    /_simulator/stats            requests per endpoint, TCP connections accepted
    GET    /_simulator/calls            the call log
    POST   /_simulator/reset            back to the start: data, faults, switches, counts
    GET    /_simulator/visitors/<id>    what giosg holds about a visitor, room by room
    POST   /_simulator/visitors/<id>    seed: {"rooms", "open_chats", "ended_chats", "variables"}
    GET    /_simulator/faults           the active faults
    POST   /_simulator/faults           add one: {"endpoint", "latency", "status", "retry_after",
                                        "drop", "hang", "late", "times", "rate"}
    DELETE /_simulator/faults           remove them all
    GET    /_simulator/switches         the behaviour switches
    PATCH  /_simulator/switches         change some: {"end_ended_chat": "locked", …}
    POST   /_simulator/down             refuse connections for {"seconds": n}
    POST   /_simulator/shutdown         end ``manage.py giosg_simulator`` (as SIGTERM does)
    POST   /_simulator/browser/{visit,chat,close,remove}   the loader stand-in's calls (CORS
                                        open, any Host and Content-Type): {"visitor_id"}, with
                                        "text" for chat and "rooms" for remove
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .api import JSON, Request, Response, json_response, media_type
from .faults import Fault

if TYPE_CHECKING:
    from .server import GiosgSimulator
    from .world import Chat

PREFIX = "/_simulator/"
MAX_LINE = 500  # characters of one chat-box line
_VISITOR_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CORS = {"Access-Control-Allow-Origin": "*"}
#: The names a ``Host`` header may give, with any port or none, for the endpoints but browser/*.
_LOOPBACK_HOST = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{0,5})?", re.IGNORECASE)


class ControlError(ValueError):
    """A bad control request: 400 with ``{"error": message}``."""


class ControlAPI:
    def __init__(self, simulator: GiosgSimulator) -> None:
        self.simulator = simulator

    def handle(self, request: Request) -> tuple[Response, Callable[[], None] | None]:
        """The answer, and what to do once it has been sent (going down must not cut it off)."""
        sim = self.simulator
        route = request.path[len(PREFIX) :]
        method = request.method
        after: Callable[[], None] | None = None
        try:
            if route.startswith("browser/"):
                return self._browser(request, route[len("browser/") :]), None
            refused = _refusal(request)
            if refused is not None:
                return refused, None
            if (method, route) == ("GET", ""):
                response = json_response(200, sim.describe())
            elif (method, route) == ("GET", "stats"):
                response = json_response(200, sim.stats())
            elif (method, route) == ("GET", "calls"):
                response = json_response(200, [call.as_dict() for call in sim.calls])
            elif (method, route) == ("POST", "reset"):
                sim.reset()
                response = json_response(204, None)
            elif route.startswith("visitors/") and method in ("GET", "POST"):
                response = self._visitor(request, route[len("visitors/") :])
            elif (method, route) == ("GET", "faults"):
                response = json_response(200, [f.as_dict() for f in sim.faults.faults])
            elif (method, route) == ("POST", "faults"):
                fault = _fault(_object(request))
                sim.faults.add(fault)
                response = json_response(201, fault.as_dict())
            elif (method, route) == ("DELETE", "faults"):
                sim.faults.clear()
                response = json_response(204, None)
            elif (method, route) == ("GET", "switches"):
                response = json_response(200, sim.world.switches.as_dict())
            elif (method, route) == ("PATCH", "switches"):
                response = json_response(200, sim.set_switches(**_object(request)).as_dict())
            elif (method, route) == ("POST", "down"):
                seconds = _object(request).get("seconds")
                if (
                    not isinstance(seconds, (int, float))
                    or isinstance(seconds, bool)
                    or seconds <= 0
                ):
                    raise ControlError('"seconds" must be a number > 0 (the time to stay down)')
                response = json_response(202, {"down_for": seconds})
                after = lambda: sim.down(float(seconds))  # noqa: E731
            elif (method, route) == ("POST", "shutdown"):
                response = json_response(202, {"shutting_down": True})
                after = sim.request_shutdown
            else:
                response = json_response(
                    404, {"error": f"no control endpoint {method} {request.path}"}
                )
        except ValueError as err:  # ControlError, or a Fault, switch or seed refused
            response = json_response(400, {"error": str(err)})
        return response, after

    def _visitor(self, request: Request, visitor_id: str) -> Response:
        if not _VISITOR_ID.fullmatch(visitor_id):
            raise ControlError("a visitor id is 1-64 letters, digits, '_' or '-'")
        sim = self.simulator
        if request.method == "GET":
            return json_response(200, sim.state(visitor_id))
        options = _object(request)
        chats = sim.seed_visitor(visitor_id, **_pick(options, _SEED_OPTIONS))
        return json_response(201, {"open_chats": chats, "state": sim.state(visitor_id)})

    def _browser(self, request: Request, action: str) -> Response:
        """What the loader stand-in does for the page; any origin may call it."""
        if request.method == "OPTIONS":
            headers = {
                **_CORS,
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "*",
            }
            return json_response(204, None, headers)
        data = _object(request)
        visitor_id = data.get("visitor_id")
        if not isinstance(visitor_id, str) or not _VISITOR_ID.fullmatch(visitor_id):
            raise ControlError('"visitor_id" must be 1-64 letters, digits, "_" or "-"')
        world = self.simulator.world
        if (request.method, action) == ("POST", "visit"):
            rooms = world.owned_room_ids + world.shared_room_ids
            world.enter(visitor_id, rooms)
            chat = world.open_chat(visitor_id)
            answer = {"visitor_id": visitor_id, "rooms": rooms, "chat": _chat(chat)}
            return json_response(200, answer, dict(_CORS))
        if (request.method, action) == ("POST", "chat"):
            text = data.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_LINE:
                raise ControlError(f'"text" must be a line of 1-{MAX_LINE} characters')
            said = world.visitor_says(visitor_id, text.strip())
            return json_response(200, {"chat": _chat(said)}, dict(_CORS))
        if (request.method, action) == ("POST", "close"):
            return json_response(200, {"closed": world.close_chats(visitor_id)}, dict(_CORS))
        if (request.method, action) == ("POST", "remove"):
            chosen = data.get("rooms")
            if chosen is not None and not (
                isinstance(chosen, list) and all(isinstance(r, str) for r in chosen)
            ):
                raise ControlError('"rooms" must be a list of room ids')
            removed = world.remove_all_variables(visitor_id, chosen)
            return json_response(200, {"removed": removed}, dict(_CORS))
        return json_response(
            404, {"error": f"no browser action {request.method} {action}"}, dict(_CORS)
        )


def _chat(chat: Chat | None) -> dict[str, Any] | None:
    if chat is None:
        return None
    return {"id": chat.id, "room_id": chat.room_id, "messages": list(chat.messages)}


_SEED_OPTIONS = {
    "rooms": lambda v: isinstance(v, list) and all(isinstance(r, str) for r in v),
    "open_chats": lambda v: type(v) is int and v >= 0,
    "ended_chats": lambda v: type(v) is int and v >= 0,
    "variables": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
}


def _refusal(request: Request) -> Response | None:
    """The answer to a request that another site's page could have sent (see the module
    docstring), or ``None`` for one from this machine's own tools."""
    if not _LOOPBACK_HOST.fullmatch(request.headers.get("Host") or ""):
        message = (
            "the control API answers only requests to 127.0.0.1, localhost or [::1] "
            "(the Host header): a guard against DNS rebinding"
        )
        return json_response(403, {"error": message})
    if request.method != "GET" and media_type(request.headers) != JSON:
        message = (
            f"send control requests as {JSON} (Content-Type): another site's page can send "
            "text/plain or a form here without asking first"
        )
        return json_response(415, {"error": message})
    return None


def _object(request: Request) -> dict[str, Any]:
    """The request's JSON object, whatever its Content-Type (the loader stand-in sends
    text/plain, which needs no CORS preflight); an empty body is an empty object."""
    if not request.body.strip():
        return {}
    try:
        data = json.loads(request.body)
    except (UnicodeDecodeError, ValueError) as err:
        raise ControlError(f"the body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ControlError("the body must be a JSON object")
    return data


def _pick(options: dict[str, Any], allowed: dict[str, Callable[[Any], bool]]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ControlError(f"unknown option {', '.join(unknown)}; known: {', '.join(allowed)}")
    for name, value in options.items():
        if not allowed[name](value):
            raise ControlError(f"{name}: invalid value {value!r}")
    return options


def _fault(options: dict[str, Any]) -> Fault:
    known = set(Fault.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ControlError(
            f"unknown fault option {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return Fault(**options)
