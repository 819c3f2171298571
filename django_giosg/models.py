"""The durable record of each visitor-to-user binding: what giosg holds, and what is left to do.

A :class:`VisitorLink` moves through the states of design.md's state machine. At most one link per
visitor id is live (``pending_attach`` or ``attached``): a partial unique constraint guarantees it
even when two logins race, on every database. No raw session key is stored.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q


class State(models.TextChoices):
    PENDING_ATTACH = "pending_attach"
    ATTACHED = "attached"
    PENDING_DETACH = "pending_detach"
    DETACHED = "detached"
    FAILED = "failed"


class Action(models.TextChoices):
    ATTACH = "attach"
    DETACH = "detach"


#: The states in which a link holds (or is about to hold) the visitor for its user.
LIVE_STATES = (State.PENDING_ATTACH, State.ATTACHED)


class VisitorLink(models.Model):
    """One giosg visitor bound to one user, from login (or capture) until it is detached."""

    visitor_id = models.CharField(max_length=128)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,  # the link outlives its user until its detach is done
        related_name="+",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING_ATTACH)
    #: The owned rooms the browser reported, where variables are set besides ``ROOM_IDS``.
    browser_rooms = models.JSONField(default=list, blank=True)
    #: ``{room_id: [keys]}``: the keys set in each room, or being set (recorded before the calls,
    #: so that a detach racing an attach deletes them too; deleting an unset key is harmless).
    keys = models.JSONField(default=dict, blank=True)
    failed_action = models.CharField(max_length=8, choices=Action.choices, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    #: What went wrong last; never the token, a variable's value or a session key.
    last_error = models.TextField(blank=True)
    session_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "visitor link"
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["visitor_id"],
                condition=Q(state__in=["pending_attach", "attached"]),
                name="django_giosg_one_live_link_per_visitor",
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            # the sweep: due pending links, expired attached links, old detached links
            models.Index(fields=["state", "next_attempt_at"], name="django_giosg_due"),
            models.Index(fields=["state", "session_expires_at"], name="django_giosg_expiry"),
            models.Index(fields=["state", "updated_at"], name="django_giosg_prune"),
            models.Index(fields=["visitor_id", "state"], name="django_giosg_visitor"),
        ]

    def __str__(self) -> str:
        return f"visitor {self.visitor_id} ({self.get_state_display()})"


class VisitorLease(models.Model):
    """A short lease on one visitor id: attaches and detaches of the same visitor never overlap.

    Without it, a detach of the old binding could delete a key just after the new binding set
    it (the keys have the same names). Taken with a conditional update or an insert, so it works
    on SQLite as well; it expires by itself if its holder dies.
    """

    visitor_id = models.CharField(max_length=128, unique=True)
    holder = models.CharField(max_length=32)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"lease on visitor {self.visitor_id}"
