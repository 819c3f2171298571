"""The workflows over a :class:`~django_giosg.client.GiosgClient`, and the ``VisitorLink`` rows.

Services know giosg's workflows and django-giosg's records, not HTTP: every call goes through the
client, which raises :class:`~django_giosg.errors.GiosgError` for anything that went wrong.

- :func:`bind`, :func:`release_visitor`, :func:`release_user`, :func:`release_links` and
  :func:`reset_failed` change rows only; the tasks then run :func:`attach` or :func:`detach`.
- :func:`attach` sets every key in every room; :func:`detach` ends the visitor's open chats and
  deletes the recorded keys. Independent calls run concurrently in a pool of ``MAX_WORKERS``
  threads; the database is only touched in the calling thread. Both are idempotent, both return a
  :class:`Result`, and both record a failure on the link (with backoff) instead of raising.
- Attaches and detaches of one visitor never overlap (:class:`~django_giosg.models.VisitorLease`),
  so the old binding's deletes cannot remove keys the new binding has just set.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .client import GiosgClient, Room
from .conf import GiosgSettings
from .errors import (
    GiosgAPIError,
    GiosgConfigurationError,
    GiosgError,
    GiosgNotFound,
    GiosgRateLimited,
)
from .models import LIVE_STATES, Action, State, VisitorLease, VisitorLink
from .signals import visitor_attached, visitor_detached, visitor_failed

logger = logging.getLogger("django_giosg")

ROOMS_CACHE_KEY = "django_giosg:rooms:{organization_id}"
KEY_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NOT_PENDING_ATTACH = "the link is not pending attach"
DETACHED_ALREADY = "the link is detached already"
NOT_DETACHED = [state for state in State.values if state != State.DETACHED]
PENDING_STATES = (State.PENDING_ATTACH, State.PENDING_DETACH)
MAX_BACKOFF = 6 * 3600.0  # seconds: the longest wait between two attempts of the sweep
LEASE_POLL = 0.05  # seconds between two tries to take a visitor's lease


# -- results --------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one :func:`attach` or :func:`detach` did. ``ok`` when nothing failed.

    ``set`` and ``deleted`` map rooms to keys (a key already gone counts as deleted), ``ended``
    lists chats (one found ended already counts), ``skipped`` and ``failed`` say what was left
    alone and what went wrong, without tokens or values. ``cancelled``: the link's state changed
    under the attach (a logout overtook it), which then detached instead.
    """

    link_id: int
    action: str
    set: dict[str, list[str]] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    deleted: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """JSON-shaped, for a task's return value."""
        return {**asdict(self), "ok": self.ok}


class _Collector:
    """Thread-safe collection of one workflow's outcomes into its :class:`Result`."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self._lock = threading.Lock()
        #: A room answered 404: the cached room list is dropped afterwards, in the calling
        #: thread (a database cache must not be used from the pool's threads).
        self.room_missing = False

    def set(self, room: str, key: str) -> None:
        with self._lock:
            self.result.set.setdefault(room, []).append(key)

    def deleted(self, room: str, key: str) -> None:
        with self._lock:
            self.result.deleted.setdefault(room, []).append(key)

    def ended(self, chat_id: str) -> None:
        with self._lock:
            self.result.ended.append(chat_id)

    def skipped(self, what: str) -> None:
        with self._lock:
            self.result.skipped.append(what)

    def failed(self, what: str) -> None:
        with self._lock:
            self.result.failed.append(what)


class _Pool:
    """A bounded thread pool whose jobs may add jobs; :meth:`join` waits for all of them.

    Jobs report through a :class:`_Collector` and never touch the database. An exception a job
    did not expect is recorded as a failure rather than lost.
    """

    def __init__(self, max_workers: int, collector: _Collector) -> None:
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="django-giosg")
        self._collector = collector
        self._pending = 0
        self._done = threading.Condition()

    def __enter__(self) -> _Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.join()
        self._executor.shutdown(wait=True)

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        with self._done:
            self._pending += 1
        self._executor.submit(self._run, job, args)

    def _run(self, job: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            job(*args)
        except Exception as err:  # a bug, not giosg: keep the workflow's result honest
            logger.exception("django-giosg: an unexpected error in %s", job.__name__)
            self._collector.failed(f"unexpected {type(err).__name__} in {job.__name__}")
        finally:
            with self._done:
                self._pending -= 1
                self._done.notify_all()

    def join(self) -> None:
        with self._done:
            self._done.wait_for(lambda: self._pending == 0)


# -- the organization's rooms ---------------------------------------------------------------------


@dataclass(frozen=True)
class RoomRef:
    """A room of the organization's list; ``owned`` unless another organization owns it."""

    id: str
    owned: bool


