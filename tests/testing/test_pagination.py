"""giosg's cursor pagination: absolute ``next`` links with an opaque cursor, no count."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from django_giosg.client import GiosgClient
from django_giosg.testing import GiosgSimulator

from .conftest import API, VISITOR


@pytest.fixture
def rooms(sim: GiosgSimulator) -> list[str]:
    """Seven rooms (the test settings' own room, one shared, five added) in pages of two."""
    sim.page_size = 2
    for _ in range(5):
        sim.world.add_room()
    return [room for room, _ in sorted(sim.world.rooms.items(), key=lambda r: r[1].seq)]


def follow(api: API, url: str) -> list[dict[str, object]]:
    pages = []
    next_url: str | None = url
    while next_url:
        page = api.session.get(next_url, timeout=5).json()
        pages.append(page)
        next_url = page["next"]
    return pages


def test_rooms_come_in_pages_with_absolute_next_links(
    api: API, sim: GiosgSimulator, rooms: list[str]
) -> None:
    pages = follow(api, api.url("rooms"))
    assert [len(p["results"]) for p in pages] == [2, 2, 2, 1]  # type: ignore[arg-type]
    assert [r["id"] for p in pages for r in p["results"]] == rooms  # type: ignore[attr-defined]
    for page in pages:
        assert set(page) == {"next", "previous", "results"}  # no count
    first_next = str(pages[0]["next"])
    assert first_next.startswith(f"{sim.base_url}/api/v5/orgs/{sim.organization_id}/rooms?")
    assert list(parse_qs(urlsplit(first_next).query)) == ["cursor"]
    assert pages[0]["previous"] is None
    assert pages[-1]["next"] is None


def test_previous_leads_back(api: API, rooms: list[str]) -> None:
    first, second, third, _ = follow(api, api.url("rooms"))
    back = api.session.get(str(third["previous"]), timeout=5).json()
    assert back["results"] == second["results"]
    back = api.session.get(str(second["previous"]), timeout=5).json()
    assert back["results"] == first["results"]


def test_links_keep_the_query_and_the_host_the_client_used(
    api: API, sim: GiosgSimulator, room: str
) -> None:
    sim.page_size = 1
    sim.seed_visitor(VISITOR, rooms=[room], open_chats=2)
    url = api.url(api.chats(room)).replace("127.0.0.1", "localhost")
    page = api.session.get(url, params={"is_ended": "false", "format": "json"}, timeout=5).json()
    next_url = urlsplit(str(page["next"]))
    assert next_url.netloc == f"localhost:{sim.port}"
    query = parse_qs(next_url.query)
    assert query["is_ended"] == ["false"]
    assert query["format"] == ["json"]


@pytest.mark.parametrize("cursor", ["garbage", "", "a", "bjE", "AAAAAAAAbjE"])
def test_a_cursor_not_given_by_the_server_is_refused(
    api: API, rooms: list[str], cursor: str
) -> None:
    response = api.get("rooms", params={"cursor": cursor})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


def test_a_cursor_of_another_simulator_is_refused(api: API, rooms: list[str]) -> None:
    with GiosgSimulator(page_size=2) as other:
        foreign = API(other).get("rooms").json()["next"]
    cursor = parse_qs(urlsplit(foreign).query)["cursor"][0]
    assert api.get("rooms", params={"cursor": cursor}).status_code == 404


def test_pages_stay_consistent_while_chats_end(api: API, sim: GiosgSimulator, room: str) -> None:
    """A cursor is a position, not an offset: ending the chats of the first page before asking
    for the second one skips nothing (the client ends chats while it pages)."""
    sim.page_size = 2
    chats = sim.seed_visitor(VISITOR, rooms=[room], open_chats=5)
    seen: list[str] = []
    page = api.get(api.chats(room), params={"is_ended": "false"}).json()
    while True:
        for chat in page["results"]:
            seen.append(chat["id"])
            api.patch(f"owned_chats/{chat['id']}", json={"is_ended": True})
        if not page["next"]:
            break
        page = api.session.get(page["next"], timeout=5).json()
    assert seen == list(reversed(chats))
    assert sim.open_chats(VISITOR) == []


def test_the_client_reads_every_page(sim: GiosgSimulator, rooms: list[str]) -> None:
    client = GiosgClient(
        api_token=sim.api_token, organization_id=sim.organization_id, base_url=sim.base_url
    )
    with client:
        assert [room.id for room in client.iter_rooms()] == rooms
    assert sim.requests("list_rooms") == 4


def test_the_page_size_can_be_changed_and_is_reset(sim: GiosgSimulator) -> None:
    sim.page_size = 3
    assert sim.describe()["page_size"] == 3
    with pytest.raises(ValueError, match="page_size"):
        sim.page_size = 0
    with pytest.raises(ValueError, match="page_size"):
        GiosgSimulator(page_size=0)
    sim.reset()
    assert sim.page_size == 50
