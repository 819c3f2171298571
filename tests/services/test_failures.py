"""services.failures: how long a failed link waits before the sweep tries it again."""

from __future__ import annotations

import pytest

from django_giosg import clock
from django_giosg.services import failures

from ..conftest import load_settings


def test_the_backoff_doubles_from_sweep_backoff_with_jitter_up_to_six_hours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(SWEEP_BACKOFF=60.0)
    monkeypatch.setattr(clock, "jitter", lambda: 0.999)  # the factor's top, 1.5
    assert failures.link_backoff(1, settings) == pytest.approx(60 * 1.499)
    assert failures.link_backoff(5, settings) == pytest.approx(60 * 16 * 1.499)
    assert failures.link_backoff(9, settings) == 6 * 3600.0  # 23 000 s capped at 6 h
    assert failures.link_backoff(30, settings) == 6 * 3600.0
    monkeypatch.setattr(clock, "jitter", lambda: 0.0)  # the factor's bottom, 0.5
    assert failures.link_backoff(3, settings) == 60 * 4 * 0.5
    monkeypatch.setattr(clock, "jitter", lambda: 1.0)
    assert failures.link_backoff(1, settings) == 90.0
