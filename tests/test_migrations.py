"""The app's migrations: none missing, 0002 gives the live links their unique column, 0003 a
device (none for the links made before it), 0004 the unsettled writes (and its reverse hands
settling links back to the detach the code before it knows)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connections, transaction
from django.db.migrations.executor import MigrationExecutor

from django_giosg.client import get_client
from django_giosg.models import Action, State, VisitorLink, write_db
from django_giosg.testing import GiosgSimulator

from .browsing import VISITOR, make_user, sweep

BEFORE = [("django_giosg", "0001_initial")]
AFTER = [("django_giosg", "0004_unsettled_writes")]  # 0002, and the latest
THE_ONE_BEFORE_0004 = [("django_giosg", "0003_device")]


@pytest.mark.django_db
def test_no_migration_is_missing() -> None:
    call_command("makemigrations", "django_giosg", check=True, dry_run=True, stdout=StringIO())


def migrate(target: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connections[write_db(VisitorLink)])
    executor.migrate(target)
    executor.loader.build_graph()  # what was applied
    return executor


@pytest.mark.django_db(transaction=True)
def test_live_links_get_the_unique_column_and_the_migration_reverses() -> None:
    old = (
        migrate(BEFORE).loader.project_state(BEFORE).apps.get_model("django_giosg", "VisitorLink")
    )
    created = {
        state: old.objects.create(visitor_id=visitor, state=state).pk
        for visitor, state in [
            ("a" * 32, State.ATTACHED),
            ("b" * 32, State.PENDING_ATTACH),
            ("a" * 32, State.PENDING_DETACH),
            ("b" * 32, State.DETACHED),
            ("c" * 32, State.FAILED),
        ]
    }
    try:
        migrate(AFTER)
        columns = dict(VisitorLink.objects.values_list("pk", "live_visitor_id"))
        assert {state: columns[pk] for state, pk in created.items()} == {
            State.ATTACHED: "a" * 32,
            State.PENDING_ATTACH: "b" * 32,
            State.PENDING_DETACH: None,
            State.DETACHED: None,
            State.FAILED: None,
        }
        made_before = VisitorLink.objects.values_list("device", "close_in_browser").distinct()
        assert list(made_before) == [("", False)]
        with pytest.raises(IntegrityError), transaction.atomic(using=write_db(VisitorLink)):
            VisitorLink.objects.create(visitor_id="a" * 32)
        migrate(BEFORE)  # and back: the partial constraint again
        with pytest.raises(IntegrityError), transaction.atomic(using=write_db(VisitorLink)):
            old.objects.create(visitor_id="b" * 32, state=State.ATTACHED)
    finally:
        migrate(AFTER)


@pytest.mark.django_db(transaction=True)
def test_reversing_0004_hands_settling_links_back_to_the_detach() -> None:
    settling = VisitorLink.objects.create(
        visitor_id="a" * 32, state=State.SETTLING, failed_action=Action.SETTLE, attempts=2
    )
    failed = VisitorLink.objects.create(
        visitor_id="b" * 32, state=State.FAILED, failed_action=Action.SETTLE
    )
    other = VisitorLink.objects.create(
        visitor_id="c" * 32, state=State.FAILED, failed_action=Action.ATTACH
    )
    try:
        migrate(THE_ONE_BEFORE_0004)
        rows = dict(VisitorLink.objects.values_list("pk", "state"))
        assert rows == {
            settling.pk: State.PENDING_DETACH,
            failed.pk: State.FAILED,
            other.pk: State.FAILED,
        }
        actions = dict(VisitorLink.objects.values_list("pk", "failed_action"))
        assert actions == {
            settling.pk: Action.DETACH,  # its failed attempts: of a detach, as 0003 knows
            failed.pk: Action.DETACH,
            other.pk: Action.ATTACH,
        }
    finally:
        migrate(AFTER)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_user", [False, True], ids=["two users", "one user"])
@pytest.mark.parametrize("giosg_holds", ["older", "newer"])
def test_where_the_old_constraint_was_ignored_the_newest_live_link_ends_attached(
    giosg: GiosgSimulator, monkeypatch: pytest.MonkeyPatch, same_user: bool, giosg_holds: str
) -> None:
    """MySQL, MariaDB and Oracle never created 0001's conditional constraint (Django skips it
    where partial indexes are not supported), so a visitor may have two live links there. The
    migration binds the newest anew and releases the others, and the next sweep ends with giosg
    holding the newest binding's variables, whichever binding set them last. SQLite plays such a
    database here."""
    database = connections[write_db(VisitorLink)]
    monkeypatch.setattr(database.features, "supports_partial_indexes", False)
    old = (
        migrate(BEFORE).loader.project_state(BEFORE).apps.get_model("django_giosg", "VisitorLink")
    )
    ann = make_user("ann")
    bob = ann if same_user else make_user("bob")
    room = giosg.room_ids[0]
    giosg.seed_visitor(VISITOR, rooms=[room], open_chats=1)
    holder = ann if giosg_holds == "older" else bob
    for key, value in {"username": holder.get_username(), "user_id": str(holder.pk)}.items():
        get_client().set_variable(room, VISITOR, key, value)
    keys = {room: ["username", "user_id"]}
    older = old.objects.create(visitor_id=VISITOR, state="attached", user_id=ann.pk, keys=keys)
    newer = old.objects.create(visitor_id=VISITOR, state="attached", user_id=bob.pk, keys=keys)
    other = old.objects.create(visitor_id="b" * 32, state="attached", attempts=2)
    try:
        migrate(AFTER)
        rows = {
            link.pk: (link.state, link.live_visitor_id, link.attempts)
            for link in VisitorLink.objects.all()
        }
        assert rows == {
            older.pk: (State.PENDING_DETACH, None, 0),  # released
            newer.pk: (State.PENDING_ATTACH, VISITOR, 0),  # bound anew
            other.pk: (State.ATTACHED, "b" * 32, 2),  # alone: untouched
        }
        # (Both links are worked at once, under the visitor's lease, in either order: the
        # attach may detach the older binding first, and its own detach then finds it done.)
        line = sweep()
        assert "0 expired and 2 due link(s)" in line
        assert "0 to retry, 0 failed" in line
        states = dict(VisitorLink.objects.values_list("pk", "state"))
        assert states == {
            older.pk: State.DETACHED,
            newer.pk: State.ATTACHED,
            other.pk: State.ATTACHED,
        }
        expected = {"username": bob.get_username(), "user_id": str(bob.pk)}
        assert giosg.variables(VISITOR) == {room: expected}
    finally:
        migrate(AFTER)
