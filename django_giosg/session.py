"""The visitor id in the Django session: where it is kept, what a valid one looks like.

The id comes from the browser, so it is untrusted: it is checked against
``GIOSG["VISITOR_ID_PATTERN"]`` with :func:`re.fullmatch` (a trailing newline fails) and, whatever
the pattern, it must be a plain URL path segment, because it goes into giosg's URL paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from django.contrib.sessions.backends import db, signed_cookies
from django.contrib.sessions.backends.base import SessionBase
from django.db import router

from .conf import get_settings

SESSION_KEY = "django_giosg.visitor_id"
ROOMS_SESSION_KEY = "django_giosg.rooms"
CAPTURES_SESSION_KEY = "django_giosg.captures"
BINDING_SESSION_KEY = "django_giosg.binding"
DEVICE_SESSION_KEY = "django_giosg.device"

CAPTURE_WINDOW = 3600.0  # seconds: CAPTURE_RATE counts distinct ids in a sliding hour

# Whatever VISITOR_ID_PATTERN allows: unreserved URL characters only, never "." or "..".
_PATH_SAFE = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


# What the functions below read and write: Django's session, or a plain dict in tests.
Session: TypeAlias = SessionBase | MutableMapping[str, Any]


class InvalidVisitorId(ValueError):
    """The browser sent something that is not a visitor id; the message says what is wrong."""


def validate_visitor_id(value: object) -> str:
    """Return ``value`` if it is a valid visitor id, else raise :class:`InvalidVisitorId`."""
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise InvalidVisitorId(f"visitor_id must be a string, not {kind}")
    pattern = get_settings().visitor_id_pattern
    if not pattern.fullmatch(value) or not _PATH_SAFE.fullmatch(value):
        raise InvalidVisitorId(
            f"visitor_id does not look like a giosg visitor id (pattern {pattern.pattern!r})"
        )
    return value


def get_visitor_id(session: Session) -> str | None:
    """The visitor id stored in ``session``, or ``None``; a stored value that is no longer valid
    (the pattern changed) is treated as absent."""
    value = session.get(SESSION_KEY)
    if value is None:
        return None
    try:
        return validate_visitor_id(value)
    except InvalidVisitorId:
        return None


def get_browser_rooms(session: Session) -> list[str]:
    """The owned rooms the browser reported for the stored visitor id."""
    rooms = session.get(ROOMS_SESSION_KEY)
    if not isinstance(rooms, list):
        return []
    return [room for room in rooms if isinstance(room, str)]


def set_visitor_id(session: Session, visitor_id: str, rooms: Iterable[str] = ()) -> bool:
    """Store ``visitor_id`` (validated) and its browser rooms; return whether anything changed.

    For the same id the rooms are merged with those already stored; a new id replaces them.
    Nothing is written when nothing changed, so an unchanged capture does not save the session.
    """
    validate_visitor_id(visitor_id)
    previous = get_visitor_id(session)
    known = get_browser_rooms(session) if previous == visitor_id else []
    merged = list(dict.fromkeys([*known, *rooms]))
    if previous == visitor_id and merged == known:
        return False
    session[SESSION_KEY] = visitor_id
    if merged:
        session[ROOMS_SESSION_KEY] = merged
    else:
        session.pop(ROOMS_SESSION_KEY, None)
    return True


def _recent_captures(session: Session, now: float) -> dict[str, float]:
    captures = session.get(CAPTURES_SESSION_KEY)
    if not isinstance(captures, Mapping):
        return {}
    return {
        visitor_id: float(when)
        for visitor_id, when in captures.items()
        if isinstance(when, (int, float)) and now - CAPTURE_WINDOW < when <= now
    }


def capture_allowed(session: Session, visitor_id: str, now: float, rate: int) -> bool:
    """Whether ``session`` may capture ``visitor_id`` now: an id already captured within the hour
    always may; a new one only while fewer than ``rate`` distinct ids were captured."""
    recent = _recent_captures(session, now)
    return visitor_id in recent or len(recent) < rate


def record_capture(session: Session, visitor_id: str, now: float) -> None:
    """Count an accepted capture of ``visitor_id`` towards the session's rate (see above)."""
    recent = _recent_captures(session, now)
    if visitor_id in recent:
        return  # counted already; the window starts at the id's first capture
    recent[visitor_id] = now
    session[CAPTURES_SESSION_KEY] = recent


# The keys django-giosg keeps in a session.
_OUR_KEYS = (
    SESSION_KEY,
    ROOMS_SESSION_KEY,
    CAPTURES_SESSION_KEY,
    BINDING_SESSION_KEY,
    DEVICE_SESSION_KEY,
)


