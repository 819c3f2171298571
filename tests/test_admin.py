"""The read-only VisitorLink admin and its two actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from django_giosg.models import State, VisitorLink, write_db

pytestmark = pytest.mark.django_db

URL = "/admin/django_giosg/visitorlink/"


def link(visitor: str, state: str, **fields: Any) -> VisitorLink:
    created: VisitorLink = VisitorLink.objects.create(
        visitor_id=visitor * 32, state=state, **fields
    )
    return created


def test_the_list_filters_by_state(admin_client: Client) -> None:
    link("a", State.ATTACHED)
    link("b", State.FAILED, failed_action="detach")
    page = admin_client.get(URL, {"state__exact": "failed"}).content.decode()
    assert "b" * 32 in page
    assert "a" * 32 not in page


def test_links_cannot_be_added_or_edited(admin_client: Client) -> None:
    attached = link("a", State.ATTACHED)
    assert admin_client.get(f"{URL}add/").status_code == 403
    page = admin_client.get(f"{URL}{attached.pk}/change/").content.decode()
    assert 'name="visitor_id"' not in page  # shown, not editable
    assert "a" * 32 in page


def test_detach_now_queues_a_detach(
    admin_client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    attached, detached = link("a", State.ATTACHED), link("b", State.DETACHED)
    with django_capture_on_commit_callbacks(using=write_db(VisitorLink)) as callbacks:
        response = admin_client.post(
            URL,
            {"action": "detach_now", "_selected_action": [attached.pk, detached.pk]},
            follow=True,
        )
    assert "1 link(s) queued for detaching." in response.content.decode()
    assert len(callbacks) == 1
    attached.refresh_from_db()
    assert attached.state == State.PENDING_DETACH


def test_retry_gives_a_failed_link_a_fresh_start(
    admin_client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    failed = link("a", State.FAILED, failed_action="attach", attempts=10, last_error="HTTP 503")
    attached = link("b", State.ATTACHED)
    with django_capture_on_commit_callbacks(using=write_db(VisitorLink)) as callbacks:
        response = admin_client.post(
            URL, {"action": "retry", "_selected_action": [failed.pk, attached.pk]}, follow=True
        )
    assert "1 failed link(s) queued again." in response.content.decode()
    assert len(callbacks) == 1
    failed.refresh_from_db()
    assert failed.state == State.PENDING_ATTACH
    assert failed.attempts == 0
    with django_capture_on_commit_callbacks(using=write_db(VisitorLink)) as callbacks:
        response = admin_client.post(
            URL, {"action": "retry", "_selected_action": [attached.pk]}, follow=True
        )
    assert "0 failed link(s) queued again." in response.content.decode()
    assert callbacks == []
