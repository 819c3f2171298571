"""The links' state machine on the model: each transition happens from its states only, writes
its fields together, and leaves the row alone otherwise; the selections pick the right links."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connections, transaction
from django.db.models import UniqueConstraint
from django.utils import timezone

from django_giosg.models import (
    LIVE_STATES,
    Action,
    State,
    VisitorLease,
    VisitorLink,
    VisitorOrigin,
    write_db,
)

pytestmark = pytest.mark.django_db

NOW = timezone.now()
LATER = NOW + timedelta(minutes=10)
ALL: list[str] = list(State.values)

Transition = Callable[[VisitorLink], object]

TRANSITIONS: dict[str, tuple[Transition, set[str], dict[str, Any]]] = {
    "rebind": (
        lambda link: link.rebind(["r2"], LATER, LATER, "d" * 64),
        {State.PENDING_ATTACH, State.ATTACHED},
        {
            "state": State.PENDING_ATTACH,
            "browser_rooms": ["r2"],
            "next_attempt_at": LATER,
            "device": "d" * 64,
        },
    ),
    "follow_expiry": (
        lambda link: link.follow_expiry(LATER, "d" * 64),
        {State.PENDING_ATTACH, State.ATTACHED},
        {"session_expires_at": LATER, "attempts": 2, "device": "d" * 64},
    ),
    "supersede": (
        lambda link: link.supersede(LATER),
        {State.PENDING_ATTACH, State.ATTACHED},
        {
            "state": State.PENDING_DETACH,
            "attempts": 0,
            "failed_action": "",
            "next_attempt_at": LATER,
        },
    ),
    "cancel_attach": (
        lambda link: link.cancel_attach(),
        {State.PENDING_ATTACH},
        {"state": State.PENDING_DETACH, "attempts": 2},
    ),
    "begin_detach": (
        lambda link: link.begin_detach(),
        {State.PENDING_ATTACH, State.ATTACHED, State.PENDING_DETACH, State.FAILED},
        {"state": State.PENDING_DETACH, "attempts": 2, "failed_action": Action.ATTACH},
    ),
    "plan_keys": (
        lambda link: link.plan_keys({"r": ["k"]}),
        {State.PENDING_ATTACH},
        {"state": State.PENDING_ATTACH, "keys": {"r": ["k"]}},
    ),
    "mark_attached": (
        lambda link: link.mark_attached({"r": ["k"]}),
        {State.PENDING_ATTACH},
        {
            "state": State.ATTACHED,
            "keys": {"r": ["k"]},
            "attempts": 0,
            "failed_action": "",
            "next_attempt_at": None,
            "last_error": "",
        },
    ),
    "set_again_at": (
        lambda link: link.set_again_at({"r": ["k"]}, LATER),
        {State.PENDING_ATTACH},
        {
            "state": State.PENDING_ATTACH,
            "keys": {"r": ["k"]},
            "attempts": 0,
            "failed_action": "",
            "next_attempt_at": LATER,
            "last_error": "",
        },
    ),
    "settle": (
        lambda link: link.settle(LATER),
        {State.PENDING_DETACH, State.SETTLING},
        {
            "state": State.SETTLING,
            "keys": {"r": ["old"]},
            "attempts": 0,
            "failed_action": "",
            "next_attempt_at": LATER,
            "last_error": "",
        },
    ),
    "mark_detached": (
        lambda link: link.mark_detached(),
        {State.PENDING_DETACH, State.SETTLING},
        {
            "state": State.DETACHED,
            "keys": {},
            "attempts": 0,
            "failed_action": "",
            "next_attempt_at": None,
            "last_error": "",
        },
    ),
    "retry_later": (
        lambda link: link.retry_later(Action.DETACH, 3, "boom", LATER, keys={}),
        {State.PENDING_DETACH},
        {
            "state": State.PENDING_DETACH,
            "attempts": 3,
            "failed_action": Action.DETACH,
            "last_error": "boom",
            "next_attempt_at": LATER,
            "keys": {},
        },
    ),
    "mark_failed": (
        lambda link: link.mark_failed(Action.ATTACH, 3, "boom"),
        {State.PENDING_ATTACH},
        {"state": State.FAILED, "attempts": 3, "last_error": "boom", "next_attempt_at": None},
    ),
    "reset": (
        lambda link: link.reset(LATER),
        {State.FAILED},
        {"state": State.PENDING_ATTACH, "attempts": 0, "next_attempt_at": LATER},
    ),
    "claim_expired": (
        lambda link: link.claim_expired(NOW, LATER),
        set(ALL),
        {
            "state": State.PENDING_DETACH,
            "attempts": 0,
            "next_attempt_at": LATER,
            "close_in_browser": True,
        },
    ),
    "claim_due": (
        lambda link: link.claim_due(NOW, LATER),
        set(ALL),
        {"next_attempt_at": LATER, "attempts": 2},
    ),
}


def link_in(state: str, **fields: Any) -> VisitorLink:
    user = get_user_model().objects.create_user("ann")
    link: VisitorLink = VisitorLink.objects.create(
        visitor_id="a" * 32,
        user=user,
        state=state,
        keys={"r": ["old"]},
        failed_action=Action.ATTACH,
        attempts=2,
        last_error="before",
        next_attempt_at=NOW,
        **fields,
    )
    return link


def row(link: VisitorLink) -> dict[str, Any]:
    return dict(VisitorLink.objects.filter(pk=link.pk).values().get())


@pytest.mark.parametrize("state", ALL)
@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_a_transition_happens_from_its_states_only(name: str, state: str) -> None:
    transition, allowed, expected = TRANSITIONS[name]
    link = link_in(state)
    before = row(link)
    changed = transition(link)
    after = row(link)
    # the unique column goes with the state, whether the transition happened or not
    assert after["live_visitor_id"] == (link.visitor_id if after["state"] in LIVE_STATES else None)
    assert link.live_visitor_id == after["live_visitor_id"]
    if state not in allowed:
        assert not changed
        assert after == before
        return
    assert changed
    assert {field: after[field] for field in expected} == expected
    assert {field: getattr(link, field) for field in expected} == expected  # the instance follows
    assert after["updated_at"] != before["updated_at"]


def test_a_claim_loses_to_a_change_since_the_read() -> None:
    link = link_in(State.PENDING_DETACH)
    VisitorLink.objects.filter(pk=link.pk).update(next_attempt_at=LATER)
    assert not link.claim_due(NOW, LATER + timedelta(minutes=1))
    assert not link.claim_expired(NOW, LATER + timedelta(minutes=1))
    assert row(link)["next_attempt_at"] == LATER


@pytest.mark.parametrize("claim", ["claim_due", "claim_expired"])
def test_a_claim_loses_to_a_change_of_state_alone_since_the_read(claim: str) -> None:
    """A change that keeps ``next_attempt_at`` (a detach beginning, an attach cancelled) still
    takes the link out of this sweep's hands: the claim compares the state too."""
    link = link_in(State.PENDING_ATTACH)
    VisitorLink.objects.get(pk=link.pk).cancel_attach()
    before = row(link)
    assert not getattr(link, claim)(NOW, LATER)
    assert row(link) == before
    assert link.state == State.PENDING_ATTACH  # the instance did not follow a change not made


