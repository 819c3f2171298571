"""Which browser a visitor id belongs to (see :class:`~django_giosg.models.VisitorOrigin`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import IntegrityError, transaction

from .. import clock
from ..conf import GiosgSettings
from ..models import VisitorLink, VisitorOrigin, write_db

CLAIM_TRIES = 3  # a browser racing itself (two tabs) for its own new id: the loser reads again


def _lapsed_before(now: datetime) -> datetime:
    """An origin last seen before this has lapsed: no session of its browser that held the id
    can still be live without the browser having reported the id again."""
    return now - timedelta(seconds=django_settings.SESSION_COOKIE_AGE)


def claim_visitor(
    visitor_id: str, device: str, settings: GiosgSettings, *, user_id: Any = None
) -> bool:
    """Whether ``visitor_id`` belongs to the browser ``device``: it does if that browser
    reported it first (it is seen again now), or if no browser has, or the one that did has
    lapsed, and then it is claimed for ``device``.

    A visitor bound before origins were recorded (migration 0003) belongs to the browser of its
    live link while that link's session lives, except to that link's own user
    (:meth:`VisitorLink.held_elsewhere <django_giosg.models.VisitorLink.held_elsewhere>`).
    """
    for _attempt in range(CLAIM_TRIES):
        now = clock.now()
        origin = VisitorOrigin.objects.filter(visitor_id=visitor_id).first()
        if origin is not None and origin.device == device:
            if origin.seen_at < now - timedelta(seconds=settings.expiry_refresh):
                # (Seen within EXPIRY_REFRESH is recent enough next to the lapse after
                # SESSION_COOKIE_AGE: a login right after the capture writes nothing here.)
                VisitorOrigin.objects.filter(pk=origin.pk, device=device).update(seen_at=now)
            return True
        if origin is not None and origin.seen_at >= _lapsed_before(now):
            return False  # another browser's
        live = VisitorLink.objects.filter(visitor_id=visitor_id).live().first()
        ended_by = now - timedelta(seconds=settings.expiry_grace)
        if live is not None and live.user_id != user_id and live.held_elsewhere(device, ended_by):
            return False
        if origin is None:
            try:
                with transaction.atomic(using=write_db(VisitorOrigin)):
                    VisitorOrigin.objects.create(visitor_id=visitor_id, device=device, seen_at=now)
            except IntegrityError:
                continue  # claimed meanwhile: by this browser's other tab, or another browser
            return True
        lapsed = VisitorOrigin.objects.filter(
            pk=origin.pk, device=origin.device, seen_at=origin.seen_at
        )
        if lapsed.update(device=device, seen_at=now):
            return True
    return False


def refresh_origin(visitor_id: str) -> None:
    """The browser the visitor id belongs to is still using it (its bound session lives)."""
    VisitorOrigin.objects.filter(visitor_id=visitor_id).update(seen_at=clock.now())


def prune_origins(now: datetime) -> int:
    """Delete the lapsed origins (they would be claimed anew anyway)."""
    deleted: int = VisitorOrigin.objects.filter(seen_at__lt=_lapsed_before(now)).delete()[0]
    return deleted
