"""Processes a test starts: task workers and sweeps, on the test's own database and simulator.

They run ``python -m django`` with :mod:`tests.settings_subprocess`, which takes the test's
settings (the test database's address, ``GIOSG`` pointed at the simulator, the task backend) as
JSON from the environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connections

from django_giosg.models import VisitorLink, write_db

SETTINGS = "tests.settings_subprocess"
DATABASE_KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")


def shared_settings(**overrides: Any) -> dict[str, Any]:
    """The settings a process needs to share this test's database and giosg: the test
    database's address (as the test's connection has it), ``GIOSG`` and ``TASKS`` (if set)."""
    databases = {
        alias: {key: connections[alias].settings_dict[key] for key in DATABASE_KEYS}
        for alias in settings.DATABASES
    }
    tasks = {"TASKS": settings.TASKS} if hasattr(settings, "TASKS") else {}
    return {"DATABASES": databases, "GIOSG": settings.GIOSG, **tasks, **overrides}


def environment(**overrides: Any) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_GIOSG_TEST_SETTINGS": json.dumps(shared_settings(**overrides)),
        "PYTHONUNBUFFERED": "1",
    }


def django_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", *args, "--settings", SETTINGS]


def start(
    command: Sequence[str], output: IO[str] | int = subprocess.PIPE, **overrides: Any
) -> subprocess.Popen[str]:
    """Start ``command`` (see :func:`django_command`), its output and errors into ``output``."""
    # the links' database must hold what the process reads: nothing uncommitted is left
    assert not connections[write_db(VisitorLink)].in_atomic_block
    return subprocess.Popen(  # noqa: S603 - the arguments are the test's own
        command,
        env=environment(**overrides),
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> None:
    """Ask ``process`` to stop with ``signum``; kill it if it has not within 10 s."""
    if process.poll() is None:
        process.send_signal(signum)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running(
    command: Sequence[str], log: Path, **overrides: Any
) -> Iterator[subprocess.Popen[str]]:
    """A long-running process (a worker), its output into the file ``log`` (a pipe nobody
    reads would fill up and block it), stopped with SIGTERM at the end. What it said is shown
    with the test's failure if it printed an error."""
    with log.open("w", encoding="utf-8") as output:
        process = start(command, output, **overrides)
        try:
            yield process
        finally:
            stop(process)
    said = log.read_text(encoding="utf-8")
    if "Traceback" in said:
        sys.stderr.write(f"--- {' '.join(command[3:5])} said:\n{said}\n")


@contextmanager
def started(*commands: Sequence[str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes that run to their end (read them with ``communicate``); any still running when
    the test leaves (it failed, or timed out) is killed, so that none keeps the database."""
    processes = [start(command) for command in commands]
    try:
        yield processes
    finally:
        for process in processes:
            stop(process, signal.SIGKILL)
