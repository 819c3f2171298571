"""The device cookie: which browser made a binding.

A visitor id is no secret (a shared kiosk shows it to every user, and it used to be in logs), so
it cannot decide who may bind it. A binding belongs to the browser that made it: the middleware
gives each browser that logs in or captures an id a random token in a signed, HttpOnly, long-lived
cookie (``django_giosg_device``), and a link records a digest of it (never the token itself, so
that reading the links table does not let anyone pose as a browser). Only the same browser may
take over a live binding of its visitor, until the binding's session has ended.

The cookie is signed with ``SECRET_KEY`` (``SECRET_KEY_FALLBACKS`` keep it valid through a
rotation), set only on the responses of requests that bind or capture (never on a page that a
cache may keep), and renewed on each of them.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponseBase

DEVICE_COOKIE = "django_giosg_device"
DEVICE_COOKIE_AGE = 365 * 24 * 3600  # seconds: a year, renewed whenever the browser binds
DEVICE_SALT = "django_giosg.device"
_ON_REQUEST = "_django_giosg_device"  # the token this request uses


def _cookie_token(request: HttpRequest) -> str | None:
    token = request.get_signed_cookie(
        DEVICE_COOKIE, default=None, salt=DEVICE_SALT, max_age=DEVICE_COOKIE_AGE
    )
    if not isinstance(token, str) or len(token) != 32:
        return None  # absent, forged, expired, or not ours
    return token


def digest(token: str) -> str:
    """What a link records of a device token (64 hex characters)."""
    return hashlib.sha256(f"{DEVICE_SALT}:{token}".encode()).hexdigest()


def known_device(request: HttpRequest) -> str | None:
    """The digest of the request's device, if it has a valid device cookie (or got one earlier
    in this request); ``None`` otherwise. Never makes one."""
    token: str | None = getattr(request, _ON_REQUEST, None) or _cookie_token(request)
    return None if token is None else digest(token)


def device_of(request: HttpRequest) -> str:
    """The digest of the request's device, making it a device (a new token, set on the
    response by :func:`set_device_cookie`) if it had none."""
    token: str | None = getattr(request, _ON_REQUEST, None) or _cookie_token(request)
    if token is None:
        token = secrets.token_hex(16)
    setattr(request, _ON_REQUEST, token)  # the response sets (or renews) the cookie
    return digest(token)


def set_device_cookie(request: HttpRequest, response: HttpResponseBase) -> None:
    """Set or renew the device cookie when this request used the device (see :func:`device_of`)."""
    token: str | None = getattr(request, _ON_REQUEST, None)
    if token is None:
        return
    response.set_signed_cookie(
        DEVICE_COOKIE,
        token,
        salt=DEVICE_SALT,
        max_age=DEVICE_COOKIE_AGE,
        path=django_settings.SESSION_COOKIE_PATH,
        domain=django_settings.SESSION_COOKIE_DOMAIN,
        secure=django_settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
