"""What giosg gets: :func:`attach` sets a link's variables, :func:`detach` ends the visitor's open
chats and deletes the link's keys.

Independent calls run concurrently in a :class:`~django_giosg.services.pool.JobPool` of
``MAX_WORKERS`` threads; the database is only touched in the calling thread. Both workflows are
idempotent, both hold the visitor's lease (:mod:`~django_giosg.services.leases`), both return a
:class:`~django_giosg.services.results.Result`, and both record a failure on the link (with
backoff) instead of raising.

A write whose answer never came may have happened, and may still happen, late
(:class:`~django_giosg.client.Sent`): a link records until when its sets and deletes may land
(``SETTLE_DELAY`` after they were sent). Its detach then ends in ``settling`` and deletes its keys
once more after that; a later binding of the visitor sets its variables once more after that. So,
once giosg is healthy and the sweep has run past the delay, no variable of an ended binding is
left, and a live binding's variables hold its own user's values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.views.decorators.debug import sensitive_variables

from .. import clock
from ..client import GiosgClient
from ..conf import GiosgSettings
from ..errors import (
    GiosgAPIError,
    GiosgConfigurationError,
    GiosgError,
    GiosgNotFound,
    GiosgRateLimited,
)
from ..limits import DEFAULT_LIMITS, CallLimits
from ..logs import short_id
from ..models import CHATS_ENDED, LIVE_STATES, Action, State, VisitorLink, write_db
from ..signals import visitor_attached, visitor_detached
from .failures import fail, record_failure, summary
from .leases import VisitorBusy, visitor_lease
from .pool import Collector, JobPool
from .results import DETACHED_ALREADY, NOT_PENDING_ATTACH, Result
from .rooms import RoomRef, forget_rooms, iter_rooms
from .variables import merge_keys, user_variables

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Means:
    """What every step of one workflow works with."""

    client: GiosgClient
    settings: GiosgSettings
    limits: CallLimits


#: The work itself, run under the visitor's lease with limits that have a deadline.
Work = Callable[[VisitorLink, Result, _Means], Result]

#: Why a link that does not want the work is skipped.
_UNWANTED = {Action.ATTACH: NOT_PENDING_ATTACH, Action.DETACH: DETACHED_ALREADY}


def attach(
    link_id: int,
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    limits: CallLimits = DEFAULT_LIMITS,
) -> Result:
    """Set the link user's variables, every key in every room (``ROOM_IDS``, plus the link's
    browser rooms with ``USE_BROWSER_ROOMS``), concurrently; the visitor's older bindings are
    detached first. Only a ``pending_attach`` link is attached; anything else is skipped."""
    return _run(link_id, Action.ATTACH, _Means(client, settings, limits), _attach_leased)


def detach(
    link_id: int,
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    limits: CallLimits = DEFAULT_LIMITS,
) -> Result:
    """End the visitor's open chats in the organization's rooms and delete the link's keys.

    A link in any state but ``detached`` is detached: a pending attach is cancelled, and a link
    that never got its variables still has its chats ended. A ``detached`` link is skipped.
    """
    return _run(link_id, Action.DETACH, _Means(client, settings, limits), _detach_leased)


def _run(link_id: int, action: str, means: _Means, work: Work) -> Result:
    """Run ``work`` holding the visitor's lease, if the link wants it now and still wants it
    once the lease is taken (another worker may have been first). A visitor busy for longer than
    we may wait is a failed attempt.

    Work nobody waits for (a worker, the sweep) is bounded by ``PENDING_STALE_AFTER``: the sweep
    would take a lost link over then, and the lease must not outlive the work.
    """
    result = Result(link_id, action)
    link = VisitorLink.objects.filter(pk=link_id).first()
    if link is None or not link.wants(action):
        return result.skip(_UNWANTED[action])
    if action == Action.DETACH:
        link.begin_detach()  # cancels a pending attach now, before waiting for the lease
        if link.state == State.SETTLING:
            result.action = Action.SETTLE  # what a failure (a busy visitor) is counted as
    deadline = means.limits.deadline
    if deadline is None:
        deadline = means.client.deadline_after(means.settings.pending_stale_after)
    bounded = replace(means, limits=means.limits._replace(deadline=deadline))
    try:
        with visitor_lease(link.visitor_id, means.client, deadline):
            link.refresh_from_db(using=write_db(VisitorLink))
            if not link.wants(action):
                return result.skip(_UNWANTED[action])
            return work(link, result, bounded)
    except VisitorBusy as err:
        return fail(link, result, str(err), means.settings)


# -- attach ---------------------------------------------------------------------------------------


@sensitive_variables("variables")  # (the values sent: hidden from error reports without DEBUG)
def _attach_leased(link: VisitorLink, result: Result, means: _Means) -> Result:
    """The attach itself, under the visitor's lease."""
    settings = means.settings
    # The visitor's older bindings that are neither live nor done with their chats
    # (pending_detach, and failed ones too: a failed attach may have set some keys, a failed
    # detach left some) are detached first, so that their deletes cannot land after this
    # attach's sets. (A settling one has deleted its keys; its second delete spares this
    # link's keys.)
    visitors_links = VisitorLink.objects.filter(visitor_id=link.visitor_id).exclude(pk=link.pk)
    older = visitors_links.exclude(state__in=LIVE_STATES).exclude(CHATS_ENDED)
    for previous in older:
        detached = _detach_leased(previous, Result(previous.pk, Action.DETACH), means)
        if not detached.ok and previous.state != State.SETTLING:
            # (Settling, it has ended its chats; its keys are deleted later, not this link's.)
            error = "the visitor's previous binding could not be detached first"
            return fail(link, result, error, settings)
    if link.user is None:  # the user was deleted before the attach ran
        link.cancel_attach()
        return _cancelled(link, result, means)
    try:
        variables = user_variables(link.user, settings)
    except GiosgConfigurationError as err:
        return fail(link, result, str(err), settings)
    except Exception as err:  # the host's callable: its message might hold a value
        return fail(link, result, f'GIOSG["VARIABLES"] raised {type(err).__name__}', settings)
    rooms = list(dict.fromkeys([*settings.room_ids, *_browser_rooms(link, settings)]))
    planned = {room: list(variables) for room in rooms} if variables else {}
    already_set: dict[str, list[str]] = link.keys
    if not link.plan_keys(merge_keys(already_set, planned)):
        return result.skip(NOT_PENDING_ATTACH)
    collector = Collector(result)
    with (
        _unanswered(link, "sets", planned, collector, settings),
        JobPool(settings.max_workers, collector) as pool,
    ):
        for room, keys in planned.items():
            for key in keys:
                pool.submit(
                    _set_variable, means, collector, link.visitor_id, room, key, variables[key]
                )
    if collector.room_missing:
        forget_rooms(settings)
    result.set = {  # in the order of VARIABLES, whatever order the calls finished in
        room: [key for key in keys if key in result.set.get(room, [])]
        for room, keys in planned.items()
        if room in result.set
    }
    if result.failed:
        return record_failure(link, result, summary(result.failed), settings)
    recorded = merge_keys(already_set, result.set)
    # The visitor's other bindings' writes may still land over these: set them again after.
    settle_at = visitors_links.unsettled_until()
    if settle_at is not None and link.set_again_at(recorded, settle_at):
        result.settling = True
        _log_settling(link, settle_at, "set its variables")
        return result
    if settle_at is None and link.mark_attached(recorded):
        visitor_attached.send(VisitorLink, link=link, result=result)
        return result
    # A logout (or another login) overtook this attach: undo it at once.
    link.refresh_from_db(using=write_db(VisitorLink))
    return _cancelled(link, result, means)


