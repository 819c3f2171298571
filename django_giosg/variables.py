"""The default ``GIOSG["VARIABLES"]`` callable: what giosg operators see about a logged-in user."""

from __future__ import annotations

from typing import Any


def default_variables(user: Any) -> dict[str, object]:
    """``username`` (giosg shows it instead of "Visitor"): the full name, else the username;
    ``user_id``: the primary key."""
    get_full_name = getattr(user, "get_full_name", None)
    full_name = get_full_name() if callable(get_full_name) else ""
    name = str(full_name or "").strip() or user.get_username()
    return {"username": name, "user_id": user.pk}