def _room_ref(room: Room, settings: GiosgSettings) -> RoomRef:
    owned = not room.is_shared and room.organization_id in (None, settings.organization_id)
    return RoomRef(room.id.lower(), owned)


def _rooms_cache_key(settings: GiosgSettings) -> str:
    return ROOMS_CACHE_KEY.format(organization_id=settings.organization_id)


def _cached_rooms(settings: GiosgSettings) -> list[RoomRef] | None:
    if not settings.rooms_cache_ttl:
        return None
    cached = cache.get(_rooms_cache_key(settings))
    if not isinstance(cached, list):
        return None
    return [RoomRef(str(room_id), bool(owned)) for room_id, owned in cached]


def forget_rooms(settings: GiosgSettings) -> None:
    """Drop the cached room list (a room answered 404: the list may be out of date)."""
    cache.delete(_rooms_cache_key(settings))


def iter_rooms(
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    deadline: float | None = None,
    max_retries: int | None = None,
) -> Iterator[RoomRef]:
    """The organization's rooms (shared ones included), from the cache or paged from giosg as
    the pages arrive; a complete listing is cached for ``ROOMS_CACHE_TTL`` seconds (0: never)."""
    cached = _cached_rooms(settings)
    if cached is not None:
        yield from cached
        return
    listed = []
    for room in client.iter_rooms(deadline=deadline, max_retries=max_retries):
        ref = _room_ref(room, settings)
        listed.append(ref)
        yield ref
    if settings.rooms_cache_ttl:
        value = [[ref.id, ref.owned] for ref in listed]
        cache.set(_rooms_cache_key(settings), value, settings.rooms_cache_ttl)


def owned_room_ids(
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    deadline: float | None = None,
    max_retries: int | None = None,
) -> frozenset[str]:
    """The ids of the rooms the organization owns (rooms shared to it by others excluded).
    Raises :class:`~django_giosg.errors.GiosgError` when giosg cannot be asked."""
    rooms = iter_rooms(client, settings, deadline=deadline, max_retries=max_retries)
    return frozenset(room.id for room in rooms if room.owned)


def filter_owned_rooms(
    rooms: Iterable[str],
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    deadline: float | None = None,
    max_retries: int | None = None,
) -> list[str]:
    """``rooms`` without the rooms the organization does not own, in their order."""
    candidates = list(dict.fromkeys(rooms))
    if not candidates:
        return []
    owned = owned_room_ids(client, settings, deadline=deadline, max_retries=max_retries)
    return [room for room in candidates if room in owned]


# -- the variables --------------------------------------------------------------------------------


def user_variables(user: Any, settings: GiosgSettings) -> dict[str, str]:
    """The variables ``VARIABLES`` builds for ``user``: ``None`` values skipped, the others
    ``str()``-ed, invalid keys skipped with a warning. Empty means "don't attach".

    Raises :class:`~django_giosg.errors.GiosgConfigurationError` when the callable cannot be
    imported or does not return a mapping.
    """
    produced = settings.variables_callable()(user)
    if produced is None:
        return {}
    if not isinstance(produced, Mapping):
        raise GiosgConfigurationError(
            f'GIOSG["VARIABLES"] must return a mapping or None, not {type(produced).__name__}'
        )
    variables: dict[str, str] = {}
    for key, value in produced.items():
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            shown = repr(key)[:70] if isinstance(key, str) else type(key).__name__
            logger.warning(
                'GIOSG["VARIABLES"] returned the key %s, which giosg would not take '
                "(allowed: %s); it is skipped",
                shown,
                KEY_PATTERN.pattern,
            )
            continue
        if value is not None:
            variables[key] = str(value)
    return variables