def test_a_claim_of_a_link_read_without_a_next_attempt() -> None:
    link = link_in(State.ATTACHED)
    VisitorLink.objects.filter(pk=link.pk).update(next_attempt_at=None)
    link.refresh_from_db()
    assert link.claim_expired(NOW, LATER)
    assert row(link)["state"] == State.PENDING_DETACH


@pytest.mark.parametrize("state", ALL)
def test_unsettled_writes_are_recorded_in_any_state_and_the_later_time_kept(state: str) -> None:
    link = link_in(state)
    link.note_unsettled(sets=LATER)
    assert (row(link)["sets_unsettled_until"], row(link)["deletes_unsettled_until"]) == (
        LATER,
        None,
    )
    link.note_unsettled(sets=NOW, deletes=NOW)  # sooner: the sets keep the later time
    assert (row(link)["sets_unsettled_until"], row(link)["deletes_unsettled_until"]) == (
        LATER,
        NOW,
    )
    assert (link.sets_unsettled_until, link.deletes_unsettled_until) == (LATER, NOW)
    assert row(link)["state"] == state


def test_a_failed_settle_settles_again() -> None:
    """Its chats were ended: a detach beginning, and the admin's retry, only delete its keys
    again (a full detach would end the chats of whoever has the visitor now)."""
    failed = link_in(State.FAILED)
    VisitorLink.objects.filter(pk=failed.pk).update(failed_action=Action.SETTLE)
    failed.refresh_from_db()
    assert failed.begin_detach()
    assert (row(failed)["state"], failed.state) == (State.SETTLING, State.SETTLING)
    VisitorLink.objects.filter(pk=failed.pk).update(state=State.FAILED)
    failed.refresh_from_db()
    assert failed.reset(LATER) == Action.SETTLE
    assert row(failed)["state"] == State.SETTLING


