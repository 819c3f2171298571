"""The sweep through a backlog of expired sessions, against its floor and one link at a time.

    python benchmarks/sweep.py [--quick] [--links 100,1000,10000] [--latency 20,100]
                               [--workers 8,16] [--db sqlite,postgres] [--concurrency 4]

giosg's simulator runs in a process of its own with 50 rooms, listed 50 per page, and answers every
API request ``--latency`` milliseconds late. Each expired link's visitor has 5 variables in each of
the 2 rooms ``ROOM_IDS`` configures, and no open chat: its detach lists the visitor's chats in the
50 rooms and deletes 10 keys, 60 requests (the room list is cached after the first). The links'
sessions ended an hour ago. Each database runs in a process of its own: SQLite (a file, as Django
sets it up) or a PostgreSQL this script starts (as the tests do).

A row is one ``giosg_sweep`` over the backlog (``services.sweep.sweep``), with ``MAX_WORKERS`` and
``MAX_CONNECTIONS`` both W, so that at most W calls are in flight: the floor is W ÷ (latency ×
requests per link) links per second. *one at a time* is ``SWEEP_CONCURRENCY`` 1, the sweep before
it worked several links at once, run up to ``--baseline-up-to`` links; at a larger backlog its time
is extrapolated from its largest run. The TCP connections are those giosg accepted (the client is
new for each row), the database connections those the sweep opened. The machine's capacity is
measured first (client and simulator, no latency); a row whose floor needs more than half of it
is marked CPU.

``--quick`` (about 5 minutes): 300 links at 20 ms with W 8 and 16, on SQLite and PostgreSQL, the
baseline at W 8.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

from common import (
    Giosg,
    capacity,
    configure,
    integers,
    postgres_database,
    print_header,
    simulator,
    table,
)

ROOMS = 50
KEYS = [f"key{n}" for n in range(5)]


# -- one database's rows, in a child process ------------------------------------------------------


def visitor(n: int) -> str:
    return f"{n:032x}"


def run_rows(spec: dict[str, Any]) -> list[dict[str, Any]]:
    giosg = Giosg(spec["info"], spec["token"])
    configure(giosg.settings(), spec["database"])
    from django.db.backends.signals import connection_created
    from django.utils import timezone

    from django_giosg import conf
    from django_giosg.client import GiosgClient
    from django_giosg.models import State, VisitorLink
    from django_giosg.services.sweep import sweep

    opened: list[object] = []
    connection_created.connect(
        lambda sender, connection, **kwargs: opened.append(connection), weak=False
    )
    configured = giosg.room_ids[:2]
    results = []
    for row in spec["rows"]:
        links, latency, workers, concurrency = (
            row["links"],
            row["latency"],
            row["workers"],
            row["concurrency"],
        )
        giosg.reset()
        for n in range(links):
            giosg.seed(visitor(n), configured, 0, **dict.fromkeys(KEYS, "v"))
        VisitorLink.objects.all().delete()
        ended = timezone.now() - timedelta(hours=1)
        VisitorLink.objects.bulk_create(
            VisitorLink(
                visitor_id=visitor(n),
                live_visitor_id=visitor(n),
                state=State.ATTACHED,
                keys=dict.fromkeys(configured, KEYS),
                session_expires_at=ended,
            )
            for n in range(links)
        )
        giosg.latency(latency / 1000)
        settings = conf.load(
            giosg.settings(
                MAX_WORKERS=workers, MAX_CONNECTIONS=workers, SWEEP_CONCURRENCY=concurrency
            )
        )
        before = len(opened)
        with GiosgClient.from_settings(settings) as client:
            started = time.perf_counter()
            report = sweep(client, settings)
            elapsed = time.perf_counter() - started
        requests, tcp = giosg.stats()
        giosg.latency(0)
        if report.done != links or VisitorLink.objects.exclude(state=State.DETACHED).exists():
            raise SystemExit(f"the sweep did not detach every link: {report.line()}")
        step = max(1, links // 20)
        left = sum(giosg.left(visitor(n)) for n in range(0, links, step))
        if left:
            raise SystemExit(f"the sweep left {left} variables behind")
        results.append(
            {
                **row,
                "seconds": elapsed,
                "requests": requests,
                "tcp": tcp,
                "connections": len(opened) - before,
            }
        )
        mode = "one at a time" if concurrency == 1 else f"{concurrency} at once"
        print(
            f"  {spec['name']}: {links:,} links at {latency} ms, W {workers}, {mode}: "
            f"{elapsed:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return results


# -- the benchmark, in the parent process ---------------------------------------------------------


def run_database(spec: dict[str, Any]) -> list[dict[str, Any]]:
    child = subprocess.run(  # noqa: S603 (this script, with a spec it wrote)
        [sys.executable, __file__, "--rows", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if child.returncode:
        raise SystemExit(f"the {spec['name']} rows failed")
    rows: list[dict[str, Any]] = json.loads(child.stdout.splitlines()[-1])
    return rows


def databases(text: str) -> list[str]:
    names = text.split(",")
    unknown = set(names) - {"sqlite", "postgres"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown databases {sorted(unknown)}: sqlite, postgres")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="300 links, 20 ms, W 8 and 16, both databases"
    )
    parser.add_argument("--links", type=integers(1), help="backlogs; default 100,1000,10000")
    parser.add_argument("--latency", type=integers(1), help="in ms; default 20,100")
    parser.add_argument("--workers", type=integers(1), help="W; default 8,16")
    parser.add_argument("--db", type=databases, help="default sqlite,postgres")
    parser.add_argument("--concurrency", type=int, default=4, help="SWEEP_CONCURRENCY (default 4)")
    parser.add_argument(
        "--baseline-up-to", type=int, default=1000, help="one at a time up to (default 1000)"
    )
    parser.add_argument("--rows", help=argparse.SUPPRESS)  # (a child: one database's rows)
    args = parser.parse_args()
    if args.rows:
        print(json.dumps(run_rows(json.loads(args.rows))))
        return 0
    if args.concurrency < 2:
        parser.error("--concurrency must be at least 2 (1 is the baseline)")
    quick = {"links": [300], "latency": [20], "workers": [8, 16], "db": ["sqlite", "postgres"]}
    full = {
        "links": [100, 1000, 10000],
        "latency": [20, 100],
        "workers": [8, 16],
        "db": ["sqlite", "postgres"],
    }
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack, simulator(ROOMS) as giosg:
        configure(giosg.settings())
        limit = capacity(giosg) / 2
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for db in args.db:
            database = (
                postgres_database(stack)
                if db == "postgres"
                else {"ENGINE": "django.db.backends.sqlite3", "NAME": str(workdir / "sweep.db")}
            )
            planned = []
            for latency in args.latency:
                for workers in args.workers:
                    for links in sorted(args.links):
                        planned.append((links, latency, workers, args.concurrency))
                        if links <= args.baseline_up_to and (not args.quick or workers == 8):
                            planned.append((links, latency, workers, 1))
            name = "SQLite" if db == "sqlite" else "PostgreSQL"
            spec = {
                "name": name,
                "info": giosg.info,
                "token": giosg.token,
                "database": database,
                "rows": [
                    {"links": links, "latency": latency, "workers": workers, "concurrency": c}
                    for links, latency, workers, c in planned
                ],
            }
            rows.extend({**row, "db": name} for row in run_database(spec))
    print_table(rows, limit, time.monotonic() - started)
    return 0


def print_table(rows: list[dict[str, Any]], limit: float, elapsed: float) -> None:
    print_header(limit, f"{elapsed / 60:.1f} minutes in all")
    headers = [
        "database", "L ms", "W", "links", "sweep", "wall s", "links/s", "requests/link",
        "floor links/s", "of the floor", "TCP connections", "DB connections",
    ]  # fmt: skip
    cells = []
    for row in rows:
        per_link = row["requests"] / row["links"]
        floor = row["workers"] / (row["latency"] / 1000 * per_link)
        rate = row["links"] / row["seconds"]
        cpu = " CPU" if row["workers"] / (row["latency"] / 1000) > limit else ""
        mode = "one at a time" if row["concurrency"] == 1 else f"{row['concurrency']} at once"
        where = [row["db"], row["latency"], row["workers"], f"{row['links']:,}"]
        cells.append(
            [*where, mode, f"{row['seconds']:,.1f}", f"{rate:.1f}", f"{per_link:.1f}",
             f"{floor:.1f}", f"{rate / floor:.0%}{cpu}", row["tcp"], row["connections"]]
        )  # fmt: skip
        extrapolate = extrapolated(rows, row)
        if extrapolate is not None:
            seconds = extrapolate["seconds"] * row["links"] / extrapolate["links"]
            rate = row["links"] / seconds
            cells.append(
                [*where, f"one at a time, extrapolated from {extrapolate['links']:,}",
                 f"{seconds:,.0f}",
                 f"{rate:.1f}", "", "", f"{rate / floor:.0%}{cpu}", "", ""]
            )  # fmt: skip
    print(table(headers, cells, right=1))


def extrapolated(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    """The largest one-at-a-time run of ``row``'s database, latency and W, if ``row`` is a
    concurrent run with a larger backlog than any one-at-a-time run."""
    if row["concurrency"] == 1:
        return None
    same = [
        other
        for other in rows
        if other["concurrency"] == 1
        and (other["db"], other["latency"], other["workers"])
        == (row["db"], row["latency"], row["workers"])
    ]
    largest = max(same, key=lambda other: other["links"], default=None)
    if largest is None or largest["links"] >= row["links"]:
        return None
    return largest


if __name__ == "__main__":
    raise SystemExit(main())
