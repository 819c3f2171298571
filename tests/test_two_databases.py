"""django-giosg with its tables on a second database, behind a router: run by
``tox -e two-databases`` (``--ds tests.settings_two_databases``), which also runs every other test
in this configuration.

Here the router is the strictest a site may have: :class:`tests.routers.LaggingReplicaRouter`
sends every read of the app's rows to a "replica" without the tables. A whole login and logout,
and a sweep, still work: the app reads its rows where it writes them.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import responses
from django.conf import settings
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.utils import timezone

from django_giosg.client import GiosgClient
from django_giosg.models import State, VisitorLease, VisitorLink, write_db
from django_giosg.services import workflows
from django_giosg.testing import GiosgSimulator

from .browsing import (
    VISITOR,
    Browser,
    attached,
    lost_detach,
    make_user,
    only_link,
    reloaded,
    sweep,
)
from .conftest import ORG, ORG_URL, ROOM, LinkClock, load_settings

if settings.SETTINGS_MODULE != "tests.settings_two_databases":  # named on the command line
    pytest.skip("needs --ds tests.settings_two_databases", allow_module_level=True)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_apps_tables_are_on_the_second_database_only() -> None:
    assert write_db(VisitorLink) == write_db(VisitorLease) == "accounts"
    for alias, present in (("default", False), ("accounts", True)):
        tables = set(connections[alias].introspection.table_names())
        assert ("django_giosg_visitorlink" in tables) is present
        assert ("django_giosg_visitorlease" in tables) is present


@override_settings(DATABASE_ROUTERS=["tests.routers.LaggingReplicaRouter"])
def test_login_and_logout_read_nothing_from_a_lagging_replica(giosg: GiosgSimulator) -> None:
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    assert giosg.variables(VISITOR) == {
        giosg.room_ids[0]: {"username": "ann", "user_id": str(ann.pk)}
    }
    browser.logout()
    assert giosg.variables(VISITOR) == {}
    assert giosg.open_chats(VISITOR) == []
    assert VisitorLink.objects.get().state == State.DETACHED


@override_settings(DATABASE_ROUTERS=["tests.routers.LaggingReplicaRouter"])
def test_the_sweep_reads_nothing_from_a_lagging_replica(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    link = attached(giosg, VISITOR, make_user("ann"))
    lost_detach(link)
    link_clock.advance(600)
    assert "0 expired and 1 due link(s): 1 done" in sweep()
    assert only_link().state == State.DETACHED
    assert giosg.variables(VISITOR) == {}


@override_settings(DATABASE_ROUTERS=["tests.routers.LaggingReplicaRouter"])
def test_an_attach_overtaken_by_a_logout_reads_nothing_from_a_lagging_replica(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    """The attach reads its link again once a logout has overtaken it, to undo what it set."""
    link = VisitorLink.objects.create(visitor_id=VISITOR, user=make_user("ann"))

    def logout_meanwhile(request: Any) -> tuple[int, dict[str, str], str]:
        try:
            VisitorLink.objects.filter(pk=link.pk).release(timezone.now())
        finally:
            connections.close_all()
        return 201, {}, "{}"

    visitor = f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}"
    mocked.add_callback("POST", f"{visitor}/variables", callback=logout_meanwhile)
    room = {"id": ROOM, "organization_id": ORG, "is_shared": False}
    mocked.get(f"{ORG_URL}/rooms", json={"next": None, "previous": None, "results": [room]})
    mocked.get(f"{visitor}/chats", json={"next": None, "previous": None, "results": []})
    mocked.delete(re.compile(rf"{visitor}/variables/[^/]+$"), status=204)
    result = workflows.attach(link.pk, client, load_settings())
    assert (result.cancelled, result.ok) == (True, True)
    assert reloaded(link).state == State.DETACHED


@override_settings(DATABASE_ROUTERS=["tests.routers.ByModelRouter"])
def test_the_migration_runs_only_where_the_router_puts_the_model() -> None:
    """0002's data step names its model to the router: on "default", which has no such table,
    it is skipped, as the schema changes are."""
    executor = MigrationExecutor(connections["default"])
    executor.migrate([("django_giosg", "0001_initial")])
    executor.loader.build_graph()
    executor.migrate([("django_giosg", "0002_live_visitor_id")])
