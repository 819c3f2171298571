"""No binding outlives its session: a logout racing a capture or a login of the same session.

The security review's finding 2: the logout looked only at the visitor id in the session it had
loaded, while the capture or login committed its link and made its giosg calls, and then failed to
save the session the logout had deleted. The link kept the session's two-week expiry.

First each half of the fix on its own, with the race forced into its worst order; then the races
for real, in threads, counted: how many really overlapped, and how many left anything behind once
one sweep had run.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections
from django.test import Client

from django_giosg import device, signals, tasks
from django_giosg.models import LIVE_STATES, VisitorLink
from django_giosg.testing import GiosgSimulator

from ..browsing import PASSWORD, VISITORS, Browser, make_user, sweep

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    settings.GIOSG = {
        **settings.GIOSG,
        "ROOM_IDS": giosg_simulator.room_ids[:1],
        "INLINE_BUDGET": 2.0,
    }
    return giosg_simulator


def left_behind(giosg: GiosgSimulator, visitor_ids: list[str]) -> dict[str, Any]:
    """What giosg and the links still hold of these visitors: nothing, when all is well."""
    held = {
        visitor_id: (giosg.variables(visitor_id), giosg.open_chats(visitor_id))
        for visitor_id in visitor_ids
    }
    live = list(VisitorLink.objects.filter(visitor_id__in=visitor_ids, state__in=LIVE_STATES))
    return {
        **{key: value for key, value in held.items() if value != ({}, [])},
        **({"live links": live} if live else {}),
    }


# -- each half of the fix, with the race in its worst order ---------------------------------------


def test_a_capture_that_binds_after_the_logout_released_is_released_after_the_view(
    giosg: GiosgSimulator,
) -> None:
    """The capture commits its link between the logout's release and its flush: the logout
    releases the user's links of this browser once more, after the view."""
    ann = make_user("ann")
    browser = Browser()
    browser.capture(VISITORS[0])
    browser.login(ann)

    def capture_commits_meanwhile(request: Any = None, **kwargs: Any) -> None:
        browser_device = device.known_device(request)
        assert browser_device is not None
        tasks.bind_visitor(ann, VISITORS[1], device=browser_device)

    user_logged_out.connect(capture_commits_meanwhile, dispatch_uid="race")
    try:
        browser.logout()
    finally:
        user_logged_out.disconnect(dispatch_uid="race")
    assert left_behind(giosg, VISITORS[:2]) == {}


def test_a_capture_whose_session_a_logout_deleted_meanwhile_is_released(
    giosg: GiosgSimulator,
) -> None:
    """The logout flushes the session while the capture is attaching: the capture reads its
    session again after the view, finds it gone, and releases what it bound."""
    ann = make_user("ann")
    browser = Browser()
    browser.capture(VISITORS[0])
    browser.login(ann)

    def logout_deletes_the_session(**kwargs: Any) -> None:
        SessionStore(browser.http.cookies[django_settings.SESSION_COOKIE_NAME].value).delete()

    signals.visitor_attached.connect(logout_deletes_the_session, dispatch_uid="race")
    try:
        response = browser.http.post(
            "/giosg/visitor/", {"visitor_id": VISITORS[1]}, content_type="application/json"
        )
    finally:
        signals.visitor_attached.disconnect(dispatch_uid="race")
    assert response.status_code == 400  # Django: the session was deleted meanwhile
    assert left_behind(giosg, VISITORS[:2]) == {}


def test_a_login_whose_session_a_logout_deleted_meanwhile_is_released(
    giosg: GiosgSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same user logs in again while another tab logs out: the logout deletes the session
    after the login loaded it, so the login cannot save it (Django answers 400), and the
    browser ends logged out. The login reads its session again after the view."""
    ann = make_user("ann")
    browser = Browser()
    browser.capture(VISITORS[0])
    browser.login(ann)
    tab = twin(browser)
    real_authenticate = ModelBackend.authenticate

    def logout_meanwhile(self: ModelBackend, *args: Any, **kwargs: Any) -> Any:
        def run() -> None:
            try:
                assert _logout_step(tab)().status_code == 302
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
        return real_authenticate(self, *args, **kwargs)

    monkeypatch.setattr(ModelBackend, "authenticate", logout_meanwhile)
    browser.http.post("/accounts/login/", {"username": "ann", "password": PASSWORD})
    monkeypatch.undo()
    assert browser.http.get("/whoami/").json() == {"user": None}
    sweep()
    assert left_behind(giosg, VISITORS[:1]) == {}


@pytest.mark.parametrize("other", ["capture", "login"])
def test_a_capture_or_login_that_completes_inside_a_logout_is_released_after_it(
    giosg: GiosgSimulator, other: str
) -> None:
    """Another tab's request runs from start to end while the logout is in its view: a first
    capture of a browser that logged in before giosg had loaded, or another user's login on
    a kiosk. The logout's answer reaches the browser last, so it ends logged out, and every
    live link of the browser is released after the logout's view."""
    ann, bob = make_user("ann"), make_user("bob")
    browser = Browser()
    if other == "capture":
        browser.login(ann)  # no visitor id yet
    else:
        browser.capture(VISITORS[0])
        browser.login(ann)
    tab = twin(browser)
    answers: list[Any] = []

    def meanwhile(**kwargs: Any) -> None:
        def run() -> None:
            try:
                if other == "capture":
                    answers.append(_capture_step(tab, VISITORS[1])())
                else:
                    answers.append(_login_step(tab, bob)())
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)

    user_logged_out.connect(meanwhile, dispatch_uid="race")
    try:
        logout = browser.logout()
    finally:
        user_logged_out.disconnect(dispatch_uid="race")
    assert answers[0].status_code in (204, 302)
    assert browser.http.get("/whoami/").json() == {"user": None}
    assert logout.status_code == 302
    sweep()
    assert left_behind(giosg, VISITORS[:2]) == {}


