"""Two ``giosg_sweep`` processes at once over a backlog of hundreds of expired and due links:
no deadlock, the links shared, and every chat ended once and every key deleted once, as the
simulator counts them. On SQLite here, on PostgreSQL in ``tox -e postgres``."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from django_giosg.models import State, VisitorLink, live_visitor_id
from django_giosg.testing import GiosgSimulator

from .. import processes
from ..browsing import make_user

pytestmark = [pytest.mark.workers, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BACKLOG = 300  # links: half of them attached with an expired session, half due to be detached
KEYS = ["username", "user_id"]
SUMMARY = re.compile(
    r"giosg_sweep: (\d+) expired and (\d+) due link\(s\): (\d+) done, (\d+) to retry, "
    r"(\d+) failed, (\d+) skipped;"
)


def make_backlog(giosg: GiosgSimulator) -> list[str]:
    """``BACKLOG`` visitors, each with an open chat and its variables in the room, and a link."""
    room = giosg.room_ids[0]
    ann = make_user("ann")
    now = timezone.now()
    visitors = [f"{n:032x}" for n in range(1, BACKLOG + 1)]
    links = []
    for n, visitor in enumerate(visitors):
        giosg.seed_visitor(
            visitor, rooms=[room], open_chats=1, variables={"username": "ann", "user_id": "1"}
        )
        expired = n % 2 == 0
        state = State.ATTACHED if expired else State.PENDING_DETACH
        links.append(
            VisitorLink(
                visitor_id=visitor,
                live_visitor_id=live_visitor_id(visitor, state),
                user_id=ann.pk,
                state=state,
                keys={room: KEYS},
                session_expires_at=now - timedelta(hours=1) if expired else None,
                next_attempt_at=None if expired else now,
            )
        )
    VisitorLink.objects.bulk_create(links)
    return visitors


@pytest.mark.timeout(120)
def test_two_sweeps_share_a_backlog_and_do_everything_once(giosg: GiosgSimulator) -> None:
    visitors = make_backlog(giosg)
    giosg.add_fault(latency=0.005)  # a sweep alone would take seconds: both get a share
    command = processes.django_command("giosg_sweep")
    with processes.started(command, command) as sweeps:
        outputs = [sweep.communicate(timeout=90)[0] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], outputs
    counts = []
    for output in outputs:
        found = SUMMARY.search(output)
        assert found, output
        done, retrying, failed = map(int, found.groups()[2:5])
        assert (retrying, failed) == (0, 0), output
        counts.append(done)
    assert sum(counts) == BACKLOG
    assert min(counts) > 0, counts  # shared: each sweep worked some of the links

    assert set(VisitorLink.objects.values_list("state", flat=True)) == {State.DETACHED}
    calls = [call for call in giosg.calls if call.status is not None]
    ended = Counter(call.path for call in calls if call.endpoint == "end_chat")
    deleted = Counter(call.path for call in calls if call.endpoint == "delete_variable")
    assert len(ended) == BACKLOG
    assert set(ended.values()) == {1}  # every chat ended once
    assert len(deleted) == BACKLOG * len(KEYS)
    assert set(deleted.values()) == {1}  # every key deleted once
    for visitor in visitors[:: BACKLOG // 10]:
        assert giosg.open_chats(visitor) == []
        assert giosg.variables(visitor) == {}
