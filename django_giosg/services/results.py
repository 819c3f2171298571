"""What one attach or detach did: :class:`Result`, and its :class:`Outcome` for the sweep."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

#: ``Result.skipped`` when the work was not wanted (any more) by the time it ran.
NOT_PENDING_ATTACH = "the link is not pending attach"
DETACHED_ALREADY = "the link is detached already"


class Outcome(enum.Enum):
    """How the work ended for its link: what the sweep counts."""

    #: Done, or undone at once: an attach that a logout overtook was detached (``cancelled``).
    DONE = "done"
    #: The link did not want the work by the time it ran (another worker had done it, or its
    #: state had moved on): nothing was done.
    SKIPPED = "skipped"
    #: Something failed and the link is left to a later try: due again after the backoff, or
    #: (when someone else changed the link meanwhile) as they left it.
    RETRYING = "retrying"
    #: The last attempt failed: the link is ``failed``.
    FAILED = "failed"


@dataclass
class Result:
    """What one :func:`~django_giosg.services.workflows.attach` or
    :func:`~django_giosg.services.workflows.detach` did. ``ok`` when nothing failed.

    ``set`` and ``deleted`` map rooms to keys (a key already gone counts as deleted), ``ended``
    lists chats (one found ended already counts), ``skipped`` and ``failed`` say what was left
    alone and what went wrong, without tokens or values. ``cancelled``: the link's state changed
    under the attach (a logout overtook it), which then detached instead. ``settling``: done, but
    writes that got no answer may still land at giosg; the link is due again once they have
    settled, to set its variables (delete its keys) once more.
    """

    link_id: int
    action: str
    set: dict[str, list[str]] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    deleted: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: bool = False
    settling: bool = False
    outcome: Outcome = field(default=Outcome.DONE, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.failed

    def skip(self, reason: str) -> Result:
        """The link did not want this work: nothing was done."""
        self.skipped.append(reason)
        self.outcome = Outcome.SKIPPED
        return self

    def as_dict(self) -> dict[str, Any]:
        """JSON-shaped, for a task's return value (the outcome is the sweep's business)."""
        fields = asdict(self)
        del fields["outcome"]
        return {**fields, "ok": self.ok}
