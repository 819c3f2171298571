"""The recommended login and logout (set each key in each room; page the rooms, end the open
chats, delete the keys), by the client against the simulator over real HTTP.

The services of a later release run these steps concurrently; here they run one after another,
which is what the connection-reuse and fault tests need.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from django_giosg.client import GiosgClient
from django_giosg.errors import GiosgAPIError, GiosgNotFound
from django_giosg.testing import GiosgSimulator

VISITOR = "08119566026a4e1194a7a3244c90f925"
OTHER_VISITOR = "8a60b202474547dbb8ce19737e4c166f"
VARIABLES = {"username": "Ann Smith", "user_id": "42", "plan": "gold"}


@pytest.fixture(scope="module")
def module_simulator() -> Iterator[GiosgSimulator]:
    with GiosgSimulator(rooms=5, shared_rooms=2, page_size=2, seed=7) as simulator:
        yield simulator


@pytest.fixture
def sim(module_simulator: GiosgSimulator) -> Iterator[GiosgSimulator]:
    module_simulator.reset()
    yield module_simulator
    module_simulator.reset()


def make_client(sim: GiosgSimulator, **options: Any) -> GiosgClient:
    options = {"backoff_base": 0.001, "backoff_max": 0.01, "timeout": (2.0, 2.0), **options}
    return GiosgClient(
        api_token=sim.api_token,
        organization_id=sim.organization_id,
        base_url=sim.base_url,
        **options,
    )


def login(client: GiosgClient, visitor: str, rooms: list[str]) -> None:
    """§11.2: every key, as a string, in every room."""
    for room in rooms:
        for key, value in VARIABLES.items():
            client.set_variable(room, visitor, key, value)


def logout(client: GiosgClient, visitor: str, rooms: list[str]) -> int:
    """§11.3: page through the rooms, skip shared ones, end each open chat (one that turns out
    to have ended already counts), delete each key (404 counts as deleted)."""
    ended = 0
    for room in client.iter_rooms():
        if room.is_shared:
            continue
        for chat in client.iter_open_chats(room.id, visitor):
            try:
                client.end_chat(chat.id)
            except GiosgAPIError:
                if not client.get_chat(chat.id).is_ended:
                    raise
            ended += 1
    for room_id in rooms:
        for key in VARIABLES:
            with contextlib.suppress(GiosgNotFound):  # already gone
                client.delete_variable(room_id, visitor, key)
    return ended


def assert_logged_out(sim: GiosgSimulator, visitor: str) -> None:
    assert sim.variables(visitor) == {}
    state = sim.state(visitor)["rooms"]
    for room in sim.room_ids:
        assert all(chat["is_ended"] for chat in state[room]["chats"])
    for room in sim.shared_room_ids:  # the owner's chats: not ours to end
        assert any(not chat["is_ended"] for chat in state[room]["chats"])


def test_login_then_logout(sim: GiosgSimulator) -> None:
    sim.seed_visitor(VISITOR, open_chats=2, ended_chats=1)
    sim.seed_visitor(OTHER_VISITOR, open_chats=1, variables={"username": "Bob"})
    with make_client(sim) as client:
        login(client, VISITOR, sim.room_ids)
        assert sim.variables(VISITOR) == dict.fromkeys(sim.room_ids, VARIABLES)
        ended = logout(client, VISITOR, sim.room_ids)
    assert ended == 10  # 2 in each of the 5 own rooms
    assert_logged_out(sim, VISITOR)
    assert len(sim.open_chats(OTHER_VISITOR)) == 7  # another visitor is untouched
    assert sim.stats()["requests"] == {
        "set_variable": 15,  # 3 keys in each of 5 rooms
        "list_rooms": 4,  # 7 rooms, 2 a page
        "list_chats": 5,  # own rooms only
        "end_chat": 10,
        "delete_variable": 15,
    }


def test_a_repeated_workflow_opens_no_new_connection(sim: GiosgSimulator) -> None:
    with make_client(sim) as client:
        for visitor in (VISITOR, OTHER_VISITOR, VISITOR):
            sim.seed_visitor(visitor, open_chats=1)
            login(client, visitor, sim.room_ids)
            logout(client, visitor, sim.room_ids)
            assert_logged_out(sim, visitor)
            assert sim.connections == 1  # the first workflow's connection serves them all
    assert sim.requests() > 100


def test_logout_twice_is_harmless(sim: GiosgSimulator) -> None:
    sim.seed_visitor(VISITOR)
    with make_client(sim) as client:
        login(client, VISITOR, sim.room_ids)
        assert logout(client, VISITOR, sim.room_ids) == 5
        assert logout(client, VISITOR, sim.room_ids) == 0
    assert_logged_out(sim, VISITOR)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_workflow_survives_faults(seed: int) -> None:
    with GiosgSimulator(rooms=5, shared_rooms=2, page_size=2, seed=seed) as sim:
        sim.seed_visitor(VISITOR, open_chats=2)
        sim.add_fault(latency=0.001)
        sim.add_fault(status=503, rate=0.15)
        sim.add_fault("set_variable", status=429, retry_after="0", rate=0.2)
        sim.add_fault("end_chat", drop=True, rate=0.3)
        sim.add_fault("list_chats", status=502, times=2)
        sim.add_fault("delete_variable", status=500, rate=0.2)
        with make_client(sim, max_retries=10) as client:
            login(client, VISITOR, sim.room_ids)
            assert sim.variables(VISITOR) == dict.fromkeys(sim.room_ids, VARIABLES)
            assert logout(client, VISITOR, sim.room_ids) == 10
        assert_logged_out(sim, VISITOR)
        outcomes = {(call.status, call.outcome) for call in sim.calls}
        faults = {(503, "answered"), (429, "answered"), (502, "answered"), (500, "answered")}
        assert faults | {(None, "dropped")} <= outcomes  # each kind of fault was met


def test_a_chat_ended_meanwhile_counts_as_ended(sim: GiosgSimulator) -> None:
    """With ``end_ended_chat="locked"``, a chat the browser closed between the listing and the
    PATCH answers 400; the re-read shows it ended."""
    sim.set_switches(end_ended_chat="locked", honour_is_ended=True)
    sim.seed_visitor(VISITOR, rooms=sim.room_ids[:1], open_chats=1)
    with make_client(sim) as client:
        (chat,) = client.iter_open_chats(sim.room_ids[0], VISITOR)
        sim.world.close_chats(VISITOR)  # the browser's _giosg('chat', 'close')
        with pytest.raises(GiosgAPIError) as raised:
            client.end_chat(chat.id)
        assert raised.value.status == 400
        assert client.get_chat(chat.id).is_ended


@pytest.mark.slow
def test_giosg_down_for_a_while_is_waited_out_by_retries(sim: GiosgSimulator) -> None:
    sim.seed_visitor(VISITOR)
    with make_client(sim, max_retries=8, backoff_base=0.1, backoff_max=1.0) as client:
        login(client, VISITOR, sim.room_ids)
        sim.down(0.3)
        assert logout(client, VISITOR, sim.room_ids) == 5
    assert_logged_out(sim, VISITOR)


@pytest.mark.slow
def test_concurrent_calls_share_the_pool(sim: GiosgSimulator) -> None:
    sim.seed_visitor(VISITOR, open_chats=0)
    calls = [(room, key) for room in sim.room_ids for key in VARIABLES] * 4
    with make_client(sim, pool_size=4) as client, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda rk: client.set_variable(rk[0], VISITOR, rk[1], "v"), calls))
    assert sim.requests("set_variable") == 60
    assert sim.connections <= 4
    assert sim.variables(VISITOR) == {room: dict.fromkeys(VARIABLES, "v") for room in sim.room_ids}
