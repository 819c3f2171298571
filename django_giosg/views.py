"""The capture endpoint: the browser reports the giosg visitor id, the session keeps it.

Checks run in a fixed order, and a rejected request changes nothing: the session is untouched and
giosg is not called.

1. method 405;
2. the ``Content-Length`` header: 400 when it is no number, 413 when it declares more than
   ``CAPTURE_MAX_BODY`` (before the view reads the body, the CSRF check included), 411 for form
   data without one;
3. CSRF 403;
4. the body: 413 when JSON sent without ``Content-Length`` turns out larger than
   ``CAPTURE_MAX_BODY``, 400 when it cannot be parsed or its visitor id is not valid;
5. the rates 429: the session's (``CAPTURE_RATE``), then the user's (``USER_CAPTURE_RATE``);
6. 409 for a visitor id that belongs to another browser.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import (
    BadRequest,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from . import browser_logout, device, request_notes, session, tasks
from .conf import GiosgSettings, get_settings
from .errors import GiosgError
from .logs import short_id

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class _Rejected(Exception):
    """A request the endpoint refuses; carries the status and the message for ``{"error"}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_ANOTHER_BROWSERS = _Rejected(409, "this visitor id belongs to another browser")


@csrf_exempt  # from the middleware only: the check runs below, after the method's
@require_POST
def capture(request: HttpRequest) -> HttpResponse:
    """Store the visitor id the browser reports (``204``), or say what is wrong with it."""
    try:
        _check_length(request, get_settings().capture_max_body)
        return _capture(request)
    except _Rejected as rejected:
        return _rejection(rejected)
    # Django raises these wherever a form body is first read, in the CSRF check too.
    except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE, when it is the smaller limit
        limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE or get_settings().capture_max_body
        return _rejection(_too_large(limit))
    except (MultiPartParserError, BadRequest, TooManyFieldsSent, TooManyFilesSent):
        return _rejection(_Rejected(400, "the form data cannot be parsed"))


def _rejection(rejected: _Rejected) -> JsonResponse:
    return JsonResponse({"error": rejected.message}, status=rejected.status)


def _too_large(max_body: int) -> _Rejected:
    return _Rejected(413, f"the body is larger than {max_body} bytes")


_DIGITS = re.compile(r"[0-9]+")


def _check_length(request: HttpRequest, max_body: int) -> None:
    """Refuse a ``Content-Length`` that is no number (Django would fail with a 500 reading the
    body) or that declares too large a body, and form data of unknown length, before the view
    reads the body: the CSRF check parses a form body whole."""
    declared = (request.META.get("CONTENT_LENGTH") or "").strip()
    if not declared:
        if request.content_type in FORM_TYPES:  # Django would parse it whole, whatever its size
            raise _Rejected(411, "send form data with a Content-Length header")
        return  # no body, or JSON of unknown length: its size is checked as it is read
    if not _DIGITS.fullmatch(declared):
        raise _Rejected(400, "the Content-Length header must be a number of bytes")
    digits = declared.lstrip("0") or "0"  # (int() refuses more than 4,300 digits: no int())
    if len(digits) > len(str(max_body)) or int(digits) > max_body:
        raise _too_large(max_body)


@csrf_protect
def _capture(request: HttpRequest) -> HttpResponse:
    settings = get_settings()
    try:
        visitor_id, rooms = _parse(request, settings.capture_max_body)
        now = time.time()
        if not session.capture_allowed(request.session, visitor_id, now, settings.capture_rate):
            raise _Rejected(
                429,
                f"this session captured {settings.capture_rate} different visitor ids within "
                "the hour; try again later",
            )
    except _Rejected as rejected:
        return _rejection(rejected)
    store = request.session
    previous = session.get_visitor_id(store)
    saved = session.snapshot(store)
    anonymous = not request.user.is_authenticated  # (a logged-in user's bind claims the id)
    if visitor_id != previous and not anonymous and tasks.over_user_rate(request.user, visitor_id):
        return _rejection(_user_rate_limited())
    if visitor_id != previous and anonymous and not _claim(request, visitor_id):
        session.restore(store, saved)
        device.discard_new_device(request)
        return _rejection(_ANOTHER_BROWSERS)
    if session.set_visitor_id(store, visitor_id, _owned_rooms(rooms, settings)):
        session.record_capture(store, visitor_id, now)
        if settings.enabled and request.user.is_authenticated:
            refusal = _bind(request, previous, visitor_id)
            if refusal is not None:
                session.restore(store, saved)
                return _rejection(refusal)
    return HttpResponse(status=204)


