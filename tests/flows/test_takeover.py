"""Nobody else's chats: a binding belongs to the browser that made it, and its session.

The security review's finding 1, tried as the attacker did: against the simulator over real HTTP,
through Django's test client and the real auth views. A visitor id is no secret (a shared kiosk
shows it to every user), so knowing one must not end its live binding's chats, put another name
on them, or release its variables.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.http import HttpResponse
from django.test import override_settings

from django_giosg.conf import get_settings
from django_giosg.device import DEVICE_COOKIE
from django_giosg.models import State, VisitorLink, VisitorOrigin
from django_giosg.session import CAPTURES_SESSION_KEY, SESSION_KEY
from django_giosg.testing import GiosgSimulator

from ..browsing import (
    OTHER_VISITOR,
    VISITOR,
    Browser,
    expected,
    make_user,
    same_device,
    sweep,
)
from ..conftest import LinkClock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    sim = giosg_simulator
    sim.world.add_room()
    settings.GIOSG = {**settings.GIOSG, "ROOM_IDS": sim.room_ids[:2], "INLINE_BUDGET": 2.0}
    return sim


def victim_with_open_chats(giosg: GiosgSimulator, chats: int) -> Browser:
    """Ann, logged in on her own browser with the visitor ``VISITOR`` and open chats."""
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=chats)
    victim = Browser()
    victim.capture()
    victim.login(make_user("ann"))
    assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")
    return victim


def _user(username: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


def with_visitor_in_session(browser: Browser) -> None:
    """Put ``VISITOR`` in the browser's session directly, as no capture would."""
    store = browser.http.session
    store[SESSION_KEY] = VISITOR
    store.save()
    browser.http.cookies[django_settings.SESSION_COOKIE_NAME] = str(store.session_key)


def post_capture(browser: Browser, visitor_id: str) -> Any:
    return browser.http.post(
        "/giosg/visitor/", {"visitor_id": visitor_id}, content_type="application/json"
    )


def test_a_capture_of_another_browsers_visitor_is_refused_with_409(
    giosg: GiosgSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the attacker's capture superseded the victim's binding and ended her chats."""
    victim_with_open_chats(giosg, chats=3)
    attacker = Browser()
    attacker.login(make_user("mallory"))
    attacker.capture(OTHER_VISITOR)
    before = dict(attacker.http.session.items())
    calls = giosg.requests()

    with caplog.at_level(logging.INFO, "django_giosg"):
        response = post_capture(attacker, VISITOR)

    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"error": "this visitor id belongs to another browser"}
    assert giosg.requests() == calls  # nothing changed in giosg
    assert len(giosg.open_chats(VISITOR)) == 3
    assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")
    assert dict(attacker.http.session.items()) == before  # the session is unchanged
    assert django_settings.SESSION_COOKIE_NAME not in response.cookies  # and not saved again
    assert VISITOR not in caplog.text  # logs show visitor ids shortened
    states = dict(VisitorLink.objects.values_list("visitor_id", "state"))
    assert states == {VISITOR: State.ATTACHED, OTHER_VISITOR: State.ATTACHED}


def test_switching_back_and_forth_never_ends_the_victims_chats(giosg: GiosgSimulator) -> None:
    """Before: 20 of 20 rounds ended the victim's new chats, and never met the rate limit."""
    victim_with_open_chats(giosg, chats=1)
    attacker = Browser()
    attacker.login(make_user("mallory"))
    refused = 0
    for round_ in range(20):
        giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)  # a new chat
        refused += post_capture(attacker, VISITOR).status_code == 409
        attacker.capture(OTHER_VISITOR)
        assert len(giosg.open_chats(VISITOR)) == round_ + 2
    assert refused == 20
    assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")


def test_an_anonymous_visitor_cannot_be_bound_by_another_browser(giosg: GiosgSimulator) -> None:
    """The second read's finding: a visitor browsing anonymously has no binding to protect,
    but its id is still its browser's. Else an attacker binds it (her name on the victim's
    chats), ends its chats by logging out, and keeps the victim from binding it at login."""
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=2)
    victim = Browser()
    victim.capture()  # anonymous, chatting
    attacker = Browser()
    attacker.login(make_user("mallory"))
    assert post_capture(attacker, VISITOR).status_code == 409
    attacker.logout()
    assert len(giosg.open_chats(VISITOR)) == 2
    assert giosg.variables(VISITOR) == {}
    victim.login(make_user("ann"))
    assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")


