"""Every session end is noticed, on every session backend Django ships.

Against the simulator over real HTTP, through Django's test client, the real auth views, the
middleware and ``giosg_sweep``. The sweep's "now" is injected (``link_clock``); the sessions
themselves live in real time, and one test waits for a real session to end.
"""

from __future__ import annotations

import time
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_giosg import signals
from django_giosg.conf import get_settings
from django_giosg.models import State, VisitorLink, write_db
from django_giosg.session import BINDING_SESSION_KEY
from django_giosg.testing import GiosgSimulator

from ..browsing import OTHER_VISITOR, PASSWORD, VISITOR, Browser, make_user, only_link, sweep
from ..conftest import LinkClock

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ENGINES = {
    "db": "django.contrib.sessions.backends.db",
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "cache": "django.contrib.sessions.backends.cache",
    "file": "django.contrib.sessions.backends.file",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}


@pytest.fixture(params=list(ENGINES))
def backend(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> str:
    name: str = request.param
    settings.SESSION_ENGINE = ENGINES[name]
    settings.SESSION_FILE_PATH = str(tmp_path)
    return name


@pytest.fixture
def giosg(
    giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None, backend: str
) -> GiosgSimulator:
    """The simulator; the visitor has an open chat in the room where the variables are set."""
    sim = giosg_simulator
    settings.GIOSG = {**settings.GIOSG, "ROOM_IDS": sim.room_ids[:1]}
    sim.seed_visitor(VISITOR, rooms=sim.room_ids[:1], open_chats=1)
    return sim


def bound_browser(username: str = "ann") -> Browser:
    browser = Browser()
    browser.capture()
    browser.login(make_user(username))
    assert only_link().state == State.ATTACHED
    return browser


def whoami(browser: Browser) -> str | None:
    user: str | None = browser.http.get("/whoami/").json()["user"]
    return user


def assert_cleaned(giosg: GiosgSimulator) -> None:
    assert only_link().state == State.DETACHED
    assert giosg.open_chats(VISITOR) == []
    assert giosg.variables(VISITOR) == {}


def assert_untouched(giosg: GiosgSimulator) -> None:
    assert only_link().state == State.ATTACHED
    assert len(giosg.open_chats(VISITOR)) == 1
    assert giosg.variables(VISITOR) != {}


# -- expiry ---------------------------------------------------------------------------------------


def test_an_ended_session_is_swept_after_the_grace_and_not_before(
    giosg: GiosgSimulator, settings: Any, link_clock: LinkClock
) -> None:
    settings.SESSION_COOKIE_AGE = 2
    started = timezone.now()
    browser = bound_browser()
    expires_at = only_link().session_expires_at
    assert expires_at is not None
    assert started + timedelta(seconds=2) <= expires_at <= timezone.now() + timedelta(seconds=2)
    grace = timedelta(seconds=get_settings().expiry_grace)

    link_clock.set(expires_at + grace - timedelta(seconds=1))
    assert "0 expired" in sweep()
    assert_untouched(giosg)
    assert whoami(browser) == "ann"

    # The backend really ends the session by its recorded expiry (signed cookies count whole
    # seconds, hence the second more).
    time.sleep(max((expires_at - timezone.now()).total_seconds() + 1.05, 0))
    assert whoami(browser) is None

    link_clock.set(expires_at + grace)
    assert "1 expired and 0 due link(s): 1 done" in sweep()
    assert_cleaned(giosg)


def test_sliding_expiry_keeps_a_live_session_bound(
    giosg: GiosgSimulator, settings: Any, link_clock: LinkClock
) -> None:
    settings.SESSION_SAVE_EVERY_REQUEST = True
    settings.GIOSG = {**settings.GIOSG, "EXPIRY_REFRESH": 1, "EXPIRY_GRACE": 1}
    browser = bound_browser()
    first = only_link().session_expires_at
    assert first is not None
    assert whoami(browser) == "ann"  # saved again, but within EXPIRY_REFRESH: not written
    assert only_link().session_expires_at == first
    time.sleep(1.1)
    assert whoami(browser) == "ann"
    moved = only_link().session_expires_at
    assert moved is not None
    assert moved - first >= timedelta(seconds=1)

    link_clock.set(first + timedelta(seconds=1.5))  # past the first expiry + grace
    assert "0 expired" in sweep()
    assert_untouched(giosg)
    link_clock.set(moved + timedelta(seconds=1))
    assert "1 expired" in sweep()
    assert_cleaned(giosg)


def test_set_expiry_moves_the_recorded_expiry(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    browser = bound_browser()
    before = only_link().session_expires_at
    assert before is not None
    assert browser.http.get("/set-expiry/3600/").status_code == 200
    expires_at = only_link().session_expires_at
    assert expires_at is not None
    assert before - expires_at > timedelta(days=13)  # two weeks became an hour
    assert browser.http.session[BINDING_SESSION_KEY]["expires"] == expires_at.timestamp()
    link_clock.set(expires_at + timedelta(seconds=get_settings().expiry_grace))
    assert "1 expired" in sweep()
    assert_cleaned(giosg)


def test_a_request_that_moves_no_expiry_costs_no_query_on_the_links(giosg: GiosgSimulator) -> None:
    browser = bound_browser()
    with CaptureQueriesContext(connections[write_db(VisitorLink)]) as queries:
        assert whoami(browser) == "ann"
        assert browser.http.get("/data/").status_code == 200
    assert not [query for query in queries if "django_giosg" in query["sql"]]
    assert_untouched(giosg)


# -- sessions that lose their user ---------------------------------------------------------------


def test_a_password_change_elsewhere_is_noticed_on_the_next_request(
    giosg: GiosgSimulator,
) -> None:
    browser = bound_browser()
    ann = only_link().user
    assert ann is not None
    ann.set_password("changed-on-another-device")
    ann.save()
    assert browser.http.get("/data/").status_code == 200  # a page that never looks at the user
    assert_cleaned(giosg)
    assert whoami(browser) is None


def test_a_password_change_on_this_device_keeps_the_binding(giosg: GiosgSimulator) -> None:
    browser = bound_browser()
    requests = giosg.requests()
    new = "a-new-password-7731"
    response = browser.http.post(
        "/accounts/password-change/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response.status_code == 302  # Django's view calls update_session_auth_hash()
    assert whoami(browser) == "ann"
    assert giosg.requests() == requests
    assert_untouched(giosg)


def test_a_deactivated_user_is_noticed_and_bound_again_when_active(
    giosg: GiosgSimulator,
) -> None:
    browser = bound_browser()
    ann = only_link().user
    assert ann is not None
    ann.is_active = False
    ann.save()
    assert browser.http.get("/data/").status_code == 200
    assert_cleaned(giosg)
    requests = giosg.requests()
    assert whoami(browser) is None
    assert giosg.requests() == requests  # noticed once
    ann.is_active = True
    ann.save()
    assert whoami(browser) == "ann"  # Django lets the session in again: so do we
    states = list(VisitorLink.objects.order_by("pk").values_list("state", flat=True))
    assert states == [State.DETACHED, State.ATTACHED]
    assert giosg.variables(VISITOR) != {}


def test_another_users_login_moves_the_visitor_to_them(giosg: GiosgSimulator) -> None:
    browser = bound_browser("ann")
    bob = make_user("bob")
    browser.login(bob)
    links = {link.user.get_username(): link.state for link in VisitorLink.objects.all()}
    assert links == {"ann": State.DETACHED, "bob": State.ATTACHED}
    assert giosg.open_chats(VISITOR) == []  # ann's chat ended
    assert whoami(browser) == "bob"


def test_cycle_key_and_a_login_of_the_same_user_keep_the_binding(
    giosg: GiosgSimulator,
) -> None:
    browser = bound_browser()
    requests = giosg.requests()
    assert browser.http.get("/cycle-key/").status_code == 200
    assert whoami(browser) == "ann"
    ann = only_link().user
    assert ann is not None
    browser.login(ann)
    assert whoami(browser) == "ann"
    assert giosg.requests() == requests
    assert_untouched(giosg)


def test_a_capture_whose_session_a_logout_deletes_meanwhile_binds_nothing_for_long(
    giosg: GiosgSimulator, backend: str, settings: Any
) -> None:
    """The capture reads its session again after the view: on the backends that can be asked,
    a session deleted meanwhile (a logout in another request) releases what the capture bound.
    ``signed_cookies`` keeps the session in the browser: there the binding lasts until its
    recorded expiry, and the sweep detaches it then."""
    browser = bound_browser()
    key = browser.http.cookies[settings.SESSION_COOKIE_NAME].value
    store_class = import_module(settings.SESSION_ENGINE).SessionStore

    def logout_deletes_the_session(**kwargs: Any) -> None:
        store_class(key).delete()

    signals.visitor_attached.connect(logout_deletes_the_session, dispatch_uid="race")
    try:
        browser.http.post(
            "/giosg/visitor/", {"visitor_id": OTHER_VISITOR}, content_type="application/json"
        )
    finally:
        signals.visitor_attached.disconnect(dispatch_uid="race")
    other = VisitorLink.objects.get(visitor_id=OTHER_VISITOR)
    if backend == "signed_cookies":
        assert other.state == State.ATTACHED
        assert giosg.variables(OTHER_VISITOR) != {}
    else:
        assert other.state == State.DETACHED
        assert giosg.variables(OTHER_VISITOR) == {}