def _claim(request: HttpRequest, visitor_id: str) -> bool:
    """Whether a visitor id new to this anonymous session belongs to this browser (see
    :func:`tasks.claim_visitor <django_giosg.tasks.claim_visitor>`)."""
    if tasks.claim_visitor(visitor_id, device.device_of(request)):
        return True
    logger.info(
        "django-giosg refused a capture: visitor %s belongs to another browser",
        short_id(visitor_id),
    )
    return False


def _bind(request: HttpRequest, previous: str | None, visitor_id: str) -> _Rejected | None:
    """A logged-in user's capture: the id (new, or with new rooms) is attached, and a changed id
    detaches the old one. The rejection when nothing was bound (the id belongs to another
    browser, or the user is over ``USER_CAPTURE_RATE``): then nothing changed. An error is
    logged, never fails the capture."""
    try:
        plan = tasks.bind_session(request.user, request.session, device.device_of(request))
        if plan.refused:
            return _ANOTHER_BROWSERS
        if plan.rate_limited:
            return _user_rate_limited()
        device.note_binding(request, True)
        request_notes.confirm_after_view(request, plan.attach)
        if plan.switched:
            browser_logout.note_close(request)
        if previous is not None and previous != visitor_id:
            tasks.release_visitor(previous, request.user.pk)
    except Exception:
        logger.exception("django-giosg could not attach the captured visitor")
    return None


def _user_rate_limited() -> _Rejected:
    return _Rejected(
        429,
        f"this account bound {get_settings().user_capture_rate} different visitor ids, or "
        "bound them too often, within the hour; try again later",
    )


def _parse(request: HttpRequest, max_body: int) -> tuple[str, list[str]]:
    """The visitor id and the browser's rooms from a JSON or form body, or :class:`_Rejected`."""
    if request.content_type == JSON_TYPE:
        if len(request.body) > max_body:  # a body sent without Content-Length
            raise _too_large(max_body)
        visitor_id, rooms = _from_json(request.body)
    elif request.content_type in FORM_TYPES:
        visitor_id, rooms = _from_form(request)
    else:
        raise _Rejected(
            400,
            "send the visitor id as JSON (Content-Type: application/json) or as form data",
        )
    try:
        valid_id = session.validate_visitor_id(visitor_id)
    except session.InvalidVisitorId as err:
        raise _Rejected(400, str(err)) from None
    return valid_id, _room_ids(rooms)


def _from_json(body: bytes) -> tuple[object, object]:
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
        raise _Rejected(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _Rejected(400, 'the JSON body must be an object such as {"visitor_id": "…"}')
    if "visitor_id" not in data:
        raise _Rejected(400, "visitor_id is required")
    rooms = data.get("rooms")
    return data["visitor_id"], [] if rooms is None else rooms


def _from_form(request: HttpRequest) -> tuple[object, object]:
    fields = request.POST
    ids = fields.getlist("visitor_id")
    if not ids:
        raise _Rejected(400, "visitor_id is required")
    if len(ids) > 1:
        raise _Rejected(400, "send one visitor_id, not several")
    return ids[0], fields.getlist("rooms")


def _room_ids(rooms: object) -> list[str]:
    """The browser's rooms, lower-cased like the organization's room ids. Their format is not
    checked: a string that is no room id is not a room the organization owns, so it is dropped
    with those (see :func:`_owned_rooms`)."""
    if not isinstance(rooms, list) or not all(isinstance(room, str) for room in rooms):
        raise _Rejected(400, "rooms must be a list of room ids (strings)")
    return [room.lower() for room in rooms]


def _owned_rooms(rooms: list[str], settings: GiosgSettings) -> list[str]:
    """The browser rooms the organization owns. giosg is asked (through the cached room list)
    only when ``USE_BROWSER_ROOMS`` is on; within the request's budget and without retries."""
    if not rooms or not (settings.enabled and settings.use_browser_rooms):
        return []
    try:
        return tasks.owned_rooms(rooms, settings)
    except GiosgError as err:
        logger.warning("Could not check the browser's rooms with giosg, none kept: %s", err)
        return []
