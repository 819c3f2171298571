"""The pytest plugin (entry point ``pytest11``): the ``giosg_simulator`` fixture.

One simulator serves the whole test session; each test that asks for the fixture gets it reset,
with ``settings.GIOSG`` pointed at it for the duration of the test and the simulator reset
afterwards. Django is imported only when the fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import GiosgSimulator
from .world import DEFAULT_ORGANIZATION_ID

#: The keys of ``GIOSG`` that the fixture sets; the project's other keys are kept.
POINTED_KEYS = (
    "ENABLED",
    "API_TOKEN",
    "ORGANIZATION_ID",
    "ROOM_IDS",
    "API_BASE_URL",
    "LOADER_URL",
)


@pytest.fixture(scope="session")
def giosg_simulator_session() -> Iterator[GiosgSimulator]:
    """The session's simulator, with the project's organization and rooms when it has them."""
    from django.conf import settings

    configured = dict(getattr(settings, "GIOSG", {})) if settings.configured else {}
    rooms = configured.get("ROOM_IDS")
    with GiosgSimulator(
        organization_id=configured.get("ORGANIZATION_ID") or DEFAULT_ORGANIZATION_ID,
        room_ids=list(rooms) if rooms else None,
    ) as simulator:
        yield simulator


@pytest.fixture
def giosg_simulator(giosg_simulator_session: GiosgSimulator) -> Iterator[GiosgSimulator]:
    """A freshly reset giosg simulator, with ``settings.GIOSG`` pointed at it during the test."""
    from django.conf import settings
    from django.test import override_settings

    simulator = giosg_simulator_session
    simulator.reset()
    project = {k: v for k, v in getattr(settings, "GIOSG", {}).items() if k not in POINTED_KEYS}
    pointed = simulator.settings(ENABLED=True, LOADER_URL=simulator.loader_url)
    try:
        with override_settings(GIOSG={**project, **pointed}):
            yield simulator
    finally:
        simulator.reset()
