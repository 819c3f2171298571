"""The background work, and the entry points' way to start it.

``attach_task`` and ``detach_task`` take a link's id (JSON arguments only) and run
:func:`services.attach` / :func:`services.detach`. Entry points (receivers, the capture view, the
admin) call the functions below them, which change the rows and enqueue the tasks with
``transaction.on_commit``, so a task never runs before the row it reads is committed.

Where the work runs decides its limits:

- **Inside an HTTP request** (the immediate backend, or a task backend that runs tasks in the
  request): no retries, and the whole request waits for giosg at most ``INLINE_BUDGET`` seconds,
  everything it triggers together. ``GiosgMiddleware`` opens that budget for each request
  (:func:`request_budget`); its clock starts at the first call to giosg. Whatever is left undone
  stays ``pending_*`` with the error recorded, for ``giosg_sweep``.
- **Anywhere else** (a worker, a shell, the sweep): each call retried ``MAX_RETRIES`` times,
  ``Retry-After`` honoured up to ``RETRY_AFTER_CAP``.

Every error is caught here, at the task boundary, and logged; none reaches the auth flow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from functools import partial
from typing import Any

from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction

from . import services, session
from ._compat import task
from .client import GiosgClient, get_client
from .conf import GiosgSettings, get_settings

logger = logging.getLogger("django_giosg")


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


def call_limits(client: GiosgClient, settings: GiosgSettings) -> tuple[float | None, int]:
    """``(deadline, max_retries)`` for calls made now: see the module's docstring."""
    budget = _budget.get()
    if budget is None:
        return None, settings.max_retries
    return budget.deadline(client, settings.inline_budget), 0


# -- the tasks ---------------------------------------------------------------------------------


Workflow = Callable[..., services.Result]


def _run(workflow: Workflow, link_id: int) -> dict[str, Any]:
    try:
        settings = get_settings()
        if not settings.enabled:
            return {"link_id": link_id, "skipped": ["GIOSG is disabled"]}
        client = get_client()
        deadline, max_retries = call_limits(client, settings)
        result = workflow(link_id, client, settings, deadline=deadline, max_retries=max_retries)
    except Exception as err:
        logger.exception(
            "django-giosg: the %s of link %s failed; giosg_sweep retries it",
            workflow.__name__,
            link_id,
        )
        return {"link_id": link_id, "failed": [type(err).__name__]}
    return result.as_dict()


@task()
def attach_task(link_id: int) -> dict[str, Any]:
    """Set the variables of a ``pending_attach`` link (see :func:`services.attach`)."""
    return _run(services.attach, link_id)


@task()
def detach_task(link_id: int) -> dict[str, Any]:
    """End the chats and delete the variables of a link (see :func:`services.detach`)."""
    return _run(services.detach, link_id)


def sweep(*, limit: int | None = None, dry_run: bool = False) -> services.SweepReport | None:
    """Run the sweep here and now (``giosg_sweep`` and :func:`sweep_task`); ``None`` while GIOSG
    is disabled. Raises :class:`~django_giosg.errors.GiosgConfigurationError`; giosg's own
    errors are recorded on the links, never raised."""
    settings = get_settings()
    if not settings.enabled:
        return None
    client = get_client()
    deadline, max_retries = call_limits(client, settings)
    return services.sweep(
        client,
        settings,
        limit=limit,
        dry_run=dry_run,
        deadline=deadline,
        max_retries=max_retries,
    )


@task()
def sweep_task(limit: int | None = None) -> dict[str, Any]:
    """The sweep as a task, for a scheduler that enqueues it periodically (see :func:`sweep`)."""
    try:
        report = sweep(limit=limit)
    except Exception as err:
        logger.exception("django-giosg: the sweep failed")
        return {"failed": [type(err).__name__]}
    if report is None:
        return {"skipped": ["GIOSG is disabled"]}
    return report.as_dict()


def _enqueue(task_to_run: Any, link_id: int) -> None:
    try:
        task_to_run.enqueue(link_id)
    except Exception:
        logger.exception(
            "django-giosg could not enqueue %s for link %s; giosg_sweep will pick it up",
            task_to_run.name,
            link_id,
        )


def _enqueue_on_commit(task_to_run: Any, link_ids: Iterable[int]) -> None:
    for link_id in link_ids:
        transaction.on_commit(partial(_enqueue, task_to_run, link_id))


# -- what entry points call ----------------------------------------------------------------------


def attach_visitor(
    user: Any,
    visitor_id: str,
    *,
    browser_rooms: Sequence[str] = (),
    session_expires_at: datetime | None = None,
) -> None:
    """Bind ``visitor_id`` to ``user`` and set the variables once the transaction commits; an
    older binding of the visitor (another user's) is detached first."""
    settings = get_settings()
    if not settings.enabled:
        return
    binding = services.bind(
        user,
        visitor_id,
        settings,
        browser_rooms=browser_rooms,
        session_expires_at=session_expires_at,
    )
    _enqueue_on_commit(detach_task, binding.detach)
    _enqueue_on_commit(attach_task, [binding.attach] if binding.attach is not None else [])


def attach_session(user: Any, store: SessionBase) -> None:
    """Bind the visitor of ``store`` (a session holding one) to ``user``, noting the binding and
    the session's expiry in the session (see :class:`~django_giosg.session.SessionBinding`)."""
    visitor_id = session.get_visitor_id(store)
    if visitor_id is None or not get_settings().enabled:
        return  # nothing to bind, or nothing to tell giosg
    expires_at = session.record_binding(store, session.user_key(user))
    attach_visitor(
        user,
        visitor_id,
        browser_rooms=session.get_browser_rooms(store),
        session_expires_at=expires_at,
    )


def note_session_expiry(visitor_id: str, user_key: str, expires_at: datetime) -> None:
    """The session's expiry moved: so does its link's (:func:`services.note_session_expiry`)."""
    if get_settings().enabled:
        services.note_session_expiry(visitor_id, user_key, expires_at)


def detach_visitor(visitor_id: str, user_id: object = None) -> None:
    """The session of ``visitor_id`` ended: detach its links (of ``user_id``, if given)."""
    settings = get_settings()
    if settings.enabled:
        _enqueue_on_commit(detach_task, services.release_visitor(visitor_id, user_id, settings))


def detach_user(user_id: object) -> None:
    """The user is being deleted: detach every link of theirs."""
    settings = get_settings()
    if settings.enabled:
        _enqueue_on_commit(detach_task, services.release_user(user_id, settings))


def detach_links(ids: Iterable[int]) -> int:
    """Detach these links now (the admin's action); how many were not detached already."""
    released = services.release_links(ids, get_settings())
    _enqueue_on_commit(detach_task, released)
    return len(released)


def retry_links(ids: Iterable[int]) -> int:
    """Give failed links a fresh start (the admin's action); how many were failed."""
    reset = services.reset_failed(ids, get_settings())
    for link_id, action in reset:
        _enqueue_on_commit(attach_task if action == "attach" else detach_task, [link_id])
    return len(reset)
