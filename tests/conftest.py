from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import responses as responses_module
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from django_giosg import conf
from django_giosg.client import GiosgClient
from django_giosg.testing import GiosgSimulator

from . import servers

TOKEN = "tok-3f1c-SECRET-do-not-log"
ORG = "7f9e9580-095b-42c7-838c-c04e667b26f7"
ROOM = "9926bdfa-56e0-11e5-b98c-6c4008c08dfe"
VISITOR = "08119566026a4e1194a7a3244c90f925"
CHAT = "58f5055c-56e0-11e5-9354-6c4008c08dfe"
BASE = "https://giosg.test"
ORG_URL = f"{BASE}/api/v5/orgs/{ORG}"
EXAMPLE_TESTS = Path(__file__).parent / "example"
TWO_DATABASES_TESTS = Path(__file__).parent / "test_two_databases.py"
SOAK_TESTS = Path(__file__).parent / "test_soak.py"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/example needs the example project's settings (``tox -e example`` runs it),
    test_two_databases.py the two databases of ``tests.settings_two_databases``, and the soak
    (a site with settings of its own) runs in the other environments only."""
    if collection_path == EXAMPLE_TESTS:
        return settings.SETTINGS_MODULE != "example_project.settings"
    if collection_path == TWO_DATABASES_TESTS:  # tox -e two-databases runs it
        return settings.SETTINGS_MODULE != "tests.settings_two_databases"
    if collection_path == SOAK_TESTS:  # its site has settings of its own: not run again there
        return settings.SETTINGS_MODULE == "tests.settings_two_databases"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Settings that change only the database (PostgreSQL, ``tests.settings_two_databases``)
    run only the database tests: the others ran in the other environments already. Under
    ``tests.settings_two_databases``, each database test may use every database."""
    if on_postgres() or len(settings.DATABASES) > 1:
        config.hook.pytest_deselected(items=[item for item in items if not uses_database(item)])
        items[:] = [item for item in items if uses_database(item)]
    if len(settings.DATABASES) == 1:
        return
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is not None and "databases" not in marker.kwargs:
            every = pytest.mark.django_db(*marker.args, **marker.kwargs, databases="__all__")
            item.add_marker(every, append=False)


def on_postgres() -> bool:
    return bool(settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql")


def uses_database(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return item.get_closest_marker("django_db") is not None or "django_db_setup" in fixtures


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None,
) -> Iterator[None]:
    """On PostgreSQL, the tests' own server (:mod:`tests.servers`), started before the test
    database is made and stopped after it is dropped."""
    database = settings.DATABASES["default"]
    if not on_postgres() or database["HOST"]:
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(servers.postgres())
        except servers.Unavailable as err:
            servers.unavailable("PostgreSQL", str(err))
        database.update(HOST=server.host, PORT=str(server.port), USER=server.user)
        yield


def load_settings(**changes: object) -> conf.GiosgSettings:
    """Validated settings for the test organization, without touching ``settings.GIOSG``."""
    return conf.load({"API_TOKEN": "t", "ORGANIZATION_ID": ORG, "ROOM_IDS": [ROOM], **changes})


def giosg_settings(**changes: object) -> override_settings:
    """``override_settings`` of the test settings' ``GIOSG`` with ``changes``."""
    return override_settings(GIOSG={**settings.GIOSG, **changes})


class FakeClock:
    """A monotonic clock that only moves when the test (or the fake sleep) moves it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class LinkClock:
    """The links' "now" (``clock.now``): real time until the test sets it."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now if self.now is not None else timezone.now()

    def set(self, when: datetime) -> datetime:
        self.now = when
        return when

    def advance(self, seconds: float) -> datetime:
        return self.set(self() + timedelta(seconds=seconds))


@pytest.fixture
def link_clock(monkeypatch: pytest.MonkeyPatch) -> LinkClock:
    """Inject a :class:`LinkClock` into the services: backoff, staleness, expiry, pruning."""
    fake = LinkClock()
    monkeypatch.setattr("django_giosg.clock.now", fake)
    return fake


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    """The simulator, with the variables in its first room and few retries per call and attempts
    per link, so that failing sweeps are quick. A module that needs another set-up defines its
    own ``giosg``."""
    settings.GIOSG = {
        **settings.GIOSG,
        "ROOM_IDS": giosg_simulator.room_ids[:1],
        "MAX_RETRIES": 1,
        "SWEEP_MAX_ATTEMPTS": 3,
    }
    return giosg_simulator


@pytest.fixture
def empty_cache() -> Iterator[None]:
    """Django's cache (the room list) empty before and after the test."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(clock: FakeClock) -> Iterator[GiosgClient]:
    """A client whose sleeps are recorded (not slept) and whose jitter factor is exactly 1."""
    with GiosgClient(
        api_token=TOKEN,
        organization_id=ORG,
        base_url=BASE,
        max_retries=3,
        retry_after_cap=30.0,
        sleep=clock.sleep,
        clock=clock,
        random=lambda: 0.5,
    ) as giosg:
        yield giosg


@pytest.fixture
def mocked() -> Iterator[responses_module.RequestsMock]:
    with responses_module.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


pytest_plugins = ["pytester"]
