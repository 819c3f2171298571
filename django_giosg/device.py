"""The device cookie: which browser reported a visitor id, and made a binding.

A visitor id is no secret (a shared kiosk shows it to every user, and it used to be in logs), so
it cannot decide who may bind it. giosg gives each browser its own visitor id, so an id belongs to
the browser that reported it first: the middleware gives each browser that captures an id or logs
in a random token in a signed, HttpOnly, long-lived cookie (``django_giosg_device``), and the app's
rows record a digest of it (never the token itself, so that reading the tables does not let
anyone pose as a browser).

The cookie also says whether the browser may have a binding whose end it has not seen yet (its
session expired): only then does a request without a bound session look for one (one query).

The session notes the digest too, so that code which logs a user in or out without the
browser's cookies (Django's test client's ``login()`` and ``logout()``, a task) still knows the
browser of that session; a session cannot be forged, so this gives nobody another browser.

The cookie is signed with ``SECRET_KEY`` (``SECRET_KEY_FALLBACKS`` keep it valid through a
rotation), set only on the responses of captures, logins, logouts and the requests that bind or
learn of an ended binding, and renewed on each of them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponseBase

from . import request_notes, session

DEVICE_COOKIE = "django_giosg_device"
DEVICE_COOKIE_AGE = 365 * 24 * 3600  # seconds: a year, renewed whenever the cookie is set
DEVICE_SALT = "django_giosg.device"
_BOUND = "+"  # the value's suffix while the browser may have a binding
_ON_REQUEST = "_django_giosg_device"


@dataclass
class _Device:
    token: str
    bound: bool
    changed: bool  # the response sets (or renews) the cookie


def _from_cookie(request: HttpRequest) -> _Device | None:
    value = request.get_signed_cookie(
        DEVICE_COOKIE, default=None, salt=DEVICE_SALT, max_age=DEVICE_COOKIE_AGE
    )
    if not isinstance(value, str):
        return None  # absent, forged or expired
    token = value.removesuffix(_BOUND)
    if len(token) != 32:
        return None
    return _Device(token, bound=value.endswith(_BOUND), changed=False)


def _device(request: HttpRequest) -> _Device | None:
    found: _Device | None = getattr(request, _ON_REQUEST, None) or _from_cookie(request)
    if found is not None:
        setattr(request, _ON_REQUEST, found)
    return found


def digest(token: str) -> str:
    """What the app's rows record of a device token (64 hex characters)."""
    return hashlib.sha256(f"{DEVICE_SALT}:{token}".encode()).hexdigest()


def _session_device(request: HttpRequest) -> str | None:
    """The device the session noted: now, or when the request came in (``login()`` of another
    user flushes it before ``user_logged_in``)."""
    store = getattr(request, "session", None)
    noted = None if store is None else session.get_device(store)
    if noted is None:
        before = request_notes.before_view(request)
        noted = None if before is None else before.device
    return noted


def known_device(request: HttpRequest) -> str | None:
    """The digest of the request's device: from its valid device cookie (or the one it got
    earlier in this request), else as its session noted it; ``None`` otherwise. Never makes
    one."""
    found = _device(request)
    return digest(found.token) if found is not None else _session_device(request)


def device_of(request: HttpRequest) -> str:
    """The digest of the request's device, noted in its session. A request without a device
    cookie is the device its session noted, if any (no cookie can be set without the token);
    else it becomes a device (a new token, set on the response by :func:`set_device_cookie`).
    The cookie is renewed."""
    found = _device(request)
    if found is None:
        noted = _session_device(request)
        if noted is not None:
            return noted
        found = _Device(secrets.token_hex(16), bound=False, changed=True)
        setattr(request, _ON_REQUEST, found)
    found.changed = True
    made = digest(found.token)
    store = getattr(request, "session", None)
    if store is not None:
        session.note_device(store, made)
    return made


def discard_new_device(request: HttpRequest) -> None:
    """A device made in this request for a capture that was refused: the browser does not get it
    (another tab of it may have got its device a moment ago, in the answer that claimed the
    id)."""
    found: _Device | None = getattr(request, _ON_REQUEST, None)
    if found is not None and _from_cookie(request) is None:
        delattr(request, _ON_REQUEST)


def device_with_binding(request: HttpRequest) -> str | None:
    """The digest of the request's device if its cookie says it may have a binding it has not
    seen end (see the module), else ``None``. Reads the cookie only, never the session."""
    found = _device(request)
    return digest(found.token) if found is not None and found.bound else None


def note_binding(request: HttpRequest, bound: bool) -> None:
    """The browser bound a visitor (``True``), or saw its bindings end (``False``)."""
    if bound:
        device_of(request)
    found = _device(request)
    if found is not None and found.bound != bound:
        found.bound = bound
        found.changed = True


def set_device_cookie(request: HttpRequest, response: HttpResponseBase) -> bool:
    """Set or renew the device cookie when this request used or changed it; whether it did."""
    found: _Device | None = getattr(request, _ON_REQUEST, None)
    if found is None or not found.changed:
        return False
    response.set_signed_cookie(
        DEVICE_COOKIE,
        found.token + (_BOUND if found.bound else ""),
        salt=DEVICE_SALT,
        max_age=DEVICE_COOKIE_AGE,
        **cookie_attributes(),
    )
    return True


def cookie_attributes() -> dict[str, Any]:
    """Where django-giosg's cookies go, and how they are kept from scripts and other sites: as
    the session cookie (its path, domain, ``Secure`` and ``SameSite``), and HttpOnly."""
    return {
        "path": django_settings.SESSION_COOKIE_PATH,
        "domain": django_settings.SESSION_COOKIE_DOMAIN,
        "secure": django_settings.SESSION_COOKIE_SECURE,
        "httponly": True,
        "samesite": django_settings.SESSION_COOKIE_SAMESITE,
    }
