"""A read-only view of the visitor links, with the two things an operator may need to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import tasks
from .models import VisitorLink

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[VisitorLink]
else:  # ModelAdmin is generic in django-stubs only
    _ModelAdmin = admin.ModelAdmin


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
    actions = ("detach_now", "retry")

    def get_readonly_fields(
        self, request: HttpRequest, obj: VisitorLink | None = None
    ) -> list[str]:
        return [field.name for field in VisitorLink._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # links come from logins, never from a form

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