def test_unsettled_until_is_the_latest_time_still_to_come() -> None:
    links = VisitorLink.objects.filter(visitor_id="a" * 32)
    assert links.unsettled_until() is None
    VisitorLink.objects.create(
        visitor_id="a" * 32, state=State.DETACHED, sets_unsettled_until=at(-1)
    )
    assert links.unsettled_until() is None  # landed by now, if ever
    VisitorLink.objects.create(
        visitor_id="a" * 32, state=State.SETTLING, sets_unsettled_until=at(3)
    )
    VisitorLink.objects.create(
        visitor_id="a" * 32, state=State.DETACHED, deletes_unsettled_until=at(7)
    )
    VisitorLink.objects.create(
        visitor_id="b" * 32, state=State.DETACHED, sets_unsettled_until=at(9)
    )
    assert links.unsettled_until() == at(7)


def test_a_reset_failed_detach_and_a_failed_link_without_an_action_detach() -> None:
    failed = link_in(State.FAILED)
    VisitorLink.objects.filter(pk=failed.pk).update(failed_action="")
    failed.refresh_from_db()
    assert failed.reset(LATER) == Action.DETACH
    assert row(failed)["state"] == State.PENDING_DETACH


def test_a_failed_attach_of_a_visitor_bound_anew_resets_to_detach() -> None:
    failed = link_in(State.FAILED)
    VisitorLink.objects.create(visitor_id=failed.visitor_id, state=State.ATTACHED)
    assert failed.reset(LATER) == Action.DETACH
    assert row(failed)["state"] == State.PENDING_DETACH


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def test_the_selections() -> None:
    visitors = itertools.count(1)

    def make(state: str, **fields: Any) -> int:
        visitor_id = f"{next(visitors):032x}"
        link: VisitorLink = VisitorLink.objects.create(
            visitor_id=visitor_id, state=state, **fields
        )
        return link.pk

    live_ended = make(State.ATTACHED, session_expires_at=at(-5))
    pending_ended = make(State.PENDING_ATTACH, session_expires_at=at(-9))
    live = make(State.ATTACHED, session_expires_at=at(5))
    detach_due = make(State.PENDING_DETACH, next_attempt_at=at(-1))
    attach_due = make(State.PENDING_ATTACH, next_attempt_at=at(-2))
    make(State.PENDING_DETACH, next_attempt_at=at(1))
    settle_due = make(State.SETTLING, next_attempt_at=at(-4))
    make(State.SETTLING, next_attempt_at=at(4))
    make(State.FAILED, next_attempt_at=at(-3), session_expires_at=at(-3))
    old_detached = make(State.DETACHED, session_expires_at=at(-9))
    links = VisitorLink.objects
    assert set(links.live().values_list("pk", flat=True)) == {
        live_ended,
        pending_ended,
        live,
        attach_due,
    }
    assert list(links.expired(NOW).values_list("pk", flat=True)) == [pending_ended, live_ended]
    assert list(links.due(NOW).values_list("pk", flat=True)) == [
        settle_due,
        attach_due,
        detach_due,
    ]
    assert list(
        links.prunable(timezone.now() + timedelta(seconds=1)).values_list("pk", flat=True)
    ) == [old_detached]
    assert not links.prunable(NOW - timedelta(days=1)).exists()


