"""What one request notes for later in the same request.

``GiosgMiddleware`` notes how the session came in, before the view (a login of another user, or a
password change elsewhere, flushes it before the receivers run); the receivers and the capture view
note the checks due once the view's transaction has committed, which the middleware runs. Entry
points share these notes here rather than reaching into one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import HttpRequest

from .session import SessionBinding

_BEFORE = "_django_giosg_before"
_AFTER = "_django_giosg_after"


@dataclass(frozen=True)
class Before:
    """What the session held when the request came in, read before anything evaluated
    ``request.user``."""

    visitor_id: str | None = None
    rooms: list[str] = field(default_factory=list)
    binding: SessionBinding | None = None
    user_key: str | None = None  # the user id django.contrib.auth keeps in the session
    device: str | None = None  # the device digest the session noted
    session_key: str | None = None  # the key of the session the request came with


@dataclass
class After:
    """The checks due after the view: devices whose live links a logout ends once its answer
    has been sent, and links a capture or login bound whose session must still be stored."""

    released_devices: list[str] = field(default_factory=list)
    bound: list[int] = field(default_factory=list)


def note_before_view(request: HttpRequest, before: Before) -> None:
    setattr(request, _BEFORE, before)


def before_view(request: HttpRequest) -> Before | None:
    """How the session came in, or ``None`` when the middleware did not see it."""
    before: Before | None = getattr(request, _BEFORE, None)
    return before


def visitor_before_view(request: HttpRequest) -> tuple[str | None, list[str]]:
    """The visitor id and browser rooms the session held when the request came in."""
    before = before_view(request) or Before()
    return before.visitor_id, before.rooms


def binding_before_view(request: HttpRequest) -> SessionBinding | None:
    """The binding the session held when the request came in."""
    return (before_view(request) or Before()).binding


def after_view(request: HttpRequest) -> After | None:
    after: After | None = getattr(request, _AFTER, None)
    return after


def _after(request: HttpRequest) -> After:
    after = after_view(request)
    if after is None:
        after = After()
        setattr(request, _AFTER, after)
    return after


def release_after_view(request: HttpRequest, device: str) -> None:
    """A logout: release the live links made on ``device`` after the view, when the session is
    flushed and a capture or login racing the logout has committed what it bound."""
    _after(request).released_devices.append(device)


def keep_after_view(request: HttpRequest) -> None:
    """A login after a logout in the same request: its binding stays."""
    _after(request).released_devices.clear()


def confirm_after_view(request: HttpRequest, link_id: int | None) -> None:
    """A capture or login bound ``link_id``: release it after the view if its session was
    deleted meanwhile (a logout in another request)."""
    if link_id is not None:
        _after(request).bound.append(link_id)
