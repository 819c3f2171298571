"""django_giosg.session: what a visitor id may be, and how the session keeps it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import override_settings
from django.utils import timezone

from django_giosg import session
from django_giosg.session import InvalidVisitorId

from .conftest import VISITOR
from .settings import GIOSG

OTHER = "8a60b202474547dbb8ce19737e4c166f"
ROOM_A = "9926bdfa-56e0-11e5-b98c-6c4008c08dfe"
ROOM_B = "0f3ba9f2-56e1-11e5-9c5e-6c4008c08dfe"


def test_a_giosg_visitor_id_is_valid() -> None:
    assert session.validate_visitor_id(VISITOR) == VISITOR


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "must be a string, not null"),
        (123, "must be a string, not int"),
        ([VISITOR], "must be a string, not list"),
        ({"id": VISITOR}, "must be a string, not dict"),
        ("", "does not look like"),
        (VISITOR + "\n", "does not look like"),
        (VISITOR + "0", "does not look like"),
        (VISITOR[:-1], "does not look like"),
        (VISITOR.upper(), "does not look like"),
        ("../x", "does not look like"),
        ("<script>", "does not look like"),
        ("ä" * 32, "does not look like"),
        ("٣" * 32, "does not look like"),  # Arabic-Indic digits are not [0-9]
    ],
)
def test_anything_else_is_refused_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(InvalidVisitorId, match=message):
        session.validate_visitor_id(value)


@pytest.mark.parametrize("value", ["..", ".", "a/b", "a%2Fb", "a b", "é" * 4, "x" * 129])
def test_a_loose_pattern_still_only_admits_a_plain_path_segment(value: str) -> None:
    with override_settings(GIOSG={**GIOSG, "VISITOR_ID_PATTERN": r"(?s).+"}):
        with pytest.raises(InvalidVisitorId):
            session.validate_visitor_id(value)
        assert session.validate_visitor_id("visitor-1.x_y~z") == "visitor-1.x_y~z"


def test_the_id_is_stored_under_the_documented_key() -> None:
    data: dict[str, Any] = {}
    assert session.set_visitor_id(data, VISITOR) is True
    assert data == {"django_giosg.visitor_id": VISITOR}
    assert session.SESSION_KEY == "django_giosg.visitor_id"
    assert session.get_visitor_id(data) == VISITOR


def test_an_invalid_id_is_never_stored() -> None:
    data: dict[str, Any] = {}
    with pytest.raises(InvalidVisitorId):
        session.set_visitor_id(data, "../x")
    assert data == {}


def test_a_stored_value_that_is_not_valid_reads_as_no_id() -> None:
    assert session.get_visitor_id({}) is None
    assert session.get_visitor_id({session.SESSION_KEY: "nope"}) is None
    assert session.get_visitor_id({session.SESSION_KEY: 7}) is None


def test_rooms_merge_for_the_same_id_and_reset_for_a_new_one() -> None:
    data: dict[str, Any] = {}
    assert session.set_visitor_id(data, VISITOR, [ROOM_A]) is True
    assert session.set_visitor_id(data, VISITOR, [ROOM_A]) is False  # nothing new: no write
    assert session.set_visitor_id(data, VISITOR) is False
    assert session.set_visitor_id(data, VISITOR, [ROOM_B, ROOM_A]) is True
    assert session.get_browser_rooms(data) == [ROOM_A, ROOM_B]
    assert session.set_visitor_id(data, OTHER) is True
    assert session.get_browser_rooms(data) == []
    assert session.ROOMS_SESSION_KEY not in data


def test_unchanged_data_is_not_written_at_all() -> None:
    class Recording(dict[str, Any]):
        writes = 0

        def __setitem__(self, key: str, value: Any) -> None:
            Recording.writes += 1
            super().__setitem__(key, value)

    data = Recording({session.SESSION_KEY: VISITOR})
    assert session.set_visitor_id(data, VISITOR) is False
    assert Recording.writes == 0


def test_browser_rooms_of_a_tampered_session_are_ignored() -> None:
    assert session.get_browser_rooms({session.ROOMS_SESSION_KEY: "x"}) == []
    assert session.get_browser_rooms({session.ROOMS_SESSION_KEY: [ROOM_A, 3]}) == [ROOM_A]


def test_the_rate_counts_distinct_ids_in_a_sliding_hour() -> None:
    data: dict[str, Any] = {}
    now = 10_000.0
    for index in range(3):
        visitor = f"{index:032x}"
        assert session.capture_allowed(data, visitor, now + index, rate=3)
        session.record_capture(data, visitor, now + index)
    assert not session.capture_allowed(data, OTHER, now + 10, rate=3)
    assert session.capture_allowed(data, f"{1:032x}", now + 10, rate=3)  # an id already counted
    session.record_capture(data, f"{1:032x}", now + 20)  # does not move its window
    assert data[session.CAPTURES_SESSION_KEY][f"{1:032x}"] == now + 1
    assert not session.capture_allowed(data, OTHER, now + 3599.9, rate=3)
    assert session.capture_allowed(data, OTHER, now + 3600.0, rate=3)  # the first one aged out
    session.record_capture(data, OTHER, now + 3600.0)
    assert sorted(data[session.CAPTURES_SESSION_KEY]) == sorted([f"{1:032x}", f"{2:032x}", OTHER])


def test_tampered_or_future_rate_entries_do_not_count() -> None:
    now = 10_000.0
    data: dict[str, Any] = {
        session.CAPTURES_SESSION_KEY: {"a": "yesterday", "b": now + 60, "c": now - 10}
    }
    assert session.capture_allowed(data, OTHER, now, rate=2)
    assert not session.capture_allowed(data, OTHER, now, rate=1)
    assert session.capture_allowed({session.CAPTURES_SESSION_KEY: [1, 2]}, OTHER, now, rate=1)


@pytest.mark.parametrize(
    "value",
    [None, "ann", {"user": 1, "expires": 1.0}, {"user": "1", "expires": "soon"}, {"user": "1"}],
)
def test_a_malformed_binding_in_the_session_is_no_binding(value: object) -> None:
    assert session.get_binding({session.BINDING_SESSION_KEY: value}) is None


def test_a_binding_round_trips_through_the_session() -> None:
    store = SessionStore()
    expires_at = timezone.now() + timedelta(days=1)
    assert session.record_binding(store, "7", expires_at) == expires_at
    assert session.get_binding(store) == session.SessionBinding("7", expires_at.timestamp())
    assert not session.expiry_moved(
        session.SessionBinding("7", expires_at.timestamp()), expires_at + timedelta(seconds=59), 60
    )
    assert session.expiry_moved(
        session.SessionBinding("7", expires_at.timestamp()), expires_at - timedelta(seconds=60), 60
    )


@pytest.mark.parametrize("store", [{}, SessionStore()], ids=["a dict", "a session"])
def test_restore_puts_back_what_the_snapshot_saw(store: Any) -> None:
    session.set_visitor_id(store, VISITOR)
    if isinstance(store, SessionStore):
        store.modified = False
    saved = session.snapshot(store)
    session.set_visitor_id(store, "b" * 32, ["r"])
    session.record_capture(store, "b" * 32, 1.0)
    session.note_device(store, "d" * 64)
    session.restore(store, saved)
    assert dict(store.items()) == {session.SESSION_KEY: VISITOR}
    if isinstance(store, SessionStore):
        assert store.modified is False  # as it was: not saved again


def test_a_noted_device_must_look_like_a_digest() -> None:
    store: dict[str, Any] = {session.DEVICE_SESSION_KEY: "not a digest"}
    assert session.get_device(store) is None
    session.note_device(store, "d" * 64)
    assert session.get_device(store) == "d" * 64
