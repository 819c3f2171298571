"""Receivers of Django's auth signals: thin, defensive, never raising into the auth flow.

They read the visitor id from the session and hand over to :mod:`django_giosg.tasks`, which
changes the rows and enqueues the work on commit. Signals may come with ``user=None`` or without a
request (third-party auth code does this). ``logout()`` sends ``user_logged_out`` before it
flushes the session, so the session can still be read there; ``login()`` of another user flushes
the session *before* ``user_logged_in``, so the visitor id is taken from what
``GiosgMiddleware`` saw when the request came in (:mod:`django_giosg.request_notes`).

A binding belongs to the browser that made it (:mod:`django_giosg.device`): a login binds from
the request's browser, and a logout releases the links made in it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest

from . import browser_logout, device, request_notes, session, tasks
from .conf import get_settings
from .logs import short_id

logger = logging.getLogger(__name__)


def on_user_logged_in(
    sender: object, request: HttpRequest | None = None, user: Any = None, **kwargs: Any
) -> None:
    """Bind the session's visitor to the user and set the variables. In a browser whose session
    was bound to another user (a shared device), that user's binding ends first."""
    try:
        if request is None or user is None or not get_settings().enabled:
            return
        browser_logout.note_login(request)
        request_notes.keep_after_view(request)
        # Every logged-in browser has a device, so that its logout can release what a capture
        # racing it binds.
        here = device.device_of(request)
        store = request.session
        visitor_id = session.get_visitor_id(store)
        if visitor_id is None:
            # login() of another user flushed the session: keep the browser's visitor id.
            visitor_id, rooms = request_notes.visitor_before_view(request)
            if visitor_id is None:
                return  # not captured yet: the capture endpoint attaches when it arrives
            session.set_visitor_id(store, visitor_id, rooms)
        switched = _end_previous_user(request, session.user_key(user))
        plan = tasks.bind_session(user, store, here)
        if plan.refused:
            logger.warning(
                "django-giosg: the login bound nothing: visitor %s belongs to another browser",
                short_id(visitor_id),
            )
        elif plan.bound:  # (a rate limit is logged by the bind)
            device.note_binding(request, True)
            # a logout racing this login may delete the session before it is saved
            request_notes.confirm_after_view(request, plan.attach)
        if switched or plan.switched:
            browser_logout.note_close(request)  # the previous user's chats, in this browser
    except Exception:
        logger.exception("django-giosg could not attach the visitor at login")


def _end_previous_user(request: HttpRequest, user_key: str) -> bool:
    """Release the binding this browser's session held for another user; whether it had one."""
    before = request_notes.binding_before_view(request)
    previous, _rooms = request_notes.visitor_before_view(request)
    if before is None or before.user == user_key or previous is None:
        return False
    tasks.release_visitor(previous, before.user)
    return True


def on_user_logged_out(
    sender: object, request: HttpRequest | None = None, user: Any = None, **kwargs: Any
) -> None:
    """End the chats and remove the variables of what this browser's session bound: in giosg
    now, in the browser on the next page. A logout without a user (an anonymous session, or one
    that lost its user) releases, of other users' links, only the binding its own session
    recorded, as the session came in (``get_user()`` flushes a session whose password changed
    elsewhere before this signal). Either way, once the answer has been sent, every live link
    made in this browser is released too (see :mod:`django_giosg.middleware`)."""
    try:
        settings = get_settings()
        if request is None or not settings.enabled:
            return  # without a request there is no session to find the visitor in
        store = getattr(request, "session", {})
        browser_rooms = session.get_browser_rooms(store)
        rooms = list(dict.fromkeys([*settings.room_ids, *browser_rooms]))
        browser_logout.note_logout(request, rooms)
        binding = session.get_binding(store) or request_notes.binding_before_view(request)
        visitor_id = session.get_visitor_id(store)
        if visitor_id is None:
            visitor_id, _rooms = request_notes.visitor_before_view(request)
        owner = user.pk if user is not None else (binding.user if binding else None)
        if visitor_id is not None and owner is not None:
            tasks.release_visitor(visitor_id, owner)
        here = device.known_device(request)
        if here is not None:
            # Once the answer has been sent, when the session is flushed and a racing capture or
            # login has committed: every live link of this browser.
            request_notes.release_after_view(request, here)
            device.note_binding(request, False)
    except Exception:
        logger.exception("django-giosg could not detach the visitor at logout")


def on_user_pre_delete(sender: object, instance: Any = None, **kwargs: Any) -> None:
    """A deleted user's visitors are detached (their links outlive them until then)."""
    try:
        if instance is not None and instance.pk is not None:
            tasks.release_user(instance.pk)
    except Exception:
        logger.exception("django-giosg could not detach a deleted user's visitors")
