"""The workflows over a :class:`~django_giosg.client.GiosgClient`.

Services know giosg's workflows and django-giosg's records, not HTTP: every call goes through the
client, which raises :class:`~django_giosg.errors.GiosgError` for anything that went wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.cache import cache

from .client import GiosgClient
from .conf import GiosgSettings

logger = logging.getLogger("django_giosg")

ROOMS_CACHE_KEY = "django_giosg:rooms:{organization_id}"


def owned_room_ids(
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    deadline: float | None = None,
    max_retries: int | None = None,
) -> frozenset[str]:
    """The ids of the rooms the organization owns (rooms shared to it by others excluded).

    The list is paged from giosg and kept in Django's cache for ``ROOMS_CACHE_TTL`` seconds
    (0: not cached). Raises :class:`~django_giosg.errors.GiosgError` when giosg cannot be asked.
    """
    key = ROOMS_CACHE_KEY.format(organization_id=settings.organization_id)
    if settings.rooms_cache_ttl:
        cached = cache.get(key)
        if isinstance(cached, list):
            return frozenset(cached)
    rooms = sorted(
        room.id
        for room in client.iter_rooms(deadline=deadline, max_retries=max_retries)
        if not room.is_shared and room.organization_id in (None, settings.organization_id)
    )
    if settings.rooms_cache_ttl:
        cache.set(key, rooms, settings.rooms_cache_ttl)
    return frozenset(rooms)


def filter_owned_rooms(
    rooms: Iterable[str],
    client: GiosgClient,
    settings: GiosgSettings,
    *,
    deadline: float | None = None,
    max_retries: int | None = None,
) -> list[str]:
    """``rooms`` without the rooms the organization does not own, in their order."""
    candidates = list(dict.fromkeys(rooms))
    if not candidates:
        return []
    owned = owned_room_ids(client, settings, deadline=deadline, max_retries=max_retries)
    return [room for room in candidates if room in owned]