def _merge_keys(*records: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for record in records:
        for room, keys in record.items():
            merged[room] = list(dict.fromkeys([*merged.get(room, []), *keys]))
    return {room: keys for room, keys in merged.items() if keys}


# -- rows -----------------------------------------------------------------------------------------


@dataclass
class Binding:
    """What :func:`bind` decided: the link to attach, and older links to detach first."""

    attach: int | None = None
    detach: list[int] = field(default_factory=list)


#: "Now" for the link's times (backoff, staleness, expiry, pruning, leases). Tests inject a fake.
clock: Callable[[], datetime] = timezone.now
#: The backoff's random factor in [0, 1): ``U[0.5, 1.5]`` is ``0.5 + jitter()``. Tests inject it.
jitter: Callable[[], float] = random.random


def _now() -> datetime:
    return clock()


def _stale_after(settings: GiosgSettings) -> datetime:
    """When the sweep takes over a link whose task was enqueued now, in case the task is lost."""
    return _now() + timedelta(seconds=settings.pending_stale_after)


def _update(link: VisitorLink, states: Iterable[str], **fields: Any) -> bool:
    """Change ``link`` only if it is still in one of ``states`` (a conditional update: safe
    against a concurrent change, on every database); the instance follows a successful one."""
    fields["updated_at"] = _now()
    changed = VisitorLink.objects.filter(pk=link.pk, state__in=list(states)).update(**fields)
    if changed:
        for name, value in fields.items():
            setattr(link, name, value)
    return bool(changed)


def bind(
    user: Any,
    visitor_id: str,
    settings: GiosgSettings,
    *,
    browser_rooms: Sequence[str] = (),
    session_expires_at: datetime | None = None,
) -> Binding:
    """Bind ``visitor_id`` to ``user``: a new ``pending_attach`` link, or the user's live link
    with the new browser rooms. A live link of another user is superseded (one visitor, one
    user): it becomes ``pending_detach`` and is returned to be detached first.

    Two concurrent binds of one visitor cannot both create a live link (the partial unique
    constraint); the loser reads the winner's link and supersedes it in turn.
    """
    binding = Binding()
    rooms = list(dict.fromkeys(browser_rooms)) if settings.use_browser_rooms else []
    for _attempt in range(5):
        live = VisitorLink.objects.filter(visitor_id=visitor_id, state__in=LIVE_STATES).first()
        if live is not None and live.user_id == user.pk:
            merged = list(dict.fromkeys([*live.browser_rooms, *rooms]))
            if live.state == State.ATTACHED and merged == live.browser_rooms:
                _update(live, LIVE_STATES, session_expires_at=session_expires_at)
                return binding  # bound already, and nothing new to set
            if _update(
                live,
                LIVE_STATES,
                state=State.PENDING_ATTACH,
                browser_rooms=merged,
                next_attempt_at=_stale_after(settings),
                session_expires_at=session_expires_at,
            ):
                binding.attach = live.pk
                return binding
            continue  # it changed meanwhile: look again
        if live is not None and _update(
            live,
            LIVE_STATES,
            state=State.PENDING_DETACH,
            attempts=0,
            failed_action="",
            next_attempt_at=_stale_after(settings),
        ):
            binding.detach.append(live.pk)
        try:
            with transaction.atomic():
                link = VisitorLink.objects.create(
                    visitor_id=visitor_id,
                    user=user,
                    browser_rooms=rooms,
                    next_attempt_at=_stale_after(settings),
                    session_expires_at=session_expires_at,
                )
        except IntegrityError:
            continue  # another login created the live link first: supersede it
        binding.attach = link.pk
        return binding
    logger.error("Could not bind visitor %s: five concurrent logins in a row won", visitor_id)
    return binding


def _release(links: QuerySet[VisitorLink], settings: GiosgSettings) -> list[int]:
    """Mark ``links`` (all but detached ones) ``pending_detach``; their ids, to detach."""
    ids = list(links.exclude(state=State.DETACHED).values_list("pk", flat=True))
    VisitorLink.objects.filter(pk__in=ids).exclude(state=State.DETACHED).update(
        state=State.PENDING_DETACH,
        attempts=0,
        failed_action="",
        next_attempt_at=_stale_after(settings),
        updated_at=_now(),
    )
    return ids


def release_visitor(visitor_id: str, user_id: object, settings: GiosgSettings) -> list[int]:
    """The session ended (logout): the visitor's links of ``user_id`` (any user's if ``None``)."""
    links = VisitorLink.objects.filter(visitor_id=visitor_id)
    if user_id is not None:
        links = links.filter(user_id=user_id)
    return _release(links, settings)


def release_user(user_id: object, settings: GiosgSettings) -> list[int]:
    """The user is being deleted: all their links."""
    return _release(VisitorLink.objects.filter(user_id=user_id), settings)


def release_links(ids: Iterable[int], settings: GiosgSettings) -> list[int]:
    """The admin's "detach now"."""
    return _release(VisitorLink.objects.filter(pk__in=list(ids)), settings)


def reset_failed(ids: Iterable[int], settings: GiosgSettings) -> list[tuple[int, str]]:
    """The admin's "retry": failed links go back to ``pending_<action>`` with no attempts;
    returns ``(id, action)`` of each link reset."""
    reset: list[tuple[int, str]] = []
    for link in VisitorLink.objects.filter(pk__in=list(ids), state=State.FAILED):
        action = link.failed_action or Action.DETACH
        state = State.PENDING_ATTACH if action == Action.ATTACH else State.PENDING_DETACH
        try:
            with transaction.atomic():
                changed = _update(
                    link,
                    [State.FAILED],
                    state=state,
                    attempts=0,
                    next_attempt_at=_stale_after(settings),
                )
        except IntegrityError:  # the visitor has a newer live link: this one can only detach
            action = Action.DETACH
            changed = _update(
                link,
                [State.FAILED],
                state=State.PENDING_DETACH,
                attempts=0,
                next_attempt_at=_stale_after(settings),
            )
        if changed:
            reset.append((link.pk, str(action)))
    return reset


def note_session_expiry(visitor_id: str, user_id: object, expires_at: datetime) -> int:
    """The session's expiry moved (sliding expiry, ``set_expiry``): the visitor's live link of
    ``user_id`` follows it, so that the sweep never takes a live session for an ended one."""
    links: QuerySet[VisitorLink] = VisitorLink.objects.filter(
        visitor_id=visitor_id, user_id=user_id, state__in=LIVE_STATES
    )
    return links.update(session_expires_at=expires_at, updated_at=_now())


def _backoff(attempts: int, settings: GiosgSettings) -> float:
    """``SWEEP_BACKOFF × 2^(n−1) × U[0.5, 1.5]``, capped at 6 hours."""
    delay = settings.sweep_backoff * 2.0 ** (attempts - 1) * (0.5 + jitter())
    return min(delay, MAX_BACKOFF)


def _record_failure(
    link: VisitorLink, action: str, error: str, settings: GiosgSettings, **fields: Any
) -> None:
    """Count a failed attempt: due again after the backoff, or ``failed`` after the last one."""
    pending = State.PENDING_ATTACH if action == Action.ATTACH else State.PENDING_DETACH
    attempts = link.attempts + 1
    if attempts >= settings.sweep_max_attempts:
        if _update(
            link,
            [pending],
            state=State.FAILED,
            failed_action=action,
            attempts=attempts,
            next_attempt_at=None,
            last_error=error,
            **fields,
        ):
            logger.error(
                "django-giosg gave up on the %s of visitor %s after %d attempts: %s",
                action,
                link.visitor_id,
                attempts,
                error,
            )
            visitor_failed.send(VisitorLink, link=link, action=action, error=error)
        return
    delay = _backoff(attempts, settings)
    if _update(
        link,
        [pending],
        failed_action=action,
        attempts=attempts,
        next_attempt_at=_now() + timedelta(seconds=delay),
        last_error=error,
        **fields,
    ):
        logger.warning(
            "django-giosg could not %s visitor %s (attempt %d of %d), retried in %.0f s: %s",
            action,
            link.visitor_id,
            attempts,
            settings.sweep_max_attempts,
            delay,
            error,
        )


def _summary(failures: Sequence[str]) -> str:
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"{failures[0]}{more}"


# -- one visitor at a time ------------------------------------------------------------------------


class VisitorBusy(Exception):
    """Another attach or detach of the visitor held its lease longer than we could wait."""


def _take_lease(visitor_id: str, seconds: float) -> str | None:
    now = _now()
    holder = uuid.uuid4().hex
    expires_at = now + timedelta(seconds=seconds)
    leases = VisitorLease.objects.filter(visitor_id=visitor_id, expires_at__lte=now)
    if leases.update(holder=holder, expires_at=expires_at):
        return holder
    try:
        with transaction.atomic():
            VisitorLease.objects.create(
                visitor_id=visitor_id, holder=holder, expires_at=expires_at
            )
    except IntegrityError:
        return None  # held, and not expired
    return holder


@contextmanager
def _visitor_lease(
    visitor_id: str, client: GiosgClient, deadline: float, settings: GiosgSettings
) -> Iterator[None]:
    """Hold the visitor's lease until ``deadline`` (the work's own deadline, so the work never
    outlives it), waiting for it at most as long."""
    while True:
        left = client.time_left(deadline)
        holder = _take_lease(visitor_id, max(left, 0.0) + 1.0)
        if holder is not None:
            break
        if left <= LEASE_POLL:
            raise VisitorBusy(
                f"another attach or detach of visitor {visitor_id} was still running"
            )
        time.sleep(LEASE_POLL)
    try:
        yield
    finally:
        VisitorLease.objects.filter(visitor_id=visitor_id, holder=holder).delete()


def _deadline(client: GiosgClient, settings: GiosgSettings, deadline: float | None) -> float:
    # Work without a request's budget (a worker, the sweep) gets PENDING_STALE_AFTER: the sweep
    # would take a lost link over then, and the visitor's lease must not outlive the work.
    return (
        deadline if deadline is not None else client.deadline_after(settings.pending_stale_after)
    )


# -- attach ---------------------------------------------------------------------------------------


def attach(
    link_id: int,
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    deadline: float | None = None,
    max_retries: int | None = None,
) -> Result:
    """Set the link user's variables, every key in every room (``ROOM_IDS``, plus the link's
    browser rooms with ``USE_BROWSER_ROOMS``), concurrently; the visitor's older bindings are
    detached first. Only a ``pending_attach`` link is attached; anything else is skipped."""
    result = Result(link_id, Action.ATTACH)
    link = VisitorLink.objects.filter(pk=link_id).first()
    if link is None or not _wants(link, Action.ATTACH):
        result.skipped.append(NOT_PENDING_ATTACH)
        return result
    return _with_lease(link, result, client, settings, deadline, max_retries, _attach)


Work = Callable[[VisitorLink, Result, GiosgClient, GiosgSettings, float, "int | None"], Result]


def _wants(link: VisitorLink, action: str) -> bool:
    if action == Action.ATTACH:
        return link.state == State.PENDING_ATTACH
    return link.state != State.DETACHED


def _with_lease(
    link: VisitorLink,
    result: Result,
    client: GiosgClient,
    settings: GiosgSettings,
    deadline: float | None,
    max_retries: int | None,
    work: Work,
) -> Result:
    """Run ``work`` holding the visitor's lease, if the link still wants it by then (another
    worker may have been first). A visitor busy for longer than we may wait is a failed attempt."""
    action = result.action
    until = _deadline(client, settings, deadline)
    try:
        with _visitor_lease(link.visitor_id, client, until, settings):
            link.refresh_from_db()
            if not _wants(link, action):
                result.skipped.append(
                    NOT_PENDING_ATTACH if action == Action.ATTACH else DETACHED_ALREADY
                )
                return result
            return work(link, result, client, settings, until, max_retries)
    except VisitorBusy as err:
        result.failed.append(str(err))
        _record_failure(link, action, str(err), settings)
        return result


def _attach(
    link: VisitorLink,
    result: Result,
    client: GiosgClient,
    settings: GiosgSettings,
    deadline: float,
    max_retries: int | None,
) -> Result:
    limits = (client, settings, deadline, max_retries)
    older = (
        VisitorLink.objects.filter(visitor_id=link.visitor_id)
        .exclude(pk=link.pk)
        .exclude(state__in=[State.DETACHED, *LIVE_STATES])
    )
    for previous in older:
        if not _detach(previous, Result(previous.pk, Action.DETACH), *limits).ok:
            error = "the visitor's previous binding could not be detached first"
            result.failed.append(error)
            _record_failure(link, Action.ATTACH, error, settings)
            return result
    if link.user is None:  # the user was deleted before the attach ran
        result.cancelled = True
        _update(link, [State.PENDING_ATTACH], state=State.PENDING_DETACH)
        detached = _detach(link, Result(link.pk, Action.DETACH), *limits)
        result.failed.extend(detached.failed)
        return result
    try:
        variables = user_variables(link.user, settings)
    except GiosgConfigurationError as err:
        return _variables_failed(link, result, str(err), settings)
    except Exception as err:  # the host's callable: its message might hold a value
        error = f'GIOSG["VARIABLES"] raised {type(err).__name__}'
        return _variables_failed(link, result, error, settings)
    rooms = list(dict.fromkeys([*settings.room_ids, *_browser_rooms(link, settings)]))
    planned = {room: list(variables) for room in rooms} if variables else {}
    already_set: dict[str, list[str]] = link.keys
    # Recorded before the calls: a detach that overtakes this attach deletes these keys too.
    if not _update(link, [State.PENDING_ATTACH], keys=_merge_keys(already_set, planned)):
        result.skipped.append(NOT_PENDING_ATTACH)
        return result
    collector = _Collector(result)
    with _Pool(settings.max_workers, collector) as pool:
        for room, keys in planned.items():
            for key in keys:
                pool.submit(
                    _set_variable,
                    client,
                    collector,
                    link.visitor_id,
                    room,
                    key,
                    variables[key],
                    deadline,
                    max_retries,
                )
    if collector.room_missing:
        forget_rooms(settings)
    result.set = {  # in the order of VARIABLES, whatever order the calls finished in
        room: [key for key in keys if key in result.set.get(room, [])]
        for room, keys in planned.items()
        if room in result.set
    }
    if result.failed:
        _record_failure(link, Action.ATTACH, _summary(result.failed), settings)
        return result
    attached = _update(
        link,
        [State.PENDING_ATTACH],
        state=State.ATTACHED,
        keys=_merge_keys(already_set, result.set),
        attempts=0,
        failed_action="",
        next_attempt_at=None,
        last_error="",
    )
    if attached:
        visitor_attached.send(VisitorLink, link=link, result=result)
        return result
    # A logout (or another login) overtook this attach: undo it at once.
    result.cancelled = True
    link.refresh_from_db()
    detached = _detach(link, Result(link.pk, Action.DETACH), *limits)
    result.failed.extend(detached.failed)
    return result


def _browser_rooms(link: VisitorLink, settings: GiosgSettings) -> list[str]:
    rooms: list[Any] = link.browser_rooms if settings.use_browser_rooms else []
    return [room for room in rooms if isinstance(room, str)]


def _variables_failed(
    link: VisitorLink, result: Result, error: str, settings: GiosgSettings
) -> Result:
    result.failed.append(error)
    _record_failure(link, Action.ATTACH, error, settings)
    return result


def _set_variable(
    client: GiosgClient,
    collector: _Collector,
    visitor_id: str,
    room: str,
    key: str,
    value: str,
    deadline: float,
    max_retries: int | None,
) -> None:
    try:
        client.set_variable(
            room, visitor_id, key, value, deadline=deadline, max_retries=max_retries
        )
    except GiosgNotFound:  # the room may be gone; giosg may also not know the visitor there
        collector.room_missing = True
        collector.skipped(f"room {room}: not found for this visitor")
    except GiosgError as err:
        collector.failed(f"setting {key} in room {room}: {err}")
    else:
        collector.set(room, key)


# -- detach ---------------------------------------------------------------------------------------


def detach(
    link_id: int,
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    deadline: float | None = None,
    max_retries: int | None = None,
) -> Result:
    """End the visitor's open chats in the organization's rooms and delete the link's keys.

    A link in any state but ``detached`` is detached: a pending attach is cancelled, and a link
    that never got its variables still has its chats ended. A ``detached`` link is skipped.
    """
    result = Result(link_id, Action.DETACH)
    link = VisitorLink.objects.filter(pk=link_id).first()
    if link is None or not _wants(link, Action.DETACH):
        result.skipped.append(DETACHED_ALREADY)
        return result
    _update(link, NOT_DETACHED, state=State.PENDING_DETACH)  # cancels a pending attach now
    return _with_lease(link, result, client, settings, deadline, max_retries, _detach)


def _detach(
    link: VisitorLink,
    result: Result,
    client: GiosgClient,
    settings: GiosgSettings,
    deadline: float,
    max_retries: int | None,
) -> Result:
    """The detach itself, under the visitor's lease."""
    if link.state != State.PENDING_DETACH and not _update(
        link, NOT_DETACHED, state=State.PENDING_DETACH
    ):
        result.skipped.append(DETACHED_ALREADY)
        return result
    _DetachRun(client, settings, link.visitor_id, deadline, max_retries, result).run(link.keys)
    if result.failed:
        remaining = {
            room: [key for key in keys if key not in result.deleted.get(room, [])]
            for room, keys in link.keys.items()
        }
        _record_failure(
            link,
            Action.DETACH,
            _summary(result.failed),
            settings,
            keys=_merge_keys(remaining),
        )
        return result
    if _update(
        link,
        [State.PENDING_DETACH],
        state=State.DETACHED,
        keys={},
        attempts=0,
        failed_action="",
        next_attempt_at=None,
        last_error="",
    ):
        visitor_detached.send(VisitorLink, link=link, result=result)
    return result


class _DetachRun:
    """One detach's calls: the deletes start at once; each page of rooms starts its rooms'
    chat lists; each page of chats starts its chats' ends. All in one bounded pool."""

    def __init__(
        self,
        client: GiosgClient,
        settings: GiosgSettings,
        visitor_id: str,
        deadline: float,
        max_retries: int | None,
        result: Result,
    ) -> None:
        self.client = client
        self.settings = settings
        self.visitor_id = visitor_id
        self.limits: dict[str, Any] = {"deadline": deadline, "max_retries": max_retries}
        self.collector = _Collector(result)

    def run(self, keys: Mapping[str, Sequence[str]]) -> None:
        with _Pool(self.settings.max_workers, self.collector) as pool:
            for room, room_keys in keys.items():
                for key in room_keys:
                    pool.submit(self._delete, room, key)
            try:
                for listed in iter_rooms(self.client, self.settings, **self.limits):
                    pool.submit(self._close_chats, pool, listed)
            except GiosgError as err:
                self.collector.failed(f"listing the rooms: {err}")

    def _delete(self, room: str, key: str) -> None:
        try:
            self.client.delete_variable(room, self.visitor_id, key, **self.limits)
        except GiosgNotFound:
            pass  # gone already: that is what we wanted
        except GiosgError as err:
            self.collector.failed(f"deleting {key} in room {room}: {err}")
            return
        self.collector.deleted(room, key)

    def _close_chats(self, pool: _Pool, room: RoomRef) -> None:
        org = self.settings.organization_id
        try:
            for chat in self.client.iter_open_chats(room.id, self.visitor_id, **self.limits):
                if not room.owned or chat.room_organization_id not in (None, org):
                    logger.info(
                        "Chat %s of visitor %s is in room %s of another organization; "
                        "left to its owner",
                        chat.id,
                        self.visitor_id,
                        room.id,
                    )
                    self.collector.skipped(f"chat {chat.id}: room of another organization")
                    continue
                pool.submit(self._end_chat, chat.id)
        except GiosgNotFound:
            pass  # giosg never saw the visitor in this room (so no chats), or the room is gone
        except GiosgError as err:
            self.collector.failed(f"listing the chats in room {room.id}: {err}")

    def _end_chat(self, chat_id: str) -> None:
        try:
            self.client.end_chat(chat_id, **self.limits)
        except GiosgError as err:
            if not _is_client_error(err) or not self._has_ended(chat_id):
                self.collector.failed(f"ending chat {chat_id}: {err}")
                return
        self.collector.ended(chat_id)

    def _has_ended(self, chat_id: str) -> bool:
        """After a 4xx: giosg may refuse to end a chat that has ended meanwhile (it is locked)."""
        try:
            return self.client.get_chat(chat_id, **self.limits).is_ended
        except GiosgError:
            return False


def _is_client_error(err: GiosgError) -> bool:
    return (
        isinstance(err, GiosgAPIError)
        and not isinstance(err, GiosgRateLimited)
        and err.status is not None
        and 400 <= err.status < 500
    )


# -- the sweep ------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What one :func:`sweep` did, or in a dry run would do; :meth:`line` is its summary.

    ``expired`` and ``due`` count the links taken; each of them ends ``done``, ``retrying``
    (failed again, due after the backoff), ``failed`` (given up) or ``skipped`` (another worker
    had done it meanwhile).
    """

    expired: int = 0
    due: int = 0
    done: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    pruned: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        if self.dry_run:
            return (
                f"giosg_sweep (dry run): would detach {self.expired} expired link(s), "
                f"retry {self.due} due link(s) and prune {self.pruned} detached link(s)."
            )
        return (
            f"giosg_sweep: {self.expired} expired and {self.due} due link(s): "
            f"{self.done} done, {self.retrying} to retry, {self.failed} failed, "
            f"{self.skipped} skipped; {self.pruned} detached link(s) pruned."
        )


def expired_links(settings: GiosgSettings, now: datetime) -> QuerySet[VisitorLink]:
    """Live links whose session has ended: their recorded expiry + ``EXPIRY_GRACE`` has passed."""
    ended = now - timedelta(seconds=settings.expiry_grace)
    links: QuerySet[VisitorLink] = VisitorLink.objects.filter(
        state__in=LIVE_STATES, session_expires_at__lte=ended
    ).order_by("session_expires_at", "pk")
    return links


def due_links(now: datetime) -> QuerySet[VisitorLink]:
    """Pending links whose time has come: a failed attempt's backoff is over, or the task that
    was enqueued for them ``PENDING_STALE_AFTER`` ago has not done its work (it may be lost)."""
    links: QuerySet[VisitorLink] = VisitorLink.objects.filter(
        state__in=PENDING_STATES, next_attempt_at__lte=now
    ).order_by("next_attempt_at", "pk")
    return links


def prunable_links(settings: GiosgSettings, now: datetime) -> QuerySet[VisitorLink]:
    """``detached`` links last changed more than ``PRUNE_AFTER_DAYS`` ago."""
    links: QuerySet[VisitorLink] = VisitorLink.objects.filter(
        state=State.DETACHED, updated_at__lt=now - timedelta(days=settings.prune_after_days)
    )
    return links


CLAIM_CANDIDATES = 10  # links read at a time when taking the next one; others may be faster


def _claim_next(
    links: QuerySet[VisitorLink], seen: set[int], **changes: Any
) -> VisitorLink | None:
    """Take the next of ``links`` for this sweep, right before working it, so that two sweeps
    share the work. It is taken with a conditional update that moves it out of the selection:
    no two sweeps take the same link, and no sweep takes one twice (``seen``, kept in Python so
    that a long run sends no ever longer ``NOT IN`` list). Where the database can, the
    candidates are also locked, and rows another sweep holds are skipped
    (``SELECT … FOR UPDATE SKIP LOCKED``)."""
    if not connection.features.has_select_for_update_skip_locked:
        # SQLite: no row locks, and a transaction that reads then writes can fail at once with
        # "database is locked" when another one writes; each update commits on its own instead.
        return _take_unchanged(links, seen, changes)
    with transaction.atomic():
        taken: VisitorLink | None = _take_unchanged(
            links.select_for_update(skip_locked=True), seen, changes
        )
    return taken


def _take_unchanged(
    links: QuerySet[VisitorLink], seen: set[int], changes: dict[str, Any]
) -> VisitorLink | None:
    candidates: list[VisitorLink] = list(links[:CLAIM_CANDIDATES])
    for link in candidates:
        if link.pk in seen:
            # Taken (or lost to another sweep) once in this run already; a taken link leaves
            # the selection, so this only stops a run that would otherwise go round in circles.
            continue
        seen.add(link.pk)
        unchanged = VisitorLink.objects.filter(pk=link.pk, state=link.state)
        if link.next_attempt_at is None:
            unchanged = unchanged.filter(next_attempt_at__isnull=True)
        else:
            unchanged = unchanged.filter(next_attempt_at=link.next_attempt_at)
        if unchanged.update(**changes):
            return link
    return None


def sweep(
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    deadline: float | None = None,
    max_retries: int | None = None,
) -> SweepReport:
    """Detach the links of expired sessions, retry due links, prune old ``detached`` links.

    At most ``limit`` links are worked (expired ones first, then the longest due); the others
    wait for the next sweep. A dry run counts them and changes nothing. Safe to run twice at
    once: each link is taken by one sweep only (see :func:`_claim_next`).
    """
    now = _now()
    report = SweepReport(dry_run=dry_run)
    if dry_run:
        report.expired = _count(expired_links(settings, now), limit)
        report.due = _count(due_links(now), _left(limit, report.expired))
        report.pruned = prunable_links(settings, now).count()
        return report
    stale = now + timedelta(seconds=settings.pending_stale_after)
    seen: set[int] = set()
    while _left(limit, report.expired) != 0:
        link = _claim_next(
            expired_links(settings, now),
            seen,
            state=State.PENDING_DETACH,
            attempts=0,
            failed_action="",
            next_attempt_at=stale,
            updated_at=now,
        )
        if link is None:
            break
        report.expired += 1
        logger.info(
            "django-giosg: the session of visitor %s ended at %s; detaching it",
            link.visitor_id,
            link.session_expires_at,
        )
        _sweep_one(report, link, detach, client, settings, deadline, max_retries)
    while _left(limit, report.expired + report.due) != 0:
        link = _claim_next(due_links(now), seen, next_attempt_at=stale, updated_at=now)
        if link is None:
            break
        report.due += 1
        workflow = attach if link.state == State.PENDING_ATTACH else detach
        _sweep_one(report, link, workflow, client, settings, deadline, max_retries)
    report.pruned, _ = prunable_links(settings, now).delete()
    VisitorLease.objects.filter(expires_at__lt=now).delete()  # left behind by dead workers
    return report


def _count(links: QuerySet[VisitorLink], limit: int | None) -> int:
    count = links.count()
    return count if limit is None else min(count, limit)


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(limit - used, 0)


def _sweep_one(
    report: SweepReport,
    link: VisitorLink,
    workflow: Callable[..., Result],
    client: GiosgClient,
    settings: GiosgSettings,
    deadline: float | None,
    max_retries: int | None,
) -> None:
    try:
        result = workflow(link.pk, client, settings, deadline=deadline, max_retries=max_retries)
    except Exception:  # a bug or the database, not giosg: the next sweep takes the link again
        logger.exception("django-giosg: the sweep could not work link %s", link.pk)
        report.retrying += 1
        return
    if result.failed:
        state = VisitorLink.objects.filter(pk=link.pk).values_list("state", flat=True).first()
        if state == State.FAILED:
            report.failed += 1
        else:
            report.retrying += 1
    elif NOT_PENDING_ATTACH in result.skipped or DETACHED_ALREADY in result.skipped:
        report.skipped += 1
    else:
        report.done += 1
