"""The browser's share of a logout: close the chat window and clean the rooms on the next page.

At logout the receiver notes the rooms to clean up (:func:`note_logout`); ``GiosgMiddleware``
carries them to the next page in a short-lived, signed cookie (:func:`carry_to_next_page`);
``{% giosg_logout %}`` renders the cleanup script while that cookie (or a logout in the same
request) is there (:func:`pending_logout_rooms`), and says so (:func:`mark_logout_rendered`); the
cookie is deleted on the response whose HTML page rendered the tag. Redirects and non-HTML
responses leave it in place. A login in the same request cancels it: the cleanup must not close
the new user's chats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings as django_settings
from django.core import signing
from django.http import HttpRequest, HttpResponseBase

LOGOUT_COOKIE = "django_giosg_logout"
LOGOUT_COOKIE_AGE = 300  # seconds: enough to reach the next page, short enough to go stale
LOGOUT_SALT = "django_giosg.logout"
_STATE = "_django_giosg_logout"


@dataclass
class _LogoutState:
    """What this request knows about a logout: its rooms, and whether the tag was rendered."""

    rooms: list[str] | None = None
    rendered: bool = False
    logged_in: bool = False


def _state(request: HttpRequest) -> _LogoutState:
    state: _LogoutState | None = getattr(request, _STATE, None)
    if state is None:
        state = _LogoutState()
        setattr(request, _STATE, state)
    return state


def note_logout(request: HttpRequest, rooms: Sequence[str]) -> None:
    """Remember that the user logged out in this request; the response carries it on."""
    _state(request).rooms = list(rooms)


def note_login(request: HttpRequest) -> None:
    """A login in this request: an earlier logout's cleanup must not close the new chats."""
    state = _state(request)
    state.rooms = None
    state.logged_in = True


def logged_in_or_out(request: HttpRequest) -> bool:
    """Whether a login or a logout happened in this request (the receivers handled it)."""
    state = _state(request)
    return state.logged_in or state.rooms is not None


def _cookie_rooms(request: HttpRequest) -> list[str] | None:
    value = request.COOKIES.get(LOGOUT_COOKIE)
    if not value:
        return None
    try:
        rooms = signing.loads(value, salt=LOGOUT_SALT, max_age=LOGOUT_COOKIE_AGE)
    except signing.BadSignature:  # forged, or older than LOGOUT_COOKIE_AGE
        return None
    if not isinstance(rooms, list) or not all(isinstance(room, str) for room in rooms):
        return None
    return rooms


def pending_logout_rooms(request: HttpRequest) -> list[str] | None:
    """The rooms of a logout whose browser cleanup has not run yet, or ``None``."""
    state = _state(request)
    if state.logged_in:
        return None
    return state.rooms if state.rooms is not None else _cookie_rooms(request)


def mark_logout_rendered(request: HttpRequest) -> None:
    """Called by ``{% giosg_logout %}``: the cleanup script is on this response's page."""
    _state(request).rendered = True


def _is_html_page(response: HttpResponseBase) -> bool:
    is_redirect = 300 <= response.status_code < 400
    return not is_redirect and response.get("Content-Type", "").startswith("text/html")


def carry_to_next_page(request: HttpRequest, response: HttpResponseBase) -> None:
    """Set the cookie for a logout whose cleanup this response does not show; delete it once a
    page has shown it, after a login, or when it is no longer valid."""
    state = _state(request)
    shown = state.rendered and _is_html_page(response)
    if state.rooms is not None and not shown:
        response.set_cookie(
            LOGOUT_COOKIE,
            signing.dumps(state.rooms, salt=LOGOUT_SALT, compress=True),
            max_age=LOGOUT_COOKIE_AGE,
            path=django_settings.SESSION_COOKIE_PATH,
            domain=django_settings.SESSION_COOKIE_DOMAIN,
            secure=django_settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
    elif LOGOUT_COOKIE in request.COOKIES and (
        shown or state.logged_in or _cookie_rooms(request) is None
    ):
        response.delete_cookie(
            LOGOUT_COOKIE,
            path=django_settings.SESSION_COOKIE_PATH,
            domain=django_settings.SESSION_COOKIE_DOMAIN,
            samesite="Lax",
        )
