"""The ``giosg_sweep`` command: its arguments, its exit codes, as cron runs it, and ``--every``
as a container runs it."""

from __future__ import annotations

import logging
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from django_giosg import tasks
from django_giosg.models import State
from django_giosg.services.sweep import SweepReport
from django_giosg.testing import GiosgSimulator

from ..browsing import HOUR, VISITORS, attached, make_user, reloaded, sweep
from ..settings import GIOSG as SITE_GIOSG
from ..settings import ORGANIZATION_ID, ROOM_ID

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("limit", ["0", "-1", "two"])
def test_a_bad_limit_is_refused(limit: str) -> None:
    with pytest.raises(CommandError, match="--limit"):
        call_command("giosg_sweep", "--limit", limit)


@pytest.mark.parametrize("every", ["0", "-1", "-0.5", "nan", "inf", "-inf", "1e300", "two", ""])
def test_a_bad_every_is_refused(every: str) -> None:
    with pytest.raises(
        CommandError, match="--every: expected a number of seconds greater than 0 "
    ):
        call_command("giosg_sweep", f"--every={every}")


def test_every_and_dry_run_are_refused_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "run_sweep", Rounds())
    with pytest.raises(CommandError, match="--dry-run and --every"):
        call_command("giosg_sweep", "--every", "0.5", "--dry-run")


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


@pytest.mark.slow
def test_from_the_command_line_exit_0_while_giosg_is_down_and_1_when_misconfigured(
    tmp_path: Path,
) -> None:
    env = site_with_a_due_link(tmp_path, "http://127.0.0.1:9")  # giosg on a closed port
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


# -- --every, in this process -------------------------------------------------------------------

real_sweep = tasks.run_sweep
Round = Callable[[int | None], SweepReport | None]  # one round's stand-in, given --limit


class Runaway(BaseException):
    """A round more than the test planned: the loop did not stop when it should have."""


class Rounds:
    """``tasks.run_sweep`` for a loop of ``--every``: each round does the test's next step; a
    round beyond them raises :class:`Runaway` (not an ``Exception``: no round survives it), so
    that a loop that does not stop fails the test instead of hanging it."""

    def __init__(self, *steps: Round) -> None:
        self.steps = steps
        self.limits: list[int | None] = []
        self.stopping: Callable[[], bool] = lambda: False  # the round's, as the command gave it

    def __call__(
        self,
        *,
        limit: int | None = None,
        dry_run: bool = False,
        stopping: Callable[[], bool] = lambda: False,
    ) -> SweepReport | None:
        self.limits.append(limit)
        self.stopping = stopping
        if dry_run or len(self.limits) > len(self.steps):
            raise Runaway
        return self.steps[len(self.limits) - 1](limit)


def boom(limit: int | None) -> SweepReport | None:
    raise RuntimeError("a bug met by one round")


def disabled(limit: int | None) -> SweepReport | None:
    return None  # at once, as while GIOSG is disabled


def swept(limit: int | None) -> SweepReport | None:
    return real_sweep(limit=limit)


def terminating(step: Round) -> Round:
    """SIGTERM to this process, then ``step``: a signal that arrives while a round runs."""

    def terminated_then(limit: int | None) -> SweepReport | None:
        os.kill(os.getpid(), signal.SIGTERM)
        return step(limit)

    return terminated_then


def sweep_every(seconds: str, *args: str, out: StringIO) -> None:
    call_command("giosg_sweep", "--every", seconds, *args, stdout=out)


@pytest.fixture
def handlers() -> Iterator[tuple[object, object]]:
    """This process's own SIGTERM handler (one that ``--every`` must not leave replaced) and
    its SIGINT handler, as they were before the test."""

    def ours(signum: int, frame: object) -> None:
        raise AssertionError("the command's own handler should have taken this SIGTERM")

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        yield ours, signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)


