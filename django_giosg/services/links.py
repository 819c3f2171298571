"""The link rows' changes that entry points ask for: bind, release, reset, follow the expiry.

These change rows only, never call giosg: the tasks then attach or detach the links returned.
Each change is one of the transitions of :class:`~django_giosg.models.VisitorLink`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from .. import clock
from ..conf import GiosgSettings
from ..logs import short_id
from ..models import State, VisitorLink, VisitorLinkQuerySet, write_db

logger = logging.getLogger(__name__)

#: Binds in a row that may lose to concurrent binds of the same visitor before one gives up.
#: Each loss means another login created the visitor's live link between our read and our insert;
#: five in a row would take five logins of one visitor within milliseconds, which is an attack or
#: a bug, not a user.
BIND_TRIES = 5


@dataclass
class BindPlan:
    """What :func:`bind` decided: the link to attach, and older links to detach first."""

    attach: int | None = None
    detach: list[int] = field(default_factory=list)
    #: Nothing was bound: the visitor is another browser's binding, and its session lives.
    refused: bool = False
    #: A binding of another user made from the same browser was superseded (a user switch).
    switched: bool = False


def stale_after(settings: GiosgSettings, now: datetime | None = None) -> datetime:
    """When the sweep takes over a link whose task is enqueued now (or at ``now``), in case the
    task is lost."""
    start = clock.now() if now is None else now
    return start + timedelta(seconds=settings.pending_stale_after)


def ended_by(settings: GiosgSettings) -> datetime:
    """A live link whose recorded session expiry is before this has an ended session (what the
    sweep takes for expired)."""
    return clock.now() - timedelta(seconds=settings.expiry_grace)


def bind(
    user: Any,
    visitor_id: str,
    settings: GiosgSettings,
    *,
    device: str = "",
    browser_rooms: Sequence[str] = (),
    session_expires_at: datetime | None = None,
) -> BindPlan:
    """Bind ``visitor_id`` to ``user`` from the browser ``device``: a new ``pending_attach``
    link, or the user's live link with the new browser rooms.

    A live link of another user is superseded (it becomes ``pending_detach`` and is returned to
    be detached first) only when it was made from the same browser (a user switch) or its
    session has ended (see :meth:`VisitorLink.held_elsewhere
    <django_giosg.models.VisitorLink.held_elsewhere>`). Otherwise nothing changes and the plan
    says ``refused``: a visitor id is no secret, and knowing one must not let anybody end
    another person's chats or put their own name on them.

    Two concurrent binds of one visitor cannot both create a live link (the unique
    ``live_visitor_id``); the loser reads the winner's link and applies the same rule to it.
    """
    plan = BindPlan()
    rooms = list(dict.fromkeys(browser_rooms)) if settings.use_browser_rooms else []
    for _attempt in range(BIND_TRIES):
        live = VisitorLink.objects.filter(visitor_id=visitor_id).live().first()
        if live is not None and live.user_id == user.pk:
            merged = list(dict.fromkeys([*live.browser_rooms, *rooms]))
            if live.state == State.ATTACHED and merged == live.browser_rooms:
                live.follow_expiry(session_expires_at, device)
                return plan  # bound already, and nothing new to set
            if live.rebind(merged, stale_after(settings), session_expires_at, device):
                plan.attach = live.pk
                return plan
            continue  # it changed meanwhile: look again
        if live is not None:
            if live.held_elsewhere(device, ended_by(settings)):
                logger.warning(
                    "django-giosg bound nothing: another browser's live session holds visitor %s",
                    short_id(visitor_id),
                )
                plan.refused = True
                return plan
            here = bool(live.device) and live.device == device
            if live.supersede(stale_after(settings), close_in_browser=not here):
                plan.detach.append(live.pk)
                plan.switched = plan.switched or here
        try:
            with transaction.atomic(using=write_db(VisitorLink)):
                link = VisitorLink.objects.create(
                    visitor_id=visitor_id,
                    user=user,
                    device=device,
                    browser_rooms=rooms,
                    next_attempt_at=stale_after(settings),
                    session_expires_at=session_expires_at,
                )
        except IntegrityError:
            continue  # another login created the live link first: decide on that one
        plan.attach = link.pk
        return plan
    logger.error(
        "Could not bind visitor %s: %d concurrent logins in a row won",
        short_id(visitor_id),
        BIND_TRIES,
    )
    return plan


def release_visitor(visitor_id: str, user_id: Any, settings: GiosgSettings) -> list[int]:
    """A session of ``user_id`` with ``visitor_id`` ended (logout, lost user, a user switch):
    the visitor's links of that user, and no one else's."""
    links: VisitorLinkQuerySet = VisitorLink.objects.filter(visitor_id=visitor_id, user_id=user_id)
    return links.release(stale_after(settings))


def release_device(user_id: Any, device: str, settings: GiosgSettings) -> list[int]:
    """``user_id`` logged out in the browser ``device``: every live link of theirs made there,
    whatever visitor id the session held (a capture or login racing the logout may have bound
    another). Links being detached already are left to their detach."""
    links: VisitorLinkQuerySet = (
        VisitorLink.objects.of_device(device).filter(user_id=user_id).live()
    )
    return links.release(stale_after(settings))


def take_browser_closes(device: str) -> bool:
    """Whether links of the browser ``device`` ended while it was away (an expired session): the
    browser is to close the chat window now. Each is handed out once."""
    ids = list(
        VisitorLink.objects.of_device(device)
        .filter(close_in_browser=True)
        .values_list("pk", flat=True)
    )
    if not ids:
        return False
    taken: int = VisitorLink.objects.filter(pk__in=ids, close_in_browser=True).update(
        close_in_browser=False
    )
    return taken > 0


def release_user(user_id: Any, settings: GiosgSettings) -> list[int]:
    """The user is being deleted: all their links."""
    links: VisitorLinkQuerySet = VisitorLink.objects.filter(user_id=user_id)
    return links.release(stale_after(settings))


def release_links(ids: Iterable[int], settings: GiosgSettings) -> list[int]:
    """The admin's "detach now"."""
    links: VisitorLinkQuerySet = VisitorLink.objects.filter(pk__in=list(ids))
    return links.release(stale_after(settings))


def reset_failed(ids: Iterable[int], settings: GiosgSettings) -> list[tuple[int, str]]:
    """The admin's "retry": failed links go back to ``pending_<action>`` with no attempts;
    returns ``(id, action)`` of each link reset (see :meth:`VisitorLink.reset
    <django_giosg.models.VisitorLink.reset>`)."""
    reset: list[tuple[int, str]] = []
    for link in VisitorLink.objects.filter(pk__in=list(ids), state=State.FAILED):
        action = link.reset(stale_after(settings))
        if action is not None:
            reset.append((link.pk, action))
    return reset


def record_session_expiry(visitor_id: str, user_id: Any, expires_at: datetime) -> int:
    """The session's expiry moved (sliding expiry, ``set_expiry``): the visitor's live link of
    ``user_id`` follows it, so that the sweep never takes a live session for an ended one."""
    links: VisitorLinkQuerySet = VisitorLink.objects.filter(visitor_id=visitor_id, user_id=user_id)
    return links.follow_expiry(expires_at)
