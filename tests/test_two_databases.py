"""django-giosg with its tables on a second database, behind a router: run by
``tox -e two-databases`` (``--ds tests.settings_two_databases``), which also runs every other test
in this configuration.

Here the router is the strictest a site may have: :class:`tests.routers.LaggingReplicaRouter`
sends every read of the app's rows to a "replica" without the tables. A whole login and logout,
and a sweep, still work: the app reads its rows where it writes them.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from django_giosg.models import State, VisitorLease, VisitorLink, write_db
from django_giosg.testing import GiosgSimulator

from .browsing import VISITOR, Browser, attached, lost_detach, make_user, only_link, sweep
from .conftest import LinkClock

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
