from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from django_giosg.errors import (
    GiosgAPIError,
    GiosgAuthError,
    GiosgConfigurationError,
    GiosgError,
    GiosgNotFound,
    GiosgRateLimited,
    GiosgUnavailable,
)


def test_the_hierarchy_matches_the_design() -> None:
    for kind in (GiosgAuthError, GiosgNotFound, GiosgRateLimited):
        assert issubclass(kind, GiosgAPIError)
    assert issubclass(GiosgAPIError, GiosgError)
    assert issubclass(GiosgUnavailable, GiosgError)
    assert not issubclass(GiosgUnavailable, GiosgAPIError)
    # A misconfiguration must not be swallowed by handlers of giosg's failures.
    assert issubclass(GiosgConfigurationError, ImproperlyConfigured)
    assert not issubclass(GiosgConfigurationError, GiosgError)


def test_text_and_repr_carry_method_path_and_status() -> None:
    error = GiosgNotFound(
        "giosg answered 404 Not Found", method="DELETE", path="/api/v5/x", status=404, body="b"
    )
    assert str(error) == "giosg answered 404 Not Found (DELETE /api/v5/x, HTTP 404)"
    assert repr(error) == (
        "GiosgNotFound('giosg answered 404 Not Found', method='DELETE', "
        "path='/api/v5/x', status=404)"
    )


def test_text_without_status_or_place() -> None:
    assert str(GiosgError("giosg is off")) == "giosg is off"
    assert str(GiosgUnavailable("giosg timed out", method="GET", path="/p")) == (
        "giosg timed out (GET /p)"
    )
