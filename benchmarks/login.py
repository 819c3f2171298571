"""The time django-giosg adds to a login request: the same site with and without the app.

    python benchmarks/login.py [--quick] [--logins 300] [--latency 20] [--no-postgres]

Each site runs in a process of its own (its ``INSTALLED_APPS`` differ), driven by Django's test
client in that process: no network between browser and site, so what is timed is the request's
own work. Each login is a new browser: a page (the cookies), the capture of a new visitor id
(with the app), then the login, the request timed (a plain ``authenticate`` and ``login`` view,
with a cheap password hasher: the same in every site), each by a user of its own. The app's
settings are its defaults. The capture comes right before the login, as when someone logs in
on the page that reported the visitor id: the login then does not write the id's origin again
(it was seen within ``EXPIRY_REFRESH``).

The sites:

- *without the app*: no ``django_giosg`` in ``INSTALLED_APPS`` or ``MIDDLEWARE``;
- *immediate*: the tasks run in the request, so the login sets the variables at giosg (the
  simulator, in a process of its own, answering ``--latency`` ms late) before it answers;
- *database*: django-tasks-db's backend; the login only enqueues (no worker runs here).

On SQLite (a file in a temporary folder) and on a PostgreSQL this script starts (as the tests do;
``--no-postgres`` leaves it out). Each site's first ``--warmup`` logins are not counted. The table
shows the median and p95 of each site and what each adds to the same database's site without the
app: its median less theirs, and its p95 less theirs (so the added p95 can be below the added
median).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from common import (
    configure,
    login_view,
    machine,
    median,
    percentile,
    postgres_database,
    simulator,
    table,
)

PASSWORD = "benchmark-password"  # noqa: S105 (a benchmark's user)
BACKENDS = {
    "immediate": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"},
    "database": {"BACKEND": "django_tasks_db.DatabaseBackend"},
}


# -- the site, in the child process ---------------------------------------------------------------


def page(request: Any) -> Any:
    from django.http import HttpResponse
    from django.middleware.csrf import get_token

    get_token(request)
    return HttpResponse("ok")


def __getattr__(name: str) -> Any:  # ROOT_URLCONF is this module: its patterns once Django is up
    if name == "urlpatterns":
        from django.apps import apps
        from django.urls import include, path

        patterns: list[Any] = [path("page/", page), path("login/", login_view)]
        if apps.is_installed("django_giosg"):
            patterns.append(path("giosg/", include("django_giosg.urls")))
        return patterns
    raise AttributeError(name)


def measure(spec: dict[str, Any]) -> list[float]:
    """Seconds of each counted login of one site."""
    app = spec["backend"] is not None
    middleware = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    configure(
        spec["giosg"] | {"ENABLED": app},
        spec["database"],
        app=app,
        apps=["django_tasks_db"] if spec["backend"] == "database" else [],
        MIDDLEWARE=[*middleware, "django_giosg.middleware.GiosgMiddleware"] if app else middleware,
        TASKS={"default": BACKENDS[spec["backend"] or "immediate"]},
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    import requests
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    template = user_model(username="template")
    template.set_password(PASSWORD)
    logins = spec["warmup"] + spec["logins"]
    user_model.objects.bulk_create(  # a user for each login, as on a site
        user_model(username=f"user{n}", password=template.password) for n in range(logins)
    )
    control = requests.Session()
    times = []
    for n in range(logins):
        browser = Client()
        browser.get("/page/")
        if app:
            visitor = f"{n:032x}"
            seed = {"rooms": spec["giosg"]["ROOM_IDS"], "open_chats": 0}
            control.post(f"{spec['base_url']}/_simulator/visitors/{visitor}", json=seed)
            captured = browser.post(
                "/giosg/visitor/", {"visitor_id": visitor}, content_type="application/json"
            )
            if captured.status_code != 204:
                raise SystemExit(f"the capture answered {captured.status_code}")
        started = time.perf_counter()
        response = browser.post("/login/", {"username": f"user{n}", "password": PASSWORD})
        elapsed = time.perf_counter() - started
        if response.status_code != 204:
            raise SystemExit(f"the login answered {response.status_code}")
        if n >= spec["warmup"]:
            times.append(elapsed)
    return times


# -- the benchmark, in the parent process ---------------------------------------------------------


def run_site(spec: dict[str, Any]) -> list[float]:
    child = subprocess.run(  # noqa: S603 (this script, with a spec it wrote)
        [sys.executable, __file__, "--site", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode:
        raise SystemExit(f"the site {spec['name']} failed:\n{child.stderr}")
    times: list[float] = json.loads(child.stdout.splitlines()[-1])
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 logins per site, 10 not counted")
    parser.add_argument("--logins", type=int, default=300, help="counted per site (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="not counted (default 30)")
    parser.add_argument("--latency", type=int, default=20, help="giosg's, in ms (default 20)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--site", help=argparse.SUPPRESS)  # (a child: one site's logins)
    args = parser.parse_args()
    if args.site:
        print(json.dumps(measure(json.loads(args.site))))
        return 0
    if args.quick:
        args.logins, args.warmup = 100, 10
    if args.logins < 1 or args.warmup < 0 or args.latency < 0:
        parser.error("--logins must be at least 1, --warmup and --latency at least 0")

    rows = []
    with ExitStack() as stack, simulator(rooms=10) as giosg:
        giosg.latency(args.latency / 1000)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        databases: dict[str, Callable[[str], dict[str, Any]]] = {
            "SQLite": lambda site: sqlite(workdir / f"{site}.sqlite3"),
            "SQLite, WAL": lambda site: sqlite(workdir / f"{site}-wal.sqlite3", wal=True),
        }
        if not args.no_postgres:
            server = postgres_database(stack)
            databases["PostgreSQL"] = lambda site: {
                **server,
                "NAME": create_database(server, site),
            }
        for db_name, database_for in databases.items():
            baseline: list[float] = []
            for backend in (None, "immediate", "database"):
                name = f"{db_name}, {backend or 'without the app'}"
                database = database_for(backend or "plain")  # a fresh database for each site
                spec = {
                    "name": name,
                    "backend": backend,
                    "database": database,
                    "giosg": giosg.settings(),
                    "base_url": giosg.base_url,
                    "logins": args.logins,
                    "warmup": args.warmup,
                }
                print(f"  {name} …", flush=True)
                times = run_site(spec)
                if backend is None:
                    baseline = times
                rows.append(row(name, times, baseline))
    print()
    print(f"Machine: {machine()}")
    print(
        f"{args.logins} logins per site after {args.warmup} not counted; giosg answers "
        f"{args.latency} ms late"
    )
    print()
    headers = ["site", "median ms", "p95 ms", "added median ms", "added p95 ms"]
    print(table(headers, rows))
    return 0


def row(name: str, times: list[float], baseline: list[float]) -> list[object]:
    ms = [t * 1000 for t in times]
    base = [t * 1000 for t in baseline]
    cells: list[object] = [name, f"{median(ms):.2f}", f"{percentile(ms, 0.95):.2f}"]
    if times is baseline:
        return [*cells, "", ""]
    added_median = median(ms) - median(base)
    added_p95 = percentile(ms, 0.95) - percentile(base, 0.95)
    return [*cells, f"{added_median:+.2f}", f"{added_p95:+.2f}"]


def sqlite(path: Path, *, wal: bool = False) -> dict[str, Any]:
    """SQLite as Django sets it up (a rollback journal: each commit waits for the disk), or in
    WAL mode with ``synchronous=NORMAL`` (a commit writes the log and does not wait)."""
    wal_mode = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    options = {"init_command": wal_mode} if wal else {}
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": options}


def create_database(server: dict[str, Any], name: str) -> str:
    import psycopg

    conninfo = f"host={server['HOST']} port={server['PORT']} user={server['USER']} dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


if __name__ == "__main__":
    raise SystemExit(main())
