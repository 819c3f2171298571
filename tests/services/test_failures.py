"""services.failures: how long a failed link waits before the sweep tries it again."""

from __future__ import annotations

import pytest

from django_giosg import clock
from django_giosg.services import failures

from ..conftest import load_settings


def test_the_backoff_grows_from_sweep_backoff_and_is_capped_at_six_hours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock, "jitter", lambda: 1.0)
    settings = load_settings(SWEEP_BACKOFF=60.0)
    assert failures.link_backoff(1, settings) == 90.0
    assert failures.link_backoff(30, settings) == 6 * 3600
