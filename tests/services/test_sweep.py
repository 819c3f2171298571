"""services.sweep: expired links, due links, backoff, pruning, dry runs, limits, two sweeps at
once, and the sweep at its edges.

Against the simulator over real HTTP. The links' "now" is injected (``link_clock``), so the
backoff, the staleness of lost tasks, expiry and pruning are tested without waiting."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import EmptyResultSet
from django.db import connections, transaction
from django.db.backends.signals import connection_created
from django.test import Client
from django.utils import timezone

from django_giosg import clock, signals
from django_giosg.client import get_client
from django_giosg.conf import get_settings
from django_giosg.models import State, VisitorLease, VisitorLink, write_db
from django_giosg.services import links, workflows
from django_giosg.services import sweep as sweeping
from django_giosg.services.results import Result
from django_giosg.testing import GiosgSimulator

from ..browsing import (
    DEVICE,
    HOUR,
    VISITOR,
    VISITORS,
    attached,
    lost_detach,
    make_user,
    only_link,
    reloaded,
    sweep,
)
from ..conftest import LinkClock

pytestmark = pytest.mark.django_db(transaction=True)


# -- expired and due links ----------------------------------------------------------------------


def test_an_expired_pending_attach_is_detached_without_attaching(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    giosg.seed_visitor(VISITORS[0], rooms=giosg.room_ids[:1], open_chats=1)
    expires_at = timezone.now() + HOUR
    # bound at login, but the attach task was lost
    links.bind(
        make_user("ann"),
        VISITORS[0],
        get_settings(),
        device=DEVICE,
        session_expires_at=expires_at,
    )
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
    links.bind(
        make_user("ann"), VISITORS[0], get_settings(), device=DEVICE
    )  # the attach task was lost
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_an_attach_undone_for_a_deleted_user_counts_as_its_detach_did(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """The user went before the attach ran: the attach becomes a detach, and the sweep counts
    that detach's outcome: to retry while it fails, failed after the last attempt."""
    giosg.seed_visitor(VISITORS[0], rooms=giosg.room_ids[:1], open_chats=1)
    links.bind(
        make_user("ann"), VISITORS[0], get_settings(), device=DEVICE
    )  # the attach task was lost
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_once_stopping_it_takes_no_more_links(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """``giosg_sweep --every`` asked to stop: the link being worked is finished, the others
    wait for the next sweep."""
    ann = make_user("ann")
    for visitor_id in VISITORS[:3]:
        lost_detach(attached(giosg, visitor_id, ann))
    link_clock.advance(get_settings().pending_stale_after)
    asked: list[bool] = []

    def stopping() -> bool:  # asked to stop while the first due link is worked
        asked.append(len(asked) >= 2)
        return asked[-1]

    report = sweeping.sweep(get_client(), get_settings(), stopping=stopping)
    assert (report.expired, report.due, report.done) == (0, 1, 1)
    assert asked == [False, False, True]  # before the expired links, the first due, the next
    states = Counter(VisitorLink.objects.values_list("state", flat=True))
    assert states == {State.DETACHED: 1, State.PENDING_DETACH: 2}


# -- several links at once ----------------------------------------------------------------------


class InFlight:
    """A workflow wrapper that counts the links worked at once, and where each one's work ran.
    With ``together``, the first that many links wait for each other before they go on (a
    broken barrier, an error, unless they are worked at once)."""

    def __init__(self, workflow: Callable[..., Result], together: int = 1) -> None:
        self._workflow = workflow
        self._together = threading.Barrier(together, timeout=10) if together > 1 else None
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.calls = 0
        self.threads: dict[int, str] = {}

    def __call__(self, link_id: int, *args: Any, **kwargs: Any) -> Result:
        with self._lock:
            self.now += 1
            self.calls += 1
            first = self.calls <= (self._together.parties if self._together else 0)
            self.most = max(self.most, self.now)
            self.threads[link_id] = threading.current_thread().name
        try:
            if first and self._together is not None:
                self._together.wait()
            return self._workflow(link_id, *args, **kwargs)
        finally:
            with self._lock:
                self.now -= 1


def expired_backlog(giosg: GiosgSimulator, link_clock: LinkClock, count: int) -> list[int]:
    ann = make_user("ann")
    expires_at = timezone.now() + HOUR
    ids = [attached(giosg, visitor_id, ann, expires_at).pk for visitor_id in VISITORS[:count]]
    link_clock.set(expires_at + timedelta(seconds=get_settings().expiry_grace))
    return ids


Backlog = Callable[..., tuple[list[int], InFlight]]


@pytest.fixture
def backlog(
    giosg: GiosgSimulator, link_clock: LinkClock, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Backlog:
    """``backlog(concurrency, links, together=1)``: ``SWEEP_CONCURRENCY`` set, that many expired
    links, and the detach counted (:class:`InFlight`); their ids and the counter."""

    def make(concurrency: int, links: int, together: int = 1) -> tuple[list[int], InFlight]:
        settings.GIOSG = {**settings.GIOSG, "SWEEP_CONCURRENCY": concurrency}
        ids = expired_backlog(giosg, link_clock, links)
        detach = InFlight(workflows.detach, together)
        monkeypatch.setattr(workflows, "detach", detach)
        return ids, detach

    return make


def test_a_backlog_is_worked_sweep_concurrency_links_at_once(
    giosg: GiosgSimulator, backlog: Backlog, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, detach = backlog(3, 8, together=3)
    opened: list[object] = []

    def count(sender: object, connection: object, **kwargs: object) -> None:
        opened.append(connection)

    closed: list[str] = []
    close_all = connections.close_all

    def close_all_noted() -> None:
        closed.append(threading.current_thread().name)
        close_all()

    monkeypatch.setattr("django_giosg.services.sweep.connections.close_all", close_all_noted)
    busy_at_claims: list[int] = []
    claim_expired = VisitorLink.claim_expired

    def claim_noted(link: VisitorLink, *args: Any) -> bool:
        busy_at_claims.append(detach.now)
        return claim_expired(link, *args)

    monkeypatch.setattr(VisitorLink, "claim_expired", claim_noted)
    connection_created.connect(count)
    try:
        assert "8 expired and 0 due link(s): 8 done, 0 to retry" in sweep()
    finally:
        connection_created.disconnect(count)
    assert detach.most == 3
    assert max(busy_at_claims) < 3  # a link is claimed once a worker is free for it, not before
    assert sorted(detach.threads) == sorted(ids)
    workers = set(detach.threads.values())
    assert workers == {f"django-giosg-sweep-{n}" for n in range(3)}
    assert sorted(closed) == sorted(workers)  # each worker closed its connections at the end
    assert len(opened) <= 3  # one per worker thread, however many links
    assert set(VisitorLink.objects.values_list("state", flat=True)) == {State.DETACHED}
    assert giosg.variables(VISITORS[0]) == {}


def test_with_sweep_concurrency_1_links_are_worked_one_after_another_in_the_calling_thread(
    backlog: Backlog,
) -> None:
    _ids, detach = backlog(1, 3)
    assert "3 expired and 0 due link(s): 3 done" in sweep()
    assert detach.most == 1
    assert set(detach.threads.values()) == {threading.current_thread().name}


def test_once_stopping_the_links_being_worked_are_finished_and_no_more_taken(
    backlog: Backlog,
) -> None:
    backlog(2, 6, together=2)
    asked: list[bool] = []

    def stopping() -> bool:  # asked to stop once two links are being worked
        asked.append(len(asked) >= 2)
        return asked[-1]

    report = sweeping.sweep(get_client(), get_settings(), stopping=stopping)
    assert (report.expired, report.done) == (2, 2)
    states = Counter(VisitorLink.objects.values_list("state", flat=True))
    assert states == {State.DETACHED: 2, State.ATTACHED: 4}


def test_inside_a_transaction_the_links_are_worked_in_the_calling_thread(
    backlog: Backlog,
) -> None:
    """``ATOMIC_REQUESTS``, or a caller's atomic block: the claims stay locked until it
    commits, and a worker thread's connection would wait for them for ever (PostgreSQL)."""
    _ids, detach = backlog(3, 3)
    with transaction.atomic(using=write_db(VisitorLink)):
        report = sweeping.sweep(get_client(), get_settings())
    assert report.done == 3
    assert set(detach.threads.values()) == {threading.current_thread().name}


def test_a_second_ctrl_c_does_not_wait_for_the_links_being_worked(
    backlog: Backlog, monkeypatch: pytest.MonkeyPatch
) -> None:
    backlog(2, 3)
    release = threading.Event()

    def stuck(*args: Any, **kwargs: Any) -> Result:
        release.wait(10)  # a link whose calls hang
        return Result(args[0], "detach")

    monkeypatch.setattr(workflows, "detach", stuck)
    calls = 0

    def interrupted() -> bool:  # the first link is handed over, then Ctrl-C (twice)
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return False

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sweeping.sweep(get_client(), get_settings(), stopping=interrupted)
    assert time.monotonic() - started < 5  # not the stuck link's 10 s
    release.set()


def test_a_link_worker_that_raises_leaves_the_others_working(
    backlog: Backlog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ids, real_detach = backlog(2, 4)

    def detach(link_id: int, *args: Any, **kwargs: Any) -> Result:
        if link_id == ids[0]:
            raise RuntimeError("a bug")
        return real_detach(link_id, *args, **kwargs)

    monkeypatch.setattr(workflows, "detach", detach)
    assert "4 expired and 0 due link(s): 3 done, 1 to retry" in sweep()
    assert f"the sweep could not work link {ids[0]}" in caplog.text


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
            connections.close_all()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return outputs


@pytest.mark.slow
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


# -- the sweep at its edges ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_bug_in_one_link_leaves_it_for_a_later_sweep(
    giosg: GiosgSimulator,
    link_clock: LinkClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = attached(giosg, VISITOR, make_user("ann"))
    lost_detach(link)
    now = link_clock.advance(get_settings().pending_stale_after)

    def broken(*args: object, **kwargs: object) -> Result:
        raise RuntimeError("a bug")

    monkeypatch.setattr(workflows, "detach", broken)
    with caplog.at_level(logging.ERROR, "django_giosg"):
        assert "1 due link(s): 0 done, 1 to retry" in sweep()
    assert f"the sweep could not work link {link.pk}" in caplog.text
    link.refresh_from_db()
    assert link.state == State.PENDING_DETACH
    assert link.next_attempt_at == now + timedelta(seconds=get_settings().pending_stale_after)


@pytest.mark.django_db(transaction=True)
def test_a_link_another_worker_finished_first_is_skipped(
    giosg: GiosgSimulator, link_clock: LinkClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = attached(giosg, VISITOR, make_user("ann"))
    lost_detach(link)
    link_clock.advance(get_settings().pending_stale_after)
    real_detach = workflows.detach

    def overtaken(link_id: int, *args: Any, **kwargs: Any) -> Result:
        real_detach(link_id, *args, **kwargs)  # a worker's detach_task, just before ours
        return real_detach(link_id, *args, **kwargs)

    monkeypatch.setattr(workflows, "detach", overtaken)
    assert "1 due link(s): 0 done, 0 to retry, 0 failed, 1 skipped" in sweep()
    assert only_link().state == State.DETACHED


@pytest.mark.django_db(transaction=True)
def test_the_limit_is_shared_by_expired_and_due_links(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    ann = make_user("ann")
    expiring = attached(giosg, VISITOR, ann, expires_at=timezone.now())
    lost_detach(attached(giosg, "f" * 32, ann))
    link_clock.advance(get_settings().pending_stale_after)
    assert "1 expired and 0 due link(s): 1 done" in sweep("--limit", "1")
    expiring.refresh_from_db()
    assert expiring.state == State.DETACHED
    assert "0 expired and 1 due link(s): 1 done" in sweep("--limit", "1")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limit_with_lock", [True, False], ids=["PostgreSQL-MySQL", "Oracle"])
def test_where_the_database_skips_locked_rows_the_sweep_locks_its_candidates(
    giosg: GiosgSimulator,
    link_clock: LinkClock,
    monkeypatch: pytest.MonkeyPatch,
    limit_with_lock: bool,
) -> None:
    """SQLite has no row locks; this runs the path of the databases that have them. Django
    leaves the ``FOR UPDATE SKIP LOCKED`` clause out on SQLite, so each query is also compiled as
    theirs would be: Oracle cannot ``LIMIT`` a ``FOR UPDATE``, and refuses to compile it."""
    lost_detach(attached(giosg, VISITOR, make_user("ann")))
    link_clock.advance(get_settings().pending_stale_after)
    database = connections[write_db(VisitorLink)]
    features = database.features
    monkeypatch.setattr(features, "has_select_for_update_skip_locked", True)
    monkeypatch.setattr(features, "supports_select_for_update_with_limit", limit_with_lock)
    locked: list[bool] = []
    real_take = sweeping._take_unchanged

    def take(links: Any, *args: Any) -> VisitorLink | None:
        with monkeypatch.context() as their_database:
            their_database.setattr(features, "has_select_for_update", True)
            try:
                sql, _ = links.query.get_compiler(using=database.alias).as_sql()
            except EmptyResultSet:  # no candidates by id: Django sends no query at all
                sql = "FOR UPDATE SKIP LOCKED"
        assert "FOR UPDATE SKIP LOCKED" in sql
        locked.append(links.query.select_for_update and database.in_atomic_block)
        return real_take(links, *args)

    monkeypatch.setattr(sweeping, "_take_unchanged", take)
    assert "0 expired and 1 due link(s): 1 done" in sweep()
    assert locked == [True, True, True]  # expired: none; due: the link, then none left


@pytest.mark.django_db
def test_a_link_changed_since_it_was_read_is_not_taken() -> None:
    now = timezone.now()
    first, second = (
        VisitorLink.objects.create(
            visitor_id=visitor * 32, state=State.PENDING_DETACH, next_attempt_at=now
        )
        for visitor in "ab"
    )
    read_before = VisitorLink.objects.get(pk=first.pk)
    VisitorLink.objects.filter(pk=first.pk).update(next_attempt_at=now + timedelta(hours=1))
    seen: set[int] = set()
    later = now + timedelta(minutes=10)
    candidates: Any = [read_before, second]  # as the sweep read them, one of them since taken
    taken = sweeping._take_unchanged(candidates, seen, lambda link: link.claim_due(now, later))
    assert taken is not None
    assert taken.pk == second.pk
    assert seen == {first.pk, second.pk}
    first.refresh_from_db()
    assert first.next_attempt_at == now + timedelta(hours=1)  # left to whoever took it
    # back in the selection within the same run (it should never be): not taken twice
    VisitorLink.objects.filter(pk=second.pk).update(next_attempt_at=now)
    assert (
        sweeping._take_unchanged(candidates, seen, lambda link: link.claim_due(now, later)) is None
    )
    assert VisitorLink.objects.get(pk=second.pk).next_attempt_at == now