def test_releasing_many_links_leaves_the_ones_with_their_chats_ended_alone() -> None:
    detached = VisitorLink.objects.create(visitor_id="a" * 32, state=State.DETACHED)
    settling = VisitorLink.objects.create(visitor_id="a" * 32, state=State.SETTLING)
    failed_settle = VisitorLink.objects.create(
        visitor_id="a" * 32, state=State.FAILED, failed_action=Action.SETTLE
    )
    failed = VisitorLink.objects.create(visitor_id="a" * 32, state=State.FAILED, attempts=4)
    live = VisitorLink.objects.create(visitor_id="a" * 32, state=State.ATTACHED)
    assert row(live)["live_visitor_id"] == "a" * 32
    ids = VisitorLink.objects.filter(visitor_id="a" * 32).release(LATER)
    assert sorted(ids) == [failed.pk, live.pk]
    assert row(failed)["state"] == State.PENDING_DETACH
    assert row(failed)["attempts"] == 0
    assert (row(live)["state"], row(live)["live_visitor_id"]) == (State.PENDING_DETACH, None)
    assert row(detached)["state"] == State.DETACHED
    assert row(settling)["state"] == State.SETTLING
    assert row(failed_settle)["state"] == State.FAILED


def test_the_manager_has_no_change_of_every_link() -> None:
    """``VisitorLink.objects.release()`` would release every link there is."""
    assert not hasattr(VisitorLink.objects, "release")
    assert not hasattr(VisitorLink.objects, "follow_expiry")
    assert hasattr(VisitorLink.objects.all(), "release")


# -- one live link per visitor, on every database -------------------------------------------------


def test_one_live_link_per_visitor_without_a_conditional_constraint() -> None:
    """What MySQL, MariaDB and Oracle enforce too: no constraint of the model has a condition
    (they would ignore it); the unique column alone keeps a second live link out."""
    unique = [c for c in VisitorLink._meta.constraints if isinstance(c, UniqueConstraint)]
    assert all(constraint.condition is None for constraint in unique)
    VisitorLink.objects.create(visitor_id="a" * 32, state=State.ATTACHED)
    for state in LIVE_STATES:
        with pytest.raises(IntegrityError), transaction.atomic(using=write_db(VisitorLink)):
            VisitorLink.objects.create(visitor_id="a" * 32, state=state)
    for state in (State.PENDING_DETACH, State.DETACHED, State.FAILED, State.DETACHED):
        VisitorLink.objects.create(visitor_id="a" * 32, state=state)  # NULLs never collide
    assert VisitorLink.objects.filter(visitor_id="a" * 32).count() == 5


