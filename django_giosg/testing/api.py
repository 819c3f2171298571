"""The REST API v5 as the simulator serves it: routing, the strict checks, cursor pagination.

Strict where giosg is: the ``Authorization: Token`` header (401), the organization
in the path (403), unknown rooms, visitors, keys and chats (404), ``Content-Type`` on POST and
PATCH (415), malformed bodies (400), wrong methods (405). Error bodies are DRF-style JSON.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlencode

from .world import Problem, World, not_found

JSON = "application/json"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    origin: str  # scheme://host[:port] the client used, for absolute ``next`` URLs


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def media_type(headers: Mapping[str, str]) -> str:
    """The ``Content-Type`` without its parameters, lower case (``""`` when there is none)."""
    return headers.get("Content-Type", "").partition(";")[0].strip().lower()


def json_response(status: int, data: object, headers: dict[str, str] | None = None) -> Response:
    if status == 204:
        return Response(204, headers=headers or {})
    return Response(status, json.dumps(data).encode(), headers=headers or {})


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    endpoints: dict[str, str]  # method → endpoint name


_SEGMENT = "([^/]+)"
_ORG = f"/api/v5/orgs/{_SEGMENT}"
_VISITOR = f"{_ORG}/rooms/{_SEGMENT}/visitors/{_SEGMENT}"
ROUTES = (
    Route(re.compile("/api/v5/users/me"), {"GET": "users_me"}),
    Route(re.compile(f"{_ORG}/rooms"), {"GET": "list_rooms"}),
    Route(re.compile(f"{_VISITOR}/variables"), {"GET": "list_variables", "POST": "set_variable"}),
    Route(re.compile(f"{_VISITOR}/variables/{_SEGMENT}"), {"DELETE": "delete_variable"}),
    Route(re.compile(f"{_VISITOR}/chats"), {"GET": "list_chats"}),
    Route(re.compile(f"{_ORG}/owned_chats/{_SEGMENT}"), {"GET": "get_chat", "PATCH": "end_chat"}),
)


def match(method: str, path: str) -> tuple[Route | None, str | None, list[str]]:
    """The route of a path, the endpoint for the method (``None``: 405), the path's parameters
    (percent-decoded, one per segment)."""
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found:
            params = [unquote(group) for group in found.groups()]
            return route, route.endpoints.get(method), params
    return None, None, []


class Paginator:
    """giosg's cursor pagination: ``{next, previous, results}``, absolute links with an opaque
    cursor, no count. A cursor holds a position in the sort order, not an offset, so pages stay
    consistent while earlier items change (a chat that ends while its list is being paged)."""

    def __init__(self, page_size: int) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be ≥ 1, not {page_size}")
        self.page_size = page_size
        self._key = secrets.token_bytes(16)

    def page(
        self, request: Request, items: list[tuple[int, dict[str, object]]]
    ) -> dict[str, object]:
        items = sorted(items, key=lambda item: item[0])
        cursor = request.query.get("cursor", [None])[-1]
        if cursor is None:
            start = 0
        else:
            direction, position = self._decode(cursor)
            if direction == "n":
                start = sum(1 for pos, _ in items if pos <= position)
            else:
                start = max(0, sum(1 for pos, _ in items if pos < position) - self.page_size)
        chunk = items[start : start + self.page_size]
        more = start + self.page_size < len(items)
        return {
            "next": self._link(request, "n", chunk[-1][0]) if chunk and more else None,
            "previous": self._link(request, "p", chunk[0][0]) if chunk and start > 0 else None,
            "results": [data for _, data in chunk],
        }

    def _link(self, request: Request, direction: str, position: int) -> str:
        query = [(k, v) for k, values in request.query.items() if k != "cursor" for v in values]
        query.append(("cursor", self._encode(direction, position)))
        return f"{request.origin}{request.path}?{urlencode(query)}"

    def _encode(self, direction: str, position: int) -> str:
        text = f"{direction}{position}".encode()
        tag = hmac.new(self._key, text, "sha256").digest()[:6]
        return base64.urlsafe_b64encode(tag + text).decode().rstrip("=")

    def _decode(self, cursor: str) -> tuple[str, int]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            tag, text = raw[:6], raw[6:]
            valid = hmac.compare_digest(tag, hmac.new(self._key, text, "sha256").digest()[:6])
            if valid and text[:1] in (b"n", b"p"):
                return text[:1].decode(), int(text[1:])
        except (binascii.Error, ValueError):
            pass
        raise Problem(404, {"detail": "Invalid cursor"})


class GiosgAPI:
    """Answers the API requests of one organization's token."""

    def __init__(self, world: World, api_token: str, paginator: Paginator) -> None:
        self.world = world
        self.api_token = api_token
        self.paginator = paginator
        self._handlers: dict[str, Callable[[Request, list[str]], Response]] = {
            "users_me": self._users_me,
            "list_rooms": self._list_rooms,
            "list_variables": self._list_variables,
            "set_variable": self._set_variable,
            "delete_variable": self._delete_variable,
            "list_chats": self._list_chats,
            "get_chat": self._get_chat,
            "end_chat": self._end_chat,
        }

    def handle(
        self, request: Request, route: Route | None, endpoint: str | None, params: list[str]
    ) -> Response:
        """The answer to an API request, given what :func:`match` found for it."""
        try:
            self._authenticate(request)
            if route is None:
                raise not_found()
            if endpoint is None:
                raise Problem(405, {"detail": f'Method "{request.method}" not allowed.'})
            return self._handlers[endpoint](request, params)
        except Problem as problem:
            headers = {}
            if problem.status == 401:
                headers["WWW-Authenticate"] = "Token"
            if problem.status == 405 and route is not None:
                headers["Allow"] = ", ".join(sorted(route.endpoints))
            return json_response(problem.status, problem.body, headers)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization")
        if not header:
            raise Problem(401, {"detail": "Authentication credentials were not provided."})
        scheme, _, token = header.partition(" ")
        if scheme != "Token" or not hmac.compare_digest(token.encode(), self.api_token.encode()):
            raise Problem(401, {"detail": "Invalid token."})

    def _organization(self, organization_id: str) -> None:
        if organization_id.lower() != self.world.organization_id:
            raise Problem(403, {"detail": "You do not have permission to perform this action."})

    def _json_body(self, request: Request) -> dict[str, object]:
        content_type = media_type(request.headers)
        if content_type != JSON:
            shown = content_type or "none"
            raise Problem(415, {"detail": f'Unsupported media type "{shown}" in request.'})
        try:
            data = json.loads(request.body)
        except (UnicodeDecodeError, ValueError) as err:
            raise Problem(400, {"detail": f"JSON parse error - {err}"}) from None
        if not isinstance(data, dict):
            kind = type(data).__name__
            raise Problem(
                400,
                {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]},
            )
        return data

    # -- endpoints --------------------------------------------------------------------------------

    def _users_me(self, request: Request, params: list[str]) -> Response:
        return json_response(
            200,
            {
                "id": "5e1a7c0d-0000-4000-8000-00000000000a",
                "organization_id": self.world.organization_id,
                "first_name": "API",
                "last_name": "User",
            },
        )

    def _list_rooms(self, request: Request, params: list[str]) -> Response:
        self._organization(params[0])
        return json_response(200, self.paginator.page(request, self.world.list_rooms()))

    def _list_variables(self, request: Request, params: list[str]) -> Response:
        org, room, visitor = params
        self._organization(org)
        items = self.world.list_variables(room.lower(), visitor)
        return json_response(200, self.paginator.page(request, items))

    def _set_variable(self, request: Request, params: list[str]) -> Response:
        org, room, visitor = params
        self._organization(org)
        self.world.require_room(room.lower())  # 404 before the body is looked at
        data = self._json_body(request)
        errors: dict[str, list[str]] = {}
        for name in ("key", "value"):
            if name not in data:
                errors[name] = ["This field is required."]
            elif data[name] is None:
                errors[name] = ["This field may not be null."]
            elif not isinstance(data[name], str):
                errors[name] = ["Not a valid string."]
        if "key" not in errors and not str(data["key"]).strip():
            errors["key"] = ["This field may not be blank."]
        if errors:
            raise Problem(400, dict(errors))
        status, body = self.world.set_variable(
            room.lower(), visitor, str(data["key"]), str(data["value"])
        )
        return json_response(status, body)

    def _delete_variable(self, request: Request, params: list[str]) -> Response:
        org, room, visitor, key = params
        self._organization(org)
        self.world.delete_variable(room.lower(), visitor, key)
        return json_response(204, None)

    def _list_chats(self, request: Request, params: list[str]) -> Response:
        org, room, visitor = params
        self._organization(org)
        is_ended: bool | None = None
        if "is_ended" in request.query:
            value = request.query["is_ended"][-1].lower()
            if value not in ("true", "false", "1", "0"):
                raise Problem(400, {"is_ended": ["Must be a valid boolean."]})
            is_ended = value in ("true", "1")
        items = self.world.list_visitor_chats(room.lower(), visitor, is_ended)
        return json_response(200, self.paginator.page(request, items))

    def _get_chat(self, request: Request, params: list[str]) -> Response:
        org, chat = params
        self._organization(org)
        return json_response(200, self.world.owned_chat(chat))

    def _end_chat(self, request: Request, params: list[str]) -> Response:
        org, chat = params
        self._organization(org)
        self.world.owned_chat(chat)  # 404 before the body is looked at
        data = self._json_body(request)
        changes: dict[str, bool] = {}
        for name in ("is_ended", "is_waiting"):
            if name in data:
                if not isinstance(data[name], bool):
                    raise Problem(400, {name: ["Must be a valid boolean."]})
                changes[name] = bool(data[name])
        return json_response(200, self.world.update_chat(chat, changes))