def _cancelled(link: VisitorLink, result: Result, means: _Means) -> Result:
    """The attach cannot stand: detach the link at once, within the same lease."""
    result.cancelled = True
    detached = _detach_leased(link, Result(link.pk, Action.DETACH), means)
    result.failed.extend(detached.failed)
    if detached.failed:
        result.outcome = detached.outcome
    return result


def _browser_rooms(link: VisitorLink, settings: GiosgSettings) -> list[str]:
    rooms: list[Any] = link.browser_rooms if settings.use_browser_rooms else []
    return [room for room in rooms if isinstance(room, str)]


@sensitive_variables("value")
def _set_variable(
    means: _Means, collector: Collector, visitor_id: str, room: str, key: str, value: str
) -> None:
    try:
        sent = means.client.set_variable(room, visitor_id, key, value, **means.limits.options())
    except GiosgNotFound as err:  # the room may be gone; giosg may also not know the visitor
        collector.uncertain(err.uncertain)
        collector.room_missing = True
        collector.skipped(f"room {room}: not found for this visitor")
    except GiosgError as err:
        collector.uncertain(err.uncertain)
        collector.failed(f"setting {key} in room {room}: {err}")
    else:
        collector.uncertain(sent.uncertain)
        collector.set(room, key)


@contextmanager
def _unanswered(
    link: VisitorLink,
    writes: str,
    keys: Mapping[str, Sequence[str]],
    collector: Collector,
    settings: GiosgSettings,
) -> Iterator[None]:
    """Around the ``writes`` (``"sets"`` or ``"deletes"``) of ``keys``: the worst case is noted
    on the link before anything is sent, so that the record survives whatever happens after
    sending (a crash, a killed worker, a lease that ran out before the outcome was written);
    it is taken back once every write was answered."""
    if not any(keys.values()):
        yield
        return
    field = f"{writes}_unsettled_until"
    recorded = getattr(link, field)
    link.note_unsettled(**{writes: _settled_at(settings)})
    yield
    if not (collector.unsettled or collector.unexpected):
        link.take_back_unsettled(field, recorded)


