"""The durable record of each visitor-to-user binding: what giosg holds, and what is left to do.

A :class:`VisitorLink` moves through the states of the README's state machine ("The states"). The
selections live on :class:`VisitorLinkQuerySet` and the transitions on the model, each a
conditional update that happens only from the states it names: safe against a concurrent change,
on every database, without row locks. At most one link per visitor id is live (``pending_attach``
or ``attached``): a unique column that holds the visitor id only while the link is live
(``live_visitor_id``, kept in step with the state by a check constraint) guarantees it even when
two logins race, on every database (MySQL, MariaDB and Oracle ignore conditional unique
constraints). A link records the browser that made it (a digest of its device cookie, see
:mod:`django_giosg.device`); no raw session key is stored.

Links are read and written on the database the router writes them to (:func:`write_db`), never
on a replica that may lag; a link read with ``db_manager()`` from a named database changes there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from django.conf import settings
from django.db import IntegrityError, models, router, transaction
from django.db.models import F, Max, Q

from . import clock


class State(models.TextChoices):
    PENDING_ATTACH = "pending_attach"
    ATTACHED = "attached"
    PENDING_DETACH = "pending_detach"
    #: Its chats are ended and its keys deleted, but some of its sets got no answer and may
    #: still land at giosg: its keys are deleted once more when they have settled.
    SETTLING = "settling"
    DETACHED = "detached"
    FAILED = "failed"


class Action(models.TextChoices):
    ATTACH = "attach"
    DETACH = "detach"
    #: The second delete of a ``settling`` link's keys.
    SETTLE = "settle"


_PENDING = {
    Action.ATTACH: State.PENDING_ATTACH,
    Action.DETACH: State.PENDING_DETACH,
    Action.SETTLE: State.SETTLING,
}


def pending_state(action: str) -> str:
    """The state of a link whose ``action`` is still to be done."""
    return _PENDING[Action(action)]


#: The states in which a link holds (or is about to hold) the visitor for its user.
LIVE_STATES = (State.PENDING_ATTACH, State.ATTACHED)
#: The states in which the sweep takes a link when it is due.
DUE_STATES = (State.PENDING_ATTACH, State.PENDING_DETACH, State.SETTLING)
#: Links whose binding is over and whose chats are ended (a settle failed counts): no detach
#: ends the visitor's chats for them again, which may be the next user's by now.
CHATS_ENDED = Q(state__in=[State.SETTLING, State.DETACHED]) | Q(
    state=State.FAILED, failed_action=Action.SETTLE
)


def write_db(model: type[models.Model]) -> str:
    """The database the router writes ``model`` to: the app's transactions, ``on_commit``
    callbacks and database feature checks for it are all there."""
    return router.db_for_write(model)


def live_visitor_id(visitor_id: str, state: str) -> str | None:
    """The unique column's value: the visitor id while the link is live, else ``NULL`` (which
    every database lets many rows share)."""
    return visitor_id if state in LIVE_STATES else None


# The field groups the transitions write; each is spelled out here once.


def _queued(state: str, stale_at: datetime) -> dict[str, Any]:
    """A task is enqueued for the link; the sweep takes over at ``stale_at`` if it is lost."""
    return {"state": state, "next_attempt_at": stale_at}


def _fresh_start() -> dict[str, Any]:
    """No failed attempt counts any more."""
    return {"attempts": 0, "failed_action": ""}


def _settled(state: str) -> dict[str, Any]:
    """Done: nothing is due and nothing went wrong."""
    return {"state": state, **_fresh_start(), "next_attempt_at": None, "last_error": ""}


def _waiting(state: str, when: datetime) -> dict[str, Any]:
    """Nothing went wrong, but there is more to do at ``when``."""
    return {**_settled(state), "next_attempt_at": when}


def _released(stale_at: datetime) -> dict[str, Any]:
    """The binding is over: detach it, with a fresh count of attempts."""
    return {**_queued(State.PENDING_DETACH, stale_at), **_fresh_start()}


class VisitorLinkQuerySet(models.QuerySet["VisitorLink"]):
    """The selections of the state machine, and its changes of many links at once.

    (The typed locals below are for mypy: django-stubs types ``filter()`` and friends as ``Any``
    with the mypy release pinned in ``tox.ini``.)
    """

    def live(self) -> VisitorLinkQuerySet:
        links: VisitorLinkQuerySet = self.filter(state__in=LIVE_STATES)
        return links

    def expired(self, ended_by: datetime) -> VisitorLinkQuerySet:
        """Live links whose session had ended by ``ended_by`` (their recorded expiry), the
        longest-ended first."""
        links: VisitorLinkQuerySet = self.live().filter(session_expires_at__lte=ended_by)
        ordered: VisitorLinkQuerySet = links.order_by("session_expires_at", "pk")
        return ordered

    def due(self, now: datetime) -> VisitorLinkQuerySet:
        """Pending (and settling) links whose time has come: a failed attempt's backoff is over,
        the task that was enqueued for them has not done its work in time (it may be lost), or
        the writes they wait for have settled; longest due first."""
        links: VisitorLinkQuerySet = self.filter(state__in=DUE_STATES, next_attempt_at__lte=now)
        ordered: VisitorLinkQuerySet = links.order_by("next_attempt_at", "pk")
        return ordered

    def of_device(self, device: str) -> VisitorLinkQuerySet:
        """The links made from the browser whose device digest is ``device``."""
        links: VisitorLinkQuerySet = self.filter(device=device)
        return links

    def deletable(self) -> VisitorLinkQuerySet:
        """``detached`` links: any other may still hold variables and chats at giosg, and its
        row is the only record of what to clean up (a detached link never becomes live again)."""
        links: VisitorLinkQuerySet = self.filter(state=State.DETACHED)
        return links

    def prunable(self, changed_before: datetime) -> VisitorLinkQuerySet:
        """``detached`` links last changed before ``changed_before``."""
        links: VisitorLinkQuerySet = self.filter(
            state=State.DETACHED, updated_at__lt=changed_before
        )
        return links

    # The two changes of many links below are not copied onto the manager (``queryset_only``):
    # ``VisitorLink.objects.release()`` would release every link there is.

    def unsettled_until(self) -> datetime | None:
        """The latest time until which a write of these links that got no answer may still land
        at giosg, if that is still to come (``None`` otherwise)."""
        now = clock.now()
        found = self.aggregate(
            sets=Max("sets_unsettled_until"), deletes=Max("deletes_unsettled_until")
        )
        times = [when for when in found.values() if when is not None and when > now]
        return max(times, default=None)

    def release(self, stale_at: datetime) -> list[int]:
        """Transition: every link here whose chats are not ended yet → ``pending_detach``, with
        a fresh count of attempts (the session ended, the user went, the admin said so). Returns
        their ids, to detach. (A ``settling`` link's binding is over already.)"""
        ids: list[int] = list(self.exclude(CHATS_ENDED).values_list("pk", flat=True))
        released = self.model.objects.db_manager(self.db).filter(pk__in=ids).exclude(CHATS_ENDED)
        released.update(**_released(stale_at), live_visitor_id=None, updated_at=clock.now())
        return ids

    release.queryset_only = True  # type: ignore[attr-defined]

    def follow_expiry(self, expires_at: datetime | None) -> int:
        """The live links here follow their session's new expiry (no change of state)."""
        changed: int = self.live().update(session_expires_at=expires_at, updated_at=clock.now())
        return changed

    follow_expiry.queryset_only = True  # type: ignore[attr-defined]


_QuerySet = TypeVar("_QuerySet", bound=models.QuerySet[Any])


def _where_written(manager: models.Manager[Any], rows: _QuerySet) -> _QuerySet:
    """The app's rows are read where they are written (:func:`write_db`, unless ``db_manager()``
    names another database): the state machine never decides on a replica's stale copy."""
    return rows if manager._db is not None else rows.using(write_db(manager.model))


class VisitorLinkManager(models.Manager.from_queryset(VisitorLinkQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> VisitorLinkQuerySet:
        links: VisitorLinkQuerySet = super().get_queryset()
        return _where_written(self, links)


class VisitorLeaseManager(models.Manager["VisitorLease"]):
    def get_queryset(self) -> models.QuerySet[VisitorLease]:
        return _where_written(self, super().get_queryset())


class VisitorOriginManager(models.Manager["VisitorOrigin"]):
    def get_queryset(self) -> models.QuerySet[VisitorOrigin]:
        return _where_written(self, super().get_queryset())


class VisitorLink(models.Model):
    """One giosg visitor bound to one user, from login (or capture) until it is detached."""

    visitor_id = models.CharField(max_length=128)
    #: ``visitor_id`` while the link is live, else ``NULL``: unique, so that a visitor has at
    #: most one live link on every database. Written by the transitions (and :meth:`save`).
    live_visitor_id = models.CharField(  # noqa: DJ001 - NULLs never collide, "" would
        max_length=128, null=True, blank=True, editable=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,  # the link outlives its user until its detach is done
        related_name="+",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING_ATTACH)
    #: The owned rooms the browser reported, where variables are set besides ``ROOM_IDS``.
    browser_rooms = models.JSONField(default=list, blank=True)
    #: ``{room_id: [keys]}``: the keys set in each room, or being set (recorded before the calls,
    #: so that a detach racing an attach deletes them too; deleting an unset key is harmless).
    keys = models.JSONField(default=dict, blank=True)
    failed_action = models.CharField(max_length=8, choices=Action.choices, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    #: What went wrong last; never the token, a variable's value or a session key.
    last_error = models.TextField(blank=True)
    session_expires_at = models.DateTimeField(null=True, blank=True)
    #: Sets (deletes) of this link that got no answer may still land at giosg until then (sent
    #: + ``SETTLE_DELAY``): its own detach deletes its keys again after that, and a later
    #: binding of the visitor sets its variables again after that.
    sets_unsettled_until = models.DateTimeField(null=True, blank=True)
    deletes_unsettled_until = models.DateTimeField(null=True, blank=True)
    #: The digest of the browser's device cookie (:mod:`django_giosg.device`): only that browser
    #: may take over the binding while its session lives. Empty for links made before 0003.
    device = models.CharField(max_length=64, blank=True, default="")
    #: Ended without the browser being there (its session expired): the chat window on that
    #: device is still to be closed, on its next page.
    close_in_browser = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = VisitorLinkManager()

    class Meta:
        verbose_name = "visitor link"
        constraints: ClassVar[list[models.BaseConstraint]] = [
            # (a constraint rather than unique=True: no extra LIKE index on PostgreSQL)
            models.UniqueConstraint(
                fields=["live_visitor_id"], name="django_giosg_one_live_link_per_visitor_id"
            ),
            # Every write keeps them in step; the database refuses a write that would not. (The
            # "is not null" matters: NULL = visitor_id is unknown, which a check lets through.)
            models.CheckConstraint(
                condition=Q(
                    state__in=LIVE_STATES,
                    live_visitor_id__isnull=False,
                    live_visitor_id=F("visitor_id"),
                )
                | (~Q(state__in=LIVE_STATES) & Q(live_visitor_id__isnull=True)),
                name="django_giosg_live_visitor_id_follows_state",
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [
            # the sweep: due pending links, expired attached links, old detached links
            models.Index(fields=["state", "next_attempt_at"], name="django_giosg_due"),
            models.Index(fields=["state", "session_expires_at"], name="django_giosg_expiry"),
            models.Index(fields=["state", "updated_at"], name="django_giosg_prune"),
            models.Index(fields=["visitor_id", "state"], name="django_giosg_visitor"),
            models.Index(fields=["device", "state"], name="django_giosg_device"),
        ]

    def __str__(self) -> str:
        return f"visitor {self.visitor_id} ({self.get_state_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A new link (or one saved whole) gets the unique column that goes with its state."""
        self.live_visitor_id = live_visitor_id(self.visitor_id, self.state)
        if kwargs.get("update_fields") is not None:
            fields = set(kwargs["update_fields"])
            if fields & {"state", "visitor_id"}:
                fields.add("live_visitor_id")
            kwargs["update_fields"] = fields
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """``full_clean()`` checks the constraints: the column first goes with the state."""
        self.live_visitor_id = live_visitor_id(self.visitor_id, self.state)

    def held_elsewhere(self, device: str, ended_by: datetime) -> bool:
        """Whether this link holds its visitor for another browser than ``device`` whose session
        has not ended by ``ended_by``: then no other user may take the visitor over. A link
        with no device (made before migration 0003) counts as another browser's."""
        if self.state not in LIVE_STATES or self.device == device:
            return False
        expires = self.session_expires_at
        return expires is None or expires > ended_by

    def wants(self, action: str) -> bool:
        """Whether ``action`` is still to be done: an attach only for a ``pending_attach`` link,
        a detach for any link not ``detached`` yet (for a ``settling`` one, its settle)."""
        if action == Action.ATTACH:
            return self.state == State.PENDING_ATTACH
        return self.state != State.DETACHED

    # -- transitions: each changes the link only from the states it names, and returns whether
    # -- it did; the instance follows a change that happened.

    def rebind(
        self,
        browser_rooms: Sequence[str],
        stale_at: datetime,
        expires_at: datetime | None,
        device: str,
    ) -> bool:
        """Live → ``pending_attach``: the same user bound again (from ``device``), to attach
        (again) in ``browser_rooms``."""
        return self._change(
            LIVE_STATES,
            **_queued(State.PENDING_ATTACH, stale_at),
            browser_rooms=list(browser_rooms),
            session_expires_at=expires_at,
            device=device,
        )

    def follow_expiry(self, expires_at: datetime | None, device: str | None = None) -> bool:
        """Live, and stays so: the session's expiry moved (and the same user bound it again
        from ``device``, if given)."""
        fields: dict[str, Any] = {"session_expires_at": expires_at}
        if device is not None:
            fields["device"] = device
        return self._change(LIVE_STATES, **fields)

    def supersede(self, stale_at: datetime, *, close_in_browser: bool = False) -> bool:
        """Live → ``pending_detach``, with a fresh count of attempts: another user's binding of
        the visitor supersedes this one. ``close_in_browser``: its own browser was not there
        (its session had ended), so it closes the chat window on its next page."""
        return self._change(LIVE_STATES, **_released(stale_at), close_in_browser=close_in_browser)

    def cancel_attach(self) -> bool:
        """``pending_attach`` → ``pending_detach``: the attach cannot go on (the user is gone)."""
        return self._change([State.PENDING_ATTACH], state=State.PENDING_DETACH)

    def begin_detach(self) -> bool:
        """A detach is about to run: any link whose chats are not ended yet → ``pending_detach``
        (a pending attach is cancelled), its attempts still counted; a failed settle →
        ``settling`` (and a ``settling`` link stays so)."""
        if self.state == State.FAILED and self.failed_action == Action.SETTLE:
            return self._change([State.FAILED], state=State.SETTLING)
        return self._update(self._row().exclude(CHATS_ENDED), state=State.PENDING_DETACH)

    def plan_keys(self, keys: Mapping[str, Sequence[str]]) -> bool:
        """``pending_attach``, and stays so: the keys about to be set, recorded before the calls
        so that a detach overtaking the attach deletes them too."""
        return self._change([State.PENDING_ATTACH], keys=dict(keys))

    def mark_attached(self, keys: Mapping[str, Sequence[str]]) -> bool:
        """``pending_attach`` → ``attached``: every variable is set."""
        return self._change([State.PENDING_ATTACH], **_settled(State.ATTACHED), keys=dict(keys))

    def set_again_at(self, keys: Mapping[str, Sequence[str]], when: datetime) -> bool:
        """``pending_attach``, and stays so: every variable is set, but another binding's
        writes of the visitor may still land until ``when``: due again then, to set them once
        more."""
        return self._change(
            [State.PENDING_ATTACH], **_waiting(State.PENDING_ATTACH, when), keys=dict(keys)
        )

    def settle(self, when: datetime) -> bool:
        """``pending_detach`` (or ``settling``) → ``settling``: the chats are ended and the keys
        deleted, but sets of this link may still land until ``when``: due again then, to delete
        its keys once more."""
        return self._change(
            [State.PENDING_DETACH, State.SETTLING], **_waiting(State.SETTLING, when)
        )

    def mark_detached(self) -> bool:
        """``pending_detach`` (or ``settling``) → ``detached``: the chats are ended and the
        variables deleted, for good."""
        return self._change(
            [State.PENDING_DETACH, State.SETTLING], **_settled(State.DETACHED), keys={}
        )

    def note_unsettled(
        self, *, sets: datetime | None = None, deletes: datetime | None = None
    ) -> None:
        """Writes of this link got no answer and may still land until ``sets`` (``deletes``):
        recorded in any state, the later time kept. (Only the work holding the visitor's lease
        writes these fields.)"""
        fields: dict[str, Any] = {}
        for name, until in (("sets_unsettled_until", sets), ("deletes_unsettled_until", deletes)):
            recorded = getattr(self, name)
            if until is not None and (recorded is None or until > recorded):
                fields[name] = until
        if fields:
            self._update(self._row(), **fields)

    def take_back_unsettled(self, field: str, recorded: datetime | None) -> None:
        """The worst case noted before sending (:meth:`note_unsettled`) did not come true: every
        write was answered. ``field`` goes back to what it ``recorded`` before."""
        if getattr(self, field) != recorded:
            self._update(self._row(), **{field: recorded})

    def retry_later(
        self, action: str, attempts: int, error: str, next_attempt_at: datetime, **fields: Any
    ) -> bool:
        """``pending_<action>``, and stays so: ``attempts`` failed so far, due again at
        ``next_attempt_at``. ``fields``: what the attempt changed besides (the keys left)."""
        return self._failed(action, attempts, error, next_attempt_at=next_attempt_at, **fields)

    def mark_failed(self, action: str, attempts: int, error: str, **fields: Any) -> bool:
        """``pending_<action>`` → ``failed``: the last of ``attempts`` failed; nothing is due
        any more."""
        return self._failed(
            action, attempts, error, state=State.FAILED, next_attempt_at=None, **fields
        )

    def reset(self, stale_at: datetime) -> str | None:
        """``failed`` → ``pending_<failed action>`` (``settling`` for a settle) with no attempts
        (the admin's retry); the action to run again, or ``None`` if the link was not failed. A
        failed attach whose visitor has a newer live link can only detach: it becomes
        ``pending_detach``. A link failed before any action was recorded is detached, the safe
        way to end it."""
        action: str = self.failed_action or Action.DETACH
        changes: dict[str, Any] = {
            "state": pending_state(action),
            "attempts": 0,
            "next_attempt_at": stale_at,
        }
        try:
            with transaction.atomic(using=self._row().db):
                changed = self._change([State.FAILED], **changes)
        except IntegrityError:  # the one-live-link constraint: the visitor is bound anew
            action = Action.DETACH
            changes["state"] = pending_state(action)
            changed = self._change([State.FAILED], **changes)
        return action if changed else None

    def claim_expired(self, now: datetime, stale_at: datetime) -> bool:
        """For one sweep only (see :meth:`_claim`): an expired link → ``pending_detach``; its
        browser closes the chat window on its next page."""
        return self._claim(now, **_released(stale_at), close_in_browser=True)

    def claim_due(self, now: datetime, stale_at: datetime) -> bool:
        """For one sweep only (see :meth:`_claim`): a due link, due again at ``stale_at`` should
        this sweep die with it."""
        return self._claim(now, next_attempt_at=stale_at)

    def _failed(self, action: str, attempts: int, error: str, **fields: Any) -> bool:
        return self._change(
            [pending_state(action)],
            failed_action=action,
            attempts=attempts,
            last_error=error,
            **fields,
        )

    def _claim(self, now: datetime, **fields: Any) -> bool:
        """Change the link only if nobody did since it was read (same state, same
        ``next_attempt_at``): this moves it out of the sweep's selections, so that no two sweeps
        take it."""
        unchanged = self._row().filter(state=self.state)
        if self.next_attempt_at is None:
            unchanged = unchanged.filter(next_attempt_at__isnull=True)
        else:
            unchanged = unchanged.filter(next_attempt_at=self.next_attempt_at)
        return self._apply(unchanged, {**fields, "updated_at": now})

    def _change(self, states: Iterable[str], **fields: Any) -> bool:
        """The one conditional update behind the transitions: only while the link is in one of
        ``states``."""
        return self._update(self._row().filter(state__in=list(states)), **fields)

    def _update(self, links: models.QuerySet[VisitorLink], **fields: Any) -> bool:
        return self._apply(links, {**fields, "updated_at": clock.now()})

    def _row(self) -> VisitorLinkQuerySet:
        """This link's row, on the database it was read from (else where links are written)."""
        row: VisitorLinkQuerySet = type(self).objects.db_manager(self._state.db).filter(pk=self.pk)
        return row

    def _apply(self, links: models.QuerySet[VisitorLink], fields: dict[str, Any]) -> bool:
        if "state" in fields:  # the unique column goes with the state
            live = live_visitor_id(self.visitor_id, fields["state"])
            fields = {**fields, "live_visitor_id": live}
        changed = bool(links.update(**fields))
        if changed:
            for name, value in fields.items():
                setattr(self, name, value)
        return changed


class VisitorLease(models.Model):
    """A short lease on one visitor id: attaches and detaches of the same visitor never overlap.

    Without it, a detach of the old binding could delete a key just after the new binding set
    it (the keys have the same names). Taken with a conditional update or an insert, so it works
    on SQLite as well; it expires by itself if its holder dies.
    """

    visitor_id = models.CharField(max_length=128, unique=True)
    holder = models.CharField(max_length=32)
    expires_at = models.DateTimeField()

    objects = VisitorLeaseManager()

    def __str__(self) -> str:
        return f"lease on visitor {self.visitor_id}"


class VisitorOrigin(models.Model):
    """The browser a visitor id belongs to: the first that reported it (giosg gives each browser
    its own visitor id). Only that browser may bind the visitor to a user, so that knowing
    somebody's visitor id does not let anyone put their name on it or end its chats. It lapses
    when that browser has not reported the id for ``SESSION_COOKIE_AGE``."""

    visitor_id = models.CharField(max_length=128, unique=True)
    #: The digest of the browser's device cookie (:mod:`django_giosg.device`).
    device = models.CharField(max_length=64)
    #: When that browser last reported (or bound) the id.
    seen_at = models.DateTimeField()

    objects = VisitorOriginManager()

    class Meta:
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["seen_at"], name="django_giosg_origin_seen")  # pruning
        ]

    def __str__(self) -> str:
        return f"origin of visitor {self.visitor_id}"
