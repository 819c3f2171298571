"""Steps shared by the integration tests: a browser on the test site (Django's test client),
links in a given state, and a run of ``giosg_sweep``."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client, RequestFactory

from django_giosg import device, tasks
from django_giosg.conf import get_settings
from django_giosg.models import State, VisitorLink, write_db
from django_giosg.services import links
from django_giosg.session import SESSION_KEY
from django_giosg.testing import GiosgSimulator

VISITOR = "08119566026a4e1194a7a3244c90f925"
OTHER_VISITOR = "8a60b202474547dbb8ce19737e4c166f"
PASSWORD = "pw-not-in-logs-1815"
VISITORS = [f"{n:032x}" for n in range(1, 9)]
DEVICE = "e" * 64  # the device digest of the browser behind the links tests bind directly
HOUR = timedelta(hours=1)


def make_user(username: str, first: str = "", last: str = "") -> AbstractUser:
    user: AbstractUser = get_user_model().objects.create_user(
        username, password=PASSWORD, first_name=first, last_name=last
    )
    return user


class Browser:
    """One browser: Django's test client, with the steps capture.js and a person take."""

    def __init__(self) -> None:
        self.http = Client()

    def capture(self, visitor_id: str = VISITOR, rooms: list[str] | None = None) -> None:
        body: dict[str, Any] = {"visitor_id": visitor_id}
        if rooms is not None:
            body["rooms"] = rooms
        response = self.http.post("/giosg/visitor/", body, content_type="application/json")
        assert response.status_code == 204, response.content

    def login(self, user: AbstractUser) -> HttpResponse:
        response = self.http.post(
            "/accounts/login/", {"username": user.get_username(), "password": PASSWORD}
        )
        assert response.status_code == 302, "the login failed"
        return response  # type: ignore[return-value]

    def logout(self) -> HttpResponse:
        response = self.http.post("/accounts/logout/")
        assert response.status_code == 302
        return response  # type: ignore[return-value]

    def visitor_id(self) -> object:
        return self.http.session.get(SESSION_KEY)


def same_device(*browsers: Browser) -> str:
    """Give ``browsers`` one device cookie, as tabs of one browser share it; returns its digest."""
    token = secrets.token_hex(16)
    signed = HttpResponse()
    signed.set_signed_cookie(device.DEVICE_COOKIE, token, salt=device.DEVICE_SALT)
    for browser in browsers:
        browser.http.cookies[device.DEVICE_COOKIE] = signed.cookies[device.DEVICE_COOKIE].value
    return device.digest(token)


def device_flag(browser: Browser) -> bool:
    """Whether the browser's device cookie says it may have a binding."""
    request = RequestFactory().get("/")
    request.COOKIES[device.DEVICE_COOKIE] = browser.http.cookies[device.DEVICE_COOKIE].value
    return device.device_with_binding(request) is not None


def expected(sim: GiosgSimulator, user: AbstractUser, name: str) -> dict[str, dict[str, str]]:
    return {room: {"username": name, "user_id": str(user.pk)} for room in sim.room_ids[:2]}


def only_link() -> VisitorLink:
    links: list[VisitorLink] = list(VisitorLink.objects.all())
    assert len(links) == 1, links
    return links[0]


def attached(
    sim: GiosgSimulator, visitor_id: str, user: AbstractUser, expires_at: datetime | None = None
) -> VisitorLink:
    """A visitor with an open chat, bound to ``user`` and attached (its task ran at commit)."""
    sim.seed_visitor(visitor_id, rooms=sim.room_ids[:1], open_chats=1)
    tasks.bind_visitor(user, visitor_id, device=DEVICE, session_expires_at=expires_at)
    link: VisitorLink = VisitorLink.objects.get(visitor_id=visitor_id, user=user)
    assert link.state == State.ATTACHED
    return link


def lost_detach(link: VisitorLink) -> None:
    """The link is released but its detach task never runs (a worker lost it)."""
    links.release_links([link.pk], get_settings())
    assert reloaded(link).state == State.PENDING_DETACH


def sweep(*args: str) -> str:
    out = StringIO()
    call_command("giosg_sweep", *args, stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines  # one summary line
    return lines[0]


def reloaded(link: VisitorLink) -> VisitorLink:
    """``link`` as its database holds it now (where the router writes links)."""
    link.refresh_from_db(using=write_db(VisitorLink))
    return link
