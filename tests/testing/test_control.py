"""The control API under /_simulator/: the Python API's operations over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from django_giosg.testing import GiosgSimulator

from .conftest import API, OTHER_VISITOR, VISITOR

AS_JSON = {"Content-Type": "application/json"}
#: Every control endpoint that changes the simulator, with a body that it obeys.
CHANGES = [
    ("POST", "/_simulator/reset", {}),
    ("POST", f"/_simulator/visitors/{OTHER_VISITOR}", {"open_chats": 1}),
    ("POST", "/_simulator/faults", {"endpoint": "list_rooms", "status": 503}),
    ("DELETE", "/_simulator/faults", None),
    ("PATCH", "/_simulator/switches", {"end_ended_chat": "locked"}),
    ("POST", "/_simulator/down", {"seconds": 0.3}),
    ("POST", "/_simulator/shutdown", {}),
]
CHANGE_IDS = [f"{method} {path.split('/')[2]}" for method, path, _ in CHANGES]
#: Every control endpoint that reads the simulator's state.
READS = [
    "/_simulator/",
    "/_simulator/stats",
    "/_simulator/calls",
    f"/_simulator/visitors/{VISITOR}",
    "/_simulator/faults",
    "/_simulator/switches",
]
#: Names a page may give its requests to the simulator: its own, rebound to 127.0.0.1 (DNS
#: rebinding), or 0.0.0.0 (which some browsers route to this machine).
FOREIGN_HOSTS = [
    "evil.example",
    "127.0.0.1.evil.example",
    "localhost.evil.example:8000",
    "evil.example:{port}",
    "0.0.0.0:{port}",
]


@pytest.fixture
def control(sim: GiosgSimulator) -> API:
    return API(sim)


@pytest.fixture
def prepared(control: API, sim: GiosgSimulator) -> GiosgSimulator:
    """A simulator with something for each change to change: a visitor, a fault, a call."""
    sim.seed_visitor(VISITOR, variables={"k": "v"})
    sim.add_fault("end_chat", status=503)
    assert control.get("rooms").status_code == 200
    return sim


def setup_of(sim: GiosgSimulator) -> dict[str, Any]:
    """What the control endpoints could change."""
    return {
        "faults": [fault.as_dict() for fault in sim.faults.faults],
        "switches": sim.world.switches.as_dict(),
        "visitors": [sim.state(VISITOR), sim.state(OTHER_VISITOR)],
        "calls": sim.calls,
        "up": sim.is_up,
        "shut down": sim.wait(0),
    }


def send(control: API, method: str, path: str, body: object, **headers: str) -> requests.Response:
    """``body`` as JSON text (none for ``None``), by default as ``application/json``."""
    data = None if body is None else json.dumps(body)
    return control.request(method, path, data=data, headers={**AS_JSON, **headers})


def test_describe(control: API, sim: GiosgSimulator, room: str, shared_room: str) -> None:
    info = control.get("/_simulator/").json()
    assert info["base_url"] == sim.base_url
    assert info["loader_url"] == sim.loader_url
    assert info["organization_id"] == sim.organization_id
    assert info["room_ids"] == [room]
    assert info["shared_room_ids"] == [shared_room]
    assert info["page_size"] == 50
    assert info["switches"]["end_ended_chat"] == "noop"


def test_seed_and_read_a_visitor(control: API, sim: GiosgSimulator, room: str) -> None:
    response = control.post(
        f"/_simulator/visitors/{VISITOR}",
        json={"rooms": [room], "open_chats": 2, "ended_chats": 1, "variables": {"k": "v"}},
    )
    assert response.status_code == 201
    body = response.json()
    assert sorted(body["open_chats"]) == sorted(sim.open_chats(VISITOR))
    assert len(body["open_chats"]) == 2
    state = control.get(f"/_simulator/visitors/{VISITOR}").json()
    assert state == sim.state(VISITOR) == body["state"]
    assert state["rooms"][room]["variables"] == {"k": "v"}
    assert [c["is_ended"] for c in state["rooms"][room]["chats"]] == [False, False, True]


def test_seed_defaults_to_every_room(control: API, sim: GiosgSimulator) -> None:
    control.post(f"/_simulator/visitors/{VISITOR}", json={})
    assert len(sim.open_chats(VISITOR)) == len(sim.room_ids) + len(sim.shared_room_ids)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rooms": "all"}, "rooms: invalid value"),
        ({"open_chats": -1}, "open_chats: invalid value"),
        ({"open_chats": True}, "open_chats: invalid value"),
        ({"ended_chats": -2}, "ended_chats: invalid value"),
        ({"variables": {"k": 1}}, "variables: invalid value"),
        ({"chats": 1}, "unknown option chats"),
        ({"rooms": ["00000000-0000-4000-8000-000000000000"]}, "unknown rooms"),
    ],
)
def test_bad_seeds(control: API, sim: GiosgSimulator, body: object, message: str) -> None:
    response = control.post(f"/_simulator/visitors/{VISITOR}", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert sim.state(VISITOR)["rooms"] == {}


@pytest.mark.parametrize("raw", [b"{", b"[1]", b"\xff"])
def test_bodies_must_be_json_objects(control: API, raw: bytes) -> None:
    response = control.post(f"/_simulator/visitors/{VISITOR}", data=raw, headers=AS_JSON)
    assert response.status_code == 400
    assert response.json()["error"]


def test_visitor_ids_are_checked(control: API) -> None:
    assert control.get("/_simulator/visitors/a%20b").status_code == 400
    assert control.get("/_simulator/visitors/" + "a" * 65).status_code == 400


def test_faults(control: API, sim: GiosgSimulator) -> None:
    response = control.post("/_simulator/faults", json={"endpoint": "list_rooms", "status": 503})
    assert response.status_code == 201
    assert response.json()["status"] == 503
    assert control.get("rooms").status_code == 503
    assert [f["endpoint"] for f in control.get("/_simulator/faults").json()] == ["list_rooms"]
    assert control.delete("/_simulator/faults", headers=AS_JSON).status_code == 204
    assert control.get("rooms").status_code == 200
    assert sim.faults.faults == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": 200}, "status must be an error status"),
        ({"endpoint": "everything", "status": 500}, "unknown endpoint"),
        ({"status": 500, "colour": "red"}, "unknown fault option colour"),
    ],
)
def test_bad_faults(control: API, sim: GiosgSimulator, body: object, message: str) -> None:
    response = control.post("/_simulator/faults", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert sim.faults.faults == []


def test_switches(control: API, sim: GiosgSimulator) -> None:
    response = control.patch("/_simulator/switches", json={"end_ended_chat": "locked"})
    assert response.status_code == 200
    assert response.json()["end_ended_chat"] == "locked"
    assert control.get("/_simulator/switches").json() == sim.world.switches.as_dict()
    bad = control.patch("/_simulator/switches", json={"end_ended_chat": "maybe"})
    assert bad.status_code == 400
    assert sim.world.switches.end_ended_chat == "locked"


def test_stats_calls_and_reset(control: API, sim: GiosgSimulator, room: str) -> None:
    control.post(control.variables(room), json={"key": "k", "value": "v"})
    control.get("rooms")
    stats = control.get("/_simulator/stats").json()
    assert stats["requests"] == {"set_variable": 1, "list_rooms": 1}  # control calls not counted
    assert stats["connections"] == 1
    calls = control.get("/_simulator/calls").json()
    assert [(c["endpoint"], c["status"]) for c in calls] == [
        ("set_variable", 201),
        ("list_rooms", 200),
    ]
    assert control.post("/_simulator/reset", json={}).status_code == 204
    assert sim.calls == []
    assert sim.variables(VISITOR) == {}
    assert control.get("/_simulator/stats").json()["requests"] == {}


def test_unknown_control_paths(control: API) -> None:
    for method, path in [("GET", "/_simulator/nothing"), ("DELETE", "/_simulator/reset")]:
        response = control.request(method, path, json={})
        assert response.status_code == 404
        assert "no control endpoint" in response.json()["error"]


def test_down_for_some_seconds(control: API, sim: GiosgSimulator) -> None:
    response = control.post("/_simulator/down", json={"seconds": 0.3})
    assert response.status_code == 202  # the answer arrives before the simulator goes down
    deadline = time.monotonic() + 5
    while sim.is_up and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(requests.ConnectionError):
        requests.get(control.url("rooms"), timeout=5)
    while not sim.is_up and time.monotonic() < deadline:
        time.sleep(0.01)
    assert requests.get(control.url("/api/v5/users/me"), timeout=5).status_code == 401


@pytest.mark.parametrize("body", [{}, {"seconds": 0}, {"seconds": "1"}, {"seconds": True}])
def test_down_needs_seconds(control: API, sim: GiosgSimulator, body: object) -> None:
    response = control.post("/_simulator/down", json=body)
    assert response.status_code == 400
    assert sim.is_up


def test_shutdown_releases_wait(control: API, sim: GiosgSimulator) -> None:
    assert sim.wait(0.01) is False
    assert control.post("/_simulator/shutdown", json={}).status_code == 202
    assert sim.wait(5) is True
    sim._shutdown.clear()  # the session's simulator goes on serving the other tests


def test_the_token_is_served_nowhere(control: API, prepared: GiosgSimulator) -> None:
    """A site pointed at the simulator may have given it a real token; the process that
    started the simulator knows it, nobody else needs it."""
    described = control.get("/_simulator/")
    assert described.status_code == 200
    assert "api_token" not in described.json()
    for path in READS:
        response = control.get(path)
        assert response.status_code == 200, path
        assert prepared.api_token not in response.text, path


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
@pytest.mark.parametrize(("method", "path", "body"), CHANGES, ids=CHANGE_IDS)
def test_a_foreign_host_changes_nothing(
    control: API, prepared: GiosgSimulator, host: str, method: str, path: str, body: object
) -> None:
    before = setup_of(prepared)
    response = send(control, method, path, body, Host=host.format(port=prepared.port))
    assert response.status_code == 403
    assert "127.0.0.1, localhost or [::1]" in response.json()["error"]
    assert "Access-Control-Allow-Origin" not in response.headers
    time.sleep(0.05)  # what an accepted change does after its answer (down, shutdown) is done
    assert setup_of(prepared) == before


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
@pytest.mark.parametrize("path", READS)
def test_a_foreign_host_reads_nothing(
    control: API, prepared: GiosgSimulator, host: str, path: str
) -> None:
    response = control.get(path, headers={"Host": host.format(port=prepared.port)})
    assert response.status_code == 403
    assert list(response.json()) == ["error"]
    assert VISITOR not in response.text
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",  # what fetch() sends with a string body
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
@pytest.mark.parametrize(("method", "path", "body"), CHANGES, ids=CHANGE_IDS)
def test_a_simple_cross_site_request_changes_nothing(
    control: API,
    prepared: GiosgSimulator,
    content_type: str | None,
    method: str,
    path: str,
    body: object,
) -> None:
    """What any page can send without a CORS preflight: the JSON as text/plain, or a form."""
    before = setup_of(prepared)
    data = None if body is None else json.dumps(body)
    headers = {"Origin": "http://evil.example"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = control.request(method, path, data=data, headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    time.sleep(0.05)  # what an accepted change does after its answer (down, shutdown) is done
    assert setup_of(prepared) == before


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1", "[::1]:{port}", "127.0.0.1:{port}", "LocalHost"]
)
def test_json_to_a_loopback_name_is_obeyed(control: API, sim: GiosgSimulator, host: str) -> None:
    named = {"Host": host.format(port=sim.port)}
    fault = {"endpoint": "list_rooms", "status": 503}
    as_json = {"Content-Type": "Application/JSON; charset=utf-8"}
    response = send(control, "POST", "/_simulator/faults", fault, **named, **as_json)
    assert response.status_code == 201
    assert [f.as_dict() for f in sim.faults.faults] == [response.json()]
    assert control.get("/_simulator/faults", headers=named).json() == [response.json()]
    assert send(control, "DELETE", "/_simulator/faults", None, **named).status_code == 204
    assert sim.faults.faults == []


def test_an_empty_json_body_counts_as_an_empty_object(control: API, sim: GiosgSimulator) -> None:
    assert send(control, "POST", f"/_simulator/visitors/{VISITOR}", None).status_code == 201
    assert sim.state(VISITOR)["rooms"]  # seeded with the defaults


class TestBrowser:
    """The calls the loader stand-in makes for the page (any origin)."""

    def test_visit(self, control: API, sim: GiosgSimulator, room: str, shared_room: str) -> None:
        response = control.post("/_simulator/browser/visit", data=f'{{"visitor_id": "{VISITOR}"}}')
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.json() == {
            "visitor_id": VISITOR,
            "rooms": [room, shared_room],
            "chat": None,
        }
        assert all(r["seen"] for r in sim.state(VISITOR)["rooms"].values())

    def test_a_line_in_the_chat_box_starts_a_chat_and_the_next_visit_shows_it(
        self, control: API, sim: GiosgSimulator, room: str
    ) -> None:
        first = control.post(
            "/_simulator/browser/chat", json={"visitor_id": VISITOR, "text": "Hi"}
        )
        assert first.status_code == 200
        assert first.headers["Access-Control-Allow-Origin"] == "*"
        chat = first.json()["chat"]
        assert (chat["room_id"], chat["messages"]) == (room, ["Hi"])
        assert sim.open_chats(VISITOR) == [chat["id"]]
        body = {"visitor_id": VISITOR, "text": "  anyone?  "}
        again = control.post("/_simulator/browser/chat", json=body).json()["chat"]
        assert again == {**chat, "messages": ["Hi", "anyone?"]}  # the same chat
        visit = control.post("/_simulator/browser/visit", json={"visitor_id": VISITOR}).json()
        assert visit["chat"] == again
        state = sim.state(VISITOR)["rooms"][room]
        assert state["chats"] == [
            {"id": chat["id"], "is_ended": False, "messages": ["Hi", "anyone?"]}
        ]
        assert (state["name"], state["is_shared"]) == ("Room 1", False)

        control.post("/_simulator/browser/close", json={"visitor_id": VISITOR})
        newer = control.post(
            "/_simulator/browser/chat", json={"visitor_id": VISITOR, "text": "Back"}
        )
        assert newer.json()["chat"]["id"] != chat["id"]  # an ended chat is not reopened

    @pytest.mark.parametrize("text", [None, 7, "", "   ", "x" * 501])
    def test_a_chat_line_must_be_text(
        self, control: API, sim: GiosgSimulator, text: object
    ) -> None:
        response = control.post(
            "/_simulator/browser/chat", json={"visitor_id": VISITOR, "text": text}
        )
        assert response.status_code == 400
        assert response.json() == {"error": '"text" must be a line of 1-500 characters'}
        assert sim.state(VISITOR)["rooms"] == {}

    def test_close_ends_chats_in_every_room(self, control: API, sim: GiosgSimulator) -> None:
        sim.seed_visitor(VISITOR, open_chats=2)
        sim.seed_visitor(OTHER_VISITOR)
        response = control.post("/_simulator/browser/close", json={"visitor_id": VISITOR})
        assert response.json() == {"closed": 4}  # the shared room's too
        assert sim.open_chats(VISITOR) == []
        assert len(sim.open_chats(OTHER_VISITOR)) == 2

    def test_remove_all_in_rooms(
        self, control: API, sim: GiosgSimulator, room: str, shared_room: str
    ) -> None:
        sim.seed_visitor(VISITOR, variables={"a": "1", "b": "2"})
        body = {"visitor_id": VISITOR, "rooms": [shared_room]}
        assert control.post("/_simulator/browser/remove", json=body).json() == {"removed": 2}
        assert sim.variables(VISITOR) == {room: {"a": "1", "b": "2"}}

    def test_remove_all_where_the_visitor_never_was(
        self, control: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.seed_visitor(VISITOR, rooms=[room], variables={"a": "1"})
        body = {"visitor_id": VISITOR, "rooms": sim.shared_room_ids}
        assert control.post("/_simulator/browser/remove", json=body).json() == {"removed": 0}
        assert sim.variables(VISITOR) == {room: {"a": "1"}}

    def test_remove_all_without_rooms_is_the_domain_room(
        self, control: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.seed_visitor(VISITOR, variables={"a": "1"})
        response = control.post("/_simulator/browser/remove", json={"visitor_id": VISITOR})
        assert response.json() == {"removed": 1}
        assert list(sim.variables(VISITOR)) == sim.shared_room_ids

    def test_preflight(self, control: API) -> None:
        response = control.request("OPTIONS", "/_simulator/browser/close")
        assert response.status_code == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]

    @pytest.mark.parametrize(
        "body",
        [{}, {"visitor_id": 1}, {"visitor_id": "../x"}, {"visitor_id": VISITOR, "rooms": "r"}],
    )
    def test_bad_bodies(self, control: API, body: object) -> None:
        response = control.post("/_simulator/browser/remove", json=body)
        assert response.status_code == 400

    @pytest.mark.parametrize("action", ["visit", "chat", "close", "remove"])
    def test_a_page_of_another_origin_may_call_it_as_text(self, control: API, action: str) -> None:
        """As loader.js does from the site's pages: a string body (text/plain), no preflight."""
        body = json.dumps({"visitor_id": VISITOR, "text": "Hi"})  # "text" is chat's
        headers = {"Origin": "http://127.0.0.1:8000", "Content-Type": "text/plain;charset=UTF-8"}
        response = control.post(f"/_simulator/browser/{action}", data=body, headers=headers)
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        preflight = control.request(
            "OPTIONS",
            f"/_simulator/browser/{action}",
            headers={"Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"

    def test_unknown_action(self, control: API) -> None:
        response = control.post("/_simulator/browser/call", json={"visitor_id": VISITOR})
        assert response.status_code == 404
        assert response.headers["Access-Control-Allow-Origin"] == "*"
