"""``manage.py demo [--port N]``: the example site, and offline the giosg simulator, until Ctrl-C.

``scripts/demo`` runs it once the virtual environment is ready. It migrates, creates the demo
users (offline only), starts the simulator on a free port and the site on ``--port``, each in a
process group of its own, and prints ``Ready: …`` once the site answers. Ctrl-C or SIGTERM stops
both groups (the site's autoreloader included), so no process and no listening port is left.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import views

MANAGE = str(Path(__file__).resolve().parents[2] / "manage.py")
DEMO_USERS = {"alice": ("Alice", "Example", True), "bob": ("Bob", "Example", False)}
DEMO_PASSWORD = "demo"  # noqa: S105 (the offline demo's, printed for everyone)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
LISTENING = re.compile(r"giosg simulator listening on (http://\S+)")


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = "Run the example site (and, without GIOSG_API_TOKEN, the giosg simulator) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=_port, default=8000, help="the site's port (8000)")

    def handle(self, *args: Any, **options: Any) -> None:
        port: int = options["port"]
        offline = views.simulator_url() is not None
        stop = threading.Event()  # set by Ctrl-C or SIGTERM, from here on
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda _n, _f: stop.set())
        _ensure_free(port)
        call_command("migrate", verbosity=0, interactive=False)
        if offline:
            _create_demo_users()
        if stop.is_set():
            raise CommandError("interrupted while preparing the database")
        children: dict[str, subprocess.Popen[str]] = {}
        try:
            env = dict(os.environ)
            simulator_url = None
            if offline:
                simulator, simulator_url = self._start_simulator(stop)
                children["the giosg simulator"] = simulator
                env["GIOSG_SIMULATOR_URL"] = simulator_url
            site = _spawn(["runserver", f"127.0.0.1:{port}"], env=env)
            children["the site"] = site
            url = f"http://127.0.0.1:{port}/"
            _wait_until_answering(url, site, stop)
            self._ready(url, simulator_url)
            while not stop.wait(0.2):
                for name, child in children.items():
                    if child.poll() is not None:
                        raise CommandError(f"{name} stopped (exit {child.returncode})")
        finally:
            _stop(list(children.values()))
        self.stdout.write("Stopped the site" + (" and the giosg simulator." if offline else "."))

    def _start_simulator(self, stop: threading.Event) -> tuple[subprocess.Popen[str], str]:
        """The simulator on a free port, with this site's organization, rooms and token."""
        simulator = _spawn(["giosg_simulator", "--port", "0"], stdout=subprocess.PIPE)
        found: list[str] = []
        reader = threading.Thread(target=_read_url, args=(simulator.stdout, found), daemon=True)
        reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not found:
            if stop.is_set():
                raise CommandError("interrupted while the giosg simulator was starting")
            if simulator.poll() is not None or time.monotonic() > deadline:
                raise CommandError("the giosg simulator did not start (see above)")
            time.sleep(0.05)
        return simulator, found[0]

    def _ready(self, url: str, simulator_url: str | None) -> None:
        lines = ["", f"Ready: {url}"]
        if simulator_url is not None:
            lines.append(f"giosg simulator: {simulator_url}/")
            lines.append(
                f"Log in as alice / {DEMO_PASSWORD} (may open the admin) or bob / {DEMO_PASSWORD}."
            )
        else:
            lines.append("giosg: the real one (GIOSG_API_TOKEN is set); no demo users, create one")
            lines.append("  with: python example_project/manage.py createsuperuser")
        lines.append("Quit with CONTROL-C.")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()


def _ensure_free(port: int) -> None:
    """A one-line error for a busy port, before anything is started."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver does
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            raise CommandError(
                f"port {port} on 127.0.0.1 is busy ({err.strerror}): stop what listens there, "
                f"or pick another port with --port"
            ) from None


def _create_demo_users() -> None:
    """alice (a superuser) and bob, password ``demo``; a second run resets them."""
    users = get_user_model()
    for username, (first, last, admin) in DEMO_USERS.items():
        user, _created = users.objects.get_or_create(username=username)
        user.first_name, user.last_name = first, last
        user.is_staff = user.is_superuser = admin
        user.set_password(DEMO_PASSWORD)
        user.save()


def _spawn(
    command: list[str], *, env: dict[str, str] | None = None, stdout: int | None = None
) -> subprocess.Popen[str]:
    """``manage.py <command>`` in a new session: a terminal's Ctrl-C reaches only us, and
    :func:`_stop` ends its whole group (runserver's autoreloader has a child of its own)."""
    return subprocess.Popen(  # noqa: S603 (our own manage.py)
        [sys.executable, MANAGE, *command],
        env=env,
        stdout=stdout,
        text=True,
        start_new_session=True,
    )


def _read_url(stream: IO[str] | None, found: list[str]) -> None:
    """Find the simulator's URL in its banner, and keep its pipe drained."""
    for line in stream or ():
        match = LISTENING.search(line)
        if match and not found:
            found.append(match.group(1))


def _wait_until_answering(url: str, site: subprocess.Popen[str], stop: threading.Event) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if stop.is_set():
            raise CommandError("interrupted while the site was starting")
        if site.poll() is not None:
            raise CommandError("the site did not start (see above)")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (http://127.0.0.1 only)
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise CommandError(f"the site did not answer at {url}") from None
            time.sleep(0.1)


def _stop(children: list[subprocess.Popen[str]]) -> None:
    """SIGTERM to each child's process group, then SIGKILL to what is still there."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(0.1, deadline - time.monotonic()))
        _signal_group(child, signal.SIGKILL)  # the group may outlive its leader
        child.wait()


def _signal_group(child: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(child.pid, signum)