def test_a_refused_anonymous_capture_keeps_the_session_and_gives_no_device(
    giosg: GiosgSimulator,
) -> None:
    """Two tabs of a new browser report its id at once, each with a session of its own: the
    first claims it (and gives the browser its device); the other's 409 must not give the
    browser another device, or the browser would lose its own id."""
    first_tab, second_tab = Browser(), Browser()
    second_tab.http.get("/")
    store = second_tab.http.session
    store["x"] = 1
    store.save()
    second_tab.http.cookies[django_settings.SESSION_COOKIE_NAME] = str(store.session_key)
    assert post_capture(first_tab, VISITOR).status_code == 204
    refused = post_capture(second_tab, VISITOR)  # sent before the first answer arrived
    assert refused.status_code == 409
    assert DEVICE_COOKIE not in refused.cookies
    assert django_settings.SESSION_COOKIE_NAME not in refused.cookies  # not saved again
    assert dict(second_tab.http.session.items()) == {"x": 1}
    first_tab.login(make_user("ann"))  # the browser, with the device it kept
    assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")


def test_a_kiosk_whose_device_cookie_was_lost_still_switches_users(giosg: GiosgSimulator) -> None:
    """The session noted the device; ``login()`` of another user flushes it before the
    receiver runs, so the device is taken from the session as it came in."""
    kiosk = Browser()
    kiosk.capture()
    kiosk.login(make_user("ann"))
    kiosk.http.cookies.pop(DEVICE_COOKIE)
    kiosk.login(make_user("bob"))
    assert giosg.variables(VISITOR) == expected(giosg, _user("bob"), "bob")
    assert VisitorLink.objects.get(user__username="bob").device == (
        VisitorLink.objects.get(user__username="ann").device
    )


def test_an_anonymous_logout_releases_nobody_elses_binding(giosg: GiosgSimulator) -> None:
    """Before: with the victim's id in an anonymous session, the logout view sent
    ``user_logged_out(user=None)`` and the app released every user's links of that id (the
    victim's chats 2 → 0, her variables deleted). The capture now refuses the id (409); the
    session here gets it as a session from before the upgrade could hold it."""
    victim_with_open_chats(giosg, chats=2)
    attacker = Browser()
    assert post_capture(attacker, VISITOR).status_code == 409  # anonymous: refused too
    with_visitor_in_session(attacker)
    response = attacker.http.post("/accounts/logout/")
    assert response.status_code == 302
    assert len(giosg.open_chats(VISITOR)) == 2
    assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")
    assert VisitorLink.objects.get().state == State.ATTACHED


