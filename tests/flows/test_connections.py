"""Connections under concurrency: however many logouts run at once in a process, its client opens
no more connections than its pool keeps (``MAX_CONNECTIONS``) and discards none.

What was measured from outside: a gunicorn run logged 1,407 urllib3 "Connection pool is full,
discarding connection" warnings and opened 6,343 TCP connections for 64,184 requests. Each
workflow ran up to ``MAX_WORKERS`` calls at once, several requests ran at once, and the pool
held ``MAX_WORKERS`` connections.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from django_giosg.client import get_client
from django_giosg.conf import get_settings
from django_giosg.models import State, VisitorLink
from django_giosg.services import workflows
from django_giosg.testing import GiosgSimulator

from ..browsing import DEVICE, VISITORS, make_user

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 4
LOGOUTS = 6


@pytest.fixture
def giosg(settings: Any, empty_cache: None) -> Iterator[GiosgSimulator]:
    """Twelve rooms, so that each logout lists chats in twelve rooms: many calls at once."""
    with GiosgSimulator(rooms=12, shared_rooms=0) as simulator:
        simulator.add_fault(latency=0.02)
        settings.GIOSG = simulator.settings(ROOM_IDS=simulator.room_ids[:2], MAX_WORKERS=WORKERS)
        yield simulator
        get_client().close()


def attached_links(giosg: GiosgSimulator) -> list[int]:
    ids = []
    for number, visitor_id in enumerate(VISITORS[:LOGOUTS]):
        giosg.seed_visitor(visitor_id, rooms=giosg.room_ids, open_chats=1)
        user = make_user(f"user{number}")
        link = VisitorLink.objects.create(
            visitor_id=visitor_id,
            user=user,
            device=DEVICE,
            state=State.ATTACHED,
            keys={room: ["username", "user_id"] for room in giosg.room_ids[:2]},
        )
        ids.append(link.pk)
    return ids


def detach_at_once(link_ids: list[int]) -> None:
    """Each link's detach in its own thread, as concurrent logouts in a threaded server."""
    start = threading.Barrier(len(link_ids))

    def detach(link_id: int) -> None:
        start.wait()
        try:
            assert workflows.detach(link_id, get_client(), get_settings()).ok
        finally:
            connections.close_all()

    threads = [threading.Thread(target=detach, args=(pk,)) for pk in link_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


@pytest.mark.parametrize("pool", [WORKERS, 3 * WORKERS])
def test_concurrent_logouts_open_no_more_connections_than_the_pool_keeps(
    giosg: GiosgSimulator, settings: Any, caplog: pytest.LogCaptureFixture, pool: int
) -> None:
    settings.GIOSG = {**settings.GIOSG, "MAX_CONNECTIONS": pool}
    link_ids = attached_links(giosg)
    detach_at_once(link_ids)
    states = set(VisitorLink.objects.values_list("state", flat=True))
    assert states == {State.DETACHED}
    assert all(giosg.open_chats(visitor_id) == [] for visitor_id in VISITORS[:LOGOUTS])
    assert giosg.requests() > 10 * pool  # far more calls than connections
    assert giosg.connections <= pool
    assert "pool is full" not in caplog.text
    # The same again: the connections the pool keeps serve it; none is opened.
    opened = giosg.connections
    for visitor_id in VISITORS[:LOGOUTS]:
        giosg.seed_visitor(visitor_id, rooms=giosg.room_ids, open_chats=1)
    VisitorLink.objects.update(state=State.PENDING_DETACH, live_visitor_id=None)
    detach_at_once(link_ids)
    assert giosg.connections == opened
    assert "pool is full" not in caplog.text
