"""The example site's own settings, against the simulator, through Django's test client:
capture, login, the variables in every configured room, logout, nothing left."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client

from django_giosg.testing import GiosgSimulator
from example_project import settings as example

pytestmark = pytest.mark.django_db(transaction=True)  # the login and logout work runs on commit

VISITOR = "0c8f2d6e4b1a49f3a5e7d9c1b3f5a7e9"


@pytest.fixture
def alice(django_user_model: Any) -> AbstractUser:
    user: AbstractUser = django_user_model.objects.create_user(
        "alice", password="demo", first_name="Alice", last_name="Example"
    )
    return user


@pytest.fixture
def sim(giosg_simulator: GiosgSimulator, settings: Any) -> GiosgSimulator:
    """The simulator, adopted by the example's panel view too."""
    settings.GIOSG_SIMULATOR_URL = giosg_simulator.base_url
    return giosg_simulator


def panel(client: Client) -> dict[str, Any]:
    answer = client.get("/giosg-state/")
    assert answer.status_code == 200
    data: dict[str, Any] = answer.json()
    return data


def test_the_whole_lifecycle(client: Client, alice: AbstractUser, sim: GiosgSimulator) -> None:
    rooms = example.DEMO_ROOM_IDS
    assert sim.room_ids == rooms  # the simulator took the example's organization and rooms
    sim.world.visitor_says(VISITOR, "Hello")  # the chat box: an open chat in the page's room

    home = client.get("/")
    assert f'src="{sim.loader_url}"' in home.text  # the three tags, the logout one silent
    assert 'data-endpoint="/giosg/visitor/"' in home.text
    assert "logout.js" not in home.text
    assert client.post("/giosg/visitor/", {"visitor_id": VISITOR}).status_code == 204
    assert panel(client)["visitor_id"] == VISITOR

    login = client.post("/accounts/login/", {"username": "alice", "password": "demo"})
    assert login.status_code == 302
    expected = {"username": "Alice Example", "user_id": str(alice.pk)}
    assert sim.variables(VISITOR) == dict.fromkeys(rooms, expected)
    assert len(sim.open_chats(VISITOR)) == 1
    shown = panel(client)
    assert shown["user"] == "alice"
    assert {room["id"]: room["variables"] for room in shown["rooms"]} == dict.fromkeys(
        rooms, expected
    )
    assert [chat["messages"] for room in shown["rooms"] for chat in room["chats"]] == [["Hello"]]

    logout = client.post("/accounts/logout/")
    assert logout.status_code == 302
    assert sim.open_chats(VISITOR) == []
    assert sim.variables(VISITOR) == {}
    assert "logout.js" in client.get("/").text  # the browser closes the chat too
    assert client.post("/giosg/visitor/", {"visitor_id": VISITOR}).status_code == 204
    shown = panel(client)
    assert shown["user"] is None
    assert all(room["variables"] == {} for room in shown["rooms"])
    assert [chat["is_ended"] for room in shown["rooms"] for chat in room["chats"]] == [True]


def test_the_panel_before_a_capture_and_with_the_simulator_gone(
    client: Client, sim: GiosgSimulator
) -> None:
    assert panel(client) == {"user": None, "visitor_id": None, "simulator": True, "rooms": []}
    client.post("/giosg/visitor/", {"visitor_id": VISITOR})
    assert panel(client)["rooms"] == []  # giosg has not seen this visitor
    sim.down()
    assert panel(client)["error"] == (f"The giosg simulator at {sim.base_url} does not answer.")


def test_the_panel_against_the_real_giosg_shows_nothing(client: Client, settings: Any) -> None:
    settings.GIOSG_SIMULATOR_URL = None
    client.post("/giosg/visitor/", {"visitor_id": VISITOR})
    assert panel(client) == {
        "user": None,
        "visitor_id": VISITOR,
        "simulator": False,
        "rooms": [],
    }


def test_the_admin_lists_the_links(client: Client, sim: GiosgSimulator) -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("alice", password="demo")
    client.post("/giosg/visitor/", {"visitor_id": VISITOR})
    client.post("/accounts/login/", {"username": "alice", "password": "demo"})
    page = client.get("/admin/django_giosg/visitorlink/")
    assert page.status_code == 200
    assert VISITOR in page.text
    assert "attached" in page.text.lower()
