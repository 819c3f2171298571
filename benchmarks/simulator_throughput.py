"""How many requests per second the giosg simulator serves on this machine.

    python benchmarks/simulator_throughput.py [--seconds 2]

The simulator runs in a process of its own (as ``manage.py giosg_simulator`` would), so that it
does not share a GIL with the client; this script chooses its token and ends it with SIGTERM.
Each row runs for about ``--seconds``: the django-giosg client (one keep-alive session) with 1, 4
and 8 threads, and for comparison a new TCP connection per request. Client and simulator share
the machine's cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from django_giosg.client import GiosgClient
from django_giosg.testing import GiosgSimulator

VISITOR = "08119566026a4e1194a7a3244c90f925"


def run(seconds: float, threads: int, call: Callable[[int], None]) -> tuple[int, float]:
    """Call ``call(i)`` from ``threads`` threads until ``seconds`` have passed."""
    stop = time.monotonic() + seconds
    counts = [0] * threads
    lock = threading.Lock()

    def worker(index: int) -> None:
        n = 0
        while time.monotonic() < stop:
            call(index * 1_000_000 + n)
            n += 1
        with lock:
            counts[index] = n

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return sum(counts), time.monotonic() - started


def serve(ready: multiprocessing.Queue[dict[str, object]], token: str) -> None:
    """Serve until SIGTERM (``Process.terminate``); the control API does not tell the token."""
    with GiosgSimulator(api_token=token, rooms=1, shared_rooms=0) as sim:
        signal.signal(signal.SIGTERM, lambda *_: sim.request_shutdown())
        ready.put(sim.describe())
        sim.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    token = secrets.token_urlsafe(16)
    queue: multiprocessing.Queue[dict[str, object]] = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(queue, token), daemon=True)
    server.start()
    info = queue.get(timeout=30)
    base = str(info["base_url"])
    room = info["room_ids"][0]  # type: ignore[index]
    control = requests.Session()

    def connections() -> int:
        return int(control.get(f"{base}/_simulator/stats", timeout=5).json()["connections"])

    rows = []
    for threads in (1, 4, 8):
        control.post(f"{base}/_simulator/reset", json={}, timeout=5).raise_for_status()
        client = GiosgClient(
            api_token=token,
            organization_id=str(info["organization_id"]),
            base_url=base,
            pool_size=threads,
        )
        with client:

            def set_variable(n: int, client: GiosgClient = client) -> None:
                client.set_variable(room, VISITOR, f"k{n % 50}", "v")  # 50 keys, overwritten

            count, elapsed = run(args.seconds, threads, set_variable)
        rows.append(("client.set_variable, keep-alive", threads, count, elapsed, connections()))

    control.post(f"{base}/_simulator/reset", json={}, timeout=5).raise_for_status()

    def fresh_connection(n: int) -> None:
        headers = {"Authorization": f"Token {token}", "Connection": "close"}
        requests.get(f"{base}/api/v5/users/me", headers=headers, timeout=5)

    count, elapsed = run(args.seconds, 1, fresh_connection)
    rows.append(("GET users/me, new connection each", 1, count, elapsed, connections()))
    server.terminate()  # SIGTERM
    server.join(10)

    header = ("scenario", "threads", "requests", "seconds", "req/s", "TCP conns")
    print("{:<36} {:>7} {:>9} {:>8} {:>8} {:>9}".format(*header))
    for name, threads, count, elapsed, opened in rows:
        rate = count / elapsed
        print(f"{name:<36} {threads:>7} {count:>9} {elapsed:>8.2f} {rate:>8.0f} {opened:>9}")


if __name__ == "__main__":
    main()
