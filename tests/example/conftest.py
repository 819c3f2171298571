"""The example project's tests, run by ``tox -e example`` with its settings
(``--ds example_project.settings``); the other environments leave this folder out.

:class:`Demo` runs ``scripts/demo`` as a person would, in the test's virtual environment.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import Client

from tests.browser.conftest import browser, playwright  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo"
READY = re.compile(r"^Ready: (http://\S+)$")
SIMULATOR = re.compile(r"^giosg simulator: (http://\S+)$")


@pytest.fixture
def client() -> Client:
    """Django's test client (the suite's ``client`` is the giosg API client)."""
    return Client()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """scripts/demo's environment: this virtual environment, a database of the test's own, a
    marker that every process it starts inherits, and no giosg token unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIOSG_", "DJANGO_"))}
    env.update(
        VIRTUAL_ENV=sys.prefix,
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        DJANGO_GIOSG_DEMO_MARKER=uuid.uuid4().hex,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def processes_with(marker: str) -> list[int]:
    """The processes whose environment holds ``marker`` (Linux's /proc)."""
    needle = f"DJANGO_GIOSG_DEMO_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def listening(url: str) -> bool:
    host, port = url.split("//")[1].rstrip("/").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Demo:
    """``scripts/demo`` in a process of its own, its output read line by line."""

    process: subprocess.Popen[str]
    marker: str
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)
    url: str = ""
    simulator_url: str | None = None

    @classmethod
    def start(cls, env: dict[str, str], *args: str) -> Demo:
        process = subprocess.Popen(  # noqa: S603
            [str(DEMO), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # as a shell's job: a group of its own
        )
        demo = cls(process, env["DJANGO_GIOSG_DEMO_MARKER"])
        threading.Thread(target=demo._read, daemon=True).start()
        return demo

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 180.0) -> re.Match[str]:
        """The first line from now on that matches (the first run installs packages)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern.pattern} in {self.lines}") from None
            if line is None:
                raise AssertionError(f"scripts/demo ended without {pattern.pattern}: {self.lines}")
            self.lines.append(line)
            found = pattern.search(line)
            if found:
                return found

    def wait_until_ready(self) -> Demo:
        self.url = self.wait_for(READY)[1]
        found = SIMULATOR.match(self.wait_for(re.compile(r"^giosg")).string)
        self.simulator_url = found[1] if found else None
        self.wait_for(re.compile(r"^Quit with CONTROL-C\.$"))  # the last of the ready lines
        return self

    def stop(self, signum: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            returncode = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            processes = _processes()  # what was still running, for the failure's message
            self.process.kill()
            raise AssertionError(
                f"scripts/demo did not stop within 30 s of signal {signum}.\n"
                f"Processes:\n{processes}\nIts output:\n" + "\n".join(self.lines)
            ) from None
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return returncode


def _processes() -> str:
    """``ps``'s list of processes, or why there is none."""
    try:
        listed = subprocess.run(
            ["ps", "-eo", "pid,ppid,pgid,stat,etime,args"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"(no ps: {err})"
    return listed.stdout


@pytest.fixture(scope="session")
def demo_installed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """scripts/demo has installed what it needs into this environment (a first run does)."""
    env = demo_env(tmp_path_factory.mktemp("install"))
    done = subprocess.run(  # noqa: S603
        [str(DEMO), "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--port" in done.stdout


StartDemo = Callable[..., Demo]


@pytest.fixture
def start_demo(demo_installed: None, tmp_path: Path) -> Iterator[StartDemo]:
    """``start_demo(*args, env=None)``: scripts/demo started; whatever the test leaves running
    is killed afterwards."""
    started: list[Demo] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Demo:
        demo = Demo.start(env or demo_env(tmp_path), *args)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        if demo.process.poll() is None:
            os.killpg(demo.process.pid, signal.SIGKILL)
            demo.process.wait()
        for pid in processes_with(demo.marker):
            os.kill(pid, signal.SIGKILL)