def put_back(handlers: tuple[object, object]) -> bool:
    return (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers


def test_a_failed_round_is_logged_and_the_next_round_comes(
    giosg: GiosgSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    handlers: tuple[object, object],
) -> None:
    """Round 1 fails; round 2 sweeps, with a SIGTERM in the middle of it: the round ends its
    work, and the loop ends without a third round, every round limited by ``--limit``."""
    link = attached(giosg, VISITORS[0], make_user("ann"), expires_at=timezone.now() - HOUR)
    rounds = Rounds(boom, terminating(swept))
    monkeypatch.setattr(tasks, "run_sweep", rounds)
    out = StringIO()
    sweep_every("0.01", "--limit", "5", out=out)
    assert out.getvalue().splitlines() == [
        "giosg_sweep: the sweep failed (RuntimeError); see the log.",
        "giosg_sweep: 1 expired and 0 due link(s): 1 done, 0 to retry, 0 failed, 0 skipped; "
        "0 detached link(s) pruned.",
        "giosg_sweep: stopped (SIGTERM).",
    ]
    assert rounds.limits == [5, 5]
    assert reloaded(link).state == State.DETACHED
    assert giosg.open_chats(VISITORS[0]) == []
    [failure] = [
        r for r in caplog.records if r.name == "django_giosg.management.commands.giosg_sweep"
    ]
    assert failure.levelno == logging.ERROR
    assert failure.exc_info is not None
    assert failure.exc_info[0] is RuntimeError
    assert put_back(handlers)


def test_each_round_has_a_database_connection_of_its_own(
    monkeypatch: pytest.MonkeyPatch, handlers: tuple[object, object]
) -> None:
    """Django takes a connection of ``CONN_MAX_AGE = 0`` (the default) for old at the end of a
    request; the loop closes it after each round, so that weeks of rounds never reuse a dead
    one."""
    used: list[object] = []

    def uses_the_database(limit: int | None) -> SweepReport | None:
        connection.ensure_connection()
        used.append(connection.connection)
        return None

    monkeypatch.setattr(
        tasks, "run_sweep", Rounds(uses_the_database, terminating(uses_the_database))
    )
    sweep_every("0.01", out=StringIO())
    assert len(used) == 2
    assert used[0] is not used[1]
    assert put_back(handlers)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_pause_at_once(
    monkeypatch: pytest.MonkeyPatch, handlers: tuple[object, object], signum: signal.Signals
) -> None:
    main = threading.get_ident()
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signum))  # in the 10 s pause

    def starts_the_timer(limit: int | None) -> SweepReport | None:
        timer.start()  # (the command's handlers are in place by now)
        return None

    monkeypatch.setattr(tasks, "run_sweep", Rounds(starts_the_timer))
    out = StringIO()
    started = time.monotonic()
    try:
        sweep_every("10", out=out)
    finally:
        timer.cancel()
        if timer.is_alive():
            timer.join()
    assert time.monotonic() - started < 5
    assert out.getvalue().splitlines() == [
        "giosg_sweep: GIOSG is disabled (ENABLED = False); nothing done.",
        f"giosg_sweep: stopped ({signum.name}).",
    ]
    assert put_back(handlers)


def test_a_signal_in_a_round_stops_it_taking_links_and_a_second_one_is_not_caught(
    monkeypatch: pytest.MonkeyPatch, handlers: tuple[object, object]
) -> None:
    """The sweep is told to take no more links (``docker stop`` kills 10 s later), and the
    signals go back to their previous handlers: a second Ctrl-C or SIGTERM ends the process."""
    seen: list[object] = []

    def signalled(limit: int | None) -> SweepReport | None:
        seen.append(rounds.stopping())
        os.kill(os.getpid(), signal.SIGTERM)
        seen.extend([rounds.stopping(), signal.getsignal(signal.SIGTERM)])
        seen.append(signal.getsignal(signal.SIGINT))
        return None

    rounds = Rounds(signalled)
    monkeypatch.setattr(tasks, "run_sweep", rounds)
    out = StringIO()
    sweep_every("10", out=out)
    assert seen == [False, True, *handlers]
    assert out.getvalue().splitlines()[-1] == "giosg_sweep: stopped (SIGTERM)."
    assert put_back(handlers)