def test_a_login_with_another_browsers_visitor_succeeds_and_binds_nothing(
    giosg: GiosgSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    victim_with_open_chats(giosg, chats=1)
    attacker = Browser()
    with_visitor_in_session(attacker)  # as a session from before the upgrade may hold it
    with caplog.at_level(logging.WARNING, "django_giosg"):
        attacker.login(make_user("mallory"))  # asserts the 302 of a successful login
    assert f"the login bound nothing: visitor {VISITOR[:6]}… belongs to" in caplog.text
    assert len(giosg.open_chats(VISITOR)) == 1
    assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")
    # The session forgets the id: no later request of it asks again.
    assert SESSION_KEY not in attacker.http.session
    calls = giosg.requests()
    attacker.http.get("/")
    assert giosg.requests() == calls
    assert post_capture(attacker, VISITOR).status_code == 409
    attacker.logout()  # and her logout releases nothing of the victim's
    assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")


def test_a_session_from_before_django_giosg_with_another_browsers_visitor_binds_nothing(
    giosg: GiosgSimulator,
) -> None:
    """The middleware binds a logged-in session whose visitor is not bound yet; not when the
    visitor is another browser's."""
    victim_with_open_chats(giosg, chats=1)
    attacker = Browser()
    attacker.login(make_user("mallory"))  # no visitor id yet: nothing bound
    with_visitor_in_session(attacker)
    attacker.http.get("/")
    assert SESSION_KEY not in attacker.http.session
    assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")
    assert len(giosg.open_chats(VISITOR)) == 1


def test_a_signed_device_cookie_that_is_no_token_is_no_device(giosg: GiosgSimulator) -> None:
    browser = Browser()
    signed = HttpResponse()
    signed.set_signed_cookie(DEVICE_COOKIE, "short+", salt="django_giosg.device")
    browser.http.cookies[DEVICE_COOKIE] = signed.cookies[DEVICE_COOKIE].value
    response = post_capture(browser, VISITOR)
    assert response.status_code == 204
    assert response.cookies[DEVICE_COOKIE].value.split(":")[0] != "short+"  # a new device
    assert VisitorOrigin.objects.get().device != ""


def test_a_live_binding_from_before_the_upgrade_is_kept_until_its_session_ends(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """A visitor bound before 0003 has no recorded browser: its live link's browser keeps it
    while that session lives; then another browser may claim it."""
    victim_with_open_chats(giosg, chats=1)
    VisitorOrigin.objects.all().delete()
    VisitorLink.objects.update(device="")
    other = Browser()
    other.login(make_user("bob"))
    assert post_capture(other, VISITOR).status_code == 409
    assert not VisitorOrigin.objects.exists()  # a refused claim records nothing
    link_clock.advance(14 * 24 * 3600 + get_settings().expiry_grace + 1)
    assert post_capture(other, VISITOR).status_code == 204
    assert giosg.variables(VISITOR) == expected(giosg, _user("bob"), "bob")


def test_the_browser_of_an_expired_binding_that_another_browser_took_over_closes_too(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    victim = victim_with_open_chats(giosg, chats=1)
    VisitorOrigin.objects.all().delete()  # (or lapsed)
    victim.http.cookies.pop(django_settings.SESSION_COOKIE_NAME)  # her session expired
    link_clock.advance(14 * 24 * 3600 + get_settings().expiry_grace + 1)
    other = Browser()
    other.login(make_user("bob"))
    assert post_capture(other, VISITOR).status_code == 204  # takes the expired binding over
    assert giosg.variables(VISITOR) == expected(giosg, _user("bob"), "bob")
    assert 'data-mode="close"' in victim.http.get("/").content.decode()
    assert "logout.js" not in victim.http.get("/").content.decode()
    assert "logout.js" not in other.http.get("/").content.decode()  # not the new user's


def test_a_switch_in_the_browser_of_a_link_made_before_0003_still_works(
    giosg: GiosgSimulator,
) -> None:
    """Links made before the device was recorded count as another browser's, but the session
    remembers its binding: a user switch there still ends the previous user's binding."""
    kiosk = Browser()
    kiosk.capture()
    kiosk.login(make_user("ann"))
    VisitorLink.objects.update(device="")
    VisitorOrigin.objects.all().delete()
    kiosk.http.cookies.pop(DEVICE_COOKIE)
    kiosk.login(make_user("bob"))
    assert giosg.variables(VISITOR) == expected(giosg, _user("bob"), "bob")


def test_a_user_logged_in_before_the_upgrade_logs_in_again_in_the_same_browser(
    giosg: GiosgSimulator,
) -> None:
    browser = Browser()
    browser.capture()
    browser.login(make_user("ann"))
    VisitorLink.objects.update(device="")
    VisitorOrigin.objects.all().delete()
    browser.http.cookies.pop(DEVICE_COOKIE)
    browser.login(_user("ann"))  # the same user: her own binding
    assert VisitorLink.objects.get().state == State.ATTACHED
    assert VisitorLink.objects.get().device != ""


def test_a_shared_kiosk_still_switches_users_at_once(giosg: GiosgSimulator) -> None:
    """Every user of a kiosk knows its visitor id; a switch in the same browser still detaches
    the previous user at once, and the next page closes the chat window (close only)."""
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    kiosk = Browser()
    kiosk.capture()
    kiosk.login(make_user("ann"))
    kiosk.login(make_user("bob"))
    assert giosg.open_chats(VISITOR) == []
    assert giosg.variables(VISITOR) == expected(giosg, _user("bob"), "bob")
    page = kiosk.http.get("/").content.decode()
    assert 'logout.js" defer data-mode="close" data-rooms=""' in page
    assert "logout.js" not in kiosk.http.get("/").content.decode()
    kiosk.logout()
    kiosk.capture()  # anonymous between the users: the kiosk's id again
    kiosk.login(make_user("cy"))
    assert giosg.variables(VISITOR) == expected(giosg, _user("cy"), "cy")


def test_a_capture_after_a_logout_and_another_login_binds_the_new_user(
    giosg: GiosgSimulator,
) -> None:
    kiosk = Browser()
    kiosk.capture()
    kiosk.login(make_user("ann"))
    kiosk.logout()
    kiosk.http.get("/")  # the logout's page
    kiosk.login(make_user("bob"))
    # the browser's id changed meanwhile; the capture binds bob, nothing of ann's is live
    kiosk.capture(OTHER_VISITOR)
    assert giosg.variables(OTHER_VISITOR) == expected(giosg, _user("bob"), "bob")


def test_the_device_cookie_is_set_when_a_browser_captures_or_logs_in(
    giosg: GiosgSimulator,
) -> None:
    browser = Browser()
    page = browser.http.get("/")
    assert DEVICE_COOKIE not in page.cookies  # a page that a cache may keep sets no cookie
    response = browser.http.post(
        "/giosg/visitor/", {"visitor_id": VISITOR}, content_type="application/json"
    )
    cookie = response.cookies[DEVICE_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 365 * 24 * 3600
    assert "private" in response["Cache-Control"]
    assert "Cookie" in response["Vary"]
    assert DEVICE_COOKIE not in browser.http.get("/").cookies
    logged_in = browser.login(make_user("ann"))
    assert logged_in.cookies[DEVICE_COOKIE].value.split(":")[0].endswith("+")  # bound
    link = VisitorLink.objects.get()
    token = cookie.value.split(":")[0]
    assert len(link.device) == 64
    assert token not in link.device  # a digest, never the token
    assert VisitorOrigin.objects.get().device == link.device
    with override_settings(SESSION_COOKIE_SECURE=True):
        assert Browser().login(make_user("bob")).cookies[DEVICE_COOKIE]["secure"]


def test_the_device_survives_a_secret_key_rotation_with_the_old_key_as_a_fallback(
    giosg: GiosgSimulator,
) -> None:
    browser = Browser()
    browser.capture()
    rotated = {
        "SECRET_KEY": "a-new-secret-key-" + "x" * 40,
        "SECRET_KEY_FALLBACKS": [django_settings.SECRET_KEY],
    }
    with override_settings(**rotated):
        browser.http.cookies.pop(django_settings.SESSION_COOKIE_NAME)  # a new session, too
        browser.login(make_user("ann"))
        browser.capture()  # the same browser: its visitor
        assert giosg.variables(VISITOR) == expected(giosg, _user("ann"), "ann")
    with override_settings(SECRET_KEY="yet-another-key-" + "y" * 40):  # no fallback
        other_session = Browser()
        other_session.http.cookies[DEVICE_COOKIE] = browser.http.cookies[DEVICE_COOKIE].value
        assert post_capture(other_session, VISITOR).status_code == 409


def test_a_forged_device_cookie_is_another_browser(giosg: GiosgSimulator) -> None:
    victim_with_open_chats(giosg, chats=1)
    attacker = Browser()
    attacker.http.cookies[DEVICE_COOKIE] = VisitorLink.objects.get().device  # the digest
    attacker.login(make_user("mallory"))
    assert post_capture(attacker, VISITOR).status_code == 409
    assert CAPTURES_SESSION_KEY not in attacker.http.session
    assert SESSION_KEY not in attacker.http.session


def test_a_capture_of_this_browsers_visitor_from_another_session_switches_users(
    giosg: GiosgSimulator,
) -> None:
    """Two sessions of one browser (the first one's cookie was lost, say): the second user's
    capture of the visitor the first still holds is a user switch on this device."""
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    old_session, new_session = Browser(), Browser()
    same_device(old_session, new_session)
    old_session.capture()
    old_session.login(make_user("ann"))
    new_session.login(make_user("bob"))
    assert post_capture(new_session, VISITOR).status_code == 204
    assert giosg.open_chats(VISITOR) == []
    assert giosg.variables(VISITOR) == expected(giosg, _user("bob"), "bob")
    assert 'data-mode="close"' in new_session.http.get("/").content.decode()


def test_no_log_line_shows_a_visitor_id_in_full(
    giosg: GiosgSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The review found visitor ids in INFO and WARNING lines: anyone who reads the logs could
    post one as their own. Here a whole lifecycle logs retries, a refusal, a failure and the
    sweep; every line shows the ids shortened."""
    victim = victim_with_open_chats(giosg, chats=1)
    giosg.add_fault("delete_variable", status=500)
    with caplog.at_level(logging.DEBUG, "django_giosg"):
        attacker = Browser()
        attacker.login(make_user("mallory"))
        assert post_capture(attacker, VISITOR).status_code == 409
        victim.logout()
        sweep()
    # (the simulator's access log stands for giosg's own, and shows what giosg was sent)
    app = "\n".join(
        caplog.handler.format(record)
        for record in caplog.records
        if not record.name.startswith("django_giosg.testing")
    )
    assert "retried in" in app  # the delete failed and was logged
    assert "belongs to another browser" in app
    assert VISITOR not in app
    assert all(VISITOR not in link.last_error for link in VisitorLink.objects.all())
