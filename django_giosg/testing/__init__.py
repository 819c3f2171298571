"""A giosg simulator for tests, the example project and host projects' own tests.

    from django_giosg.testing import GiosgSimulator

    with GiosgSimulator(page_size=2) as giosg:
        chats = giosg.seed_visitor("08119566026a4e1194a7a3244c90f925", open_chats=2)
        giosg.add_fault("end_chat", status=503, times=1)
        ...  # point GIOSG at giosg.settings() and log in and out

With pytest, the ``giosg_simulator`` fixture (this package's pytest plugin) does the wiring.
"""

from .faults import ENDPOINTS, Fault
from .server import Call, GiosgSimulator
from .world import DEFAULT_API_TOKEN, DEFAULT_ORGANIZATION_ID, OTHER_ORGANIZATION_ID, Switches

__all__ = [
    "DEFAULT_API_TOKEN",
    "DEFAULT_ORGANIZATION_ID",
    "ENDPOINTS",
    "OTHER_ORGANIZATION_ID",
    "Call",
    "Fault",
    "GiosgSimulator",
    "Switches",
]
