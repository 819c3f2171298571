from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from django_giosg.testing import GiosgSimulator

VISITOR = "08119566026a4e1194a7a3244c90f925"
OTHER_VISITOR = "8a60b202474547dbb8ce19737e4c166f"


class API:
    """Plain ``requests`` calls to the simulator with its token; paths are relative to the
    organization (``rooms``) unless they start with a slash."""

    def __init__(self, simulator: GiosgSimulator) -> None:
        self.simulator = simulator
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {simulator.api_token}"

    def url(self, path: str) -> str:
        if path.startswith("/"):
            return f"{self.simulator.base_url}{path}"
        return f"{self.simulator.base_url}/api/v5/orgs/{self.simulator.organization_id}/{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def variables(self, room: str, visitor: str = VISITOR) -> str:
        return f"rooms/{room}/visitors/{visitor}/variables"

    def chats(self, room: str, visitor: str = VISITOR) -> str:
        return f"rooms/{room}/visitors/{visitor}/chats"


@pytest.fixture
def sim(giosg_simulator: GiosgSimulator) -> GiosgSimulator:
    """The plugin's simulator: one own room (the test settings' ROOM_IDS) and one shared."""
    return giosg_simulator


@pytest.fixture
def api(sim: GiosgSimulator) -> Iterator[API]:
    client = API(sim)
    yield client
    client.session.close()


@pytest.fixture
def room(sim: GiosgSimulator) -> str:
    return sim.room_ids[0]


@pytest.fixture
def shared_room(sim: GiosgSimulator) -> str:
    return sim.shared_room_ids[0]
