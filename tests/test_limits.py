"""django_giosg.limits: a request's calls share one budget and make no retries."""

from __future__ import annotations

import pytest

from django_giosg import limits
from django_giosg.client import GiosgClient
from django_giosg.conf import get_settings

pytestmark = pytest.mark.django_db


def test_calls_in_a_request_share_one_budget_and_make_no_retries(client: GiosgClient) -> None:
    settings = get_settings()
    assert limits.call_limits(client, settings) == (None, settings.max_retries)
    with limits.request_budget():
        deadline, retries = limits.call_limits(client, settings)
        assert retries == 0
        assert deadline == client.deadline_after(settings.inline_budget)
        client._clock.now += 1.5  # type: ignore[attr-defined]
        assert limits.call_limits(client, settings) == (deadline, 0)  # not renewed
    assert limits.call_limits(client, settings) == (None, settings.max_retries)
