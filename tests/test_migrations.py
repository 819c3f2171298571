"""The app's migrations: none missing, and 0002 gives the live links their unique column."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from django_giosg.models import State, VisitorLink, write_db

BEFORE = [("django_giosg", "0001_initial")]
AFTER = [("django_giosg", "0002_live_visitor_id")]


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
        with pytest.raises(IntegrityError), transaction.atomic(using=write_db(VisitorLink)):
            VisitorLink.objects.create(visitor_id="a" * 32)
        migrate(BEFORE)  # and back: the partial constraint again
        with pytest.raises(IntegrityError), transaction.atomic(using=write_db(VisitorLink)):
            old.objects.create(visitor_id="b" * 32, state=State.ATTACHED)
    finally:
        migrate(AFTER)


@pytest.mark.django_db(transaction=True)
def test_where_the_old_constraint_was_ignored_the_newest_live_link_is_bound_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MySQL, MariaDB and Oracle never created 0001's conditional constraint (Django skips it
    where partial indexes are not supported), so a visitor may have two live links there: the
    newest is bound anew, the others released. Here SQLite plays such a database."""
    database = connections[write_db(VisitorLink)]
    monkeypatch.setattr(database.features, "supports_partial_indexes", False)
    old = (
        migrate(BEFORE).loader.project_state(BEFORE).apps.get_model("django_giosg", "VisitorLink")
    )
    older = old.objects.create(visitor_id="a" * 32, state=State.PENDING_ATTACH).pk
    newer = old.objects.create(visitor_id="a" * 32, state=State.ATTACHED, attempts=2).pk
    other = old.objects.create(visitor_id="b" * 32, state=State.ATTACHED).pk
    try:
        migrate(AFTER)
        rows = {
            link.pk: (link.state, link.live_visitor_id, link.attempts)
            for link in VisitorLink.objects.all()
        }
        assert rows == {
            older: (State.PENDING_DETACH, None, 0),  # released
            newer: (State.PENDING_ATTACH, "a" * 32, 0),  # bound anew: its keys are older's too
            other: (State.ATTACHED, "b" * 32, 0),
        }
        # Due at once, the old binding first: the next giosg_sweep detaches it, then sets the
        # newest's variables again (the detach deleted the keys they share).
        due = VisitorLink.objects.due(timezone.now() + timedelta(seconds=1))
        assert list(due.values_list("pk", flat=True)) == [older, newer]
    finally:
        migrate(AFTER)
