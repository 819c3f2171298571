"""``giosg_sweep`` and ``sweep_task``: expired links, due links, backoff, pruning, two sweeps.

Against the simulator over real HTTP. The links' "now" is injected (``link_clock``), so the
backoff, the staleness of lost tasks, expiry and pruning are tested without waiting.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from django_giosg import clock, signals, tasks
from django_giosg.client import get_client
from django_giosg.conf import get_settings
from django_giosg.models import State, VisitorLease, VisitorLink
from django_giosg.services import failures, links, workflows
from django_giosg.testing import GiosgSimulator

from .browsing import attached, lost_detach, make_user, reloaded, sweep
from .conftest import LinkClock

pytestmark = pytest.mark.django_db(transaction=True)

VISITORS = [f"{n:032x}" for n in range(1, 9)]
HOUR = timedelta(hours=1)


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    """Variables in one room; few retries per call, so that failing sweeps are quick."""
    sim = giosg_simulator
    settings.GIOSG = {
        **settings.GIOSG,
        "ROOM_IDS": sim.room_ids[:1],
        "MAX_RETRIES": 1,
        "SWEEP_MAX_ATTEMPTS": 3,
    }
    return sim


# -- expired and due links ----------------------------------------------------------------------


def test_an_expired_pending_attach_is_detached_without_attaching(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    giosg.seed_visitor(VISITORS[0], rooms=giosg.room_ids[:1], open_chats=1)
    expires_at = timezone.now() + HOUR
    # bound at login, but the attach task was lost
    links.bind(make_user("ann"), VISITORS[0], get_settings(), session_expires_at=expires_at)
    link_clock.set(expires_at + timedelta(seconds=get_settings().expiry_grace))
    assert sweep() == (
        "giosg_sweep: 1 expired and 0 due link(s): 1 done, 0 to retry, 0 failed, 0 skipped; "
        "0 detached link(s) pruned."
    )
    assert VisitorLink.objects.get().state == State.DETACHED
    assert giosg.open_chats(VISITORS[0]) == []
    assert giosg.requests("set_variable") == 0


def test_a_link_without_a_recorded_expiry_never_expires(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    link = attached(giosg, VISITORS[0], make_user("ann"))
    link_clock.advance(3650 * 24 * 3600)
    assert sweep().startswith("giosg_sweep: 0 expired and 0 due link(s)")
    assert reloaded(link).state == State.ATTACHED


def test_a_lost_task_is_picked_up_after_pending_stale_after(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    start = link_clock.set(timezone.now())
    links.bind(make_user("ann"), VISITORS[0], get_settings())  # the attach task was lost
    stale = timedelta(seconds=get_settings().pending_stale_after)
    link_clock.set(start + stale - timedelta(seconds=1))
    assert "0 due" in sweep()
    assert giosg.variables(VISITORS[0]) == {}
    link_clock.set(start + stale)
    assert "0 expired and 1 due link(s): 1 done" in sweep()
    assert VisitorLink.objects.get().state == State.ATTACHED
    assert giosg.variables(VISITORS[0]) != {}


def test_each_call_is_retried_within_one_sweep(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    link = attached(giosg, VISITORS[0], make_user("ann"))
    lost_detach(link)
    giosg.add_fault("end_chat", status=503, retry_after="0", times=1)
    link_clock.advance(get_settings().pending_stale_after)
    assert "1 due link(s): 1 done" in sweep()
    assert reloaded(link).state == State.DETACHED
    assert reloaded(link).attempts == 0
    assert giosg.requests("end_chat") == 2
    assert giosg.open_chats(VISITORS[0]) == []


# -- failures: backoff, cap, giving up, the admin's retry ---------------------------------------


def test_failures_back_off_then_the_link_fails_once_and_loudly(
    giosg: GiosgSimulator,
    link_clock: LinkClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(clock, "jitter", lambda: 0.0)  # the backoff's factor is 0.5
    link = attached(giosg, VISITORS[0], make_user("ann"))
    lost_detach(link)
    failures: list[dict[str, Any]] = []

    def failed(sender: object, **kwargs: Any) -> None:
        failures.append(kwargs)

    signals.visitor_failed.connect(failed)
    giosg.down()
    now = link_clock.advance(get_settings().pending_stale_after)
    try:
        with caplog.at_level(logging.WARNING, "django_giosg"):
            assert "1 due link(s): 0 done, 1 to retry, 0 failed" in sweep()  # exit 0: giosg down
            assert reloaded(link).attempts == 1
            assert link.next_attempt_at == now + timedelta(seconds=30)  # 60 s * 2**0 * 0.5
            link_clock.set(now + timedelta(seconds=29))
            assert "0 due" in sweep()  # not due yet
            now = link_clock.set(now + timedelta(seconds=30))
            assert "1 to retry" in sweep()
            assert reloaded(link).attempts == 2
            assert link.next_attempt_at == now + timedelta(seconds=60)  # 60 s * 2**1 * 0.5
            link_clock.set(now + timedelta(seconds=60))
            assert "0 to retry, 1 failed" in sweep()
            assert reloaded(link).state == State.FAILED
            assert link.failed_action == "detach"
            assert link.attempts == 3
            assert VisitorLink.objects.filter(pk=link.pk, next_attempt_at__isnull=True).exists()
            link_clock.advance(30 * 24 * 3600)
            assert "0 expired and 0 due" in sweep()  # failed is final
    finally:
        signals.visitor_failed.disconnect(failed)
    assert len(failures) == 1
    assert failures[0]["action"] == "detach"
    gave_up = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(gave_up) == 1
    assert "gave up on the detach of visitor" in gave_up[0].getMessage()
    assert get_settings().api_token not in caplog.text


def test_an_attach_undone_for_a_deleted_user_counts_as_its_detach_did(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """The user went before the attach ran: the attach becomes a detach, and the sweep counts
    that detach's outcome: to retry while it fails, failed after the last attempt."""
    giosg.seed_visitor(VISITORS[0], rooms=giosg.room_ids[:1], open_chats=1)
    links.bind(make_user("ann"), VISITORS[0], get_settings())  # the attach task was lost
    VisitorLink.objects.update(user=None)  # as SET_NULL leaves it
    giosg.add_fault("end_chat", status=500)
    link_clock.advance(get_settings().pending_stale_after)
    assert "1 due link(s): 0 done, 1 to retry, 0 failed" in sweep()
    link = VisitorLink.objects.get()
    assert (link.state, link.attempts) == (State.PENDING_DETACH, 1)
    link_clock.advance(6 * 3600)
    assert "1 due link(s): 0 done, 1 to retry, 0 failed" in sweep()
    link_clock.advance(6 * 3600)
    assert "1 due link(s): 0 done, 0 to retry, 1 failed" in sweep()
    assert reloaded(link).state == State.FAILED
    giosg.clear_faults()
    assert giosg.requests("set_variable") == 0


