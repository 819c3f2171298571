"""``GiosgMiddleware``: the request-side duties of django-giosg.

For every request it opens the request's giosg budget (``INLINE_BUDGET``, see
:mod:`django_giosg.limits`) and remembers the session's visitor id before the view runs, because a
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

After a logout, a capture or a login, once the view's transaction has committed, it makes sure
no binding outlives its session when another request of the same browser races this one (the
receivers and the view note what to check, :mod:`django_giosg.request_notes`):

- after a logout, once its answer has been sent, every live link made in this browser is
  released: a capture or a login racing the logout may have bound a visitor the logout's session
  did not know of;
- after a capture or a login bound a visitor in the session the request came with, the session
  is read again from its store: if a logout in another request deleted it meanwhile, the binding
  is released. (A session whose key was made in this request, as ``login()`` rotates it, is
  known to no other request yet: nothing to read.)

It sets the browser's device cookie when the request used it (see :mod:`django_giosg.device`),
and carries the browser's share of an ending to the next page (see
:mod:`django_giosg.browser_logout`): after a logout, a user switch or a session that lost its
user, and on the first page of a browser (without a bound session) whose binding ended while it
was away. Responses that set these cookies, or show something of this browser's (the cleanup, the
session's visitor id), are marked ``private, no-store`` and vary on ``Cookie``, so that no cache
hands them to another browser (see :mod:`django_giosg.caching`).

Install it after ``SessionMiddleware`` and ``AuthenticationMiddleware`` (a system check says so).
It is sync- and async-capable: under ASGI Django calls it without adapting it, and only its
session and database work runs in a thread (``sync_to_async``, once before the view and once
after).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings as django_settings
from django.contrib import auth
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponseBase

from . import browser_logout, caching, device, request_notes, session, tasks
from .conf import get_settings
from .errors import GiosgConfigurationError
from .limits import request_budget

logger = logging.getLogger(__name__)


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
            before = request_notes.Before(
                session.get_visitor_id(store),
                session.get_browser_rooms(store),
                session.get_binding(store),
                user_key if isinstance(user_key, str) else None,
                session.get_device(store),
                store.session_key,  # (None once loaded, if the browser's session is gone)
            )
    except GiosgConfigurationError:
        return  # reported by the system checks; never break the site over it
    request_notes.note_before_view(request, before)


def _before_view(request: HttpRequest) -> None:
    _remember_visitor(request)
    try:
        _close_ended_binding(request)
    except Exception:
        logger.exception("django-giosg could not look for this browser's ended bindings")


def _close_ended_binding(request: HttpRequest) -> None:
    """A browser without a bound session, whose binding ended while it was away (the sweep
    detached it, or another browser took its expired binding over), closes the chat window on
    this page (see :mod:`django_giosg.browser_logout`). Asked only by page navigations of
    browsers whose device cookie says they may have such a binding: one query, until the
    binding's end has been handed out."""
    before = request_notes.before_view(request)
    if before is None or before.binding is not None or not get_settings().enabled:
        return
    here = device.device_with_binding(request)
    if here is None or not _navigates(request):
        return
    closes = tasks.take_browser_closes(here)
    if closes.close:
        browser_logout.note_close(request)
    if not closes.live:
        device.note_binding(request, False)  # nothing more to learn: no more queries


def _navigates(request: HttpRequest) -> bool:
    """Whether the request loads a page (not a script's fetch, whose answer renders nothing)."""
    if request.method != "GET":
        return False
    destination = request.headers.get("Sec-Fetch-Dest")
    if destination is not None:
        return destination == "document"
    accept = request.headers.get("Accept")
    return accept is None or "text/html" in accept


