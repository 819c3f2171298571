"""The simulator's in-memory giosg: rooms, visitors, variables and chats, and the rules on them.

Nothing here knows HTTP: :mod:`.api` turns requests into calls of :class:`World` and its answers
into responses. Every method takes the world's lock, so HTTP threads and tests can share it.
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

#: The organization and token a simulator has unless told otherwise.
DEFAULT_ORGANIZATION_ID = "5e1a7c0d-0000-4000-8000-000000000001"
DEFAULT_API_TOKEN = "giosg-simulator-token"  # noqa: S105 (not a secret: the simulator's)
#: The organization that owns the rooms shared *to* the simulated organization.
OTHER_ORGANIZATION_ID = "5e1a7c0d-0000-4000-8000-0000000000ff"


_SWITCH_CHOICES: dict[str, tuple[object, ...]] = {
    "repost_status": (200, 201),
    "end_ended_chat": ("noop", "locked"),
    "unseen_visitor_variables": ("create", "not_found"),
    "unseen_visitor_chats": ("empty", "not_found"),
    "honour_is_ended": (True, False),
}


@dataclass(frozen=True)
class Switches:
    """How the simulator answers where giosg's behaviour is not documented (re-POSTs, ended
    chats, unseen visitors, the ``is_ended`` filter).

    - ``repost_status``: the status of a POST that overwrites an existing key (201 or 200).
    - ``end_ended_chat``: ``"noop"`` answers 200 unchanged, ``"locked"`` answers 400.
    - ``unseen_visitor_variables``: a variable POST for a visitor never seen in that room is
      ``"create"`` (201; the visitor counts as seen from then on) or ``"not_found"`` (404).
    - ``unseen_visitor_chats``: listing the chats of a visitor never seen in a room answers an
      empty page (``"empty"``) or 404 (``"not_found"``).
    - ``honour_is_ended``: whether the visitor chat list applies its ``is_ended`` filter.
    """

    repost_status: Literal[200, 201] = 201
    end_ended_chat: Literal["noop", "locked"] = "noop"
    unseen_visitor_variables: Literal["create", "not_found"] = "create"
    unseen_visitor_chats: Literal["empty", "not_found"] = "empty"
    honour_is_ended: bool = True

    def __post_init__(self) -> None:
        for name, choices in _SWITCH_CHOICES.items():
            value = getattr(self, name)
            # bool is an int: True must not pass for 1, nor 1 for True.
            if not any(type(value) is type(c) and value == c for c in choices):
                raise ValueError(f"switch {name} must be one of {list(choices)}, not {value!r}")

    def updated(self, **changes: Any) -> Switches:
        """A copy with ``changes``; an unknown switch name is a :class:`ValueError`."""
        unknown = sorted(set(changes) - set(_SWITCH_CHOICES))
        if unknown:
            raise ValueError(
                f"unknown switch {', '.join(unknown)}; known: {sorted(_SWITCH_CHOICES)}"
            )
        return replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _SWITCH_CHOICES}


@dataclass
class Room:
    id: str
    organization_id: str
    name: str
    seq: int
    created_at: str
    domain: str | None = None


@dataclass
class Chat:
    id: str
    room_id: str
    visitor_id: str
    seq: int
    created_at: str
    is_ended: bool = False
    ended_at: str | None = None
    updated_at: str = ""
    messages: list[str] = field(default_factory=list)  # what the visitor typed in the chat box


@dataclass
class Variable:
    key: str
    value: str
    seq: int
    created_at: str
    updated_at: str


@dataclass
class _Visitor:
    """A visitor as one room knows them."""

    variables: dict[str, Variable] = field(default_factory=dict)


class Problem(Exception):
    """An answer other than success: its status and a DRF-style JSON body."""

    def __init__(self, status: int, body: dict[str, object]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def not_found() -> Problem:
    return Problem(404, {"detail": "Not found."})


def now() -> str:
    """giosg's date-time format: ISO-8601 UTC with milliseconds and a ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class World:
    """One organization's rooms (plus rooms another organization shares to it) and their data."""

    def __init__(
        self,
        *,
        organization_id: str = DEFAULT_ORGANIZATION_ID,
        room_ids: list[str] | None = None,
        rooms: int = 3,
        shared_rooms: int = 1,
        switches: Switches | None = None,
        seed: int = 0,
    ) -> None:
        self.seed = seed
        self.organization_id = organization_id.lower()
        self._room_ids = [r.lower() for r in room_ids] if room_ids else None
        self._room_count = rooms
        self._shared_count = shared_rooms
        self._initial_switches = switches or Switches()
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Back to the rooms the world was built with, no visitors, the initial switches."""
        with self.lock:
            self._seq = 0
            self._ids = random.Random(self.seed)
            self.switches = self._initial_switches
            self.rooms: dict[str, Room] = {}
            self.chats: dict[str, Chat] = {}
            self._visitors: dict[tuple[str, str], _Visitor] = {}
            ids = self._room_ids or [self._new_id() for _ in range(self._room_count)]
            for index, room_id in enumerate(ids):
                domain = "www.example.com" if index == 0 else None  # the domain room comes first
                self.add_room(room_id, name=f"Room {index + 1}", domain=domain)
            for index in range(self._shared_count):
                self.add_room(
                    name=f"Shared room {index + 1}", organization_id=OTHER_ORGANIZATION_ID
                )

    # -- building the world ---------------------------------------------------------------------

    def _new_id(self) -> str:
        """A UUID that depends only on the seed and the order of creation, so that URLs, and the
        faults drawn from them, repeat from run to run."""
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add_room(
        self,
        room_id: str | None = None,
        *,
        name: str | None = None,
        organization_id: str | None = None,
        domain: str | None = None,
    ) -> Room:
        """Add a room; one with another ``organization_id`` is shared to this organization."""
        with self.lock:
            room = Room(
                id=(room_id or self._new_id()).lower(),
                organization_id=(organization_id or self.organization_id).lower(),
                name=name or f"Room {len(self.rooms) + 1}",
                seq=self._next_seq(),
                created_at=now(),
                domain=domain,
            )
            self.rooms[room.id] = room
            return room

    @property
    def owned_room_ids(self) -> list[str]:
        with self.lock:
            return [r.id for r in self.rooms.values() if r.organization_id == self.organization_id]

    @property
    def shared_room_ids(self) -> list[str]:
        with self.lock:
            return [r.id for r in self.rooms.values() if r.organization_id != self.organization_id]

    def enter(self, visitor_id: str, room_ids: list[str]) -> None:
        """The visitor enters rooms (the loader does this for the rooms of the page)."""
        with self.lock:
            for room_id in room_ids:
                self._room(room_id)
                self._visitors.setdefault((room_id, visitor_id), _Visitor())

    def seed_visitor(
        self,
        visitor_id: str,
        *,
        rooms: list[str] | None = None,
        open_chats: int = 1,
        ended_chats: int = 0,
        variables: dict[str, str] | None = None,
    ) -> list[str]:
        """A visitor seen in ``rooms`` (default: every room, shared ones included) with
        ``open_chats`` open and ``ended_chats`` ended chats and ``variables`` in each room.
        Returns the ids of the open chats."""
        with self.lock:
            room_ids = list(self.rooms) if rooms is None else [r.lower() for r in rooms]
            unknown = [r for r in room_ids if r not in self.rooms]
            if unknown:
                raise ValueError(f"unknown rooms {unknown}; the rooms are {list(self.rooms)}")
            if open_chats < 0 or ended_chats < 0:
                raise ValueError("open_chats and ended_chats must be ≥ 0")
            self.enter(visitor_id, room_ids)
            opened = []
            for room_id in room_ids:
                for _ in range(ended_chats):
                    chat = self._new_chat(room_id, visitor_id)
                    chat.is_ended, chat.ended_at = True, chat.created_at
                for _ in range(open_chats):
                    opened.append(self._new_chat(room_id, visitor_id).id)
                for key, value in (variables or {}).items():
                    self._store(room_id, visitor_id, key, value)
            return opened

    def _new_chat(self, room_id: str, visitor_id: str) -> Chat:
        created = now()
        chat = Chat(
            id=self._new_id(),
            room_id=room_id,
            visitor_id=visitor_id,
            seq=self._next_seq(),
            created_at=created,
            updated_at=created,
        )
        self.chats[chat.id] = chat
        return chat

    # -- reading ---------------------------------------------------------------------------------

    def state(self, visitor_id: str) -> dict[str, Any]:
        """What giosg holds about a visitor, room by room (JSON-shaped, for tests and the
        control API): ``{"visitor_id", "rooms": {room: {"seen", "variables", "chats"}}}``."""
        with self.lock:
            rooms: dict[str, dict[str, Any]] = {}
            for room_id in self.rooms:
                visitor = self._visitors.get((room_id, visitor_id))
                chats = [
                    {"id": c.id, "is_ended": c.is_ended, "messages": list(c.messages)}
                    for c in self._chats_of(room_id, visitor_id)
                ]
                if visitor is None and not chats:
                    continue
                variables = visitor.variables.values() if visitor else ()
                room = self.rooms[room_id]
                rooms[room_id] = {
                    "name": room.name,
                    "is_shared": room.organization_id != self.organization_id,
                    "seen": visitor is not None,
                    "variables": {v.key: v.value for v in variables},
                    "chats": chats,
                }
            return {"visitor_id": visitor_id, "rooms": rooms}

    def _chats_of(self, room_id: str, visitor_id: str) -> list[Chat]:
        """Newest first, as giosg's chat lists are ordered."""
        chats = [
            c for c in self.chats.values() if c.room_id == room_id and c.visitor_id == visitor_id
        ]
        return sorted(chats, key=lambda c: c.seq, reverse=True)

    def require_room(self, room_id: str) -> None:
        """404 unless the room is one of the organization's (owned or shared to it)."""
        with self.lock:
            self._room(room_id)

    def _room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            raise not_found()
        return room

    def room_json(self, room: Room) -> dict[str, object]:
        return {
            "id": room.id,
            "organization_id": room.organization_id,
            "organization": {"id": room.organization_id},
            "name": room.name,
            "display_name": room.name,
            "domain": room.domain,
            "is_shared": room.organization_id != self.organization_id,
            "is_online": True,
            "created_at": room.created_at,
        }

    def chat_json(self, chat: Chat) -> dict[str, object]:
        room = self.rooms[chat.room_id]
        return {
            "id": chat.id,
            "room_id": room.id,
            "room_name": room.name,
            "room_organization_id": room.organization_id,
            "chat_type": "visitor",
            "created_at": chat.created_at,
            "updated_at": chat.updated_at,
            "ended_at": chat.ended_at,
            "is_ended": chat.is_ended,
            "is_waiting": False,
            "is_private": False,
        }

    def variable_json(
        self, room_id: str, visitor_id: str, variable: Variable
    ) -> dict[str, object]:
        return {
            "visitor_id": visitor_id,
            "room_id": room_id,
            "organization_id": self.organization_id,
            "key": variable.key,
            "value": variable.value,
            "chat_id": None,
            "created_at": variable.created_at,
            "updated_at": variable.updated_at,
            "is_signed": False,
            "is_encrypted": False,
        }

    # -- the API's operations (each raises Problem for a non-success answer) ----------------------

    def list_rooms(self) -> list[tuple[int, dict[str, object]]]:
        """Rooms in creation order, as ``(sort position, JSON)`` for the paginator."""
        with self.lock:
            return [(r.seq, self.room_json(r)) for r in self.rooms.values()]

    def list_visitor_chats(
        self, room_id: str, visitor_id: str, is_ended: bool | None
    ) -> list[tuple[int, dict[str, object]]]:
        """A visitor's chats in a room, newest first (sort position negated for the paginator)."""
        with self.lock:
            self._room(room_id)
            seen = (room_id, visitor_id) in self._visitors
            if not seen and self.switches.unseen_visitor_chats == "not_found":
                raise not_found()
            chats = self._chats_of(room_id, visitor_id)
            if is_ended is not None and self.switches.honour_is_ended:
                chats = [c for c in chats if c.is_ended == is_ended]
            return [(-c.seq, self.chat_json(c)) for c in chats]

    def list_variables(self, room_id: str, visitor_id: str) -> list[tuple[int, dict[str, object]]]:
        with self.lock:
            self._room(room_id)
            visitor = self._visitors.get((room_id, visitor_id))
            if visitor is None:
                raise not_found()
            return [
                (v.seq, self.variable_json(room_id, visitor_id, v))
                for v in visitor.variables.values()
            ]

    def set_variable(
        self, room_id: str, visitor_id: str, key: str, value: str
    ) -> tuple[int, dict[str, object]]:
        """Store one key; ``(status, JSON)`` with 201 for a new key, the switch's for a re-POST."""
        with self.lock:
            self._room(room_id)
            seen = (room_id, visitor_id) in self._visitors
            if not seen and self.switches.unseen_visitor_variables == "not_found":
                raise not_found()
            variable, created = self._store(room_id, visitor_id, key, value)
            status = 201 if created else self.switches.repost_status
            return status, self.variable_json(room_id, visitor_id, variable)

    def _store(self, room_id: str, visitor_id: str, key: str, value: str) -> tuple[Variable, bool]:
        """Create or overwrite a key (the visitor is seen from then on); true when created."""
        visitor = self._visitors.setdefault((room_id, visitor_id), _Visitor())
        stamp = now()
        variable = visitor.variables.get(key)
        if variable is not None:
            variable.value, variable.updated_at = value, stamp
            return variable, False
        variable = Variable(key, value, seq=self._next_seq(), created_at=stamp, updated_at=stamp)
        visitor.variables[key] = variable
        return variable, True

    def delete_variable(self, room_id: str, visitor_id: str, key: str) -> None:
        with self.lock:
            self._room(room_id)
            visitor = self._visitors.get((room_id, visitor_id))
            if visitor is None or visitor.variables.pop(key, None) is None:
                raise not_found()

    def owned_chat(self, chat_id: str) -> dict[str, object]:
        with self.lock:
            return self.chat_json(self._owned_chat(chat_id))

    def _owned_chat(self, chat_id: str) -> Chat:
        """Chats in rooms of another organization are not in ``owned_chats``: 404."""
        chat = self.chats.get(chat_id.lower())
        if chat is None or self.rooms[chat.room_id].organization_id != self.organization_id:
            raise not_found()
        return chat

    def update_chat(self, chat_id: str, changes: dict[str, bool]) -> dict[str, object]:
        """PATCH an owned chat: ``is_ended: true`` ends and locks it."""
        with self.lock:
            chat = self._owned_chat(chat_id)
            if chat.is_ended and changes:
                if self.switches.end_ended_chat == "locked":
                    raise Problem(400, {"detail": "The chat has ended and is locked."})
                return self.chat_json(chat)
            if changes.get("is_ended"):
                chat.is_ended = True
                chat.ended_at = chat.updated_at = now()
            return self.chat_json(chat)

    # -- the browser's side (what the loader stand-in does for the page) -------------------------

    def domain_room_id(self) -> str:
        """The room of the site's pages: the one with a domain, else the first owned one."""
        with self.lock:
            rooms = [r for r in self.rooms.values() if r.organization_id == self.organization_id]
            return next((r.id for r in rooms if r.domain), rooms[0].id)

    def open_chat(self, visitor_id: str) -> Chat | None:
        """The visitor's newest open chat in the domain room (what the chat box shows)."""
        with self.lock:
            room_id = self.domain_room_id()
            return next((c for c in self._chats_of(room_id, visitor_id) if not c.is_ended), None)

    def visitor_says(self, visitor_id: str, text: str) -> Chat:
        """A line typed in the chat box: it goes to the visitor's open chat in the domain room,
        which is started first when there is none (as giosg starts a chat)."""
        with self.lock:
            chat = self.open_chat(visitor_id)
            if chat is None:
                room_id = self.domain_room_id()
                self.enter(visitor_id, [room_id])
                chat = self._new_chat(room_id, visitor_id)
            chat.messages.append(text)
            chat.updated_at = now()
            return chat

    def close_chats(self, visitor_id: str) -> int:
        """``_giosg('chat', 'close', {all: true})``: the visitor ends their open chats, in any
        room (shared ones too: the widget can close what the API token cannot)."""
        with self.lock:
            closed = 0
            for chat in self.chats.values():
                if chat.visitor_id == visitor_id and not chat.is_ended:
                    chat.is_ended = True
                    chat.ended_at = chat.updated_at = now()
                    closed += 1
            return closed

    def remove_all_variables(self, visitor_id: str, room_ids: list[str] | None) -> int:
        """``_giosg('visitor', 'removeAll', rooms)``: without rooms, only the domain room's."""
        with self.lock:
            if room_ids is None:
                room_ids = [self.domain_room_id()]
            removed = 0
            for room_id in room_ids:
                visitor = self._visitors.get((room_id.lower(), visitor_id))
                if visitor is not None:
                    removed += len(visitor.variables)
                    visitor.variables.clear()
            return removed
