"""The ``giosg_sweep`` command: its arguments, its exit codes, as cron runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_giosg.models import State
from django_giosg.testing import GiosgSimulator

from ..browsing import HOUR, VISITORS, attached, make_user, reloaded, sweep

pytestmark = pytest.mark.django_db(transaction=True)


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
