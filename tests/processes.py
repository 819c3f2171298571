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
from typing import Any

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


def start(command: Sequence[str], **overrides: Any) -> subprocess.Popen[str]:
    """Start ``command`` (see :func:`django_command`); its output and errors in one pipe."""
    # the links' database must hold what the process reads: nothing uncommitted is left
    assert not connections[write_db(VisitorLink)].in_atomic_block
    return subprocess.Popen(  # noqa: S603 - the arguments are the test's own
        command,
        env=environment(**overrides),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextmanager
def running(command: Sequence[str], **overrides: Any) -> Iterator[subprocess.Popen[str]]:
    """A long-running process (a worker), stopped with SIGTERM at the end (killed if it does not
    stop within 10 s). What it said is shown with the test's failure if it printed an error."""
    process = start(command, **overrides)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        if "Traceback" in output:
            sys.stderr.write(f"--- {command[3]} said:\n{output}\n")
