"""The giosg side of one logout: requests and wall time, concurrent vs the sequential recipe.

    python benchmarks/logout.py [--rooms 50] [--chats 5] [--keys 5] [--latency 0.02] [--runs 5]

The simulator runs in a process of its own (as ``manage.py giosg_simulator`` would; this script
chooses its token and ends it with SIGTERM) and answers every request after ``--latency``
seconds. The visitor has ``--chats`` open chats (one in each of the first rooms) and ``--keys``
variables in the one room of ``ROOM_IDS``. Each row is the median of ``--runs`` logouts:

- *sequential recipe*: the client calls one after another, as giosg's tutorial describes (page
  the rooms, list each room's open chats, end them, delete the keys);
- *workflows.detach*: django-giosg's detach with ``MAX_WORKERS`` threads, with the room list
  paged from giosg (``ROOMS_CACHE_TTL = 0``) or taken from Django's cache.
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import signal
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import django
import requests
from django.conf import settings

VISITOR = "08119566026a4e1194a7a3244c90f925"


def serve(ready: multiprocessing.Queue[dict[str, Any]], rooms: int, token: str) -> None:
    """Serve until SIGTERM (``Process.terminate``); the control API does not tell the token."""
    from django_giosg.testing import GiosgSimulator

    with GiosgSimulator(api_token=token, rooms=rooms, shared_rooms=0) as sim:
        signal.signal(signal.SIGTERM, lambda *_: sim.request_shutdown())
        ready.put(sim.describe())
        sim.wait()


def configure(info: dict[str, Any], token: str) -> None:
    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django_giosg"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        USE_TZ=True,
        GIOSG={
            "API_TOKEN": token,
            "ORGANIZATION_ID": info["organization_id"],
            "ROOM_IDS": info["room_ids"][:1],
            "API_BASE_URL": info["base_url"],
        },
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--chats", type=int, default=5)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    token = secrets.token_urlsafe(16)
    queue: multiprocessing.Queue[dict[str, Any]] = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(queue, args.rooms, token), daemon=True)
    server.start()
    info = queue.get(timeout=30)
    configure(info, token)

    from django.core.cache import cache

    from django_giosg import conf
    from django_giosg.client import GiosgClient
    from django_giosg.models import State, VisitorLink
    from django_giosg.services import workflows
    from django_giosg.services.rooms import iter_rooms

    base = info["base_url"]
    rooms: list[str] = info["room_ids"]
    keys = [f"key{n}" for n in range(args.keys)]
    control = requests.Session()

    def prepare() -> None:
        control.post(f"{base}/_simulator/reset", json={}, timeout=5).raise_for_status()
        for room in rooms[: args.chats]:
            seed = {"rooms": [room], "open_chats": 1}
            control.post(f"{base}/_simulator/visitors/{VISITOR}", json=seed, timeout=5)
        variables = {"rooms": rooms[:1], "open_chats": 0, "variables": dict.fromkeys(keys, "v")}
        control.post(f"{base}/_simulator/visitors/{VISITOR}", json=variables, timeout=5)
        fault = {"endpoint": "*", "latency": args.latency}
        control.post(f"{base}/_simulator/faults", json=fault, timeout=5).raise_for_status()

    def observe() -> tuple[int, int, int]:
        stats = control.get(f"{base}/_simulator/stats", timeout=5).json()
        state = control.get(f"{base}/_simulator/visitors/{VISITOR}", timeout=5).json()
        left = sum(
            1 for room in state["rooms"].values() for chat in room["chats"] if not chat["is_ended"]
        ) + sum(len(room["variables"]) for room in state["rooms"].values())
        return sum(stats["requests"].values()), stats["connections"], left

    def measure(run: Callable[[], float], warm: Callable[[], None] | None = None) -> list[Any]:
        """Median seconds, requests and TCP connections of ``run`` (which times itself)."""
        times, counts, connections = [], set(), set()
        for _ in range(args.runs):
            cache.clear()
            if warm is not None:
                warm()  # before the reset, so its requests are not counted
            prepare()
            times.append(run())
            requests_made, opened, left = observe()
            if left:
                raise SystemExit(f"the logout left {left} chats or variables behind")
            counts.add(requests_made)
            connections.add(opened)
        return [statistics.median(times), max(counts), max(connections)]

    def sequential() -> float:
        started = time.perf_counter()
        with GiosgClient(
            api_token=token, organization_id=info["organization_id"], base_url=base
        ) as client:
            for room in client.iter_rooms():
                for chat in list(client.iter_open_chats(room.id, VISITOR)):
                    client.end_chat(chat.id)
            for key in keys:
                client.delete_variable(rooms[0], VISITOR, key)
        return time.perf_counter() - started

    def detach(giosg: conf.GiosgSettings) -> float:
        link = VisitorLink.objects.create(
            visitor_id=VISITOR, state=State.ATTACHED, keys={rooms[0]: keys}
        )
        with GiosgClient.from_settings(giosg) as client:
            started = time.perf_counter()
            result = workflows.detach(link.pk, client, giosg)
            elapsed = time.perf_counter() - started
        if not result.ok:
            raise SystemExit(f"detach failed: {result.failed}")
        return elapsed

    def warm(giosg: conf.GiosgSettings) -> Callable[[], None]:
        def run() -> None:
            with GiosgClient.from_settings(giosg) as client:
                list(iter_rooms(client, giosg))

        return run

    rows = [["sequential recipe", "1", "paged", *measure(sequential)]]
    for cached in (False, True):
        for workers in (1, 4, 8, 16):
            giosg = conf.load(
                {**settings.GIOSG, "MAX_WORKERS": workers, "ROOMS_CACHE_TTL": 300 if cached else 0}
            )
            result = measure(partial(detach, giosg), warm(giosg) if cached else None)
            rows.append(
                ["workflows.detach", str(workers), "cached" if cached else "paged", *result]
            )

    print(
        f"One logout: {args.rooms} rooms, {args.chats} open chats, {args.keys} keys, "
        f"{args.latency * 1000:.0f} ms per request; median of {args.runs} runs"
    )
    print()
    print("| approach | MAX_WORKERS | room list | requests | TCP connections | wall time |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for approach, workers, room_list, seconds, count, opened in rows:
        print(
            f"| {approach} | {workers} | {room_list} | {count} | {opened} | "
            f"{seconds * 1000:.0f} ms |"
        )
    server.terminate()  # SIGTERM
    server.join(10)


if __name__ == "__main__":
    main()
