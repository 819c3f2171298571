"""The switches for what giosg does not document: each behaviour both ways."""

from __future__ import annotations

import pytest

from django_giosg.client import GiosgClient
from django_giosg.testing import GiosgSimulator, Switches

from .conftest import API, VISITOR


@pytest.mark.parametrize("status", [201, 200])
def test_repost_of_a_key_overwrites(api: API, sim: GiosgSimulator, room: str, status: int) -> None:
    sim.set_switches(repost_status=status)
    assert api.post(api.variables(room), json={"key": "k", "value": "old"}).status_code == 201
    assert api.post(api.variables(room), json={"key": "k", "value": "new"}).status_code == status
    assert sim.variables(VISITOR) == {room: {"k": "new"}}


def test_ending_an_ended_chat_is_a_no_op_by_default(
    api: API, sim: GiosgSimulator, room: str
) -> None:
    (chat,) = sim.seed_visitor(VISITOR, rooms=[room])
    ended = api.patch(f"owned_chats/{chat}", json={"is_ended": True}).json()
    again = api.patch(f"owned_chats/{chat}", json={"is_ended": True})
    assert again.status_code == 200
    assert again.json() == ended  # unchanged, ended_at included


def test_ending_an_ended_chat_can_be_locked(api: API, sim: GiosgSimulator, room: str) -> None:
    sim.set_switches(end_ended_chat="locked")
    (chat,) = sim.seed_visitor(VISITOR, rooms=[room])
    assert api.patch(f"owned_chats/{chat}", json={"is_ended": True}).status_code == 200
    again = api.patch(f"owned_chats/{chat}", json={"is_ended": True})
    assert again.status_code == 400
    assert "locked" in again.json()["detail"]
    assert api.get(f"owned_chats/{chat}").json()["is_ended"] is True


def test_a_variable_for_an_unseen_visitor_is_created_by_default(
    api: API, sim: GiosgSimulator, room: str
) -> None:
    assert sim.state(VISITOR)["rooms"] == {}
    assert api.post(api.variables(room), json={"key": "k", "value": "v"}).status_code == 201
    assert sim.state(VISITOR)["rooms"][room]["seen"] is True


def test_a_variable_for_an_unseen_visitor_can_be_not_found(
    api: API, sim: GiosgSimulator, room: str, shared_room: str
) -> None:
    sim.set_switches(unseen_visitor_variables="not_found")
    assert api.post(api.variables(room), json={"key": "k", "value": "v"}).status_code == 404
    assert sim.state(VISITOR)["rooms"] == {}
    sim.seed_visitor(VISITOR, rooms=[room], open_chats=0)  # seen in one room only
    assert api.post(api.variables(room), json={"key": "k", "value": "v"}).status_code == 201
    assert api.post(api.variables(shared_room), json={"key": "k", "value": "v"}).status_code == 404


def test_chats_of_an_unseen_visitor_are_an_empty_page_by_default(api: API, room: str) -> None:
    response = api.get(api.chats(room))
    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


def test_chats_of_an_unseen_visitor_can_be_not_found(
    api: API, sim: GiosgSimulator, room: str
) -> None:
    sim.set_switches(unseen_visitor_chats="not_found")
    assert api.get(api.chats(room)).status_code == 404
    sim.seed_visitor(VISITOR, rooms=[room], open_chats=0)
    assert api.get(api.chats(room)).status_code == 200


@pytest.mark.parametrize(("honour", "listed"), [(True, 1), (False, 3)])
def test_the_is_ended_filter_honoured_or_ignored(
    api: API, sim: GiosgSimulator, room: str, honour: bool, listed: int
) -> None:
    sim.set_switches(honour_is_ended=honour)
    (open_chat,) = sim.seed_visitor(VISITOR, rooms=[room], open_chats=1, ended_chats=2)
    results = api.get(api.chats(room), params={"is_ended": "false"}).json()["results"]
    assert len(results) == listed
    ended = api.get(api.chats(room), params={"is_ended": "true"}).json()["results"]
    assert len(ended) == (2 if honour else 3)
    client = GiosgClient(
        api_token=sim.api_token, organization_id=sim.organization_id, base_url=sim.base_url
    )
    with client:  # the client filters again, so it sees only the open chat either way
        assert [chat.id for chat in client.iter_open_chats(room, VISITOR)] == [open_chat]


def test_the_switches_go_back_on_reset(sim: GiosgSimulator) -> None:
    sim.set_switches(end_ended_chat="locked", honour_is_ended=False)
    assert sim.world.switches.end_ended_chat == "locked"
    sim.reset()
    assert sim.world.switches == Switches()


def test_the_initial_switches_come_from_the_constructor() -> None:
    switches = Switches(repost_status=200)
    with GiosgSimulator(switches=switches) as simulator:
        simulator.set_switches(repost_status=201)
        simulator.reset()
        assert simulator.world.switches == switches


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"repost_status": 204}, "repost_status must be one of"),
        ({"repost_status": True}, "repost_status must be one of"),
        ({"honour_is_ended": 1}, "honour_is_ended must be one of"),
        ({"end_ended_chat": "LOCKED"}, "end_ended_chat must be one of"),
        ({"unknown": 1}, "unknown switch unknown"),
    ],
)
def test_bad_switches_are_refused(
    sim: GiosgSimulator, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sim.set_switches(**changes)
    assert sim.world.switches == Switches()