# -- the races for real ---------------------------------------------------------------------------


@dataclass
class Finished:
    """One request of a race: when it ran, and the cookies it set."""

    started: float
    ended: float
    cookies: SimpleCookie
    status: int


def run_together(steps: list[Any]) -> list[Finished]:
    """Run ``steps`` (functions returning a response) in threads, released at once."""
    start = threading.Barrier(len(steps))
    done: list[Finished | BaseException] = [RuntimeError("did not finish")] * len(steps)

    def run(index: int) -> None:
        try:
            start.wait()
            began = time.monotonic()
            response = steps[index]()
            done[index] = Finished(began, time.monotonic(), response.cookies, response.status_code)
        except BaseException as err:  # reported below, in the test's thread
            done[index] = err
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(steps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for result in done:
        if isinstance(result, BaseException):
            raise result
    return [result for result in done if isinstance(result, Finished)]


def twin(browser: Browser) -> Client:
    """A second tab of ``browser``: the same cookies."""
    tab = Client()
    for name, morsel in browser.http.cookies.items():
        tab.cookies[name] = morsel.value
    return tab


def final_user(browser: Browser, finished: list[Finished]) -> str | None:
    """Who the browser is logged in as once every response reached it, in the order they
    ended (the cookie jar keeps the last value of each cookie)."""
    jar = Client()
    for name, morsel in browser.http.cookies.items():
        jar.cookies[name] = morsel.value
    for result in sorted(finished, key=lambda result: result.ended):
        for name, morsel in result.cookies.items():
            if morsel["max-age"] == 0:
                jar.cookies.pop(name, None)
            else:
                jar.cookies[name] = morsel.value
    user: str | None = json.loads(jar.get("/whoami/").content)["user"]
    return user


@pytest.mark.slow
@pytest.mark.parametrize(
    ("race", "rounds", "latency"),
    [("capture", 20, 0.0), ("login", 20, 0.0), ("capture", 5, 0.3), ("login", 5, 0.3)],
)
def test_logout_races_leave_nothing_after_one_sweep(
    giosg: GiosgSimulator,
    race: str,
    rounds: int,
    latency: float,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On the code before the fix, this run leaked 26 of 40 races without latency (capture 20
    of 20, login 6 of 20) and 10 of 10 with 0.3 s on giosg (the review had measured 14 of 40
    and 5 of 5)."""
    if latency:
        giosg.add_fault("*", latency=latency)
    ann = make_user("ann")
    overlapped = leaks = logged_in = bound = 0
    for round_ in range(rounds):
        first, second = (f"{round_:02x}" * 16, f"{round_ + 128:02x}" * 16)
        browser = Browser()
        browser.capture(first)
        browser.login(ann)
        logout_tab, other_tab = twin(browser), twin(browser)
        if race == "capture":
            other = _capture_step(other_tab, second)
        else:
            other = _login_step(other_tab, ann)
        finished = run_together([_logout_step(logout_tab), other])
        logout, other_request = finished
        if logout.started < other_request.ended and other_request.started < logout.ended:
            overlapped += 1
        sweep()
        if final_user(browser, finished) == ann.get_username():
            # the login's response reached the browser last: the user is logged in, and may
            # keep the binding (or may have lost it to the logout: then the next login binds)
            logged_in += 1
            bound += bool(left_behind(giosg, [first]))
            VisitorLink.objects.all().delete()
            continue
        if left_behind(giosg, [first, second]):
            leaks += 1
        VisitorLink.objects.all().delete()
    with capsys.disabled():
        print(
            f"\n{race} vs logout, {latency:.1f} s latency: {rounds} races, {overlapped} "
            f"overlapped, {logged_in} ended logged in ({bound} of them still bound), "
            f"{leaks} leaked after one sweep"
        )
    assert overlapped > 0
    assert leaks == 0


def _logout_step(tab: Client) -> Any:
    return lambda: tab.post("/accounts/logout/")


def _capture_step(tab: Client, visitor_id: str) -> Any:
    return lambda: tab.post(
        "/giosg/visitor/", {"visitor_id": visitor_id}, content_type="application/json"
    )


def _login_step(tab: Client, user: AbstractUser) -> Any:
    return lambda: tab.post(
        "/accounts/login/", {"username": user.get_username(), "password": PASSWORD}
    )
