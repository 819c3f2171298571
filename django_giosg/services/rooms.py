"""The organization's rooms, cached, and which of them it owns.

A room is the organization's own unless it is shared to it or listed with another owner
(:meth:`Room.is_owned_by <django_giosg.client.Room.is_owned_by>`): only there may its token end
chats and set variables. The list is cached in Django's cache for ``ROOMS_CACHE_TTL`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.core.cache import cache

from ..client import GiosgClient, Room
from ..conf import GiosgSettings
from ..limits import DEFAULT_LIMITS, CallLimits

ROOMS_CACHE_KEY = "django_giosg:rooms:{organization_id}"


@dataclass(frozen=True)
class RoomRef:
    """A room of the organization's list; ``owned`` unless another organization owns it."""

    id: str
    owned: bool


def _room_ref(room: Room, settings: GiosgSettings) -> RoomRef:
    return RoomRef(room.id.lower(), room.is_owned_by(settings.organization_id))


def _cache_key(settings: GiosgSettings) -> str:
    return ROOMS_CACHE_KEY.format(organization_id=settings.organization_id)


def _cached_rooms(settings: GiosgSettings) -> list[RoomRef] | None:
    if not settings.rooms_cache_ttl:
        return None
    cached = cache.get(_cache_key(settings))
    if not isinstance(cached, list):
        return None
    return [RoomRef(str(room_id), bool(owned)) for room_id, owned in cached]


def forget_rooms(settings: GiosgSettings) -> None:
    """Drop the cached room list (a room answered 404: the list may be out of date)."""
    cache.delete(_cache_key(settings))


def iter_rooms(
    client: GiosgClient, settings: GiosgSettings, limits: CallLimits = DEFAULT_LIMITS
) -> Iterator[RoomRef]:
    """The organization's rooms (shared ones included), from the cache or paged from giosg as
    the pages arrive; a complete listing is cached for ``ROOMS_CACHE_TTL`` seconds (0: never)."""
    cached = _cached_rooms(settings)
    if cached is not None:
        yield from cached
        return
    listed = []
    for room in client.iter_rooms(**limits.options()):
        ref = _room_ref(room, settings)
        listed.append(ref)
        yield ref
    if settings.rooms_cache_ttl:
        value = [[ref.id, ref.owned] for ref in listed]
        cache.set(_cache_key(settings), value, settings.rooms_cache_ttl)


def owned_room_ids(
    client: GiosgClient, settings: GiosgSettings, limits: CallLimits = DEFAULT_LIMITS
) -> frozenset[str]:
    """The ids of the rooms the organization owns (rooms shared to it by others excluded).
    Raises :class:`~django_giosg.errors.GiosgError` when giosg cannot be asked."""
    return frozenset(room.id for room in iter_rooms(client, settings, limits) if room.owned)


def filter_owned_rooms(
    rooms: Iterable[str],
    client: GiosgClient,
    settings: GiosgSettings,
    limits: CallLimits = DEFAULT_LIMITS,
) -> list[str]:
    """``rooms`` without the rooms the organization does not own, in their order."""
    candidates = list(dict.fromkeys(rooms))
    if not candidates:
        return []
    owned = owned_room_ids(client, settings, limits)
    return [room for room in candidates if room in owned]
