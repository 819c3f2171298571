"""The tests' own servers (:mod:`tests.servers`): what a machine without them gets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from . import servers


def test_a_missing_server_is_skipped_and_named_in_the_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    summary = tmp_path / "skipped"
    monkeypatch.delenv(servers.REQUIRE, raising=False)
    monkeypatch.setenv("DJANGO_GIOSG_SKIPPED", str(summary))
    with pytest.raises(pytest.skip.Exception, match="redis-server is not installed"):
        servers.unavailable("Redis", "redis-server is not installed")
    assert summary.read_text() == "Redis tests: redis-server is not installed\n"


def test_where_servers_are_required_a_missing_one_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(servers.REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="the Redis tests must run here, but nope"):
        servers.unavailable("Redis", "nope")


def test_without_postgresql_or_redis_installed_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    monkeypatch.setattr("shutil.which", lambda program: None)
    with pytest.raises(servers.Unavailable, match=r"apt-get install postgresql"):
        servers.postgres_bin()
    with pytest.raises(servers.Unavailable, match=r"apt-get install redis-server"):
        servers.redis().__enter__()


def test_the_newest_postgresql_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    found = [f"/usr/lib/postgresql/{major}/bin/initdb" for major in ("9", "17", "15")]
    monkeypatch.setattr("glob.glob", lambda pattern: found)
    assert servers.postgres_bin() == Path("/usr/lib/postgresql/17/bin")


def test_as_root_postgresql_runs_as_its_own_user(monkeypatch: pytest.MonkeyPatch) -> None:
    users = {"postgres": SimpleNamespace(pw_uid=107)}
    monkeypatch.setattr("pwd.getpwnam", lambda name: users[name])
    monkeypatch.setattr("shutil.which", lambda program: f"/usr/sbin/{program}")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert servers._as_owner() == (["/usr/sbin/runuser", "-u", "postgres", "--"], 107)
    del users["postgres"]
    with pytest.raises(servers.Unavailable, match="needs the 'postgres' user"):
        servers._as_owner()
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert servers._as_owner() == ([], None)  # not root: PostgreSQL runs as this user
