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


def stale_after(settings: GiosgSettings, now: datetime | None = None) -> datetime:
    """When the sweep takes over a link whose task is enqueued now (or at ``now``), in case the
    task is lost."""
    start = clock.now() if now is None else now
    return start + timedelta(seconds=settings.pending_stale_after)


def bind(
    user: Any,
    visitor_id: str,
    settings: GiosgSettings,
    *,
    browser_rooms: Sequence[str] = (),
    session_expires_at: datetime | None = None,
) -> BindPlan:
    """Bind ``visitor_id`` to ``user``: a new ``pending_attach`` link, or the user's live link
    with the new browser rooms. A live link of another user is superseded (one visitor, one
    user): it becomes ``pending_detach`` and is returned to be detached first.

    Two concurrent binds of one visitor cannot both create a live link (the unique
    ``live_visitor_id``); the loser reads the winner's link and supersedes it in turn.
    """
    plan = BindPlan()
    rooms = list(dict.fromkeys(browser_rooms)) if settings.use_browser_rooms else []
    for _attempt in range(BIND_TRIES):
        live = VisitorLink.objects.filter(visitor_id=visitor_id).live().first()
        if live is not None and live.user_id == user.pk:
            merged = list(dict.fromkeys([*live.browser_rooms, *rooms]))
            if live.state == State.ATTACHED and merged == live.browser_rooms:
                live.follow_expiry(session_expires_at)
                return plan  # bound already, and nothing new to set
            if live.rebind(merged, stale_after(settings), session_expires_at):
                plan.attach = live.pk
                return plan
            continue  # it changed meanwhile: look again
        if live is not None and live.supersede(stale_after(settings)):
            plan.detach.append(live.pk)
        try:
            with transaction.atomic(using=write_db(VisitorLink)):
                link = VisitorLink.objects.create(
                    visitor_id=visitor_id,
                    user=user,
                    browser_rooms=rooms,
                    next_attempt_at=stale_after(settings),
                    session_expires_at=session_expires_at,
                )
        except IntegrityError:
            continue  # another login created the live link first: supersede it
        plan.attach = link.pk
        return plan
    logger.error(
        "Could not bind visitor %s: %d concurrent logins in a row won", visitor_id, BIND_TRIES
    )
    return plan


def release_visitor(visitor_id: str, user_id: Any, settings: GiosgSettings) -> list[int]:
    """The session ended (logout): the visitor's links of ``user_id`` (any user's if ``None``)."""
    links: VisitorLinkQuerySet = VisitorLink.objects.filter(visitor_id=visitor_id)
    if user_id is not None:
        links = links.filter(user_id=user_id)
    return links.release(stale_after(settings))


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
