"""What the benchmarks share: giosg's simulator in a process of its own, Django's settings, the
machine, the statistics and the table.

The simulator runs in its own process (as ``manage.py giosg_simulator`` would), so that it does
not share a GIL with the code measured; a benchmark chooses its token and ends it with SIGTERM.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import secrets
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' servers, the package

VISITOR = "08119566026a4e1194a7a3244c90f925"
PAGE_SIZE = 50


# -- giosg ---------------------------------------------------------------------------------------


def _serve(ready: multiprocessing.Queue[dict[str, Any]], rooms: int, token: str) -> None:
    """Serve until SIGTERM (``Process.terminate``); the control API does not tell the token."""
    from django_giosg.testing import GiosgSimulator

    with GiosgSimulator(api_token=token, rooms=rooms, shared_rooms=0, page_size=PAGE_SIZE) as sim:
        signal.signal(signal.SIGTERM, lambda *_: sim.request_shutdown())
        ready.put(sim.describe())
        sim.wait()


class Giosg:
    """The simulator's process, driven through its control API (``/_simulator/…``)."""

    def __init__(self, info: dict[str, Any], token: str) -> None:
        self.info = info
        self.token = token
        self.base_url: str = info["base_url"]
        self.organization_id: str = info["organization_id"]
        self.room_ids: list[str] = info["room_ids"]
        self._control = requests.Session()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._control.post(f"{self.base_url}/_simulator/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def _get(self, path: str) -> Any:
        response = self._control.get(f"{self.base_url}/_simulator/{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """No visitors, faults or counts (the client's open connections stay open)."""
        self._post("reset", {})

    def seed(self, visitor: str, rooms: list[str], open_chats: int, **variables: str) -> None:
        body = {"rooms": rooms, "open_chats": open_chats, "variables": variables}
        self._post(f"visitors/{visitor}", body)

    def latency(self, seconds: float) -> None:
        """Every API request is answered ``seconds`` late (the control API is not); 0: no
        fault at all."""
        if seconds:
            self._post("faults", {"endpoint": "*", "latency": seconds})
        else:
            url = f"{self.base_url}/_simulator/faults"  # (a JSON body, as the control API wants)
            self._control.delete(url, json={}, timeout=30).raise_for_status()

    def stats(self) -> tuple[int, int]:
        """API requests and TCP connections accepted since the last reset."""
        stats = self._get("stats")
        return sum(stats["requests"].values()), int(stats["connections"])

    def left(self, visitor: str) -> int:
        """The visitor's open chats and variables."""
        rooms = self._get(f"visitors/{visitor}")["rooms"].values()
        chats = sum(1 for room in rooms for chat in room["chats"] if not chat["is_ended"])
        return chats + sum(len(room["variables"]) for room in rooms)

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The ``GIOSG`` setting for this giosg (the first two rooms configured)."""
        return {
            "API_TOKEN": self.token,
            "ORGANIZATION_ID": self.organization_id,
            "ROOM_IDS": self.room_ids[:2],
            "API_BASE_URL": self.base_url,
            **extra,
        }


@contextmanager
def simulator(rooms: int) -> Iterator[Giosg]:
    """The simulator with ``rooms`` rooms of the organization's own, in a process of its own."""
    token = secrets.token_urlsafe(16)
    # Spawned, not forked: this process has threads by now (django-giosg's kept ones), and a
    # fork copies whatever locks they hold.
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    process = context.Process(target=_serve, args=(ready, rooms, token), daemon=True)
    process.start()
    try:
        yield Giosg(ready.get(timeout=60), token)
    finally:
        process.terminate()  # SIGTERM
        process.join(10)


# -- Django ---------------------------------------------------------------------------------------


def configure(
    giosg: dict[str, Any],
    database: dict[str, Any] | None = None,
    *,
    app: bool = True,
    apps: Sequence[str] = (),
    **extra: Any,
) -> None:
    """Django's settings for a benchmark (``app``: with django-giosg installed); ``migrate`` has
    run when this returns."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            *(["django_giosg"] if app else []),
            *apps,
        ],
        DATABASES={
            "default": database or {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
        },
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        USE_TZ=True,
        SECRET_KEY=secrets.token_hex(16),
        LOGGING_CONFIG=None,
        GIOSG=giosg,
        **extra,
    )
    django.setup()
    call_command("migrate", verbosity=0)


def postgres_database(stack: ExitStack) -> dict[str, Any]:
    """A PostgreSQL of this run's own (started like the tests'); stopped when ``stack`` closes."""
    from tests import servers

    settings: dict[str, Any] = stack.enter_context(servers.postgres()).database_settings()
    return settings


def login_view(request: Any) -> Any:
    """A plain login view of a benchmark's site: ``authenticate`` and ``login``, 204 or 403."""
    from django.contrib.auth import authenticate, login
    from django.http import HttpResponse

    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponse("bad credentials", status=403)
    login(request, user)
    return HttpResponse(status=204)


def integers(minimum: int) -> Callable[[str], list[int]]:
    """An option's parser: a comma-separated list of integers of at least ``minimum``."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
        if min(values) < minimum:
            raise argparse.ArgumentTypeError(f"each must be at least {minimum}: {text!r}")
        return values

    return parse


# -- the machine, statistics and tables -----------------------------------------------------------


def machine() -> str:
    """The CPU, its cores and the versions, for the line above a table."""
    import django

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"Django {django.get_version()}"
    )


def print_header(limit: float, what: str) -> None:
    """The lines above a table: the machine, its capacity and the CPU mark, and ``what``."""
    print()
    print(f"Machine: {machine()}")
    print(
        f"Capacity: {limit * 2:,.0f} requests/s (client and simulator, no latency); rows whose "
        f"floor needs more than {limit:,.0f}/s are marked CPU"
    )
    print(what)
    print()


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0.95: p95)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: int = 1) -> str:
    """A Markdown table; columns from ``right`` on are right-aligned."""
    align = ["---" if n < right else "---:" for n in range(len(headers))]
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


class StartedThreads:
    """How many threads this process starts while it is active (the kept ones are not started
    again)."""

    def __init__(self) -> None:
        self.count = 0
        self._start = threading.Thread.start

    def __enter__(self) -> StartedThreads:
        original = self._start

        def start(thread: threading.Thread) -> None:
            original(thread)
            self.count += 1

        threading.Thread.start = start  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.start = self._start  # type: ignore[method-assign]


def capacity(giosg: Giosg, seconds: float = 3.0, threads: int = 8) -> float:
    """API requests per second that django-giosg's client and the simulator manage together,
    with no latency: ``threads`` threads list a visitor's chats in a room, the most common
    request of a logout, on keep-alive connections."""
    from django_giosg.client import GiosgClient

    giosg.reset()
    room = giosg.room_ids[0]
    stop = time.monotonic() + seconds
    counts = [0] * threads
    client = GiosgClient(
        api_token=giosg.token,
        organization_id=giosg.organization_id,
        base_url=giosg.base_url,
        pool_size=threads,
    )

    def work(index: int) -> None:
        while time.monotonic() < stop:
            list(client.iter_open_chats(room, VISITOR))
            counts[index] += 1

    with client:
        started = time.monotonic()
        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
    return sum(counts) / elapsed
