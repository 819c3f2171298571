"""Receivers of Django's auth signals: thin, defensive, never raising into the auth flow.

``user_logged_out`` may come with ``user=None`` or without a request (third-party auth code does
this); ``logout()`` sends it before it flushes the session, so the session can still be read here.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest

from . import middleware, session
from .conf import get_settings

logger = logging.getLogger("django_giosg")


def on_user_logged_out(
    sender: object, request: HttpRequest | None = None, user: object = None, **kwargs: Any
) -> None:
    """Have the next page close the browser's chats and remove its variables."""
    try:
        settings = get_settings()
        if request is None or not settings.enabled:
            return
        browser_rooms = session.get_browser_rooms(getattr(request, "session", {}))
        rooms = list(dict.fromkeys([*settings.room_ids, *browser_rooms]))
        middleware.note_logout(request, rooms)
    except Exception:
        logger.exception("django-giosg could not prepare the browser's logout")
