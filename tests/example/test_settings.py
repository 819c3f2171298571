"""The example's settings module read afresh under a given environment: offline by default,
the real giosg with a token, and every variable it reads documented in .env.example."""

from __future__ import annotations

import logging
import re
import runpy
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from .conftest import ROOT

SETTINGS = ROOT / "example_project" / "settings.py"
ENV_EXAMPLE = ROOT / "example_project" / ".env.example"


def read_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in read_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def read_variables() -> set[str]:
    """The variables settings.py reads: env.<type>("NAME", …) and env("NAME", …)."""
    return set(re.findall(r"""env(?:\.\w+)?\(\s*"([A-Z_]+)\"""", SETTINGS.read_text()))


def test_offline_by_default_against_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    example = read_settings(monkeypatch)
    sim = "http://127.0.0.1:8765"
    assert example["GIOSG_SIMULATOR_URL"] == sim
    organization = example["DEMO_ORGANIZATION_ID"]
    assert example["GIOSG"] == {
        "API_TOKEN": "offline-demo-token",
        "ORGANIZATION_ID": organization,
        "ROOM_IDS": example["DEMO_ROOM_IDS"],
        "API_BASE_URL": sim,
        "LOADER_URL": f"{sim}/live2/{organization}",  # no visitor id pinned
    }
    assert example["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"


def test_scripts_demo_points_it_at_its_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    example = read_settings(monkeypatch, GIOSG_SIMULATOR_URL="http://127.0.0.1:41234/")
    assert example["GIOSG"]["API_BASE_URL"] == "http://127.0.0.1:41234"
    assert example["GIOSG"]["LOADER_URL"].startswith("http://127.0.0.1:41234/live2/")


def test_a_token_means_the_real_giosg(monkeypatch: pytest.MonkeyPatch) -> None:
    example = read_settings(
        monkeypatch,
        GIOSG_API_TOKEN="tok",
        GIOSG_ORGANIZATION_ID="7f9e9580-095b-42c7-838c-c04e667b26f7",
        GIOSG_ROOM_IDS="9926bdfa-56e0-11e5-b98c-6c4008c08dfe,0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe",
        DATABASE_URL="postgres://demo:pw@db.example:5432/example",
    )
    assert example["GIOSG_SIMULATOR_URL"] is None
    assert example["GIOSG"] == {
        "API_TOKEN": "tok",
        "ORGANIZATION_ID": "7f9e9580-095b-42c7-838c-c04e667b26f7",
        "ROOM_IDS": [
            "9926bdfa-56e0-11e5-b98c-6c4008c08dfe",
            "0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe",
        ],
    }
    database = example["DATABASES"]["default"]
    assert (database["NAME"], database["HOST"], database["PORT"]) == (
        "example",
        "db.example",
        5432,
    )


def test_a_token_without_the_organization_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ImproperlyConfigured, match="GIOSG_ORGANIZATION_ID"):
        read_settings(monkeypatch, GIOSG_API_TOKEN="tok")


def test_the_request_log_leaves_out_the_panels_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    keep = read_settings(monkeypatch)["_not_a_panel_poll"]

    def line(path: str) -> logging.LogRecord:
        args = (f"GET {path} HTTP/1.1", "200", "91")
        return logging.LogRecord("django.server", logging.INFO, "", 0, '"%s" %s %s', args, None)

    assert keep(line("/accounts/login/")) is True
    assert keep(line("/giosg-state/")) is False


def test_every_variable_is_documented_in_the_env_example() -> None:
    documented = set(re.findall(r"^# ([A-Z_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    read = read_variables()
    assert "GIOSG_API_TOKEN" in read
    assert read == documented
