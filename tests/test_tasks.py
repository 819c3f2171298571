"""django_giosg.tasks: the tasks and the entry points' helpers at their edges (disabled, errors
caught at the boundary, a broker that is down), and ``sweep_task``."""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta
from typing import Any

import django
import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone

from django_giosg import (
    session,
    tasks,
)
from django_giosg.conf import get_settings
from django_giosg.models import State, VisitorLink, VisitorOrigin
from django_giosg.services import links, workflows
from django_giosg.services.results import Result
from django_giosg.testing import GiosgSimulator

from .browsing import (
    VISITOR,
    VISITORS,
    attached,
    make_user,
    reloaded,
)
from .conftest import LinkClock

pytestmark = pytest.mark.django_db


# -- tasks ---------------------------------------------------------------------------------------


def test_a_task_does_nothing_while_disabled(settings: Any) -> None:
    settings.GIOSG = {"ENABLED": False}
    assert tasks.attach_task.call(1) == {"link_id": 1, "skipped": ["GIOSG is disabled"]}


def test_a_task_catches_and_logs_everything(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> Result:
        raise RuntimeError("bug")

    monkeypatch.setattr(workflows, "detach", broken)
    with caplog.at_level(logging.ERROR, "django_giosg"):
        assert tasks.detach_task.call(7) == {"link_id": 7, "failed": ["RuntimeError"]}
    assert "the broken of link 7 failed; giosg_sweep retries it" in caplog.text


def test_a_task_that_cannot_be_enqueued_is_left_to_the_sweep(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Unreachable:
        name = "attach_task"

        def enqueue(self, link_id: int) -> None:
            raise ConnectionError("the broker is down")

    with caplog.at_level(logging.ERROR, "django_giosg"):
        tasks._enqueue(Unreachable(), 3)
    assert "could not enqueue attach_task for link 3; giosg_sweep will pick it up" in caplog.text


def test_entry_points_change_nothing_while_disabled(settings: Any) -> None:
    settings.GIOSG = {"ENABLED": False}
    user = get_user_model().objects.create_user("ann")
    tasks.bind_visitor(user, VISITOR, device="d" * 64)
    assert not VisitorLink.objects.exists()


@pytest.mark.django_db
def test_entry_helpers_do_nothing_while_disabled(settings: Any) -> None:
    ann = make_user("ann")
    link = VisitorLink.objects.create(visitor_id=VISITOR, user=ann, state=State.ATTACHED)
    settings.GIOSG = {**settings.GIOSG, "ENABLED": False}
    store = SessionStore()
    session.set_visitor_id(store, VISITOR)
    tasks.bind_session(ann, store, "d" * 64)
    tasks.follow_session_expiry(VISITOR, str(ann.pk), timezone.now())
    tasks.release_visitor(VISITOR, ann.pk)
    tasks.release_device("d" * 64)
    assert tasks.take_browser_closes("d" * 64) == links.BrowserCloses(close=False, live=False)
    assert tasks.claim_visitor(VISITOR, "d" * 64)
    assert not VisitorOrigin.objects.exists()
    assert session.get_binding(store) is None
    link.refresh_from_db()
    assert (link.state, link.session_expires_at) == (State.ATTACHED, None)


@pytest.mark.django_db(transaction=True)
def test_sweep_task_runs_the_sweep(giosg: GiosgSimulator, link_clock: LinkClock) -> None:
    link = attached(giosg, VISITORS[0], make_user("ann"), expires_at=timezone.now())
    link_clock.advance(get_settings().expiry_grace)
    result = tasks.sweep_task.enqueue()  # the immediate backend runs it here
    assert result.return_value == {
        "expired": 1,
        "due": 0,
        "done": 1,
        "retrying": 0,
        "failed": 0,
        "skipped": 0,
        "pruned": 0,
        "dry_run": False,
    }
    assert reloaded(link).state == State.DETACHED


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django-crontask needs Django 6.0")
@pytest.mark.django_db(transaction=True)
def test_django_crontask_schedules_the_sweep_task(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """The README's schedule, ``cron("*/5 * * * *")(sweep_task)``: the job django-crontask's
    scheduler runs every 5 minutes enqueues the sweep (the scheduler itself is its own)."""
    crontask = importlib.import_module("crontask")  # (installed where Django is 6.0 or later)
    crontask.cron("*/5 * * * *")(tasks.sweep_task)
    [job] = [job for job in crontask.scheduler.get_jobs() if job.name == tasks.sweep_task.name]
    try:
        now = timezone.now()
        due = job.trigger.get_next_fire_time(None, now)
        assert due - now <= timedelta(minutes=5)
        link = attached(giosg, VISITORS[0], make_user("ann"), expires_at=timezone.now())
        link_clock.advance(get_settings().expiry_grace)
        job.func()  # what the scheduler calls at that time
        assert reloaded(link).state == State.DETACHED
    finally:
        crontask.scheduler.remove_job(job.id)


@pytest.mark.django_db(transaction=True)
def test_sweep_task_reports_errors_instead_of_raising(settings: Any) -> None:
    configured = settings.GIOSG
    settings.GIOSG = {**configured, "API_TOKEN": ""}
    assert tasks.sweep_task.enqueue().return_value == {"failed": ["GiosgConfigurationError"]}
    settings.GIOSG = {**configured, "ENABLED": False}
    assert tasks.sweep_task.enqueue().return_value == {"skipped": ["GIOSG is disabled"]}
