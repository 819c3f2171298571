"""The soak: login cycles through a real WSGI server against a faulty giosg, and what is left.

    python benchmarks/soak.py [--cycles 1000] [--clients 4] [--faults 0.3] [--seed 1]
                              [--db sqlite|postgres] [--tasks immediate|db|rq] [--workers 2]

The simulator runs in a process of its own (this script chooses its token and ends it with
SIGTERM). The site runs in another: Django's threaded WSGI server with django-giosg, on SQLite or
on a PostgreSQL this script starts in a temporary folder (``--db``). The tasks run in the
request (``--tasks immediate``), or on ``--workers`` worker processes: ``db_worker`` of
django-tasks-db (``db``) or RQ's ``SimpleWorker`` on a redis-server this script starts (``rq``).
This process drives ``--clients`` concurrent browsers over HTTP and runs ``giosg_sweep`` every
``--sweep-every`` seconds meanwhile (as cron would). Then it waits for the workers to drain the
queue, sweeps until no link is due, and counts what was left.

Each cycle is a fresh browser: a page (the CSRF and device cookies), the capture of a new visitor
id that has an open chat at giosg, a login, then one ending:

- 75 %: a page, and a logout;
- 10 %: another user logs in in the same browser (a user switch) and stays logged in;
- 10 %: the session is set to expire in 2 seconds and is abandoned (the sweep ends it);
- 5 %: the user's password is changed elsewhere, and the next page finds the session without its
  user.

``--faults`` is the share of API requests that go wrong, in equal parts: 500, 502 and 503 answers,
429 with ``Retry-After: 1``, dropped connections, hangs past the client's timeout, and writes giosg
applies after the client gave up on them (late). ``TIMEOUT`` is 0.5 s, the backoffs are short and
``SETTLE_DELAY`` is 3 s, so that a run takes minutes. ``--check`` exits 1 unless nothing was left.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import django
import requests
from django.conf import settings
from django.db import models
from django.views.decorators.csrf import ensure_csrf_cookie

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' servers
from common import login_view  # (this script's folder is on sys.path)

from tests import servers

#: The task backends a worker runs: TASKS, the apps it needs, the worker's command.
WORKERS: dict[str, dict[str, Any]] = {
    "db": {
        "backend": {"BACKEND": "django_tasks_db.DatabaseBackend"},
        "apps": ["django_tasks_db"],
        "command": servers.DB_WORKER,
    },
    "rq": {
        "backend": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]},
        "apps": ["django_rq"],
        "command": servers.RQ_WORKER,
    },
}

PASSWORD = "soak-password-1"  # noqa: S105 - the soak's users only
SETTLE_DELAY = 3
EXPIRE_IN = 2  # seconds: an abandoned session's expiry
ENDINGS = [("logout", 0.75), ("switch", 0.10), ("expiry", 0.10), ("password", 0.05)]
FAULTS: list[dict[str, Any]] = [
    {"status": 500},
    {"status": 502},
    {"status": 503},
    {"status": 429, "retry_after": "1"},
    {"drop": True},
    {"hang": True},
    {"late": 0.8},  # (--late)
]


# -- the simulator's process ----------------------------------------------------------------------


def serve_giosg(ready: multiprocessing.Queue[dict[str, Any]], token: str, seed: int) -> None:
    from django_giosg.testing import GiosgSimulator

    with GiosgSimulator(api_token=token, rooms=10, seed=seed, hang_limit=5.0) as sim:
        signal.signal(signal.SIGTERM, lambda *_: sim.request_shutdown())
        ready.put(sim.describe())
        sim.wait()


# -- the site: settings, views and its process --------------------------------------------------


def configure(
    info: dict[str, Any], token: str, database: dict[str, Any], tasks: str, redis_url: str
) -> None:
    worker = WORKERS.get(tasks)
    backend = {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}
    settings.configure(
        TASKS={"default": worker["backend"] if worker else backend},
        # (finished jobs kept for a day, not RQ's 500 s: the table counts them at the end)
        RQ_QUEUES={"default": {"URL": redis_url, "DEFAULT_RESULT_TTL": 86400}},
        DEBUG=False,
        SECRET_KEY=secrets.token_hex(16),
        ALLOWED_HOSTS=["127.0.0.1"],
        USE_TZ=True,
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django_giosg",
            *(worker["apps"] if worker else []),
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django_giosg.middleware.GiosgMiddleware",
        ],
        DATABASES={"default": database},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        LOGGING_CONFIG=None,
        GIOSG={
            "API_TOKEN": token,
            "ORGANIZATION_ID": info["organization_id"],
            "ROOM_IDS": info["room_ids"][:2],
            "API_BASE_URL": info["base_url"],
            "TIMEOUT": [0.5, 0.5],
            "INLINE_BUDGET": 1.5,
            "RETRY_AFTER_CAP": 2.0,
            "SWEEP_BACKOFF": 0.5,
            "SWEEP_MAX_ATTEMPTS": 30,
            "SETTLE_DELAY": SETTLE_DELAY,
            "EXPIRY_REFRESH": 1,
            "EXPIRY_GRACE": 1,
            "USER_CAPTURE_RATE": None,
        },
    )
    django.setup()


def log_to(path: Path) -> None:
    """Everything the app, the client and urllib3 log, at DEBUG, into ``path`` (searched for the
    token and for discarded connections afterwards)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)