def _settle(request: HttpRequest, response: HttpResponseBase) -> None:
    """The checks noted for after the view (:class:`request_notes.After
    <django_giosg.request_notes.After>`), once its transaction has committed."""
    after = request_notes.after_view(request)
    if after is None or not get_settings().enabled:
        return
    if after.released_devices and response.status_code < 500:  # (a failed logout may have
        # been rolled back) Once the answer has been sent: a capture or login racing the logout
        # has then committed what it bound, or its own answer reaches the browser after this one.
        devices = list(after.released_devices)
        closers: list[Callable[[], None]] = response._resource_closers  # type: ignore[attr-defined]
        closers.append(partial(_release_devices, devices))
    store: SessionBase | None = getattr(request, "session", None)
    if (
        after.bound
        and store is not None
        and _known_elsewhere(request, store)
        and session.still_stored(store) is False
    ):
        logger.info("django-giosg: the session was deleted while it bound a visitor; released")
        tasks.release_links(after.bound)


def _known_elsewhere(request: HttpRequest, store: SessionBase) -> bool:
    """Whether another request can know the session's key, and so have deleted the session:
    only if the session came in with the request. A key made in this request (``login()``
    rotates it) reaches the browser with this answer, so a login needs no query to know its
    session is still there."""
    key = store.session_key
    before = request_notes.before_view(request)
    return key is not None and (before is None or key == before.session_key)


def _release_devices(devices: list[str]) -> None:
    """Release every live link made on ``devices`` (after a logout's answer was sent), within a
    request's budget; never raises (Django ignores a closer's errors, unlogged)."""
    try:
        with request_budget():
            tasks.release_devices_after_response(devices)
    except Exception:
        logger.exception("django-giosg could not release the browser's bindings after a logout")


def _keep_binding(request: HttpRequest, response: HttpResponseBase) -> None:
    """Keep the session's binding in step with the session (see :class:`GiosgMiddleware`),
    never breaking the site over giosg."""
    try:
        _keep_binding_in_step(request, response)
    except Exception:
        logger.exception("django-giosg could not keep the session's binding in step")
    try:
        _settle(request, response)
    except Exception:
        logger.exception("django-giosg could not check the session's bindings after the view")


def _keep_binding_in_step(request: HttpRequest, response: HttpResponseBase) -> None:
    store: SessionBase | None = getattr(request, "session", None)
    before = request_notes.before_view(request)
    if store is None or before is None or not get_settings().enabled:
        return
    # (a login or logout in this request was handled by the receivers)
    if before.visitor_id is not None and not browser_logout.logged_in_or_out(request):
        if before.binding is not None and not _is_user(request, before.binding.user):
            tasks.release_visitor(before.visitor_id, before.binding.user)
            session.forget_binding(store)  # once; a flushed session has nothing to forget
            browser_logout.note_close(request)
            return
        if before.binding is None and before.user_key is not None:
            with _peek(store):
                unbound = session.get_binding(store) is None  # the capture view may have bound
            if unbound and _is_user(request, before.user_key):
                plan = tasks.bind_session(request.user, store, device.device_of(request))
                if plan.bound:
                    device.note_binding(request, True)
                    request_notes.confirm_after_view(request, plan.attach)
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
        tasks.follow_session_expiry(visitor_id, binding.user, expires_at)
        session.record_binding(store, binding.user, expires_at)


def _to_browser(request: HttpRequest, response: HttpResponseBase) -> None:
    """The cookies: the device's, and the browser's share of an ending; a response about this
    browser must not be cached for others (see :mod:`django_giosg.caching`)."""
    set_device = device.set_device_cookie(request, response)
    carried = browser_logout.carry_to_next_page(request, response)
    if carried or set_device or caching.kept_private(request):
        caching.mark_private(response)


_GetResponse = Callable[[HttpRequest], HttpResponseBase]
_GetResponseAsync = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class GiosgMiddleware:
    """See the module's docstring."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: _GetResponse | _GetResponseAsync) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)  # so that Django awaits this middleware

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        with request_budget():
            _before_view(request)
            response = cast(_GetResponse, self.get_response)(request)
            _keep_binding(request, response)
        _to_browser(request, response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        """The same under ASGI: the session and the database are used from a thread."""
        with request_budget():  # a context variable: the thread's calls share the budget
            await sync_to_async(_before_view)(request)
            response = await cast(_GetResponseAsync, self.get_response)(request)
            await sync_to_async(_keep_binding)(request, response)
        _to_browser(request, response)
        return response