def test_no_database_is_warned_that_it_ignores_the_invariant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``models.W036``: a database without partial indexes ignores conditional unique
    constraints. Pretend to be one."""
    database = write_db(VisitorLink)
    monkeypatch.setattr(connections[database].features, "supports_partial_indexes", False)
    warnings = VisitorLink.check(databases=[database])
    assert warnings == []


def test_saving_a_link_keeps_the_unique_column_with_its_state() -> None:
    link = VisitorLink.objects.create(visitor_id="b" * 32)
    assert row(link)["live_visitor_id"] == "b" * 32
    link.state = State.DETACHED
    link.save(update_fields=["state"])
    assert row(link)["live_visitor_id"] is None
    link.state = State.ATTACHED
    link.save()
    assert row(link)["live_visitor_id"] == "b" * 32


def test_the_strings_of_a_link_and_a_lease() -> None:
    assert str(VisitorLink(visitor_id="a" * 32)) == f"visitor {'a' * 32} (Pending Attach)"
    lease = VisitorLease(visitor_id="a" * 32, holder="h", expires_at=timezone.now())
    assert str(lease) == f"lease on visitor {'a' * 32}"
    origin = VisitorOrigin(visitor_id="a" * 32, device="d" * 64, seen_at=timezone.now())
    assert str(origin) == f"origin of visitor {'a' * 32}"


def test_the_database_refuses_a_state_out_of_step_with_the_unique_column() -> None:
    """A write that bypasses the transitions (``update(state=…)``, ``bulk_create``) is refused by
    the check constraint, instead of leaving a live link the unique column does not cover."""
    live = VisitorLink.objects.create(visitor_id="a" * 32, state=State.ATTACHED)
    with pytest.raises(IntegrityError), transaction.atomic(using=write_db(VisitorLink)):
        VisitorLink.objects.filter(pk=live.pk).update(state=State.DETACHED)
    with pytest.raises(IntegrityError), transaction.atomic(using=write_db(VisitorLink)):
        VisitorLink.objects.bulk_create([VisitorLink(visitor_id="b" * 32, state=State.ATTACHED)])
    assert row(live)["state"] == State.ATTACHED


def test_saving_only_some_fields_given_as_any_iterable() -> None:
    link = VisitorLink.objects.create(visitor_id="c" * 32)
    link.state = State.DETACHED
    link.save(update_fields=(name for name in ["state"]))  # a generator, read once
    assert (row(link)["state"], row(link)["live_visitor_id"]) == (State.DETACHED, None)
    link.attempts = 3
    link.save(update_fields=iter(["attempts"]))
    assert row(link)["attempts"] == 3


def test_a_link_read_from_a_database_changes_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """``db_manager()`` names the database: the transitions, and the release of a queryset,
    follow the link there, whatever the router says."""
    created = VisitorLink.objects.create(visitor_id="d" * 32, state=State.ATTACHED)
    database = created._state.db
    monkeypatch.setattr("django_giosg.models.write_db", lambda model: "nowhere")
    read = VisitorLink.objects.db_manager(database).get(pk=created.pk)
    assert read.follow_expiry(LATER)
    links = VisitorLink.objects.db_manager(database).filter(pk=created.pk)
    assert links.release(LATER) == [created.pk]
    monkeypatch.undo()
    assert (row(created)["state"], row(created)["session_expires_at"]) == (
        State.PENDING_DETACH,
        LATER,
    )


def test_a_link_passes_full_clean_in_every_state() -> None:
    """``full_clean()`` checks the constraints in Python, before ``save()`` would fill the
    column: ``clean()`` fills it first."""
    for state in State.values:
        VisitorLink(visitor_id="e" * 32, state=state).full_clean()


@pytest.mark.parametrize(
    ("state", "device", "expires", "held"),
    [
        (State.ATTACHED, "b" * 64, LATER, True),  # another browser, its session lives
        (State.PENDING_ATTACH, "", LATER, True),  # made before 0003: another browser's
        (State.ATTACHED, "b" * 64, None, True),  # no recorded expiry: it lives
        (State.ATTACHED, "a" * 64, LATER, False),  # this browser: a user switch
        (State.ATTACHED, "b" * 64, NOW, False),  # its session ended by then
        (State.PENDING_DETACH, "b" * 64, LATER, False),  # not live
        (State.FAILED, "b" * 64, LATER, False),
    ],
)
def test_a_live_binding_is_held_for_its_own_browser_until_its_session_ends(
    state: str, device: str, expires: datetime | None, held: bool
) -> None:
    link = link_in(state, device=device, session_expires_at=expires)
    assert link.held_elsewhere("a" * 64, ended_by=NOW) is held
