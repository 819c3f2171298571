"""giosg_ping: the token and the room list, against the simulator; clean failures."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_giosg.testing import GiosgSimulator

from ..conftest import TOKEN


def ping() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("giosg_ping", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_lists_the_rooms_after_a_successful_call(giosg_simulator: GiosgSimulator) -> None:
    out, err = ping()
    assert f"The token works for organization {giosg_simulator.organization_id}" in out
    for room in giosg_simulator.room_ids:
        assert f"{room}  owned   Room 1 (in ROOM_IDS)" in out
    for room in giosg_simulator.shared_room_ids:
        assert f"{room}  shared" in out
    assert "2 room(s)." in out
    assert err == ""
    assert giosg_simulator.requests("users_me") == 1


def test_configured_rooms_giosg_does_not_list_are_an_error(
    giosg_simulator: GiosgSimulator, settings: Any
) -> None:
    missing = "aaaaaaaa-56e1-11e5-9c5e-6c4008c08dfe"
    settings.GIOSG = {**settings.GIOSG, "ROOM_IDS": [*giosg_simulator.room_ids, missing]}
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("giosg_ping", stdout=out)
    assert str(raised.value) == (
        f"GIOSG['ROOM_IDS'] names 1 room(s) giosg does not list for this organization: "
        f"{missing}. A deleted room, or another organization's?"
    )
    assert "2 room(s)." in out.getvalue()  # the list comes first


def test_a_wrong_token_is_a_command_error(giosg_simulator: GiosgSimulator, settings: Any) -> None:
    settings.GIOSG = {**settings.GIOSG, "API_TOKEN": TOKEN}
    with pytest.raises(CommandError) as raised:
        ping()
    message = str(raised.value)
    assert message.startswith("giosg refused GIOSG['API_TOKEN'] (")
    assert "HTTP 401" in message
    assert "its user was deleted" in message
    assert "Access tokens" in message
    assert TOKEN not in message


def test_another_organization_is_named(giosg_simulator: GiosgSimulator, settings: Any) -> None:
    other = "0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe"
    settings.GIOSG = {**settings.GIOSG, "ORGANIZATION_ID": other}
    with pytest.raises(CommandError) as raised:
        ping()
    assert str(raised.value).endswith(
        f"the token belongs to organization {giosg_simulator.organization_id}, "
        f"but GIOSG['ORGANIZATION_ID'] is {other}."
    )
    assert "HTTP 403" in str(raised.value)


def test_a_refused_room_list_names_the_likely_causes(giosg_simulator: GiosgSimulator) -> None:
    giosg_simulator.add_fault("list_rooms", status=403)
    with pytest.raises(CommandError) as raised:
        ping()
    message = str(raised.value)
    assert message.startswith("giosg accepted GIOSG['API_TOKEN'] but refused the room list of ")
    assert "HTTP 403" in message
    assert "lacks the settings permission" in message


def test_a_failing_room_list_names_the_base_url(giosg_simulator: GiosgSimulator) -> None:
    giosg_simulator.add_fault("list_rooms", status=503)
    with pytest.raises(CommandError, match=f"API_BASE_URL'\\] = {giosg_simulator.base_url}"):
        ping()


def test_giosg_down_is_a_command_error(giosg_simulator: GiosgSimulator) -> None:
    giosg_simulator.down()
    with pytest.raises(CommandError, match="connection failed"):
        ping()


def test_a_broken_configuration_is_a_command_error(settings: Any) -> None:
    settings.GIOSG = {"ENABLED": False}  # no token to ping with
    with pytest.raises(CommandError, match="API_TOKEN"):
        ping()


def test_exit_status_one_and_no_traceback() -> None:
    env = {**os.environ, "DJANGO_GIOSG_TEST_API_BASE_URL": "http://127.0.0.1:9"}  # closed port
    done = subprocess.run(
        [sys.executable, "-m", "django", "giosg_ping", "--settings", "tests.settings"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "CommandError: giosg connection failed" in done.stderr
    assert "Traceback" not in done.stderr
