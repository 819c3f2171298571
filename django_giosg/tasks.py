"""The background work, and the entry points' way to start it.

``attach_task`` and ``detach_task`` take a link's id (JSON arguments only) and run
:func:`~django_giosg.services.workflows.attach` / :func:`~django_giosg.services.workflows.detach`
within the :mod:`~django_giosg.limits` of where they run. Entry points (receivers, middleware,
the capture view, the admin, the commands) call the functions below them, which bind or release
the rows and enqueue the tasks with ``transaction.on_commit``, so a task never runs before the
row it reads is committed.

Every error of the tasks and of the rows' changes is caught here, at the task boundary, and
logged; none reaches the auth flow. :func:`owned_rooms`, which the capture view awaits, raises
giosg's errors for the view to handle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.contrib.sessions.backends.base import SessionBase
from django.db import connections, transaction

from . import session
from ._compat import task
from .client import get_client
from .conf import GiosgSettings, get_settings
from .limits import call_limits
from .models import Action, VisitorLink, write_db
from .services import links, origins, rooms, workflows
from .services import sweep as sweeping
from .services.results import Result

logger = logging.getLogger(__name__)

Workflow = Callable[..., Result]


def _run(workflow: Workflow, link_id: int) -> dict[str, Any]:
    try:
        settings = get_settings()
        if not settings.enabled:
            return {"link_id": link_id, "skipped": ["GIOSG is disabled"]}
        client = get_client()
        limits = call_limits(client, settings)
        result = workflow(link_id, client, settings, limits=limits)
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
    """Set the variables of a ``pending_attach`` link (see :func:`workflows.attach
    <django_giosg.services.workflows.attach>`)."""
    return _run(workflows.attach, link_id)


@task()
def detach_task(link_id: int) -> dict[str, Any]:
    """End the chats and delete the variables of a link (see :func:`workflows.detach
    <django_giosg.services.workflows.detach>`)."""
    return _run(workflows.detach, link_id)


def run_sweep(
    *,
    limit: int | None = None,
    dry_run: bool = False,
    stopping: Callable[[], bool] = lambda: False,
) -> sweeping.SweepReport | None:
    """Run the sweep here and now (``giosg_sweep`` and :func:`sweep_task`); ``None`` while GIOSG
    is disabled. It takes no more links once ``stopping()`` is true. Raises
    :class:`~django_giosg.errors.GiosgConfigurationError`; giosg's own errors are recorded on
    the links, never raised."""
    settings = get_settings()
    if not settings.enabled:
        return None
    client = get_client()
    limits = call_limits(client, settings)
    return sweeping.sweep(
        client, settings, limit=limit, dry_run=dry_run, limits=limits, stopping=stopping
    )


@task()
def sweep_task(limit: int | None = None) -> dict[str, Any]:
    """The sweep as a task, for a scheduler that enqueues it periodically (see
    :func:`run_sweep`)."""
    try:
        report = run_sweep(limit=limit)
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
    database = write_db(VisitorLink)  # the links' changes commit there
    for link_id in link_ids:
        transaction.on_commit(partial(_enqueue, task_to_run, link_id), using=database)


# -- what entry points call ----------------------------------------------------------------------


def bind_visitor(
    user: Any,
    visitor_id: str,
    *,
    device: str,
    browser_rooms: Sequence[str] = (),
    session_expires_at: datetime | None = None,
) -> links.BindPlan:
    """Bind ``visitor_id`` to ``user`` from the browser ``device`` and attach it once the
    transaction commits; an older binding of the visitor is detached first, or, when the
    visitor belongs to another browser, nothing is bound (see :func:`links.bind
    <django_giosg.services.links.bind>`)."""
    settings = get_settings()
    if not settings.enabled:
        return links.BindPlan()
    plan = links.bind(
        user,
        visitor_id,
        settings,
        device=device,
        browser_rooms=browser_rooms,
        session_expires_at=session_expires_at,
    )
    _enqueue_on_commit(detach_task, plan.detach)
    _enqueue_on_commit(attach_task, [plan.attach] if plan.attach is not None else [])
    return plan


def bind_session(user: Any, store: SessionBase, device: str) -> links.BindPlan:
    """Bind the visitor of ``store`` (a session holding one) to ``user``, from the browser
    ``device``, noting the binding and the session's expiry in the session (see
    :class:`~django_giosg.session.SessionBinding`).

    When nothing was bound (the visitor belongs to another browser, or the user is over
    ``USER_CAPTURE_RATE``), the session forgets the visitor id: the capture script reports it
    again, and once the user is under the rate again, that capture binds it."""
    visitor_id = session.get_visitor_id(store)
    if visitor_id is None or not get_settings().enabled:
        return links.BindPlan()  # nothing to bind, or nothing to tell giosg
    expires_at = session.record_binding(store, session.user_key(user))
    plan = bind_visitor(
        user,
        visitor_id,
        device=device,
        browser_rooms=session.get_browser_rooms(store),
        session_expires_at=expires_at,
    )
    if not plan.bound:
        session.forget_visitor(store)
    return plan


def over_user_rate(user: Any, visitor_id: str) -> bool:
    """Whether binding ``visitor_id`` to ``user`` now would be refused for ``USER_CAPTURE_RATE``
    (see :func:`links.over_user_rate <django_giosg.services.links.over_user_rate>`): asked by
    the capture view before it calls giosg for the browser's rooms. The bind asks again."""
    settings = get_settings()
    return settings.enabled and links.over_user_rate(user.pk, visitor_id, settings)


