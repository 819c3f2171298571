"""The pytest plugin, as a host project meets it: installed by the entry point, in its own run."""

from __future__ import annotations

import pytest

INNER_SETTINGS = """
SECRET_KEY = "inner"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_giosg"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
GIOSG = {
    "API_TOKEN": "the-project-token",
    "ORGANIZATION_ID": "11111111-2222-4333-8444-555555555555",
    "ROOM_IDS": ["aaaaaaaa-2222-4333-8444-555555555555", "bbbbbbbb-2222-4333-8444-555555555555"],
    "API_BASE_URL": "https://service.giosg.com",
    "ENABLED": False,
    "MAX_RETRIES": 2,
}
"""

INNER_TESTS = """
from django.conf import settings
from django_giosg.client import get_client
from django_giosg.conf import get_settings

def test_giosg_points_at_the_simulator(giosg_simulator):
    s = get_settings()
    assert s.api_base_url == giosg_simulator.base_url
    assert s.loader_url == giosg_simulator.loader_url
    assert s.api_token == giosg_simulator.api_token
    assert s.enabled is True
    assert s.max_retries == 2  # the project's other settings are kept
    # the project's organization and rooms exist in the simulator
    assert s.organization_id == giosg_simulator.organization_id
    assert s.organization_id == settings.GIOSG["ORGANIZATION_ID"]
    assert list(s.room_ids) == giosg_simulator.room_ids == settings.GIOSG["ROOM_IDS"]
    assert get_client().check_credentials()["organization_id"] == s.organization_id
    giosg_simulator.seed_visitor("v1")
    giosg_simulator.add_fault(status=503)
    giosg_simulator.set_switches(end_ended_chat="locked")
    giosg_simulator.page_size = 1

def test_using_the_session_simulator_directly(giosg_simulator_session):
    giosg_simulator_session.add_fault(status=500)  # and leaves it there

def test_each_test_gets_it_reset(giosg_simulator):
    assert giosg_simulator.state("v1")["rooms"] == {}
    assert giosg_simulator.faults.faults == []
    assert giosg_simulator.world.switches.end_ended_chat == "noop"
    assert giosg_simulator.page_size == 50
    assert giosg_simulator.requests() == 0

def test_settings_are_restored_after_the_test():
    assert get_settings().api_base_url == "https://service.giosg.com"
    assert get_settings().enabled is False
"""


@pytest.mark.slow
def test_the_fixture_in_a_host_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(inner_settings=INNER_SETTINGS, test_inner=INNER_TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    # --ds: the outer run's DJANGO_SETTINGS_MODULE is in the environment
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ds=inner_settings")
    result.assert_outcomes(passed=4)