@pytest.mark.parametrize("first_round", [True, False])
def test_a_configuration_error_in_any_round_exits_non_zero(
    giosg: GiosgSimulator,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    handlers: tuple[object, object],
    first_round: bool,
) -> None:
    def misconfigured(limit: int | None) -> SweepReport | None:
        settings.GIOSG = {**settings.GIOSG, "API_TOKEN": ""}
        return real_sweep(limit=limit)

    steps: tuple[Round, ...] = (misconfigured,) if first_round else (disabled, misconfigured)
    monkeypatch.setattr(tasks, "run_sweep", Rounds(*steps))
    out = StringIO()
    with pytest.raises(CommandError, match='GIOSG\\["API_TOKEN"\\]'):
        sweep_every("0.01", out=out)
    assert len(out.getvalue().splitlines()) == len(steps) - 1
    assert put_back(handlers)


def test_every_needs_the_main_thread() -> None:
    refused: list[CommandError] = []

    def run() -> None:
        try:
            sweep_every("1", out=StringIO())
        except CommandError as err:
            refused.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert [str(err) for err in refused] == [
        "--every needs the main thread: it stops on SIGTERM and SIGINT."
    ]


# -- --every, as a container runs it ------------------------------------------------------------

DONE_ONE = (
    "giosg_sweep: 0 expired and 1 due link(s): 1 done, 0 to retry, 0 failed, 0 skipped; "
    "0 detached link(s) pruned."
)
NOTHING_TO_DO = (
    "giosg_sweep: 0 expired and 0 due link(s): 0 done, 0 to retry, 0 failed, 0 skipped; "
    "0 detached link(s) pruned."
)


@pytest.fixture
def site_giosg() -> Iterator[GiosgSimulator]:
    """A simulator of its own that accepts the test site's token, organization and room."""
    with GiosgSimulator(
        api_token=str(SITE_GIOSG["API_TOKEN"]), organization_id=ORGANIZATION_ID, room_ids=[ROOM_ID]
    ) as simulator:
        yield simulator


def site_with_a_due_link(tmp_path: Path, api_base_url: str) -> dict[str, str]:
    """A site on its own database pointed at giosg's ``api_base_url``, with a link that is
    due to be detached, as cron finds it; the environment of its processes."""
    env = {
        **os.environ,
        "DJANGO_GIOSG_TEST_DB": str(tmp_path / "site.sqlite3"),
        "DJANGO_GIOSG_TEST_API_BASE_URL": api_base_url,
    }
    env.pop("PYTHONUNBUFFERED", None)  # the command flushes its lines itself
    seeded = manage(
        "shell",
        "-c",
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "from django.utils import timezone; from django_giosg.models import VisitorLink; "
        f"VisitorLink.objects.create(visitor_id='{VISITORS[0]}', state='pending_detach', "
        "next_attempt_at=timezone.now())",
        env=env,
    )
    assert seeded.returncode == 0, seeded.stderr
    return env


def links_and_leases(env: dict[str, str]) -> tuple[list[str], int]:
    """The states of the site's links and how many visitor leases it holds, read directly (the
    site is another process)."""
    with closing(sqlite3.connect(env["DJANGO_GIOSG_TEST_DB"])) as db:
        states = [state for (state,) in db.execute("SELECT state FROM django_giosg_visitorlink")]
        [(leases,)] = db.execute("SELECT COUNT(*) FROM django_giosg_visitorlease")
    return states, leases


class Sweeper:
    """``giosg_sweep`` in a process of its own, its lines read as they come."""

    def __init__(self, process: subprocess.Popen[str], stderr: Path) -> None:
        self.process = process
        self.stderr = stderr
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 30) -> str:
        """The next line it prints; fails when none comes (an unflushed one never does)."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None

    def terminated(self, timeout: float = 5) -> tuple[int, list[str]]:
        """SIGTERM: its exit code within ``timeout`` seconds, and the lines it printed since."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code, [self._lines.get() for _ in range(self._lines.qsize())]


