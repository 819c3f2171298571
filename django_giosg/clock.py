"""Time and chance for django-giosg's records: "now", the jitter, and the backoff between tries.

One place, so that tests inject a fake ``now`` (``monkeypatch.setattr(clock, "now", …)``) or a
fixed ``jitter`` and check backoff, staleness, expiry, pruning and leases without waiting. The
client keeps its own monotonic clock for deadlines, but uses the same :func:`backoff` formula.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

#: "Now" for the links and leases (backoff, staleness, expiry, pruning, leases).
now: Callable[[], datetime] = timezone.now
#: The backoff's random factor in [0, 1).
jitter: Callable[[], float] = random.random


def backoff(attempt: int, base: float, cap: float, spread: float) -> float:
    """``base × 2^(attempt−1) × (0.5 + spread)``, at most ``cap``: each failed try waits twice as
    long as the one before, spread by a random ``spread`` in [0, 1) so that clients failing
    together do not all come back together."""
    return min(base * 2.0 ** (attempt - 1) * (0.5 + spread), cap)