def _settled_at(settings: GiosgSettings) -> datetime:
    """Until when a write sent until now may still land at giosg: ``SETTLE_DELAY`` from now."""
    return clock.now() + timedelta(seconds=settings.settle_delay)


def _log_settling(link: VisitorLink, when: datetime, what: str) -> None:
    logger.info(
        "django-giosg: writes of visitor %s that got no answer may land until %s; it will %s "
        "once more then",
        short_id(link.visitor_id),
        when.isoformat(timespec="seconds"),
        what,
    )


# -- detach ---------------------------------------------------------------------------------------


def _detach_leased(link: VisitorLink, result: Result, means: _Means) -> Result:
    """The detach itself, under the visitor's lease: the chats and the keys, or, for a
    ``settling`` link, the keys once more."""
    if link.state not in (State.PENDING_DETACH, State.SETTLING) and not link.begin_detach():
        return result.skip(DETACHED_ALREADY)
    if link.state == State.SETTLING:
        return _settle_leased(link, result, means)
    run = _DetachRun(means, link.visitor_id, result)
    with _unanswered(link, "deletes", link.keys, run.collector, means.settings):
        run.run(link.keys)
    sets_land_until = _still_to_come(link.sets_unsettled_until)
    if result.failed:
        # Keys deleted now may be set again by a late set: then they are all deleted again.
        keys = link.keys if sets_land_until else _not_deleted(link.keys, result)
        error = summary(result.failed)
        if run.chats_ended and link.settle(sets_land_until or clock.now()):
            # Only deletes failed: the retries delete the keys and end no chat (the visitor's
            # chats may be the next user's by then).
            result.action = Action.SETTLE
        return record_failure(link, result, error, means.settings, keys=merge_keys(keys))
    if sets_land_until is not None and link.settle(sets_land_until):
        result.settling = True
        _log_settling(link, sets_land_until, "delete its keys")
    elif link.mark_detached():
        visitor_detached.send(VisitorLink, link=link, result=result)
    return result


def _settle_leased(link: VisitorLink, result: Result, means: _Means) -> Result:
    """A ``settling`` link's keys deleted once more, now that its sets that got no answer can
    no longer land, except the keys the visitor's live binding holds (set, or to be set, again
    with its own values). No chat is ended: the visitor's chats may be the next user's by now."""
    result.action = Action.SETTLE
    sets_land_until = _still_to_come(link.sets_unsettled_until)
    if sets_land_until is not None:  # (run early: by an admin, or a task enqueued meanwhile)
        link.settle(sets_land_until)
        result.settling = True
        return result.skip(f"its writes may land until {sets_land_until.isoformat()}")
    live = VisitorLink.objects.filter(visitor_id=link.visitor_id).live().first()
    held: dict[str, list[str]] = live.keys if live is not None else {}
    keys = {
        room: [key for key in room_keys if key not in held.get(room, [])]
        for room, room_keys in link.keys.items()
    }
    run = _DetachRun(means, link.visitor_id, result)
    with _unanswered(link, "deletes", keys, run.collector, means.settings):
        run.delete_keys(keys)
    if result.failed:
        error = summary(result.failed)
        remaining = merge_keys(_not_deleted(link.keys, result))
        return record_failure(link, result, error, means.settings, keys=remaining)
    if link.mark_detached():
        visitor_detached.send(VisitorLink, link=link, result=result)
    return result