def test_the_backoff_grows_to_its_cap(
    giosg: GiosgSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = get_settings()
    monkeypatch.setattr(clock, "jitter", lambda: 0.999)  # the factor's top, 1.5
    assert failures.link_backoff(1, settings) == pytest.approx(60 * 1.499)
    assert failures.link_backoff(5, settings) == pytest.approx(60 * 16 * 1.499)
    assert failures.link_backoff(9, settings) == 6 * 3600.0  # 23 000 s capped at 6 h
    monkeypatch.setattr(clock, "jitter", lambda: 0.0)
    assert failures.link_backoff(3, settings) == 60 * 4 * 0.5


def test_success_resets_the_attempts(giosg: GiosgSimulator, link_clock: LinkClock) -> None:
    link = attached(giosg, VISITORS[0], make_user("ann"))
    lost_detach(link)
    giosg.down()
    link_clock.advance(get_settings().pending_stale_after)
    assert "1 to retry" in sweep()
    assert reloaded(link).attempts == 1
    assert link.last_error
    giosg.up()
    link_clock.advance(6 * 3600)
    assert "1 done" in sweep()
    assert reloaded(link).state == State.DETACHED
    assert (link.attempts, link.failed_action, link.last_error) == (0, "", "")


def test_the_admins_retry_gives_a_failed_link_a_fresh_start(
    giosg: GiosgSimulator, link_clock: LinkClock, admin_client: Client
) -> None:
    link = attached(giosg, VISITORS[0], make_user("ann"))
    lost_detach(link)
    giosg.down()
    for _attempt in range(3):
        link_clock.advance(6 * 3600)
        sweep()
    assert reloaded(link).state == State.FAILED
    giosg.up()
    response = admin_client.post(
        "/admin/django_giosg/visitorlink/",
        {"action": "retry", "_selected_action": [link.pk]},
        follow=True,
    )
    assert "1 failed link(s) queued again." in response.content.decode()
    # the retry's task ran at commit (the immediate backend)
    assert reloaded(link).state == State.DETACHED
    assert link.attempts == 0
    assert giosg.open_chats(VISITORS[0]) == []


# -- pruning, dry runs, limits ------------------------------------------------------------------


def test_detached_links_are_pruned_after_prune_after_days(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    ann = make_user("ann")
    old, young = (attached(giosg, visitor, ann) for visitor in VISITORS[:2])
    link_clock.set(timezone.now())
    workflows.detach(old.pk, get_client(), get_settings())
    link_clock.advance(24 * 3600)
    workflows.detach(young.pk, get_client(), get_settings())
    failed = VisitorLink.objects.create(visitor_id=VISITORS[2], state=State.FAILED)
    VisitorLink.objects.filter(pk=failed.pk).update(updated_at=timezone.now() - 90 * 24 * HOUR)
    link_clock.set(reloaded(old).updated_at + timedelta(days=30, seconds=1))
    assert sweep().endswith("; 1 detached link(s) pruned.")
    assert set(VisitorLink.objects.values_list("pk", flat=True)) == {young.pk, failed.pk}


def test_a_dry_run_counts_and_changes_nothing(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    ann = make_user("ann")
    now = timezone.now()
    expiring = attached(giosg, VISITORS[0], ann, expires_at=now)
    due = attached(giosg, VISITORS[1], ann)
    lost_detach(due)
    done = attached(giosg, VISITORS[2], ann)
    workflows.detach(done.pk, get_client(), get_settings())
    VisitorLease.objects.create(visitor_id=VISITORS[3], holder="dead", expires_at=now)
    link_clock.set(now + timedelta(days=31))
    requests = giosg.requests()
    rows = list(VisitorLink.objects.order_by("pk").values())
    assert sweep("--dry-run") == (
        "giosg_sweep (dry run): would detach 1 expired link(s), retry 1 due link(s) and prune "
        "1 detached link(s)."
    )
    assert sweep("--dry-run", "--limit", "1").startswith(
        "giosg_sweep (dry run): would detach 1 expired link(s), retry 0 due link(s)"
    )
    assert list(VisitorLink.objects.order_by("pk").values()) == rows
    assert giosg.requests() == requests
    assert VisitorLease.objects.exists()
    assert sweep() == (
        "giosg_sweep: 1 expired and 1 due link(s): 2 done, 0 to retry, 0 failed, 0 skipped; "
        "1 detached link(s) pruned."
    )
    assert reloaded(expiring).state == State.DETACHED
    assert not VisitorLease.objects.exists()  # a dead worker's lease is cleared


def test_limit_leaves_the_rest_for_the_next_run(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    ann = make_user("ann")
    for visitor_id in VISITORS[:3]:
        lost_detach(attached(giosg, visitor_id, ann))
    link_clock.advance(get_settings().pending_stale_after)
    assert "0 expired and 2 due link(s): 2 done" in sweep("--limit", "2")
    assert "0 expired and 1 due link(s): 1 done" in sweep("--limit", "2")
    assert set(VisitorLink.objects.values_list("state", flat=True)) == {State.DETACHED}


@pytest.mark.parametrize("limit", ["0", "-1", "two"])
def test_a_bad_limit_is_refused(limit: str) -> None:
    with pytest.raises(CommandError, match="--limit"):
        call_command("giosg_sweep", "--limit", limit)


# -- exit codes and the task ----------------------------------------------------------------------


def test_a_configuration_error_exits_non_zero(settings: Any) -> None:
    settings.GIOSG = {**settings.GIOSG, "API_TOKEN": ""}
    with pytest.raises(CommandError, match='GIOSG\\["API_TOKEN"\\]'):
        call_command("giosg_sweep")


def test_disabled_sweeps_nothing(giosg: GiosgSimulator, settings: Any) -> None:
    link = attached(giosg, VISITORS[0], make_user("ann"), expires_at=timezone.now() - HOUR)
    settings.GIOSG = {**settings.GIOSG, "ENABLED": False}
    assert sweep() == "giosg_sweep: GIOSG is disabled (ENABLED = False); nothing done."
    assert reloaded(link).state == State.ATTACHED


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


def test_sweep_task_reports_errors_instead_of_raising(settings: Any) -> None:
    configured = settings.GIOSG
    settings.GIOSG = {**configured, "API_TOKEN": ""}
    assert tasks.sweep_task.enqueue().return_value == {"failed": ["GiosgConfigurationError"]}
    settings.GIOSG = {**configured, "ENABLED": False}
    assert tasks.sweep_task.enqueue().return_value == {"skipped": ["GIOSG is disabled"]}


# -- two sweeps at once -------------------------------------------------------------------------


def run_concurrently(*jobs: Callable[[], str]) -> list[str]:
    outputs: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[], str]) -> None:
        try:
            barrier.wait()
            outputs.append(job())
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return outputs


def test_two_concurrent_sweeps_end_each_chat_and_delete_each_key_once(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    ann = make_user("ann")
    now = link_clock.set(timezone.now())
    for visitor in VISITORS[:4]:
        attached(giosg, visitor, ann, expires_at=now)
    for visitor in VISITORS[4:]:
        lost_detach(attached(giosg, visitor, ann))
    link_clock.advance(get_settings().pending_stale_after)  # 4 expired links, 4 due ones
    giosg.add_fault(latency=0.02)  # every call: the sweeps overlap
    calls_before = len(giosg.calls)
    outputs = run_concurrently(sweep, sweep)
    calls = giosg.calls[calls_before:]
    ends = Counter(call.path for call in calls if call.endpoint == "end_chat")
    deletes = Counter(call.path for call in calls if call.endpoint == "delete_variable")
    assert len(ends) == 8
    assert set(ends.values()) == {1}
    assert len(deletes) == 8 * 2  # username and user_id of each visitor
    assert set(deletes.values()) == {1}
    assert set(VisitorLink.objects.values_list("state", flat=True)) == {State.DETACHED}
    for visitor_id in VISITORS:
        assert giosg.open_chats(visitor_id) == []
        assert giosg.variables(visitor_id) == {}

    def total(pattern: str) -> int:
        return sum(int(number) for line in outputs for number in re.findall(pattern, line))

    assert total(r"(\d+) expired") + total(r"(\d+) due") == 8, outputs  # each taken once
    assert total(r"(\d+) done") == 8, outputs


# -- as cron runs it ----------------------------------------------------------------------------


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the arguments are the test's own
        [sys.executable, "-m", "django", *args, "--settings", "tests.settings"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_from_the_command_line_exit_0_while_giosg_is_down_and_1_when_misconfigured(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "DJANGO_GIOSG_TEST_DB": str(tmp_path / "site.sqlite3"),
        "DJANGO_GIOSG_TEST_API_BASE_URL": "http://127.0.0.1:9",  # a closed port
    }
    seeded = manage(  # a site with one link due, as cron finds it
        "shell",
        "-c",
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "from django.utils import timezone; from django_giosg.models import VisitorLink; "
        f"VisitorLink.objects.create(visitor_id='{VISITORS[0]}', state='pending_detach', "
        "next_attempt_at=timezone.now())",
        env=env,
    )
    assert seeded.returncode == 0, seeded.stderr
    down = manage("giosg_sweep", env=env)
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines() == [
        "giosg_sweep: 0 expired and 1 due link(s): 0 done, 1 to retry, 0 failed, 0 skipped; "
        "0 detached link(s) pruned."
    ]
    assert "Traceback" not in down.stderr
    misconfigured = manage("giosg_sweep", env={**env, "DJANGO_GIOSG_TEST_API_BASE_URL": "ftp://x"})
    assert misconfigured.returncode == 1
    assert 'GIOSG["API_BASE_URL"]' in misconfigured.stderr
