"""django_giosg.services.rooms: the organization's own rooms, cached."""

from __future__ import annotations

import pytest
import responses
from django.core.cache import cache

from django_giosg.client import GiosgClient
from django_giosg.services import rooms

from ..conftest import ORG, ORG_URL, ROOM, load_settings

SHARED = "0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe"
FOREIGN = "11111111-56e1-11e5-9c5e-6c4008c08dfe"
UNLABELLED = "22222222-56e1-11e5-9c5e-6c4008c08dfe"
OTHER_ORG = "33333333-56e1-11e5-9c5e-6c4008c08dfe"
SHARED_UNLABELLED = "44444444-56e1-11e5-9c5e-6c4008c08dfe"


pytestmark = pytest.mark.usefixtures("empty_cache")


def room(
    room_id: str, organization_id: str | None = ORG, *, shared: bool = False
) -> dict[str, object]:
    return {
        "id": room_id,
        "organization_id": organization_id,
        "is_shared": shared,
        "name": room_id,
    }


@pytest.fixture
def rooms_listed(mocked: responses.RequestsMock) -> responses.RequestsMock:
    results = [
        room(ROOM),
        room(SHARED, OTHER_ORG, shared=True),
        room(FOREIGN, OTHER_ORG),  # owned by another organization, whatever is_shared says
        room(UNLABELLED, None),  # no organization given: listed for ours, so ours
        room(SHARED_UNLABELLED, None, shared=True),  # shared to us: not ours either way
    ]
    mocked.get(f"{ORG_URL}/rooms", json={"next": None, "previous": None, "results": results})
    return mocked


def test_owned_rooms_leave_out_rooms_of_other_organizations(
    client: GiosgClient, rooms_listed: responses.RequestsMock
) -> None:
    owned = rooms.owned_room_ids(client, load_settings())
    assert owned == frozenset({ROOM, UNLABELLED})


def test_the_room_list_is_cached_for_the_ttl(
    client: GiosgClient, rooms_listed: responses.RequestsMock
) -> None:
    settings = load_settings(ROOMS_CACHE_TTL=300)
    rooms.owned_room_ids(client, settings)
    assert rooms.owned_room_ids(client, settings) == frozenset({ROOM, UNLABELLED})
    assert len(rooms_listed.calls) == 1
    cached = cache.get(f"django_giosg:rooms:{ORG}")
    assert [room_id for room_id, owned in cached if owned] == [ROOM, UNLABELLED]
    assert len(cached) == 5  # shared rooms are listed too, for the detach


def test_a_ttl_of_zero_never_caches(
    client: GiosgClient, rooms_listed: responses.RequestsMock
) -> None:
    settings = load_settings(ROOMS_CACHE_TTL=0)
    rooms.owned_room_ids(client, settings)
    rooms.owned_room_ids(client, settings)
    assert len(rooms_listed.calls) == 2
    assert cache.get(f"django_giosg:rooms:{ORG}") is None


def test_filtering_keeps_order_drops_duplicates_and_foreign_rooms(
    client: GiosgClient, rooms_listed: responses.RequestsMock
) -> None:
    kept = rooms.filter_owned_rooms(
        [UNLABELLED, SHARED, ROOM, UNLABELLED, FOREIGN, SHARED_UNLABELLED], client, load_settings()
    )
    assert kept == [UNLABELLED, ROOM]


def test_filtering_nothing_asks_nobody(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    assert rooms.filter_owned_rooms([], client, load_settings()) == []
    assert len(mocked.calls) == 0