def follow_session_expiry(visitor_id: str, user_key: str, expires_at: datetime) -> None:
    """The session's expiry moved: so does its link's (see :func:`links.record_session_expiry
    <django_giosg.services.links.record_session_expiry>`)."""
    if get_settings().enabled:
        links.record_session_expiry(visitor_id, user_key, expires_at)


def release_visitor(visitor_id: str, user_id: object) -> None:
    """A session of ``user_id`` with ``visitor_id`` ended: release that user's links of the
    visitor and detach them."""
    settings = get_settings()
    if settings.enabled:
        _enqueue_on_commit(detach_task, links.release_visitor(visitor_id, user_id, settings))


def release_device(device: str) -> None:
    """A logout in the browser ``device``: release the live links made there and detach them."""
    settings = get_settings()
    if settings.enabled:
        _enqueue_on_commit(detach_task, links.release_device(device, settings))


def release_devices_after_response(devices: Iterable[str]) -> None:
    """:func:`release_device` for each of ``devices``, once a logout's answer has been sent (a
    response closer). Django may have closed the request's database connection by then (under
    ASGI it sends ``request_finished`` first): a connection opened here is closed again."""
    database = write_db(VisitorLink)
    opened_here = connections[database].connection is None
    try:
        for released in devices:
            release_device(released)
    finally:
        if opened_here:
            connections[database].close()


def take_browser_closes(device: str) -> links.BrowserCloses:
    """What the browser ``device``, without a bound session, has to learn of its bindings (see
    :func:`links.take_browser_closes <django_giosg.services.links.take_browser_closes>`)."""
    if not get_settings().enabled:
        return links.BrowserCloses(close=False, live=False)
    return links.take_browser_closes(device)


def claim_visitor(visitor_id: str, device: str) -> bool:
    """Whether ``visitor_id`` belongs to the browser ``device`` of an anonymous session (claimed
    for it if no browser has it; see :func:`origins.claim_visitor
    <django_giosg.services.origins.claim_visitor>`). Always ``True`` while GIOSG is disabled."""
    settings = get_settings()
    if not settings.enabled:
        return True
    return origins.claim_visitor(visitor_id, device, settings)


def release_user(user_id: object) -> None:
    """The user is being deleted: release every link of theirs and detach them."""
    settings = get_settings()
    if settings.enabled:
        _enqueue_on_commit(detach_task, links.release_user(user_id, settings))


def release_links(ids: Iterable[int]) -> int:
    """Detach these links now (the admin's action); how many were not detached already."""
    released = links.release_links(ids, get_settings())
    _enqueue_on_commit(detach_task, released)
    return len(released)


def retry_links(ids: Iterable[int]) -> int:
    """Give failed links a fresh start (the admin's action); how many were failed."""
    reset = links.reset_failed(ids, get_settings())
    for link_id, action in reset:
        _enqueue_on_commit(attach_task if action == Action.ATTACH else detach_task, [link_id])
    return len(reset)


def owned_rooms(room_ids: Iterable[str], settings: GiosgSettings) -> list[str]:
    """``room_ids`` without the rooms the organization does not own, asked of giosg (through the
    cached room list) within the limits of where this runs. Raises
    :class:`~django_giosg.errors.GiosgError` when giosg cannot be asked."""
    client = get_client()
    return rooms.filter_owned_rooms(room_ids, client, settings, call_limits(client, settings))