_MODIFIED = "django_giosg.modified"  # (in a snapshot only: whether the session was modified)


def snapshot(session: Session) -> dict[str, Any]:
    """django-giosg's part of ``session``, to :func:`restore` if a change must be undone."""
    saved = {key: session[key] for key in _OUR_KEYS if key in session}
    saved[_MODIFIED] = getattr(session, "modified", None)
    return saved


def restore(session: Session, saved: Mapping[str, Any]) -> None:
    """Put django-giosg's part of ``session`` back as :func:`snapshot` saw it, and whether it
    was modified: a session that is as it was is not saved again."""
    for key in _OUR_KEYS:
        if key in saved and session.get(key) != saved[key]:
            session[key] = saved[key]
        elif key not in saved and key in session:
            del session[key]
    if isinstance(session, SessionBase) and isinstance(saved[_MODIFIED], bool):
        session.modified = saved[_MODIFIED]


def forget_visitor(session: Session) -> None:
    """The session no longer has a visitor id (nor its rooms): the capture script sends it
    again."""
    session.pop(SESSION_KEY, None)
    session.pop(ROOMS_SESSION_KEY, None)


def still_stored(store: SessionBase) -> bool | None:
    """Whether ``store``'s session is still in the session store (a logout in another request
    deletes it), or ``None`` when that cannot be asked: a session new in this request (``login()``
    of another user flushed the old one) is not stored yet, and ``signed_cookies`` keeps the
    session in the browser only."""
    key = store.session_key
    if key is None or isinstance(store, signed_cookies.SessionStore):
        return None
    if isinstance(store, db.SessionStore):  # (and cached_db) asked where it is written: a
        # replica that lags would not have a session this request has just created
        sessions = store.model._default_manager.using(router.db_for_write(store.model))
        stored: bool = sessions.filter(session_key=key).exists()
        return stored
    return bool(store.exists(key))


def get_device(session: Session) -> str | None:
    """The device digest the session noted (see :func:`django_giosg.device.known_device`)."""
    value = session.get(DEVICE_SESSION_KEY)
    if isinstance(value, str) and _DIGEST.fullmatch(value):
        return value
    return None


def note_device(session: Session, device: str) -> None:
    """Note the browser's device digest in its session (written only when it changes)."""
    if session.get(DEVICE_SESSION_KEY) != device:
        session[DEVICE_SESSION_KEY] = device


# -- the session's binding ------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionBinding:
    """What the session knows of its visitor's binding: the user it was made for (as Django's
    session stores a user id) and the session expiry last recorded on the link (a POSIX timestamp).

    With it the middleware notices a session that lost its user, and refreshes the link's expiry
    only when it moved, without a database query on every request.
    """

    user: str
    expires: float


def user_key(user: Any) -> str:
    """``user``'s id as ``django.contrib.auth`` keeps it in the session."""
    return str(user._meta.pk.value_to_string(user))


def get_binding(session: Session) -> SessionBinding | None:
    value = session.get(BINDING_SESSION_KEY)
    if not isinstance(value, Mapping):
        return None
    user, expires = value.get("user"), value.get("expires")
    if not isinstance(user, str) or not isinstance(expires, (int, float)):
        return None
    return SessionBinding(user, float(expires))


def record_binding(
    session: SessionBase, user: str, expires_at: datetime | None = None
) -> datetime:
    """Note in ``session`` that its visitor is bound to ``user`` (a :func:`user_key`) with the
    session's expiry as it is now (or ``expires_at``); returns it, to record on the link."""
    expiry = expires_at if expires_at is not None else expiry_date(session)
    session[BINDING_SESSION_KEY] = {"user": user, "expires": expiry.timestamp()}
    return expiry


def forget_binding(session: Session) -> None:
    session.pop(BINDING_SESSION_KEY, None)


def expiry_date(session: SessionBase) -> datetime:
    """When the session ends on the server if it is saved now: what Django's backends (db,
    cached_db, cache, file, signed_cookies) all derive from ``get_expiry_date()``. A session that
    ends when the browser closes still lasts ``SESSION_COOKIE_AGE`` on the server."""
    return session.get_expiry_date()


def expiry_moved(binding: SessionBinding, expires_at: datetime, refresh: int) -> bool:
    """Whether the session's expiry moved by ``EXPIRY_REFRESH`` or more since it was recorded:
    with sliding expiry that is at most once per ``EXPIRY_REFRESH``. A smaller move is within
    ``EXPIRY_GRACE`` (which is at least ``EXPIRY_REFRESH``), so the sweep never takes it for an
    ended session."""
    return abs(expires_at.timestamp() - binding.expires) >= refresh
