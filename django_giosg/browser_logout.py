"""The browser's share of an ending: close the chat window (and clean the rooms) on the next page.

Whenever a binding ends, the chat window in that browser may still show the chats that ended,
and giosg's widget keeps their history on the device. So the next page of that browser renders
``{% giosg_logout %}``'s script, once, in one of two modes (:class:`Cleanup`):

- after a **logout** (:func:`note_logout`): close the chats, clear the widget's history, and remove
  the visitor's variables in the rooms that had them;
- **close only** (:func:`note_close`) after a user switch, a session that lost its user, and the
  first page of a browser whose expired binding was swept: close and clear, but never remove the
  variables, which may be the new user's, set in the same request. A login after a logout whose
  page has not been shown yet turns it into close only, for the same reason.

``GiosgMiddleware`` carries the cleanup to the next page in a short-lived, signed cookie
(:func:`carry_to_next_page`); ``{% giosg_logout %}`` renders it while that cookie (or an ending in
the same request) is there (:func:`pending_cleanup`) and says so (:func:`mark_logout_rendered`);
the cookie is deleted on the response whose HTML page rendered the tag. Redirects and non-HTML
responses leave it in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings as django_settings
from django.core import signing
from django.http import HttpRequest, HttpResponseBase

from .device import cookie_attributes

LOGOUT_COOKIE = "django_giosg_logout"
LOGOUT_COOKIE_AGE = 300  # seconds: enough to reach the next page, short enough to go stale
LOGOUT_SALT = "django_giosg.logout"
_STATE = "_django_giosg_logout"


@dataclass(frozen=True)
class Cleanup:
    """What the browser is to do: close the chats and clear the widget's history (always), and
    remove the variables in ``rooms`` (``remove``, after a logout only)."""

    rooms: tuple[str, ...] = ()
    remove: bool = False


#: Close the chats and clear the history; remove nothing.
CLOSE_ONLY = Cleanup()


@dataclass
class _RequestState:
    """What this request knows about an ending: its cleanup, whether the tag was rendered, and
    whether a login happened."""

    cleanup: Cleanup | None = None
    rendered: bool = False
    logged_in: bool = False
    logged_out: bool = False


def _state(request: HttpRequest) -> _RequestState:
    state: _RequestState | None = getattr(request, _STATE, None)
    if state is None:
        state = _RequestState()
        setattr(request, _STATE, state)
    return state


def note_logout(request: HttpRequest, rooms: Sequence[str]) -> None:
    """The user logged out in this request: close, and remove the variables in ``rooms``."""
    state = _state(request)
    state.cleanup = Cleanup(tuple(rooms), remove=True)
    state.logged_out = True


def note_close(request: HttpRequest) -> None:
    """A binding of this browser ended in this request without a logout (a user switch, a lost
    user, a swept expiry): close the chat window. A logout's cleanup noted already stays."""
    state = _state(request)
    if state.cleanup is None:
        state.cleanup = CLOSE_ONLY


def note_login(request: HttpRequest) -> None:
    """A login in this request: an earlier logout's cleanup must not remove the new user's
    variables, so it closes only."""
    state = _state(request)
    state.logged_in = True
    if state.cleanup is not None:
        state.cleanup = CLOSE_ONLY


def logged_in_or_out(request: HttpRequest) -> bool:
    """Whether a login or a logout happened in this request (the receivers handled it)."""
    state = _state(request)
    return state.logged_in or state.logged_out


def _cookie_cleanup(request: HttpRequest) -> Cleanup | None:
    value = request.COOKIES.get(LOGOUT_COOKIE)
    if not value:
        return None
    try:
        data = signing.loads(value, salt=LOGOUT_SALT, max_age=LOGOUT_COOKIE_AGE)
    except signing.BadSignature:  # forged, or older than LOGOUT_COOKIE_AGE
        return None
    if isinstance(data, list):  # the format before close-only cleanups: a logout's rooms
        data = {"rooms": data, "remove": True}
    if not isinstance(data, dict):
        return None
    rooms, remove = data.get("rooms"), data.get("remove")
    if not isinstance(rooms, list) or not all(isinstance(room, str) for room in rooms):
        return None
    if not isinstance(remove, bool):
        return None
    return Cleanup(tuple(rooms), remove)


def pending_cleanup(request: HttpRequest) -> Cleanup | None:
    """The browser cleanup still to run on this browser's next page, or ``None``."""
    state = _state(request)
    cleanup = state.cleanup if state.cleanup is not None else _cookie_cleanup(request)
    if cleanup is not None and state.logged_in:
        cleanup = CLOSE_ONLY
    return cleanup


def mark_logout_rendered(request: HttpRequest) -> None:
    """Called by ``{% giosg_logout %}``: the cleanup script is on this response's page."""
    _state(request).rendered = True


def _is_html_page(response: HttpResponseBase) -> bool:
    is_redirect = 300 <= response.status_code < 400
    return not is_redirect and response.get("Content-Type", "").startswith("text/html")


def carry_to_next_page(request: HttpRequest, response: HttpResponseBase) -> bool:
    """Set the cookie for a cleanup that this response does not show (noted in this request, or
    changed by a login in it); delete it once a page has shown it, or when it is no longer
    valid. Whether the response is about this browser's cleanup (it renders it, or sets or
    deletes the cookie): then no cache may keep it for others."""
    state = _state(request)
    cleanup = pending_cleanup(request)
    shown = state.rendered and _is_html_page(response)
    if cleanup is not None and not shown:
        if state.cleanup is not None or state.logged_in:  # new or changed: (re)write it
            response.set_cookie(
                LOGOUT_COOKIE,
                signing.dumps(
                    {"rooms": list(cleanup.rooms), "remove": cleanup.remove},
                    salt=LOGOUT_SALT,
                    compress=True,
                ),
                max_age=LOGOUT_COOKIE_AGE,
                **cookie_attributes(),
            )
    elif LOGOUT_COOKIE in request.COOKIES:
        response.delete_cookie(
            LOGOUT_COOKIE,
            path=django_settings.SESSION_COOKIE_PATH,
            domain=django_settings.SESSION_COOKIE_DOMAIN,
            samesite=django_settings.SESSION_COOKIE_SAMESITE,
        )
    return state.rendered or LOGOUT_COOKIE in response.cookies
