"""django_giosg.client's process-wide client (``get_client``) follows the settings."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_giosg.client import GiosgClient, get_client
from django_giosg.conf import get_settings
from django_giosg.errors import GiosgConfigurationError


def test_one_client_per_process_built_from_the_settings() -> None:
    client = get_client()
    assert get_client() is client
    assert client.base_url == "https://giosg.test"
    assert client.organization_id == get_settings().organization_id
    assert client.pool_size == 32  # MAX_CONNECTIONS: 4 x MAX_WORKERS
    assert client.timeout == (3.05, 10.0)


def test_the_client_is_rebuilt_when_the_settings_change() -> None:
    before = get_client()
    giosg = {**get_settings_raw(), "MAX_CONNECTIONS": 9, "MAX_RETRIES": 1}
    with override_settings(GIOSG=giosg):
        during = get_client()
        assert during is not before
        assert (during.pool_size, during.max_retries) == (9, 1)
    assert get_client() is not during


def test_a_client_needs_a_token() -> None:
    with pytest.raises(GiosgConfigurationError, match="API_TOKEN"):
        GiosgClient(api_token="", organization_id="x")


def test_from_settings_accepts_overrides() -> None:
    client = GiosgClient.from_settings(get_settings(), max_retries=0)
    assert client.max_retries == 0


def get_settings_raw() -> dict[str, object]:
    from django.conf import settings

    return dict(settings.GIOSG)
