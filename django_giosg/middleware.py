"""``GiosgMiddleware``: the request-side duties of django-giosg.

For every request it opens the request's giosg budget (``INLINE_BUDGET``, see
:mod:`django_giosg.tasks`) and remembers the session's visitor id before the view runs, because a
login of another user flushes the session before ``user_logged_in`` is sent.

It keeps the session's binding in step with the session (see
:class:`~django_giosg.session.SessionBinding`), on the way out:

- a session bound for a user that no longer has that user (its password changed elsewhere, the
  user was deactivated, someone else took the session over) is detached;
- a logged-in session whose visitor is not bound (a session from before django-giosg, a user
  active again) is bound;
- when the session is about to be saved and its expiry moved by ``EXPIRY_REFRESH`` or more
  (sliding expiry, ``set_expiry()``), the link's recorded expiry follows, for ``giosg_sweep``.
  This costs no query on other requests.

It also carries the browser's share of a logout to the next page: at logout it sets a short-lived,
signed cookie naming the rooms to clean up, ``{% giosg_logout %}`` renders the cleanup script while
that cookie (or a logout in the same request) is there, and the middleware deletes the cookie on
the response whose HTML page rendered the tag. Redirects and non-HTML responses leave it in place.

Install it after ``SessionMiddleware`` and ``AuthenticationMiddleware`` (a system check says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings as django_settings
from django.contrib import auth
from django.contrib.sessions.backends.base import SessionBase
from django.core import signing
from django.http import HttpRequest, HttpResponseBase

from . import session, tasks
from .conf import get_settings
from .errors import GiosgConfigurationError

logger = logging.getLogger("django_giosg")

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


_BEFORE = "_django_giosg_before"


@dataclass(frozen=True)
class _Before:
    """What the session held when the request came in. Read before anything evaluates
    ``request.user``, which flushes a session whose password hash no longer verifies."""

    visitor_id: str | None = None
    rooms: list[str] = field(default_factory=list)
    binding: session.SessionBinding | None = None
    user_key: str | None = None  # the user id django.contrib.auth keeps in the session


@contextmanager
def _peek(store: SessionBase) -> Iterator[SessionBase]:
    """Read the session without marking it accessed: a page that does not use the session must
    not get ``Vary: Cookie`` because of us."""
    accessed = getattr(store, "accessed", None)
    try:
        yield store
    finally:
        if accessed is not None:
            store.accessed = accessed


def _remember_visitor(request: HttpRequest) -> None:
    store = getattr(request, "session", None)
    if store is None:
        return
    try:
        with _peek(store):
            user_key = store.get(auth.SESSION_KEY)
            before = _Before(
                session.get_visitor_id(store),
                session.get_browser_rooms(store),
                session.get_binding(store),
                user_key if isinstance(user_key, str) else None,
            )
    except GiosgConfigurationError:
        return  # reported by the system checks; never break the site over it
    setattr(request, _BEFORE, before)


def visitor_before_view(request: HttpRequest) -> tuple[str | None, list[str]]:
    """The visitor id and browser rooms the session held when the request came in."""
    before: _Before = getattr(request, _BEFORE, _Before())
    return before.visitor_id, before.rooms


def _keep_binding(request: HttpRequest, response: HttpResponseBase) -> None:
    """Keep the session's binding in step with the session (see :class:`GiosgMiddleware`)."""
    store: SessionBase | None = getattr(request, "session", None)
    before: _Before | None = getattr(request, _BEFORE, None)
    if store is None or before is None or not get_settings().enabled:
        return
    state = _state(request)
    if before.visitor_id is not None and not state.logged_in and state.rooms is None:
        # (a login or logout in this request was handled by the receivers)
        if before.binding is not None and not _is_user(request, before.binding.user):
            tasks.detach_visitor(before.visitor_id, before.binding.user)
            session.forget_binding(store)  # once; a flushed session has nothing to forget
            return
        if before.binding is None and before.user_key is not None:
            with _peek(store):
                unbound = session.get_binding(store) is None  # the capture view may have bound
            if unbound and _is_user(request, before.user_key):
                tasks.attach_session(request.user, store)
    _refresh_expiry(store, response)


def _is_user(request: HttpRequest, user_key: str) -> bool:
    """Whether the request is still that of the user ``user_key``. Evaluating ``request.user``
    here is what notices a password change (Django flushes the session) or a deactivated user
    (Django returns no user)."""
    user = getattr(request, "user", None)
    if user is None:
        return True  # no AuthenticationMiddleware (a system check says so): nothing to compare
    return bool(user.is_authenticated) and session.user_key(user) == user_key


def _refresh_expiry(store: SessionBase, response: HttpResponseBase) -> None:
    """When the session is about to be saved, its expiry may have moved: tell the link, at most
    once per ``EXPIRY_REFRESH`` (see :func:`session.expiry_moved`)."""
    saving = store.modified or django_settings.SESSION_SAVE_EVERY_REQUEST
    if not saving or response.status_code >= 500:  # SessionMiddleware saves nothing on a 5xx
        return
    with _peek(store):
        binding = session.get_binding(store)
        visitor_id = session.get_visitor_id(store)
        expires_at = session.expiry_date(store)
    if binding is None or visitor_id is None:
        return
    if session.expiry_moved(binding, expires_at, get_settings().expiry_refresh):
        tasks.note_session_expiry(visitor_id, binding.user, expires_at)
        session.record_binding(store, binding.user, expires_at)


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
            try:
                _keep_binding(request, response)
            except Exception:  # never break the site over giosg
                logger.exception("django-giosg could not keep the session's binding in step")
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
