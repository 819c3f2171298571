"""The giosg side of one logout against its floor, and against the sequential recipe.

    python benchmarks/logout.py [--quick] [--runs 5] [--rooms 1,10,50,200,1000] [--chats 0,5,50]
                                [--workers 8,16,32] [--latency 20,100]

For each number of rooms R, giosg's simulator runs in a process of its own, with R rooms listed 50
per page, and answers every API request ``--latency`` milliseconds late. The visitor has C open
chats (spread over the rooms) and 5 variables in each of the first min(2, R) rooms, the rooms
``ROOM_IDS`` configures: K = 5 x min(2, R) keys. Every run starts from that same state. A row is
the median of ``--runs`` logouts, each timed from the call until giosg has answered everything:

- *recipe*: the client's calls one after another, as giosg's tutorial describes (page the rooms,
  list each room's open chats, end them, delete the keys), on one keep-alive connection;
- *W = 8, 16, 32*: django-giosg's ``workflows.detach`` with ``MAX_WORKERS = W`` (and the default
  ``MAX_CONNECTIONS``), room cache cold (the rooms paged from giosg) or warm (from Django's
  cache). Each W has one client for the whole run, as a process has: its connections stay open
  from one logout to the next. The binding's link is made before the clock starts, as its login
  made it; the detach's own database work is timed.

The columns: wall time ÷ latency (round trips); the reference floor, ⌈R/50⌉ + ⌈(R+K)/W⌉ + ⌈C/W⌉
round trips (no page term when the rooms are cached), and the ratio to it; the API requests; the
new TCP connections in the row's first logout / in its later ones together; the threads the
process started in the row's first logout / in its later ones together. The machine's capacity
is measured first: requests per second of client and simulator together with no latency. A row
whose floor needs more than half of that is marked "CPU": it is limited by the two processes'
CPU, not by the network. The floor is a reference, not a strict bound: chat lists start while
later pages load, and ends while chat lists are still coming, so a row can beat it.

``--quick`` runs the target rows in a few minutes: R ∈ {1, 50, 200}, C = 5, W ∈ {8, 32},
L ∈ {20, 100} ms. ``--check`` exits 1 unless every row the CPU does not limit is within 1.3 x its
floor and the headline row (R = 50, C = 5, W = 32, L = 20 ms, cold) is at least 13 x the recipe.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common import (
    PAGE_SIZE,
    VISITOR,
    Giosg,
    StartedThreads,
    capacity,
    configure,
    integers,
    median,
    print_header,
    simulator,
    table,
)

KEYS = [f"key{n}" for n in range(5)]
FLOOR_TARGET = 1.3
HEADLINE = {"rooms": 50, "chats": 5, "workers": 32, "latency": 20, "warm": False}
HEADLINE_TARGET = 13.0


@dataclass
class Row:
    rooms: int
    chats: int
    latency: int  # ms
    workers: int | None  # None: the recipe
    warm: bool = False
    times: list[float] = field(default_factory=list)
    requests: set[int] = field(default_factory=set)
    connections: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    recipe: Row | None = None

    @property
    def seconds(self) -> float:
        return median(self.times)

    @property
    def speedup(self) -> float:
        """How many times faster than the recipe of the same state."""
        return (self.recipe.seconds if self.recipe else self.seconds) / self.seconds

    @property
    def keys(self) -> int:
        return len(KEYS) * min(2, self.rooms)

    @property
    def floor(self) -> int:
        """The reference floor in round trips (for the recipe: its requests)."""
        if self.workers is None:
            return max(self.requests)
        pages = 0 if self.warm else math.ceil(self.rooms / PAGE_SIZE)
        waves = math.ceil((self.rooms + self.keys) / self.workers)
        return pages + waves + math.ceil(self.chats / self.workers)

    def needs(self) -> float:
        """Requests per second the floor needs."""
        return max(self.requests) / (self.floor * self.latency / 1000)

    def is_headline(self) -> bool:
        return (self.rooms, self.chats, self.workers, self.latency, self.warm) == tuple(
            HEADLINE.values()
        )

    def cells(self, limit: float) -> list[object]:
        ms = self.seconds * 1000
        trips = ms / self.latency
        common: list[object] = [self.rooms, self.chats, self.latency]
        first, later = self.connections[0], sum(self.connections[1:])
        started = f"{self.threads[0]}/{sum(self.threads[1:])}"
        if self.workers is None:
            return [*common, "recipe", "paged", f"{ms:,.0f}", "1.0", f"{trips:.1f}", "", "",
                    max(self.requests), f"{first}/{later}", started]  # fmt: skip
        cpu = " CPU" if self.needs() > limit else ""
        return [
            *common,
            self.workers,
            "warm" if self.warm else "cold",
            f"{ms:,.0f}",
            f"{self.speedup:.1f}",
            f"{trips:.1f}",
            self.floor,
            f"{trips / self.floor:.2f}{cpu}",
            max(self.requests),
            f"{first}/{later}",
            started,
        ]


def run_rows(giosg: Giosg, args: argparse.Namespace, rooms: int) -> list[Row]:
    from django.core.cache import cache

    from django_giosg import conf
    from django_giosg.client import GiosgClient
    from django_giosg.models import State, VisitorLink
    from django_giosg.services import workflows
    from django_giosg.services.rooms import iter_rooms

    configured = giosg.room_ids[:2]
    clients = {}
    for workers in args.workers:
        settings = conf.load(giosg.settings(MAX_WORKERS=workers))
        clients[workers] = (settings, GiosgClient.from_settings(settings))
    recipe_client = GiosgClient(
        api_token=giosg.token,
        organization_id=giosg.organization_id,
        base_url=giosg.base_url,
        pool_size=1,
    )

    def prepare(chats: int, latency: int) -> None:
        giosg.reset()
        for index, room in enumerate(giosg.room_ids):
            count = chats // rooms + (index < chats % rooms)
            if count:
                giosg.seed(VISITOR, [room], count)
        for room in configured:
            giosg.seed(VISITOR, [room], 0, **dict.fromkeys(KEYS, "v"))
        giosg.latency(latency / 1000)

    def recipe() -> None:
        for room in recipe_client.iter_rooms():
            for chat in list(recipe_client.iter_open_chats(room.id, VISITOR)):
                recipe_client.end_chat(chat.id)
        for room_id in configured:
            for key in KEYS:
                recipe_client.delete_variable(room_id, VISITOR, key)

    def detach(workers: int) -> Callable[[], Callable[[], None]]:
        settings, client = clients[workers]

        def ready() -> Callable[[], None]:
            """The binding's link, as its login made it (not timed); then the timed detach."""
            link = VisitorLink.objects.create(
                visitor_id=VISITOR, state=State.ATTACHED, keys=dict.fromkeys(configured, KEYS)
            )

            def run() -> None:
                result = workflows.detach(link.pk, client, settings)
                if not result.ok:
                    raise SystemExit(f"the detach failed: {result.failed}")

            return run

        return ready

    def warm_rooms(workers: int) -> None:
        settings, client = clients[workers]
        list(iter_rooms(client, settings))

    def measure(row: Row, ready: Callable[[], Callable[[], None]]) -> Row:
        for _ in range(args.runs):
            cache.clear()
            if row.warm and row.workers is not None:
                warm_rooms(row.workers)  # before the reset: its requests are not counted
            prepare(row.chats, row.latency)
            run = ready()
            with StartedThreads() as threads:
                started = time.perf_counter()
                run()
                row.times.append(time.perf_counter() - started)
            row.threads.append(threads.count)
            requests, opened = giosg.stats()
            left = giosg.left(VISITOR)
            if left:
                raise SystemExit(f"the logout left {left} chats or variables behind")
            row.requests.add(requests)
            row.connections.append(opened)
        return row

    rows = []
    for latency in args.latency:
        for chats in args.chats:
            recipe_row = measure(Row(rooms, chats, latency, None), lambda: recipe)
            rows.append(recipe_row)
            for workers in args.workers:
                for warm in (False, True):
                    row = Row(rooms, chats, latency, workers, warm, recipe=recipe_row)
                    rows.append(measure(row, detach(workers)))
            print(f"  R={rooms} C={chats} L={latency} ms done", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the target rows only")
    parser.add_argument("--runs", type=int, default=5, help="logouts per row (default 5)")
    parser.add_argument("--rooms", type=integers(1), help="default 1,10,50,200,1000")
    parser.add_argument("--chats", type=integers(0), help="default 0,5,50")
    parser.add_argument("--workers", type=integers(1), help="MAX_WORKERS; default 8,16,32")
    parser.add_argument("--latency", type=integers(1), help="in ms; default 20,100")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the targets are met")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    defaults: dict[str, list[int]] = (
        {"rooms": [1, 50, 200], "chats": [5], "workers": [8, 32], "latency": [20, 100]}
        if args.quick
        else {
            "rooms": [1, 10, 50, 200, 1000],
            "chats": [0, 5, 50],
            "workers": [8, 16, 32],
            "latency": [20, 100],
        }
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    started = time.monotonic()
    rows: list[Row] = []
    limit = 0.0
    for rooms in sorted(args.rooms):
        with simulator(rooms) as giosg:
            if not limit:
                configure(giosg.settings())
                limit = capacity(giosg) / 2
            rows.extend(run_rows(giosg, args, rooms))
    print_table(args, rows, limit, time.monotonic() - started)
    return 0 if not args.check or meets_targets(rows, limit) else 1


def print_table(args: argparse.Namespace, rows: list[Row], limit: float, elapsed: float) -> None:
    print_header(
        limit, f"Median of {args.runs} logouts per row; {elapsed / 60:.1f} minutes in all"
    )
    headers = [
        "R", "C", "L ms", "W", "rooms", "median ms", "x recipe", "round trips",
        "floor", "÷ floor", "requests", "new TCP", "threads started",
    ]  # fmt: skip
    print(table(headers, [row.cells(limit) for row in rows]))
    print()
    for line in verdicts(rows, limit):
        print(line)
    print("Targets met" if meets_targets(rows, limit) else "Targets not met")


def verdicts(rows: list[Row], limit: float) -> list[str]:
    measured = [row for row in rows if row.workers is not None]
    free = [row for row in measured if row.needs() <= limit]
    over = [row for row in free if row.seconds / (row.floor * row.latency / 1000) > FLOOR_TARGET]
    lines = [
        f"Rows the CPU does not limit: {len(free)} of {len(measured)}; "
        f"over {FLOOR_TARGET} x the floor: {len(over)}"
    ]
    for row in over:
        room_list = "warm" if row.warm else "cold"
        lines.append(
            f"  over: R={row.rooms} C={row.chats} L={row.latency} W={row.workers} {room_list}"
        )
    if not any(row.is_headline() for row in measured):
        lines.append("Headline (R=50, C=5, W=32, L=20 ms, cold): not in this run")
    for row in measured:
        if row.is_headline():
            lines.append(
                f"Headline (R=50, C=5, W=32, L=20 ms, cold): {row.seconds * 1000:.0f} ms, "
                f"{row.speedup:.1f} x the recipe (target {HEADLINE_TARGET})"
            )
    return lines


def meets_targets(rows: list[Row], limit: float) -> bool:
    for row in rows:
        if row.workers is None:
            continue
        if row.needs() <= limit and row.seconds > FLOOR_TARGET * row.floor * row.latency / 1000:
            return False
        if row.is_headline() and row.speedup < HEADLINE_TARGET:
            return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
