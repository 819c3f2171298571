"""``manage.py giosg_simulator``."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]


def wait_for_url(output: io.StringIO | list[str], deadline: float) -> str:
    while time.monotonic() < deadline:
        text = output.getvalue() if isinstance(output, io.StringIO) else "".join(output)
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
        if found:
            return found.group(1)
        time.sleep(0.01)
    raise AssertionError(f"the simulator did not start: {output!r}")


@pytest.mark.slow
def test_serves_the_settings_organization_until_shut_down() -> None:
    output = io.StringIO()
    thread = threading.Thread(
        target=call_command,
        args=("giosg_simulator", "--port", "0", "--seed", "3", "--page-size", "1"),
        kwargs={"stdout": output},
        daemon=True,  # a failing test must not keep the run alive
    )
    thread.start()
    base = wait_for_url(output, time.monotonic() + 10)
    info = requests.get(f"{base}/_simulator/", timeout=5).json()
    assert info["organization_id"] == settings.GIOSG["ORGANIZATION_ID"]
    assert "api_token" not in info  # the site's settings tell it, the simulator does not
    token = {"Authorization": f"Token {settings.GIOSG['API_TOKEN']}"}
    assert requests.get(f"{base}/api/v5/users/me", headers=token, timeout=5).status_code == 200
    assert info["room_ids"] == settings.GIOSG["ROOM_IDS"]
    assert (info["seed"], info["page_size"]) == (3, 1)
    # A cross-site page's POST (no JSON) does not end it; a JSON one from this machine does.
    assert requests.post(f"{base}/_simulator/shutdown", timeout=5).status_code == 415
    assert thread.is_alive()
    assert requests.post(f"{base}/_simulator/shutdown", json={}, timeout=5).status_code == 202
    thread.join(10)
    assert not thread.is_alive()
    text = output.getvalue()
    assert f'GIOSG["API_BASE_URL"] = "{base}"' in text  # the test settings point elsewhere
    assert text.rstrip().endswith("giosg simulator stopped.")
    with pytest.raises(requests.ConnectionError):
        requests.get(base, timeout=5)


def test_a_busy_port_is_a_command_error() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on port {port}"):
            call_command("giosg_simulator", "--port", str(port), stdout=io.StringIO())
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize(
    "args", [["--port", "-1"], ["--port", "http"], ["--page-size", "0"], ["--rooms", "0"]]
)
def test_bad_arguments(args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("giosg_simulator", *args, stdout=io.StringIO())


@pytest.mark.slow
def test_sigterm_stops_it_cleanly() -> None:
    """The real thing: ``python -m django giosg_simulator`` in its own process, ended by
    SIGTERM while a client waits on a hanging request: exit 0, every socket closed (an unclosed
    one would be a ResourceWarning, an error here). (Not SIGINT: a shell starts background jobs
    with SIGINT ignored, and so would this test's process be; Ctrl-C is tested in-process.)"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error::ResourceWarning",  # an unclosed socket shows on stderr
            "-m",
            "django",
            "giosg_simulator",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    ) as process:
        try:
            assert process.stdout is not None
            lines: list[str] = []
            while not any("listening on" in line for line in lines):
                line = process.stdout.readline()
                assert line, "the command ended before it listened"
                lines.append(line)
            base = wait_for_url(lines, time.monotonic() + 20)
            assert requests.get(f"{base}/api/v5/users/me", timeout=5).status_code == 401
            hang = {"endpoint": "users_me", "hang": True}
            assert requests.post(f"{base}/_simulator/faults", json=hang, timeout=5).ok
            port = int(base.rpartition(":")[2])
            with socket.create_connection(("127.0.0.1", port), timeout=20) as waiting:
                waiting.sendall(b"GET /api/v5/users/me HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                while len(requests.get(f"{base}/_simulator/calls", timeout=5).json()) < 2:
                    time.sleep(0.01)  # until the simulator holds the request
                process.send_signal(signal.SIGTERM)
                out, err = process.communicate(timeout=20)
                assert waiting.recv(1) == b""  # closed without an answer, not left open
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert err == ""
    assert "giosg simulator stopped." in out
    with pytest.raises(requests.ConnectionError):
        requests.get(base, timeout=5)


def test_sigterm_is_handled_before_it_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM the moment the port opens (a supervisor that polls it, scripts/demo stopped
    while starting) stops it cleanly: the handler is in place before the simulator listens,
    and the previous one is back afterwards."""
    from django_giosg.testing import GiosgSimulator

    before = signal.getsignal(signal.SIGTERM)
    listen = GiosgSimulator.start
    started: list[GiosgSimulator] = []

    def start_and_sigterm(self: GiosgSimulator) -> GiosgSimulator:
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler), "a SIGTERM now would kill the command"
        started.append(listen(self))
        handler(signal.SIGTERM, None)  # as the signal would, once the port is open
        return self

    monkeypatch.setattr(GiosgSimulator, "start", start_and_sigterm)
    output = io.StringIO()
    call_command("giosg_simulator", "--port", "0", stdout=output)
    assert output.getvalue().rstrip().endswith("giosg simulator stopped.")
    assert not started[0].is_up
    with pytest.raises(requests.ConnectionError):
        requests.get(started[0].base_url, timeout=5)
    assert signal.getsignal(signal.SIGTERM) == before


def test_ctrl_c_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from django_giosg.testing import GiosgSimulator

    def interrupted(self: GiosgSimulator, timeout: float | None = None) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(GiosgSimulator, "wait", interrupted)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = io.StringIO()
    pointed = {**settings.GIOSG, "API_BASE_URL": f"http://127.0.0.1:{port}"}
    with override_settings(GIOSG=pointed):
        call_command("giosg_simulator", "--port", str(port), stdout=output)
    text = output.getvalue()
    assert "Point the site at it" not in text  # the site already is
    assert text.rstrip().endswith("giosg simulator stopped.")


def test_runs_without_a_valid_giosg_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """E001 (no token) must not stop it: it adopts the token later given, or its own."""
    from django_giosg.testing import DEFAULT_API_TOKEN, GiosgSimulator

    started: list[GiosgSimulator] = []

    def interrupted(self: GiosgSimulator, timeout: float | None = None) -> bool:
        started.append(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(GiosgSimulator, "wait", interrupted)
    from django_giosg.management.commands.giosg_simulator import Command

    # As manage.py runs it (with the system checks, unless the command opts out).
    with override_settings(GIOSG={"ROOM_IDS": ["lobby"]}):  # no token, a bad room id
        command = Command(stdout=io.StringIO())
        command.run_from_argv(["manage.py", "giosg_simulator", "--port", "0"])
    assert started[0].api_token == DEFAULT_API_TOKEN
