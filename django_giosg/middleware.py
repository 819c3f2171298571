"""``GiosgMiddleware``: the request-side duties of django-giosg.

For every request it opens the request's giosg budget (``INLINE_BUDGET``, see
:mod:`django_giosg.tasks`) and remembers the session's visitor id before the view runs, because a
login of another user flushes the session before ``user_logged_in`` is sent.

It also carries the browser's share of a logout to the next page: at logout it sets a short-lived,
signed cookie naming the rooms to clean up, ``{% giosg_logout %}`` renders the cleanup script while
that cookie (or a logout in the same request) is there, and the middleware deletes the cookie on
the response whose HTML page rendered the tag. Redirects and non-HTML responses leave it in place.

Install it after ``SessionMiddleware`` and ``AuthenticationMiddleware`` (a system check says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings as django_settings
from django.core import signing
from django.http import HttpRequest, HttpResponseBase

from . import session, tasks
from .errors import GiosgConfigurationError

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


_BEFORE = "_django_giosg_visitor_before"


def _remember_visitor(request: HttpRequest) -> None:
    store = getattr(request, "session", None)
    if store is None:
        return
    # A peek: a page that does not use the session must not get "Vary: Cookie" because of us.
    accessed = getattr(store, "accessed", None)
    try:
        before = (session.get_visitor_id(store), session.get_browser_rooms(store))
    except GiosgConfigurationError:
        return  # reported by the system checks; never break the site over it
    finally:
        if accessed is not None:
            store.accessed = accessed
    setattr(request, _BEFORE, before)


def visitor_before_view(request: HttpRequest) -> tuple[str | None, list[str]]:
    """The visitor id and browser rooms the session held when the request came in."""
    before: tuple[str | None, list[str]] = getattr(request, _BEFORE, (None, []))
    return before


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


class GiosgMiddleware:
    """See the module's docstring."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        _remember_visitor(request)
        with tasks.request_budget():
            response = self.get_response(request)
        self._carry_logout(request, response)
        return response

    def _carry_logout(self, request: HttpRequest, response: HttpResponseBase) -> None:
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