@contextmanager
def sweeper(*args: str, env: dict[str, str], tmp_path: Path) -> Iterator[Sweeper]:
    stderr = tmp_path / "stderr.txt"
    with (
        stderr.open("w") as errors,
        subprocess.Popen(  # noqa: S603 - the arguments are the test's own
            [sys.executable, "-m", "django", "giosg_sweep", *args, "--settings", "tests.settings"],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env,
        ) as process,
    ):
        running = Sweeper(process, stderr)
        try:
            yield running
        finally:
            process.kill()
            process.wait()
            running._reader.join(10)


@pytest.mark.slow
def test_every_sweeps_again_and_again_until_sigterm(
    tmp_path: Path, site_giosg: GiosgSimulator
) -> None:
    site_giosg.seed_visitor(VISITORS[0], rooms=site_giosg.room_ids, open_chats=2)
    env = site_with_a_due_link(tmp_path, site_giosg.base_url)
    with sweeper("--every", "0.2", env=env, tmp_path=tmp_path) as running:
        assert running.next_line() == DONE_ONE
        assert running.next_line() == NOTHING_TO_DO
        code, rest = running.terminated()
    assert code == 0
    assert rest[-1:] == ["giosg_sweep: stopped (SIGTERM)."]
    assert set(rest[:-1]) <= {NOTHING_TO_DO}
    assert "Traceback" not in running.stderr.read_text()
    assert links_and_leases(env) == (["detached"], 0)  # no lease left behind
    assert site_giosg.open_chats(VISITORS[0]) == []


@pytest.mark.slow
def test_each_line_shows_as_its_sweep_ends_and_sigterm_ends_the_pause(
    tmp_path: Path, site_giosg: GiosgSimulator
) -> None:
    """The line of the first sweep shows during the pause of 60 s (not when the process ends,
    as it would from a pipe's buffer without the command's flush), and SIGTERM ends the pause."""
    site_giosg.seed_visitor(VISITORS[0], rooms=site_giosg.room_ids, open_chats=2)
    env = site_with_a_due_link(tmp_path, site_giosg.base_url)
    with sweeper("--every", "60", env=env, tmp_path=tmp_path) as running:
        assert running.next_line() == DONE_ONE
        code, rest = running.terminated()
    assert code == 0
    assert rest == ["giosg_sweep: stopped (SIGTERM)."]
    assert "Traceback" not in running.stderr.read_text()


@pytest.mark.slow
def test_sigterm_in_the_middle_of_a_sweep_lets_it_finish(
    tmp_path: Path, site_giosg: GiosgSimulator
) -> None:
    """A slow giosg (each answer 0.25 s late): SIGTERM once the first answer came, the others
    still to come. The sweep ends its work (no link half-detached, no lease left behind), and
    the process exits 0 at once, not after the pause of 60 s."""
    site_giosg.seed_visitor(VISITORS[0], rooms=site_giosg.room_ids, open_chats=2)
    env = site_with_a_due_link(tmp_path, site_giosg.base_url)
    site_giosg.add_fault(latency=0.25)
    with sweeper("--every", "60", env=env, tmp_path=tmp_path) as running:
        deadline = time.monotonic() + 30
        while not site_giosg.requests():
            assert time.monotonic() < deadline, "the sweep never called giosg"
            time.sleep(0.01)
        answered = site_giosg.requests()
        code, lines = running.terminated(timeout=20)
    assert site_giosg.requests() > answered  # the sweep went on after the SIGTERM
    assert code == 0
    assert lines == [DONE_ONE, "giosg_sweep: stopped (SIGTERM)."]
    assert "Traceback" not in running.stderr.read_text()
    assert links_and_leases(env) == (["detached"], 0)  # no lease left behind
    assert site_giosg.open_chats(VISITORS[0]) == []
