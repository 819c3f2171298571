"""Fault injection: latency, error statuses, 429 with Retry-After, drops, hangs, down."""

from __future__ import annotations

import time

import pytest
import requests

from django_giosg.client import GiosgClient
from django_giosg.errors import GiosgUnavailable
from django_giosg.testing import Fault, GiosgSimulator

from .conftest import API, VISITOR


def statuses(api: API, room: str, count: int = 40) -> list[int]:
    """One request to each of ``count`` distinct URLs (different visitors)."""
    return [api.get(api.chats(room, visitor=f"v{i}")).status_code for i in range(count)]


class TestStatuses:
    def test_times_limits_a_fault_to_its_first_hits(self, api: API, sim: GiosgSimulator) -> None:
        sim.add_fault("list_rooms", status=503, times=2)
        assert [api.get("rooms").status_code for _ in range(4)] == [503, 503, 200, 200]
        assert api.get("rooms").json()["results"]  # the real answer after the fault

    @pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
    def test_the_status_and_its_body(self, api: API, sim: GiosgSimulator, status: int) -> None:
        sim.add_fault(status=status)
        response = api.get("rooms")
        assert response.status_code == status
        assert response.json() == {"detail": "Simulated failure."}
        assert "Retry-After" not in response.headers

    def test_429_with_retry_after(self, api: API, sim: GiosgSimulator, room: str) -> None:
        sim.add_fault("set_variable", status=429, retry_after="7", times=1)
        response = api.post(api.variables(room), json={"key": "k", "value": "v"})
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert sim.variables(VISITOR) == {}  # a refused request changes nothing

    def test_a_fault_on_one_endpoint_spares_the_others(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.add_fault("end_chat", status=500)
        assert api.get("rooms").status_code == 200
        assert api.get(api.chats(room)).status_code == 200
        (chat,) = sim.seed_visitor(VISITOR, rooms=[room])
        assert api.patch(f"owned_chats/{chat}", json={"is_ended": True}).status_code == 500
        assert sim.open_chats(VISITOR) == [chat]

    def test_a_global_fault_hits_every_endpoint(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.add_fault(status=502)
        assert api.get("/api/v5/users/me").status_code == 502
        assert api.get("rooms").status_code == 502
        assert api.post(api.variables(room), json={"key": "k", "value": "v"}).status_code == 502
        assert api.session.get(sim.loader_url, timeout=5).status_code == 502

    def test_faults_come_before_authentication(self, api: API, sim: GiosgSimulator) -> None:
        sim.add_fault(status=503)
        assert api.get("rooms", headers={"Authorization": "Token wrong"}).status_code == 503

    def test_the_first_decisive_fault_wins(self, api: API, sim: GiosgSimulator) -> None:
        sim.add_fault(status=500, times=1)
        sim.add_fault(status=503, times=1)
        assert [api.get("rooms").status_code for _ in range(3)] == [500, 503, 200]


class TestRates:
    def test_a_rate_hits_a_share_of_requests(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.add_fault("list_chats", status=503, rate=0.5)
        hits = statuses(api, room).count(503)
        assert 8 <= hits <= 32  # 40 draws at 0.5: far outside this is a broken draw

    def test_the_same_seed_gives_the_same_faults(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.add_fault("list_chats", status=503, rate=0.5)
        first = statuses(api, room)
        sim.reset()
        sim.add_fault("list_chats", status=503, rate=0.5)
        assert statuses(api, room) == first

    def test_another_seed_gives_other_faults(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.add_fault("list_chats", status=503, rate=0.5)
        first = statuses(api, room)
        sim.reset()
        sim.faults.seed = 1
        try:
            sim.add_fault("list_chats", status=503, rate=0.5)
            assert statuses(api, room) != first
        finally:
            sim.faults.seed = 0

    def test_a_repeated_request_gets_a_new_draw(self, api: API, sim: GiosgSimulator) -> None:
        sim.add_fault("list_rooms", status=503, rate=0.5)
        results = {api.get("rooms").status_code for _ in range(30)}
        assert results == {200, 503}

    def test_rate_and_times_together(self, api: API, sim: GiosgSimulator, room: str) -> None:
        sim.add_fault("list_chats", status=503, rate=0.5, times=3)
        assert statuses(api, room).count(503) == 3


class TestLatency:
    def test_latency_delays_the_answer(self, api: API, sim: GiosgSimulator) -> None:
        sim.add_fault("list_rooms", latency=0.5)
        started = time.monotonic()
        assert api.get("rooms").status_code == 200
        assert time.monotonic() - started >= 0.5
        started = time.monotonic()
        api.get("/api/v5/users/me")
        assert time.monotonic() - started < 0.5  # other endpoints are not delayed

    def test_latencies_add_up_and_delay_errors_too(self, api: API, sim: GiosgSimulator) -> None:
        sim.add_fault(latency=0.1)
        sim.add_fault("list_rooms", latency=0.1, status=503)
        started = time.monotonic()
        assert api.get("rooms").status_code == 503
        assert time.monotonic() - started >= 0.2


class TestBrokenConnections:
    def test_a_dropped_connection_gets_no_answer(self, api: API, sim: GiosgSimulator) -> None:
        sim.add_fault("list_rooms", drop=True, times=1)
        with pytest.raises(requests.ConnectionError):
            api.get("rooms")
        assert api.get("rooms").status_code == 200
        assert [(c.endpoint, c.status, c.outcome) for c in sim.calls] == [
            ("list_rooms", None, "dropped"),
            ("list_rooms", 200, "answered"),
        ]

    def test_a_hang_lasts_past_the_client_timeout(self, api: API, sim: GiosgSimulator) -> None:
        sim.add_fault("list_rooms", hang=True, times=1)
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            api.get("rooms", timeout=0.3)
        assert time.monotonic() - started < 5  # bounded by the client's timeout
        assert sim.calls[-1].outcome == "hung"
        assert api.get("rooms").status_code == 200  # other requests are served meanwhile

    def test_a_late_write_takes_effect_after_the_client_gave_up(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.add_fault("set_variable", late=0.6, times=1)
        with pytest.raises(requests.ReadTimeout):
            api.post(api.variables(room), json={"key": "k", "value": "v"}, timeout=0.2)
        assert sim.variables(VISITOR) == {}  # not yet
        deadline = time.monotonic() + 5
        while not sim.variables(VISITOR) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.variables(VISITOR) == {room: {"k": "v"}}
        assert [(c.endpoint, c.status, c.outcome, c.body) for c in sim.calls] == [
            ("set_variable", 201, "late", {"key": "k", "value": "v"})
        ]

    def test_a_late_request_gets_no_answer_even_when_the_client_waits(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.add_fault("delete_variable", late=0.1, times=1)
        sim.seed_visitor(VISITOR, rooms=[room], open_chats=0, variables={"k": "v"})
        with pytest.raises(requests.ConnectionError):
            api.delete(f"{api.variables(room)}/k", timeout=5)
        assert sim.variables(VISITOR) == {}  # it took effect before the connection closed
        assert sim.calls[-1].outcome == "late"

    def test_a_late_write_pending_at_a_reset_never_takes_effect(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        sim.add_fault("set_variable", late=0.5, times=1)
        with pytest.raises(requests.ReadTimeout):
            api.post(api.variables(room), json={"key": "k", "value": "v"}, timeout=0.1)
        sim.reset()
        time.sleep(0.7)
        assert sim.variables(VISITOR) == {}
        assert sim.calls == []

    def test_a_hang_ends_after_hang_limit(self) -> None:
        with GiosgSimulator(hang_limit=0.2) as short:
            short.add_fault(hang=True)
            started = time.monotonic()
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{short.base_url}/api/v5/users/me", timeout=5)
            assert time.monotonic() - started < 4

    def test_down_refuses_connections_until_up(self, api: API, sim: GiosgSimulator) -> None:
        assert api.get("rooms").status_code == 200  # a keep-alive connection is open
        sim.down()
        assert not sim.is_up
        with pytest.raises(requests.ConnectionError):
            api.get("rooms")  # the open connection was cut; a new one is refused
        with pytest.raises(requests.ConnectionError):
            requests.get(api.url("rooms"), timeout=5)
        sim.up()
        assert api.get("rooms").status_code == 200
        sim.up()  # already up: nothing happens
        assert sim.is_up

    def test_reset_brings_a_downed_simulator_back(self, api: API, sim: GiosgSimulator) -> None:
        sim.down()
        sim.reset()
        assert sim.is_up
        assert api.get("rooms").status_code == 200

    def test_reset_does_not_start_a_stopped_simulator(self) -> None:
        simulator = GiosgSimulator().start()
        simulator.stop()
        simulator.reset()
        assert not simulator.is_up

    def test_down_for_a_while(self, api: API, sim: GiosgSimulator) -> None:
        sim.down(0.3)
        with pytest.raises(requests.ConnectionError):
            api.get("rooms")
        deadline = time.monotonic() + 5
        while not sim.is_up and time.monotonic() < deadline:
            time.sleep(0.02)
        assert api.get("rooms").status_code == 200

    def test_the_client_meets_the_down_simulator_as_unavailable(self, sim: GiosgSimulator) -> None:
        sim.down()
        try:
            client = GiosgClient(
                api_token=sim.api_token,
                organization_id=sim.organization_id,
                base_url=sim.base_url,
                max_retries=1,
                sleep=lambda _: None,
            )
            with client, pytest.raises(GiosgUnavailable, match="connection failed"):
                list(client.iter_rooms())
        finally:
            sim.up()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "nope", "status": 500}, "unknown endpoint 'nope'"),
        ({"latency": -1}, "latency must be"),
        ({"status": 200}, "status must be an error status"),
        ({"status": "500"}, "status must be an error status"),
        ({"retry_after": "3"}, "retry_after goes with a status"),
        ({"status": 429, "retry_after": 3}, "retry_after must be a header value"),
        ({"drop": "yes"}, "drop must be true or false"),
        ({"hang": 1}, "hang must be true or false"),
        ({"latency": True}, "latency must be"),
        ({"status": 500, "rate": True}, "rate must be"),
        ({"status": 500, "drop": True}, "at most one of"),
        ({"drop": True, "hang": True}, "at most one of"),
        ({}, "needs a status, drop, hang, late or latency"),
        ({"late": 0}, "late must be"),
        ({"late": True}, "late must be"),
        ({"late": 1, "hang": True}, "at most one of"),
        ({"late": 1, "status": 500}, "at most one of"),
        ({"status": 500, "times": 0}, "times must be"),
        ({"status": 500, "times": 1.5}, "times must be"),
        ({"status": 500, "rate": 0}, "rate must be"),
        ({"status": 500, "rate": 1.5}, "rate must be"),
    ],
)
def test_bad_faults_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**options)  # type: ignore[arg-type]


def test_faults_are_cleared(api: API, sim: GiosgSimulator) -> None:
    sim.add_fault(status=503)
    assert sim.faults.faults == [Fault(status=503)]
    sim.clear_faults()
    assert api.get("rooms").status_code == 200
