"""How long giosg calls may take and how often each is retried: decided by where the work runs.

- **Inside an HTTP request** (the immediate backend, or a task backend that runs tasks in the
  request): no retries, and the whole request waits for giosg at most ``INLINE_BUDGET`` seconds,
  everything it triggers together. ``GiosgMiddleware`` opens that budget for each request
  (:func:`request_budget`); its clock starts at the first call to giosg. Whatever is left undone
  stays ``pending_*`` with the error recorded, for ``giosg_sweep``.
- **Anywhere else** (a worker, a shell, the sweep): each call retried ``MAX_RETRIES`` times,
  ``Retry-After`` honoured up to ``RETRY_AFTER_CAP``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, NamedTuple, TypedDict

if TYPE_CHECKING:
    from .client import GiosgClient
    from .conf import GiosgSettings


class CallOptions(TypedDict):
    """The keyword arguments of the client's calls that :class:`CallLimits` carries."""

    deadline: float | None
    max_retries: int | None


class CallLimits(NamedTuple):
    """The limits of the giosg calls made for one piece of work; they always travel together.

    ``deadline`` is a point on the client's clock (:meth:`GiosgClient.deadline_after
    <django_giosg.client.GiosgClient.deadline_after>`) that bounds every call, retries included;
    ``None``: only the timeouts. ``max_retries``: ``None`` for the client's ``MAX_RETRIES``.
    """

    deadline: float | None = None
    max_retries: int | None = None

    def options(self) -> CallOptions:
        """As the client's keyword arguments: ``client.end_chat(chat_id, **limits.options())``."""
        return {"deadline": self.deadline, "max_retries": self.max_retries}


class _Budget:
    """The time one request may still wait for giosg; it starts with the first call."""

    def __init__(self) -> None:
        self._deadline: float | None = None

    def deadline(self, client: GiosgClient, seconds: float) -> float:
        if self._deadline is None:
            self._deadline = client.deadline_after(seconds)
        return self._deadline


_budget: ContextVar[_Budget | None] = ContextVar("django_giosg_budget", default=None)


@contextmanager
def request_budget() -> Iterator[None]:
    """Mark the code inside as serving an HTTP request: giosg calls get one shared
    ``INLINE_BUDGET`` and no retries."""
    token = _budget.set(_Budget())
    try:
        yield
    finally:
        _budget.reset(token)


def call_limits(client: GiosgClient, settings: GiosgSettings) -> CallLimits:
    """The limits of calls made now: see the module's docstring."""
    budget = _budget.get()
    if budget is None:
        return CallLimits(None, settings.max_retries)
    return CallLimits(budget.deadline(client, settings.inline_budget), 0)


#: No deadline, and the client's ``MAX_RETRIES``: the limits of work nobody waits for.
DEFAULT_LIMITS = CallLimits()
