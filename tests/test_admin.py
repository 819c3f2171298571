"""The read-only VisitorLink admin and its two actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory

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


# -- deleting: only detached links (finding 7 of the security review) ----------------------


@pytest.mark.parametrize("state", [s for s in State.values if s != State.DETACHED])
def test_delete_selected_refuses_while_a_selected_link_is_not_detached(
    admin_client: Client, state: str
) -> None:
    kept, other = link("a", state), link("b", State.DETACHED)
    selected = {"action": "delete_selected", "_selected_action": [kept.pk, other.pk]}
    page = admin_client.post(URL, selected, follow=True).content.decode()
    assert "Nothing was deleted: 1 of the selected links is not detached." in page
    confirmed = admin_client.post(URL, {**selected, "post": "yes"}, follow=True)
    assert "Nothing was deleted" in confirmed.content.decode()
    assert VisitorLink.objects.count() == 2


def test_delete_selected_deletes_detached_links_after_the_confirmation(
    admin_client: Client,
) -> None:
    first, second = link("a", State.DETACHED), link("b", State.DETACHED)
    selected = {"action": "delete_selected", "_selected_action": [first.pk, second.pk]}
    assert "Are you sure" in admin_client.post(URL, selected).content.decode()
    admin_client.post(URL, {**selected, "post": "yes"})
    assert not VisitorLink.objects.exists()


@pytest.mark.parametrize("state", [s for s in State.values if s != State.DETACHED])
def test_the_delete_view_refuses_a_link_that_is_not_detached_and_says_why(
    admin_client: Client, state: str
) -> None:
    kept = link("a", state)
    change = f"{URL}{kept.pk}/change/"
    assert f"{kept.pk}/delete/" not in admin_client.get(change).content.decode()
    for answer in (
        admin_client.get(f"{URL}{kept.pk}/delete/"),
        admin_client.post(f"{URL}{kept.pk}/delete/", {"post": "yes"}),
    ):
        assert answer.status_code == 302
        assert answer["Location"] == change
    page = admin_client.get(change).content.decode()
    assert "This link is not detached, so it cannot be deleted" in page
    assert VisitorLink.objects.filter(pk=kept.pk).exists()


def test_a_links_page_cannot_save_it(admin_client: Client) -> None:
    """A save writes the whole row: it would undo a transition made since the page was shown."""
    attached = link("a", State.ATTACHED)
    page = admin_client.get(f"{URL}{attached.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    VisitorLink.objects.filter(pk=attached.pk).update(
        state=State.PENDING_DETACH, live_visitor_id=None
    )
    response = admin_client.post(f"{URL}{attached.pk}/change/", {"_save": "Save"})
    assert response.status_code == 403
    assert VisitorLink.objects.get(pk=attached.pk).state == State.PENDING_DETACH


def test_the_delete_view_deletes_a_detached_link(admin_client: Client) -> None:
    detached = link("a", State.DETACHED)
    assert (
        f"{detached.pk}/delete/"
        in admin_client.get(f"{URL}{detached.pk}/change/").content.decode()
    )
    admin_client.post(f"{URL}{detached.pk}/delete/", {"post": "yes"})
    assert not VisitorLink.objects.exists()


def test_a_deletion_confirmed_after_the_link_changed_state_deletes_nothing(
    admin_client: Client,
) -> None:
    """The confirmation page was shown while the link was detached (cannot happen today: a
    detached link stays detached; the deletion checks again in its query all the same)."""
    detached = link("a", State.DETACHED)
    VisitorLink.objects.filter(pk=detached.pk).update(state=State.PENDING_DETACH)
    model_admin = admin.site.get_model_admin(VisitorLink)
    request = RequestFactory().post("/")
    model_admin.delete_model(request, detached)
    model_admin.delete_queryset(request, VisitorLink.objects.all())
    assert VisitorLink.objects.filter(pk=detached.pk).exists()
