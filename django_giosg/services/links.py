"""The link rows' changes that entry points ask for: bind, release, reset, follow the expiry,
and hand a browser the closes of its bindings that ended while it was away.

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
from django.db.models import Q

from .. import clock
from ..conf import GiosgSettings
from ..logs import short_id
from ..models import LIVE_STATES, State, VisitorLink, VisitorLinkQuerySet, write_db
from .origins import claim_visitor, refresh_origin

logger = logging.getLogger(__name__)

#: Binds in a row that may lose to concurrent binds of the same visitor before one gives up.
#: Each loss means another login created the visitor's live link between our read and our insert;
#: five in a row would take five logins of one visitor within milliseconds, which is an attack or
#: a bug, not a user.
BIND_TRIES = 5
#: The sliding window of ``USER_CAPTURE_RATE``.
RATE_WINDOW = timedelta(hours=1)
#: How many times a user may bind each of their ``USER_CAPTURE_RATE`` visitor ids within the
#: window (log out and in again, switch between two ids): every binding costs giosg calls, for
#: the variables at login and for the cleanup at logout, whether its id is new or not.
BINDINGS_PER_ID = 3


@dataclass
class BindPlan:
    """What :func:`bind` decided: the link to attach, and older links to detach first."""

    attach: int | None = None
    detach: list[int] = field(default_factory=list)
    #: Nothing was bound: the visitor id belongs to another browser, or is its live binding.
    refused: bool = False
    #: Nothing was bound: the user bound ``USER_CAPTURE_RATE`` other visitor ids within the hour.
    rate_limited: bool = False
    #: A binding of another user made from the same browser was superseded (a user switch).
    switched: bool = False

    @property
    def bound(self) -> bool:
        """Whether nothing refused the bind (the id's browser, the rate): whatever there was to
        bind is bound, or being bound (and nothing, while GIOSG is disabled)."""
        return not (self.refused or self.rate_limited)


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
    device: str,
    browser_rooms: Sequence[str] = (),
    session_expires_at: datetime | None = None,
) -> BindPlan:
    """Bind ``visitor_id`` to ``user`` from the browser ``device``: a new ``pending_attach``
    link, or the user's live link with the new browser rooms.

    Nothing changes, and the plan says ``refused``, when the visitor id belongs to another
    browser (:func:`~django_giosg.services.origins.claim_visitor`) or is another browser's live
    binding whose session has not ended (:meth:`VisitorLink.held_elsewhere
    <django_giosg.models.VisitorLink.held_elsewhere>`, for links made before the origins were
    recorded): a visitor id is no secret, and knowing one must not let anybody end another
    person's chats or put their own name on them. A live link of another user made from this
    browser (a user switch), or whose session has ended, is superseded: it becomes
    ``pending_detach`` and is returned to be detached first. Nothing changes either, and the
    plan says ``rate_limited``, when the user is over ``USER_CAPTURE_RATE``.

    Two concurrent binds of one visitor cannot both create a live link (the unique
    ``live_visitor_id``); the loser reads the winner's link and applies the same rule to it.
    """
    plan = BindPlan()
    if over_user_rate(user.pk, visitor_id, settings):
        return _rate_limited(user.pk, settings, plan)
    if not claim_visitor(visitor_id, device, settings, user_id=user.pk):
        return _refused(visitor_id)
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
        if live is not None:  # another user's: this browser's, or its session has ended (the
            # claim refused a live one of another browser)
            here = live.device == device
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
        if over_user_rate(user.pk, visitor_id, settings, made=link.pk):
            # Concurrent binds of the user got in first: this one, the last of them, gives way.
            # Nothing was set at giosg yet (the attach is enqueued once this returns).
            VisitorLink.objects.filter(pk=link.pk, state=State.PENDING_ATTACH).delete()
            return _rate_limited(user.pk, settings, plan)
        plan.attach = link.pk
        return plan
    logger.error(
        "Could not bind visitor %s: %d concurrent logins in a row won",
        short_id(visitor_id),
        BIND_TRIES,
    )
    return plan


def over_user_rate(
    user_id: Any, visitor_id: str, settings: GiosgSettings, *, made: int | None = None
) -> bool:
    """Whether binding ``visitor_id`` now would take the user over ``USER_CAPTURE_RATE``: more
    distinct visitor ids bound within the last hour than the rate, or more bindings than
    :data:`BINDINGS_PER_ID` times it. Counted on the links, where every process sees them: one
    account must not spend the organization's giosg quota, however many sessions it opens. An
    id the user holds live binds again without a new binding (nothing to count).

    ``made``: the link this bind has just created, counted with the user's links made before it
    (a lower id), so that of concurrent binds over the rate the last ones give way."""
    rate = settings.user_capture_rate
    if rate is None:
        return False
    mine = VisitorLink.objects.filter(user_id=user_id)
    window_start = clock.now() - RATE_WINDOW
    recent = Q(created_at__gte=window_start)
    if made is not None:
        bound = list(mine.filter(recent, pk__lte=made).values_list("visitor_id", flat=True))
    else:  # (one query: the user's recent links, and their live link of this id if older)
        held = Q(visitor_id=visitor_id, state__in=LIVE_STATES)
        rows = list(mine.filter(recent | held).values_list("visitor_id", "state", "created_at"))
        if any(row[0] == visitor_id and row[1] in LIVE_STATES for row in rows):
            return False
        bound = [row[0] for row in rows if row[2] >= window_start]
        bound.append(visitor_id)  # the binding asked for
    return len(bound) > rate * BINDINGS_PER_ID or len(set(bound)) > rate


def _rate_limited(user_id: Any, settings: GiosgSettings, plan: BindPlan) -> BindPlan:
    logger.warning(
        "django-giosg bound nothing: user %s is at USER_CAPTURE_RATE (%d visitor ids, %d "
        "bindings within the hour)",
        user_id,
        settings.user_capture_rate,
        (settings.user_capture_rate or 0) * BINDINGS_PER_ID,
    )
    plan.rate_limited = True
    return plan


def _refused(visitor_id: str) -> BindPlan:
    logger.info(
        "django-giosg bound nothing: visitor %s belongs to another browser", short_id(visitor_id)
    )
    return BindPlan(refused=True)


def release_visitor(visitor_id: str, user_id: Any, settings: GiosgSettings) -> list[int]:
    """A session of ``user_id`` with ``visitor_id`` ended (logout, lost user, a user switch):
    the visitor's links of that user, and no one else's."""
    links: VisitorLinkQuerySet = VisitorLink.objects.filter(visitor_id=visitor_id, user_id=user_id)
    return links.release(stale_after(settings))


def release_device(device: str, settings: GiosgSettings) -> list[int]:
    """A logout in the browser ``device``: every live link made there, whoever it binds and
    whatever visitor id the session held (a capture or login racing the logout may have bound
    another; a browser has one session). Links being detached already are left to their
    detach."""
    links: VisitorLinkQuerySet = VisitorLink.objects.of_device(device).live()
    return links.release(stale_after(settings))


@dataclass(frozen=True)
class BrowserCloses:
    """What a browser without a bound session has to learn of its bindings."""

    close: bool  #: one ended while it was away: close the chat window now (handed out once)
    live: bool  #: one is still live (its end, once the sweep sees it, is still to come)


def take_browser_closes(device: str) -> BrowserCloses:
    """The closes due in the browser ``device`` (see :class:`BrowserCloses`)."""
    rows = list(
        VisitorLink.objects.of_device(device)
        .filter(Q(close_in_browser=True) | Q(state__in=LIVE_STATES))
        .values_list("pk", "close_in_browser")
    )
    closing = [pk for pk, close in rows if close]
    taken = 0
    if closing:
        taken = VisitorLink.objects.filter(pk__in=closing, close_in_browser=True).update(
            close_in_browser=False
        )
    return BrowserCloses(close=taken > 0, live=len(closing) < len(rows))


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
    followed = links.follow_expiry(expires_at)
    if followed:  # its browser is still there: the visitor id stays its own
        refresh_origin(visitor_id)
    return followed