def short_backoffs() -> None:
    """The client's backoff between retries, short: a run takes minutes, not hours."""
    from django_giosg.client import get_client

    client = get_client()
    client.backoff_base, client.backoff_max = 0.05, 0.5


@ensure_csrf_cookie
def page(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("ok")


def logout_view(request: Any) -> Any:
    from django.contrib.auth import logout
    from django.http import HttpResponse

    logout(request)
    return HttpResponse(status=204)


def expire_view(request: Any) -> Any:
    from django.http import HttpResponse

    request.session.set_expiry(EXPIRE_IN)
    return HttpResponse(status=204)


def password_view(request: Any) -> Any:
    """The password changes elsewhere: this session keeps its old hash, and loses its user."""
    from django.contrib.auth import get_user_model
    from django.http import HttpResponse

    user = get_user_model().objects.get(pk=request.user.pk)
    user.set_password(PASSWORD)  # the same password, a new hash
    user.save()
    return HttpResponse(status=204)


def _urlpatterns() -> list[Any]:
    from django.urls import include, path

    return [
        path("page/", page),
        path("login/", login_view),
        path("logout/", logout_view),
        path("expire/", expire_view),
        path("password/", password_view),
        path("giosg/", include("django_giosg.urls")),
    ]


def __getattr__(name: str) -> Any:  # ROOT_URLCONF is this module: its patterns once Django is up
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


def serve_site(ready: multiprocessing.Queue[str], log: Path) -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    log_to(log)
    short_backoffs()
    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.daemon_threads = True
    server.set_app(WSGIHandler())
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    ready.put(f"http://127.0.0.1:{server.server_address[1]}")
    server.serve_forever(0.05)


def work(log: Path, command: list[str]) -> None:
    """A task worker (``WORKERS``), until SIGTERM: it finishes the task it is running."""
    from django.core.management import call_command

    log_to(log)
    short_backoffs()
    call_command(*command)


# -- the driver ----------------------------------------------------------------------------------


@dataclass
class Run:
    """What the browsers saw."""

    cycles: int = 0
    failed: list[str] = field(default_factory=list)
    login: list[float] = field(default_factory=list)
    logout: list[float] = field(default_factory=list)
    #: Each cycle's visitor id, and the user its binding should be live for at the end (the
    #: second user of a switch), or ``None`` (the session ended).
    visitors: dict[str, str | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Browser:
    def __init__(self, site: str, run: Run) -> None:
        self.site = site
        self.run = run
        self.http = requests.Session()

    def call(self, method: str, path: str, expected: int, **kwargs: Any) -> float:
        """One request; an unexpected answer (or none) is a failed host request."""
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}
        started = time.perf_counter()
        try:
            response = self.http.request(
                method, f"{self.site}{path}", headers=headers, timeout=30, **kwargs
            )
            status: int | str = response.status_code
        except requests.RequestException as err:
            status = type(err).__name__
        elapsed = time.perf_counter() - started
        if status != expected:
            with self.run.lock:
                self.run.failed.append(f"{method} {path}: {status}")
        return elapsed

    def login(self, username: str) -> float:
        return self.call("POST", "/login/", 204, data={"username": username, "password": PASSWORD})


def cycle(
    site: str,
    control: requests.Session,
    info: dict[str, Any],
    run: Run,
    draw: random.Random,
    users: list[str],
) -> None:
    browser = Browser(site, run)
    visitor = f"{draw.getrandbits(128):032x}"  # from the seed: the same faults on every run
    seed = {"rooms": info["room_ids"][:1], "open_chats": 1}
    seeded = control.post(
        f"{info['base_url']}/_simulator/visitors/{visitor}", json=seed, timeout=10
    )
    seeded.raise_for_status()
    first, second = draw.sample(users, 2)
    ending = draw.choices([name for name, _ in ENDINGS], [share for _, share in ENDINGS])[0]
    browser.call("GET", "/page/", 200)
    browser.call("POST", "/giosg/visitor/", 204, json={"visitor_id": visitor})
    login = browser.login(first)
    logout = None
    live_for = second if ending == "switch" else None
    if ending == "logout":
        browser.call("GET", "/page/", 200)
        logout = browser.call("POST", "/logout/", 204)
    elif ending == "switch":
        browser.login(second)
    elif ending == "expiry":
        browser.call("POST", "/expire/", 204)
    else:
        browser.call("POST", "/password/", 204)
        browser.call("GET", "/page/", 200)
    with run.lock:
        run.cycles += 1
        run.visitors[visitor] = live_for
        run.login.append(login)
        if logout is not None:
            run.logout.append(logout)


def drive(site: str, info: dict[str, Any], args: argparse.Namespace, users: list[str]) -> Run:
    run = Run()
    numbers = iter(range(args.cycles))
    numbers_lock = threading.Lock()

    def client(index: int) -> None:
        control = requests.Session()
        draw = random.Random(args.seed * 1000 + index)
        while True:
            with numbers_lock:
                if next(numbers, None) is None:
                    return
            cycle(site, control, info, run, draw, users)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return run


@contextlib.contextmanager
def sweeping_every(seconds: float) -> Iterator[None]:
    """``giosg_sweep`` every ``seconds`` in a thread, as cron would, while the cycles run."""
    from django.db import connections

    from django_giosg.client import get_client
    from django_giosg.conf import get_settings
    from django_giosg.services.sweep import sweep

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            sweep(get_client(), get_settings())
        connections.close_all()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass
class Queue:
    """What the workers ran."""

    succeeded: int = 0
    failed: int = 0
    left: int = 0


def drain(tasks: str, limit: float) -> Queue:
    """Wait until the workers have run every task (at most ``limit`` seconds); the counts."""
    deadline = time.monotonic() + limit
    while True:
        queue = count_tasks(tasks)
        if not queue.left or time.monotonic() > deadline:
            return queue
        time.sleep(0.2)


def count_tasks(tasks: str) -> Queue:
    if tasks == "db":
        from django_tasks_db.models import DBTaskResult

        statuses = dict(DBTaskResult.objects.values_list("status").annotate(n=models.Count("id")))
        return Queue(
            succeeded=statuses.pop("SUCCESSFUL", 0),
            failed=statuses.pop("FAILED", 0),
            left=sum(statuses.values()),
        )
    import django_rq
    from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

    queue = django_rq.get_queue("default")
    return Queue(
        succeeded=FinishedJobRegistry(queue=queue).count,
        failed=FailedJobRegistry(queue=queue).count,
        left=queue.count + StartedJobRegistry(queue=queue).count,
    )


def sweep_until_nothing_is_due(limit: float) -> int:
    """Sweep, wait for the next link to come due, sweep again, until none is due or will be."""
    from django.utils import timezone

    from django_giosg.client import get_client
    from django_giosg.conf import get_settings
    from django_giosg.models import DUE_STATES, VisitorLink
    from django_giosg.services.sweep import sweep

    sweeps = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sweep(get_client(), get_settings())
        sweeps += 1
        now = timezone.now()
        waiting = VisitorLink.objects.filter(state__in=DUE_STATES).exclude(next_attempt_at=None)
        soon = now + timedelta(seconds=60)
        expiring = VisitorLink.objects.live().filter(session_expires_at__lte=soon)
        times = [
            *waiting.values_list("next_attempt_at", flat=True),
            *(
                when + timedelta(seconds=1)
                for when in expiring.values_list("session_expires_at", flat=True)
            ),
        ]
        if not times:
            return sweeps
        time.sleep(min(max((min(times) - now).total_seconds(), 0.05), 5.0))
    return sweeps


@dataclass
class Left:
    chats: int = 0
    variables: int = 0
    live_missing: int = 0
    live_wrong: int = 0
    stuck: int = 0
    failed: int = 0
    live: int = 0
    not_as_ended: int = 0


def what_was_left(info: dict[str, Any], visitors: dict[str, str | None]) -> Left:
    from django.contrib.auth import get_user_model

    from django_giosg.models import LIVE_STATES, State, VisitorLink

    left = Left()
    control = requests.Session()
    live = {
        link.visitor_id: link
        for link in VisitorLink.objects.filter(state__in=LIVE_STATES).select_related("user")
    }
    rooms = info["room_ids"][:2]
    for visitor, live_for in visitors.items():
        link = live.get(visitor)
        if (link.user.get_username() if link and link.user else None) != live_for:
            left.not_as_ended += 1  # live after its session ended, or not live for its user
        state = control.get(f"{info['base_url']}/_simulator/visitors/{visitor}", timeout=10).json()
        held = {room: data["variables"] for room, data in state["rooms"].items()}
        left.chats += sum(
            not chat["is_ended"] for data in state["rooms"].values() for chat in data["chats"]
        )
        if link is None:
            left.variables += sum(len(variables) for variables in held.values())
            continue
        left.live += 1
        user = link.user or get_user_model()()
        expected = {"username": user.get_username(), "user_id": str(user.pk)}
        for room in rooms:
            for key, value in expected.items():
                if key not in held.get(room, {}):
                    left.live_missing += 1
                elif held[room][key] != value:
                    left.live_wrong += 1
    links = VisitorLink.objects
    left.stuck = links.filter(
        state__in=[State.PENDING_ATTACH, State.PENDING_DETACH, State.SETTLING]
    ).count()
    left.failed = links.filter(state=State.FAILED).count()
    return left


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    from django_giosg.testing import ENDPOINTS

    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--cycles", type=int, default=1000, help="login cycles")
    parser.add_argument("--clients", type=int, default=4, help="browsers at once")
    parser.add_argument(
        "--faults", type=float, default=0.3, help="share of API requests that fail, in [0, 1)"
    )
    parser.add_argument("--late", type=float, default=0.8, help="seconds until a late write lands")
    parser.add_argument(
        "--faults-on",
        default="*",
        choices=["*", *ENDPOINTS],
        metavar="ENDPOINT",
        help=f"the one endpoint with faults, or * for all: {', '.join(ENDPOINTS)}",
    )
    parser.add_argument("--seed", type=int, default=1, help="the faults' and cycles' seed")
    parser.add_argument("--users", type=int, default=40, help="users to log in")
    parser.add_argument(
        "--sweep-every", type=float, default=5.0, help="seconds between sweeps during the cycles"
    )
    parser.add_argument(
        "--sweep-limit",
        type=float,
        default=600.0,
        help="seconds of waiting for the queue, and of sweeping, after the cycles",
    )
    parser.add_argument(
        "--db", choices=["sqlite", "postgres"], default="sqlite", help="the site's database"
    )
    parser.add_argument(
        "--tasks",
        choices=["immediate", "db", "rq"],
        default="immediate",
        help="where the tasks run: in the request, or on db_worker or RQ workers",
    )
    parser.add_argument(
        "--workers", type=int, help="worker processes for --tasks db|rq (default 2)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 unless nothing was left")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = parser.parse_args()
    for name, least in (("cycles", 1), ("clients", 1), ("users", 2), ("workers", 1)):
        value = getattr(args, name)
        if value is not None and value < least:
            parser.error(f"--{name} must be at least {least}")
    for name in ("late", "sweep_every", "sweep_limit"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be above 0")
    if not 0 <= args.faults < 1:
        parser.error("--faults must be at least 0 and below 1")
    if args.workers is not None and args.tasks not in WORKERS:
        parser.error("--workers goes with --tasks db or --tasks rq")
    args.workers = args.workers or 2
    # SIGTERM (a test's timeout, a CI's cancel) stops the children and the servers too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="django-giosg-soak-"))
    children: list[multiprocessing.Process] = []
    try:
        with contextlib.ExitStack() as stack:  # the servers, stopped after the children
            try:
                return soak(args, workdir, children, stack)
            finally:
                for child in reversed(children):
                    child.terminate()  # SIGTERM
                    child.join(10)
    except servers.Unavailable as err:
        print(f"soak: {err}", file=sys.stderr)
        return 2
    finally:
        logging.shutdown()
        if args.keep:
            print(f"The database and the logs: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def database(kind: str, workdir: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    if kind == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(workdir / "soak.sqlite3"),
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    return stack.enter_context(servers.postgres()).database_settings()


def soak(
    args: argparse.Namespace,
    workdir: Path,
    children: list[multiprocessing.Process],
    stack: contextlib.ExitStack,
) -> int:
    token = secrets.token_urlsafe(24)
    ready: multiprocessing.Queue[Any] = multiprocessing.Queue()
    giosg = multiprocessing.Process(target=serve_giosg, args=(ready, token, args.seed))
    giosg.start()
    children.append(giosg)
    info = ready.get(timeout=30)
    redis_url = stack.enter_context(servers.redis()).url if args.tasks == "rq" else ""
    configure(info, token, database(args.db, workdir, stack), args.tasks, redis_url)
    log_to(workdir / "driver.log")

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    users = [f"user{n}" for n in range(args.users)]
    for username in users:
        get_user_model().objects.create_user(username, password=PASSWORD)
    connections.close_all()  # before the site's process is forked
    site_process = multiprocessing.Process(target=serve_site, args=(ready, workdir / "site.log"))
    site_process.start()
    children.append(site_process)
    site = ready.get(timeout=30)
    for number in range(args.workers if args.tasks in WORKERS else 0):
        log = workdir / f"worker{number}.log"
        worker = multiprocessing.Process(target=work, args=(log, WORKERS[args.tasks]["command"]))
        worker.start()
        children.append(worker)
    short_backoffs()

    control = requests.Session()
    rate = 1 - (1 - args.faults) ** (1 / len(FAULTS)) if args.faults else 0
    for fault in FAULTS if rate else []:
        if "late" in fault:
            fault = {"late": args.late}
        fault = {**fault, "rate": rate, "endpoint": args.faults_on}
        control.post(
            f"{info['base_url']}/_simulator/faults", json=fault, timeout=10
        ).raise_for_status()
    started = time.monotonic()
    with sweeping_every(args.sweep_every):
        run = drive(site, info, args, users)
        cycles_took = time.monotonic() - started
        queue = drain(args.tasks, args.sweep_limit) if args.tasks in WORKERS else None
    drain_took = time.monotonic() - started - cycles_took
    started = time.monotonic()
    # giosg is healthy again
    control.delete(f"{info['base_url']}/_simulator/faults", json={}, timeout=10).raise_for_status()
    time.sleep(args.late + 0.5)  # the last late writes land
    sweeps = sweep_until_nothing_is_due(args.sweep_limit)
    sweeps_took = time.monotonic() - started
    left = what_was_left(info, run.visitors)
    stats = control.get(f"{info['base_url']}/_simulator/stats", timeout=10).json()
    calls = control.get(f"{info['base_url']}/_simulator/calls", timeout=60).json()
    cut = sum(call["outcome"] in ("dropped", "hung", "late") for call in calls)
    for handler in logging.getLogger().handlers:
        handler.flush()
    logs = "".join(path.read_text() for path in sorted(workdir.glob("*.log")))
    requests_made = sum(stats["requests"].values())
    discards = logs.count("Connection pool is full")
    tasks = f"{args.workers} {args.tasks} worker(s)" if queue else "the immediate backend"
    print(
        f"Soak: {args.cycles} cycles, {args.clients} client(s), {args.faults:.0%} faults on "
        f"{'every endpoint' if args.faults_on == '*' else args.faults_on} (seed {args.seed}), "
        f"{args.db}, {tasks}: the cycles took {cycles_took:.0f} s"
        f"{f', their tasks drained {drain_took:.0f} s later' if queue else ''}, "
        f"the sweeps after them {sweeps_took:.0f} s"
    )
    print()
    rows = [
        ("cycles", run.cycles),
        ("failed host requests", len(run.failed)),
        (
            "login p50 / p95",
            f"{percentile(run.login, 0.5) * 1000:.0f} / "
            f"{percentile(run.login, 0.95) * 1000:.0f} ms",
        ),
        (
            "logout p50 / p95",
            f"{percentile(run.logout, 0.5) * 1000:.0f} / "
            f"{percentile(run.logout, 0.95) * 1000:.0f} ms",
        ),
        ("chats left open", left.chats),
        ("variables left for ended bindings", left.variables),
        (f"live variables missing ({left.live} live bindings)", left.live_missing),
        ("live variables holding another user's value", left.live_wrong),
        ("links not done (pending or settling)", left.stuck),
        ("bindings not as their cycle ended (live / not live)", left.not_as_ended),
        ("links failed", left.failed),
        (
            "tasks succeeded / failed / left in the queue",
            f"{queue.succeeded} / {queue.failed} / {queue.left}" if queue else "(in the requests)",
        ),
        ("sweeps needed after the cycles", sweeps),
        ("giosg requests / TCP connections", f"{requests_made} / {stats['connections']}"),
        ("TCP connections per request", f"{stats['connections'] / max(requests_made, 1):.3f}"),
        ("connections a fault cut (drop, hang, late)", cut),
        ("pool discards", discards),
        ("the token in logs", logs.count(token)),
    ]
    print("| | |")
    print("| --- | ---: |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for failure in run.failed[:10]:
        print(f"failed: {failure}", file=sys.stderr)
    clean = (
        not (
            run.failed
            or left.chats
            or left.variables
            or left.live_missing
            or left.live_wrong
            or left.stuck
            or left.not_as_ended
            or left.failed
            or (queue and (queue.failed or queue.left))
            or discards
            or logs.count(token)
        )
        and run.cycles == args.cycles
    )
    return 0 if clean or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
