"""A failed attempt of an attach or detach: counted on the link, retried after a backoff, and
given up on, loudly, after ``SWEEP_MAX_ATTEMPTS``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from .. import clock
from ..conf import GiosgSettings
from ..logs import short_id
from ..models import Action, VisitorLink
from ..signals import visitor_failed
from .results import Outcome, Result

logger = logging.getLogger(__name__)

MAX_BACKOFF = 6 * 3600.0  # seconds: the longest wait between two attempts of the sweep


def link_backoff(attempts: int, settings: GiosgSettings) -> float:
    """Seconds until the sweep tries a link again after its ``attempts``-th failed attempt:
    ``SWEEP_BACKOFF × 2^(n−1) × U[0.5, 1.5]``, capped at 6 hours."""
    return clock.backoff(attempts, settings.sweep_backoff, MAX_BACKOFF, clock.jitter())


def record_failure(
    link: VisitorLink,
    result: Result,
    error: str,
    settings: GiosgSettings,
    **fields: Any,
) -> Result:
    """Count a failed attempt of ``result.action`` on ``link``: due again after the backoff, or
    ``failed`` after the last one. ``fields``: what else the attempt changed (the keys left).
    The result's outcome says which; a link changed meanwhile by someone else stays theirs."""
    action = Action(result.action)
    attempts = link.attempts + 1
    result.outcome = Outcome.RETRYING
    if attempts >= settings.sweep_max_attempts:
        if link.mark_failed(action, attempts, error, **fields):
            result.outcome = Outcome.FAILED
            logger.error(
                "django-giosg gave up on the %s of visitor %s after %d attempts: %s",
                action,
                short_id(link.visitor_id),
                attempts,
                error,
            )
            visitor_failed.send(VisitorLink, link=link, action=action, error=error)
        return result
    delay = link_backoff(attempts, settings)
    retry_at = clock.now() + timedelta(seconds=delay)
    if link.retry_later(action, attempts, error, retry_at, **fields):
        logger.warning(
            "django-giosg could not %s visitor %s (attempt %d of %d), retried in %.0f s: %s",
            action,
            short_id(link.visitor_id),
            attempts,
            settings.sweep_max_attempts,
            delay,
            error,
        )
    return result


def fail(link: VisitorLink, result: Result, error: str, settings: GiosgSettings) -> Result:
    """``error`` fails the work on ``link``: in the result, and counted on the link."""
    result.failed.append(error)
    return record_failure(link, result, error, settings)


def summary(failures: Sequence[str]) -> str:
    """The first failure, and how many more: what the link records as its last error."""
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"{failures[0]}{more}"
