"""A read-only view of the visitor links, with the two things an operator may need to do.

Only ``detached`` links can be deleted: a link in any other state may still hold variables and
chats at giosg, and its row is the only record of what to clean up ("Detach now" first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as delete_selected_objects
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from . import tasks
from .models import State, VisitorLink, VisitorLinkQuerySet

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[VisitorLink]
else:  # ModelAdmin is generic in django-stubs only
    _ModelAdmin = admin.ModelAdmin


_NOT_DETACHED = (
    "Nothing was deleted: {count} of the selected links {are} not detached. Detach first "
    "(Detach now): only detached links can be deleted."
)


def _links(queryset: QuerySet[VisitorLink]) -> VisitorLinkQuerySet:
    """The admin's queryset is the model manager's, with the state machine's selections."""
    return cast(VisitorLinkQuerySet, queryset)


@admin.register(VisitorLink)
class VisitorLinkAdmin(_ModelAdmin):
    list_display = (
        "visitor_id",
        "user",
        "state",
        "failed_action",
        "attempts",
        "next_attempt_at",
        "session_expires_at",
        "updated_at",
    )
    list_filter = ("state", "failed_action")
    search_fields = ("visitor_id",)
    ordering = ("-updated_at",)
    actions = ("detach_now", "retry", "delete_selected")

    def get_readonly_fields(
        self, request: HttpRequest, obj: VisitorLink | None = None
    ) -> list[str]:
        return [field.name for field in VisitorLink._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # links come from logins, never from a form

    def has_change_permission(self, request: HttpRequest, obj: VisitorLink | None = None) -> bool:
        """The change permission runs the actions; no link is ever saved from its page: a save
        writes the whole row, and would undo a transition made since the page was shown."""
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: VisitorLink | None = None) -> bool:
        """No deleting a link that is not detached (its delete page says why, and no page of it
        shows a delete link)."""
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.state == State.DETACHED)

    def delete_model(self, request: HttpRequest, obj: VisitorLink) -> None:
        # The rule again, in the query itself: whatever the page was shown, only a detached row.
        VisitorLink.objects.filter(pk=obj.pk).deletable().delete()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[VisitorLink]) -> None:
        super().delete_queryset(request, _links(queryset).deletable())

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """A link that is not detached: its page again, saying why it cannot be deleted."""
        link = self.get_object(request, unquote(object_id))
        if link is not None and link.state != State.DETACHED:
            self.message_user(
                request,
                "This link is not detached, so it cannot be deleted: detach it first "
                "(Detach now in the list).",
                messages.ERROR,
            )
            return HttpResponseRedirect(
                reverse("admin:django_giosg_visitorlink_change", args=[link.pk])
            )
        return super().delete_view(request, object_id, extra_context)

    @admin.action(description="Delete selected detached visitor links", permissions=["delete"])
    def delete_selected(
        self, request: HttpRequest, queryset: QuerySet[VisitorLink]
    ) -> HttpResponse | None:
        """Django's "Delete selected", refused while a selected link is not detached."""
        undetached = queryset.count() - _links(queryset).deletable().count()
        if undetached:
            are = "is" if undetached == 1 else "are"
            self.message_user(
                request, _NOT_DETACHED.format(count=undetached, are=are), messages.ERROR
            )
            return None
        response: HttpResponse | None = delete_selected_objects(self, request, queryset)
        return response

    @admin.action(
        description="Detach now (end the chats, delete the variables)", permissions=["change"]
    )
    def detach_now(self, request: HttpRequest, queryset: QuerySet[VisitorLink]) -> None:
        count = tasks.release_links(queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} link(s) queued for detaching.", messages.SUCCESS)

    @admin.action(description="Retry failed links", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[VisitorLink]) -> None:
        count = tasks.retry_links(queryset.values_list("pk", flat=True))
        level = messages.SUCCESS if count else messages.WARNING
        self.message_user(request, f"{count} failed link(s) queued again.", level)