def _still_to_come(when: datetime | None) -> datetime | None:
    return when if when is not None and when > clock.now() else None


def _not_deleted(keys: Mapping[str, Sequence[str]], result: Result) -> dict[str, list[str]]:
    return {
        room: [key for key in room_keys if key not in result.deleted.get(room, [])]
        for room, room_keys in keys.items()
    }


class _DetachRun:
    """One detach's calls: the deletes start at once; each page of rooms starts its rooms'
    chat lists; each page of chats starts its chats' ends. All in one bounded pool."""

    def __init__(self, means: _Means, visitor_id: str, result: Result) -> None:
        self.client = means.client
        self.settings = means.settings
        self.limits = means.limits
        self.visitor_id = visitor_id
        self.collector = Collector(result)
        #: Every room and chat was listed and every open chat of ours ended (or found ended).
        self.chats_ended = True

    def run(self, keys: Mapping[str, Sequence[str]]) -> None:
        with JobPool(self.settings.max_workers, self.collector) as pool:
            self._submit_deletes(pool, keys)
            try:
                for listed in iter_rooms(self.client, self.settings, self.limits):
                    pool.submit(self._close_chats, pool, listed)
            except GiosgError as err:
                self.chats_ended = False
                self.collector.failed(f"listing the rooms: {err}")
        if self.collector.unexpected:
            self.chats_ended = False  # a job failed in a way nobody expected: it may be one

    def delete_keys(self, keys: Mapping[str, Sequence[str]]) -> None:
        """Only the keys: no chats."""
        with JobPool(self.settings.max_workers, self.collector) as pool:
            self._submit_deletes(pool, keys)

    def _submit_deletes(self, pool: JobPool, keys: Mapping[str, Sequence[str]]) -> None:
        for room, room_keys in keys.items():
            for key in room_keys:
                pool.submit(self._delete, room, key)

    def _delete(self, room: str, key: str) -> None:
        try:
            sent = self.client.delete_variable(room, self.visitor_id, key, **self.limits.options())
        except GiosgNotFound as err:
            self.collector.uncertain(err.uncertain)  # gone already: that is what we wanted
        except GiosgError as err:
            self.collector.uncertain(err.uncertain)
            self.collector.failed(f"deleting {key} in room {room}: {err}")
            return
        else:
            self.collector.uncertain(sent.uncertain)
        self.collector.deleted(room, key)

    def _close_chats(self, pool: JobPool, room: RoomRef) -> None:
        org = self.settings.organization_id
        try:
            for chat in self.client.iter_open_chats(
                room.id, self.visitor_id, **self.limits.options()
            ):
                if not room.owned or not chat.is_owned_by(org):
                    logger.info(
                        "Chat %s of visitor %s is in room %s of another organization; "
                        "left to its owner",
                        chat.id,
                        short_id(self.visitor_id),
                        room.id,
                    )
                    self.collector.skipped(f"chat {chat.id}: room of another organization")
                    continue
                pool.submit(self._end_chat, chat.id)
        except GiosgNotFound:
            pass  # giosg never saw the visitor in this room (so no chats), or the room is gone
        except GiosgError as err:
            self.chats_ended = False
            self.collector.failed(f"listing the chats in room {room.id}: {err}")

    def _end_chat(self, chat_id: str) -> None:
        try:
            self.client.end_chat(chat_id, **self.limits.options())
        except GiosgError as err:
            if not _is_client_error(err) or not self._has_ended(chat_id):
                self.chats_ended = False
                self.collector.failed(f"ending chat {chat_id}: {err}")
                return
        self.collector.ended(chat_id)

    def _has_ended(self, chat_id: str) -> bool:
        """After a 4xx: giosg may refuse to end a chat that has ended meanwhile (it is locked)."""
        try:
            return self.client.get_chat(chat_id, **self.limits.options()).is_ended
        except GiosgError:
            return False


def _is_client_error(err: GiosgError) -> bool:
    """A 4xx that says giosg refused this very request. 429 is not one: it says "not now", and
    the call was retried as far as the limits allowed; the chat may well still be open."""
    return (
        isinstance(err, GiosgAPIError)
        and not isinstance(err, GiosgRateLimited)
        and err.status is not None
        and 400 <= err.status < 500
    )
