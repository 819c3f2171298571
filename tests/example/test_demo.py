"""scripts/demo in a subprocess, as a person runs it: ready, serving, and gone after Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from example_project import settings as example

from .conftest import DEMO, ROOT, StartDemo, demo_env, free_port, listening, processes_with


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ready_serving_and_nothing_left_after_the_signal(
    start_demo: StartDemo, signum: int
) -> None:
    port = free_port()
    demo = start_demo("--port", str(port)).wait_until_ready()
    assert demo.url == f"http://127.0.0.1:{port}/"
    assert demo.simulator_url is not None
    assert any(line.startswith("Log in as alice / demo") for line in demo.lines)

    home = requests.get(demo.url, timeout=10)
    assert home.status_code == 200
    sim = demo.simulator_url.rstrip("/")
    organization = example.DEMO_ORGANIZATION_ID
    assert f'src="{sim}/live2/{organization}"' in home.text  # {% giosg_script %}, no visitor id
    assert 'src="/static/django_giosg/capture.js"' in home.text  # {% giosg_capture %}
    assert 'data-endpoint="/giosg/visitor/"' in home.text
    assert 'id="giosg-panel"' in home.text
    answer = requests.get(f"{sim}/_simulator/", timeout=10)
    described = answer.json()
    assert described["room_ids"] == example.DEMO_ROOM_IDS  # the simulator adopted the site's
    assert described["organization_id"] == organization
    assert example.GIOSG["API_TOKEN"] not in answer.text  # its token too, but never tells it
    assert processes_with(demo.marker)  # the marker does reach the children

    assert demo.stop(signum) == 0
    assert processes_with(demo.marker) == []
    assert not listening(demo.url)
    assert not listening(sim)
    assert demo.lines[-1] == "Stopped the site and the giosg simulator."


def test_a_second_run_reuses_the_database_and_the_users(
    start_demo: StartDemo, tmp_path: Path
) -> None:
    env = demo_env(tmp_path)
    for _ in range(2):
        demo = start_demo("--port", str(free_port()), env=env).wait_until_ready()
        assert not any("Installing" in line for line in demo.lines)  # the environment is ready
        assert demo.stop() == 0
    with sqlite3.connect(tmp_path / "demo.sqlite3") as db:
        users = db.execute(
            "SELECT username, is_superuser FROM auth_user ORDER BY username"
        ).fetchall()
    assert users == [("alice", 1), ("bob", 0)]


def test_a_busy_port_is_one_line(start_demo: StartDemo) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        demo = start_demo("--port", str(port))
        assert demo.process.wait(timeout=60) == 1
        demo.stop()
    assert demo.lines == [
        f"CommandError: port {port} on 127.0.0.1 is busy (Address already in use): stop what "
        "listens there, or pick another port with --port"
    ]
    assert processes_with(demo.marker) == []


def test_with_a_token_it_talks_to_giosg_and_starts_no_simulator(
    start_demo: StartDemo, tmp_path: Path
) -> None:
    env = demo_env(
        tmp_path,
        GIOSG_API_TOKEN="a-real-token-not-used-here",
        GIOSG_ORGANIZATION_ID="7f9e9580-095b-42c7-838c-c04e667b26f7",
        GIOSG_ROOM_IDS="9926bdfa-56e0-11e5-b98c-6c4008c08dfe",
    )
    demo = start_demo("--port", str(free_port()), env=env).wait_until_ready()
    assert demo.simulator_url is None
    home = requests.get(demo.url, timeout=10)
    assert 'src="https://service.giosg.com/live2/7f9e9580-095b-42c7-838c-c04e667b26f7"' in (
        home.text
    )
    assert demo.stop() == 0
    assert not any("giosg simulator" in line for line in demo.lines)
    assert not any("a-real-token" in line for line in demo.lines)
    with sqlite3.connect(tmp_path / "demo.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM auth_user").fetchone() == (0,)


def fake_python(tmp_path: Path, script: str) -> Path:
    """A ``python3`` that runs ``script`` (bash) first, then the real Python."""
    fake = tmp_path / "python3"
    fake.write_text(f'#!/usr/bin/env bash\n{script}\nexec "{sys.executable}" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def copied_checkout(tmp_path: Path) -> Path:
    """What scripts/demo reads before it creates a virtual environment, in a folder of its own."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "example_project").mkdir()
    shutil.copy(DEMO, checkout / "scripts" / "demo")
    shutil.copy(ROOT / "pyproject.toml", checkout)
    shutil.copy(ROOT / "example_project" / "requirements.txt", checkout / "example_project")
    return checkout


def run_copied_demo(tmp_path: Path, python: Path) -> subprocess.CompletedProcess[str]:
    checkout = copied_checkout(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PYTHON"] = str(python)
    return subprocess.run(  # noqa: S603
        [str(checkout / "scripts" / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_the_venv_module_it_says_what_to_install(tmp_path: Path) -> None:
    python = fake_python(
        tmp_path,
        'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; touch "$3/bin/python"; '
        'echo "ensurepip is not available" >&2; exit 1; fi',
    )
    done = run_copied_demo(tmp_path, python)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"scripts/demo: {python} -m venv failed: install Python's venv module (on Debian or "
        "Ubuntu: apt-get install python3-venv), then run scripts/demo again\n"
    )
    assert not (tmp_path / "checkout" / ".venv").exists()  # no half-made one to trip over


def test_an_old_python_is_one_line(tmp_path: Path) -> None:
    python = fake_python(
        tmp_path,
        'case "$1" in -c) exit 1;; -V) echo "Python 3.9.2"; exit 0;; esac',
    )
    done = run_copied_demo(tmp_path, python)
    assert done.returncode == 1
    assert done.stderr == f"scripts/demo: needs Python 3.10 or newer; {python} is Python 3.9.2\n"
