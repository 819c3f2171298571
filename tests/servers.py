"""PostgreSQL and Redis servers of the tests' own: started in a temporary folder on a free port,
stopped at the end, no system service needed; and the task workers' commands. The soak uses
them too.

PostgreSQL refuses to run as root: as root, its files belong to the ``postgres`` user (which
Debian's package creates) and its programs run as that user through ``runuser``. Debian installs
them under ``/usr/lib/postgresql/<major>/bin``, a major version that differs between releases:
the newest one found is used.

:func:`unavailable` is what a test does when a server cannot run here: it fails when
``DJANGO_GIOSG_REQUIRE_SERVERS`` is set (``.ci/run`` sets it), and otherwise skips and writes the
reason to the file ``DJANGO_GIOSG_SKIPPED`` names, for ``scripts/test``'s closing summary.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

REQUIRE = "DJANGO_GIOSG_REQUIRE_SERVERS"
POSTGRES_USER = "postgres"


class Unavailable(Exception):
    """A server cannot run on this machine; the message says why and what to install."""


def unavailable(tier: str, reason: str) -> NoReturn:
    """Skip (or, where the servers are required, fail) the test: ``tier`` cannot run here."""
    import pytest  # (the soak uses this module too, without pytest)

    if os.environ.get(REQUIRE):
        pytest.fail(f"the {tier} tests must run here, but {reason}", pytrace=False)
    summary = os.environ.get("DJANGO_GIOSG_SKIPPED")
    if summary:
        with open(summary, "a", encoding="utf-8") as log:
            log.write(f"{tier} tests: {reason}\n")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise Unavailable(f"{what} exited with {process.returncode} at start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise Unavailable(f"{what} did not listen on port {port} within 30 s")


# -- PostgreSQL ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    """A running server: connect with ``user`` (no password) to ``host``:``port``."""

    host: str
    port: int
    user: str

    def database_settings(self, name: str = "postgres") -> dict[str, object]:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": self.user,
            "HOST": self.host,
            "PORT": str(self.port),
        }


def postgres_bin() -> Path:
    """The folder of the newest PostgreSQL's ``initdb`` and ``pg_ctl``."""
    found = [Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found.sort(key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise Unavailable("PostgreSQL is not installed (apt-get install postgresql)")


def _as_owner() -> tuple[list[str], int | None]:
    """The command prefix that runs PostgreSQL's programs, and the uid that owns its files."""
    if os.geteuid() != 0:
        return [], None
    try:
        owner = pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        raise Unavailable(
            f"as root, PostgreSQL needs the {POSTGRES_USER!r} user (apt-get install postgresql)"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise Unavailable("as root, starting PostgreSQL needs runuser (util-linux)")
    return [runuser, "-u", POSTGRES_USER, "--"], owner.pw_uid


@contextmanager
def postgres() -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster, made for speed rather than durability (no fsync)."""
    binaries = postgres_bin()
    prefix, owner = _as_owner()
    folder = Path(tempfile.mkdtemp(prefix="django-giosg-postgres-"))
    if owner is not None:
        os.chown(folder, owner, -1)
    data = folder / "data"
    port = free_port()

    def run(*command: str) -> None:
        done = subprocess.run(  # noqa: S603 - PostgreSQL's own programs
            [*prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode:
            said = (done.stderr or done.stdout).strip()
            log = folder / "log"  # the server's own words, before the folder goes
            if log.exists():
                said += "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-10:])
            raise Unavailable(f"{Path(command[0]).name} failed: {said}")

    try:
        run(
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            POSTGRES_USER,
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        try:  # (a server that started but was not ready in time is stopped too)
            run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-o",
                options, "-w", "start")  # fmt: skip
            yield Postgres(host="127.0.0.1", port=port, user=POSTGRES_USER)
        finally:
            subprocess.run(  # noqa: S603 - PostgreSQL's own programs
                [*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the workers on them ------------------------------------------------------------------------

#: The worker commands the tests and the soak run (``manage.py`` arguments): ``db_worker``
#: polling often, and RQ's worker that keeps one process (see the README's task backends).
DB_WORKER = ["db_worker", "--interval", "0.05", "--no-startup-delay", "--no-reload"]
RQ_WORKER = ["rqworker", "--job-class", "django_tasks_rq.Job",
             "--worker-class", "rq.worker.SimpleWorker", "default"]  # fmt: skip


# -- Redis ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Redis:
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextmanager
def redis() -> Iterator[Redis]:
    """A Redis server that keeps nothing on disk."""
    program = shutil.which("redis-server")
    if program is None:
        raise Unavailable("redis-server is not installed (apt-get install redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="django-giosg-redis-"))
    port = free_port()
    command = [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    log = (folder / "log").open("w")
    process = subprocess.Popen(  # noqa: S603 - redis-server's own arguments
        command, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        try:
            _wait_for_port(port, process, "redis-server")
        except Unavailable as err:
            said = (folder / "log").read_text(errors="replace").strip().splitlines()[-5:]
            raise Unavailable("\n".join([str(err), *said])) from None
        yield Redis(port=port)
    finally:
        log.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
