"""``benchmarks/soak.py``, small: cycles through a real WSGI server against a faulty simulator
leave nothing behind, and the soak says so (its ``--check`` exits 1 otherwise)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from . import servers

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def soak(*options: str) -> dict[str, str]:
    """Run the soak with ``--check``; its table's rows."""
    soaking = subprocess.Popen(  # noqa: S603 - this repository's script
        [sys.executable, str(SOAK), "--cycles", "24", "--clients", "3", *options, "--check"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = soaking.communicate(timeout=200)
    finally:  # a timeout: SIGTERM lets it stop its processes and servers
        if soaking.poll() is None:
            soaking.terminate()
            soaking.communicate(timeout=30)
    run = subprocess.CompletedProcess(soaking.args, soaking.returncode, stdout, stderr)
    missing = re.search(r"^soak: (.+)$", run.stderr, re.MULTILINE)
    if run.returncode == 2 and missing:  # a server it cannot start here
        servers.unavailable("soak", missing[1])
    assert run.returncode == 0, run.stdout + run.stderr
    rows = dict(re.findall(r"^\| (.+?) \| (.+?) \|$", run.stdout, re.MULTILINE))
    assert rows["cycles"] == "24"
    for row in (
        "failed host requests",
        "chats left open",
        "variables left for ended bindings",
        "live variables holding another user's value",
        "links not done (pending or settling)",
        "bindings not as their cycle ended (live / not live)",
        "links failed",
        "pool discards",
        "the token in logs",
    ):
        assert rows[row] == "0", row
    assert int(rows["connections a fault cut (drop, hang, late)"]) > 0  # faults did happen
    return rows


pytestmark = [pytest.mark.slow, pytest.mark.soak]


@pytest.mark.timeout(240)
def test_a_small_soak_leaves_nothing_behind() -> None:
    soak("--faults", "0.3", "--sweep-every", "2")


@pytest.mark.timeout(240)
def test_sets_applied_after_the_logout_leave_nothing_behind() -> None:
    """Faults on the sets alone: the logouts succeed at once, and the sets giosg applies late
    (1.5 s after they were sent) land after them. Without the settle, 3 to 5 were left."""
    soak("--faults", "0.3", "--faults-on", "set_variable", "--late", "1.5", "--sweep-every", "2")


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "backend",
    [("--db", "postgres", "--tasks", "db"), ("--tasks", "rq")],
    ids=["postgres-db_worker", "sqlite-rq"],
)
def test_a_small_soak_on_task_workers_leaves_nothing_behind(backend: tuple[str, ...]) -> None:
    """The requests only enqueue; the soak waits for the workers to drain the queue."""
    rows = soak("--faults", "0.3", "--sweep-every", "2", *backend)
    ran = re.fullmatch(r"(\d+) / 0 / 0", rows["tasks succeeded / failed / left in the queue"])
    assert ran, rows
    assert int(ran[1]) >= 24  # an attach per cycle at least
