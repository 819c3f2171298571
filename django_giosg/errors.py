"""The exceptions django-giosg raises.

Everything that goes wrong talking to giosg is a :class:`GiosgError`, so the code that must never
break a login can catch exactly that. A bad configuration is *not* a ``GiosgError``: it subclasses
Django's ``ImproperlyConfigured`` so that no "keep the login working" handler can swallow it.

No message, ``repr`` or attribute shown by default ever carries the API token or a visitor
variable's value: only the method, the path and the status.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class GiosgConfigurationError(ImproperlyConfigured):
    """A ``GIOSG`` setting is missing or invalid; the message names the exact key."""


class GiosgError(Exception):
    """Base class of every failure to talk to giosg.

    ``uncertain``: the call's attempts of unknown outcome (a write that got no answer, or a
    gateway's 502 or 504): each may still take effect at giosg, late. Always 0 for a read.
    """

    uncertain: int = 0

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.status = status

    def __str__(self) -> str:
        where = f"{self.method} {self.path}" if self.method and self.path else ""
        status = f"HTTP {self.status}" if self.status is not None else ""
        parts = [part for part in (where, status) if part]
        return f"{self.message} ({', '.join(parts)})" if parts else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, method={self.method!r}, "
            f"path={self.path!r}, status={self.status!r})"
        )


class GiosgAPIError(GiosgError):
    """giosg answered with an error status (or a body this client cannot read).

    ``body`` keeps a short excerpt of the response for debugging, with the token and any value
    this client sent replaced by ``***``; it is not part of ``str()`` or ``repr()``.
    """

    status: int

    def __init__(
        self, message: str, *, method: str, path: str, status: int, body: str = ""
    ) -> None:
        super().__init__(message, method=method, path=path, status=status)
        self.body = body


class GiosgAuthError(GiosgAPIError):
    """401 or 403: the token is wrong, or its user lacks a permission or the subscription."""


class GiosgNotFound(GiosgAPIError):
    """404: the room, visitor, key or chat does not exist (or is not reachable with this token)."""


class GiosgRateLimited(GiosgAPIError):
    """429 after the retries, or with a ``Retry-After`` longer than this client may wait."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int = 429,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, status=status, body=body)
        self.retry_after = retry_after


class GiosgUnavailable(GiosgError):
    """giosg could not be reached in time: connection errors, timeouts, an exhausted deadline,
    or 5xx answers after the retries. ``status`` is the last HTTP status, if any."""
