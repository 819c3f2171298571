"""Real task workers: ``django-tasks-db``'s ``db_worker`` (two processes) and an RQ
``SimpleWorker`` on a ``redis-server`` of the tests' own, started by the tests.

The ``worker`` fixture runs each test once per backend. It points ``TASKS`` at the backend in
this process (the requests enqueue) and in the workers' (they run the tasks on the test
database). :func:`Tasks.drain` waits until every task enqueued here has finished.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from redis import Redis

from django_giosg.testing import GiosgSimulator

from .. import processes, servers

DONE = {"SUCCESSFUL", "FAILED"}


def _enqueued_signals() -> list[Any]:
    """``task_enqueued`` of the backport and, on Django ≥ 6.0, of ``django.tasks``: the RQ
    backend sends the backport's, the database backend the one its Django has."""
    from django_tasks.signals import task_enqueued

    found = [task_enqueued]
    try:
        from django.tasks.signals import task_enqueued as django_task_enqueued
    except ImportError:
        pass
    else:
        found.append(django_task_enqueued)
    return found


@dataclass
class Tasks:
    """The tasks this test process enqueued, and a wait for them."""

    backend: str
    results: list[Any] = field(default_factory=list)

    def record(self, sender: Any, task_result: Any, **kwargs: Any) -> None:
        self.results.append(task_result)

    def drain(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every task enqueued so far has finished on a worker; their return values.
        Fails if one raised (the tasks catch everything: that is a bug) or the wait is over."""
        deadline = time.monotonic() + timeout
        pending = list(self.results)
        while pending:
            for result in pending:
                result.refresh()
            pending = [result for result in pending if str(result.status) not in DONE]
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"{len(pending)} task(s) still not run after {timeout} s")
            time.sleep(0.05)
        failed = [result for result in self.results if str(result.status) != "SUCCESSFUL"]
        assert not failed, [(result.task.name, result.errors) for result in failed]
        returned = [result.return_value for result in self.results]
        self.results.clear()
        return returned


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.Redis]:
    with ExitStack() as stack:
        try:
            server = stack.enter_context(servers.redis())
        except servers.Unavailable as err:
            servers.unavailable("Redis", str(err))
        yield server


def _database_workers(stack: ExitStack, request: pytest.FixtureRequest) -> dict[str, Any]:
    tasks = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    command = processes.django_command(*servers.DB_WORKER)
    folder: Path = request.getfixturevalue("tmp_path")
    for number in range(2):  # two workers: each task is claimed by one
        log = folder / f"db_worker{number}.log"
        stack.enter_context(processes.running(command, log, TASKS=tasks))
    return tasks


def _rq_worker(stack: ExitStack, request: pytest.FixtureRequest) -> dict[str, Any]:
    redis: servers.Redis = request.getfixturevalue("redis_server")
    empty = Redis.from_url(redis.url)  # no job or registry of another test's: an empty Redis
    empty.flushdb()
    stack.callback(empty.close)
    stack.callback(empty.flushdb)
    queues = {"default": {"URL": redis.url}}
    tasks = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    stack.enter_context(override_settings(RQ_QUEUES=queues))
    command = processes.django_command(*servers.RQ_WORKER)
    stack.enter_context(
        processes.running(
            command,
            request.getfixturevalue("tmp_path") / "rqworker.log",
            TASKS=tasks,
            RQ_QUEUES=queues,
            INSTALLED_APPS=[*settings.INSTALLED_APPS, "django_rq"],
        )
    )
    return tasks


@pytest.fixture(params=["database", "rq"])
def worker(
    request: pytest.FixtureRequest, giosg: GiosgSimulator, transactional_db: None
) -> Iterator[Tasks]:
    """Workers of one backend for this test, on its settings (``giosg`` set up first)."""
    recorder = Tasks(request.param)
    start = _database_workers if request.param == "database" else _rq_worker
    with ExitStack() as stack:
        tasks = start(stack, request)
        stack.enter_context(override_settings(TASKS=tasks))
        for signal in _enqueued_signals():
            signal.connect(recorder.record)
            stack.callback(signal.disconnect, recorder.record)
        yield recorder
