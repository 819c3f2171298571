"""Fault injection: what goes wrong, on which endpoint, how often, deterministically under a seed.

Whether a fault hits a request is decided from a hash of the seed, the fault, the request line and
how often that request line was seen before: the same test meets the same faults on every run,
whatever order concurrent requests arrive in.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Literal

#: The endpoints faults and counts are kept for; ``"*"`` in a fault means all of them.
ENDPOINTS = (
    "users_me",
    "list_rooms",
    "list_variables",
    "set_variable",
    "delete_variable",
    "list_chats",
    "get_chat",
    "end_chat",
    "loader",
)


@dataclass(frozen=True)
class Fault:
    """One kind of trouble on one endpoint (or ``"*"``, every endpoint).

    At most one of ``status`` (an error answer: 500, 502, 503, 429 …), ``drop`` (the connection
    closes without an answer), ``hang`` (no answer until the client gives up or the simulator
    stops) and ``late`` (seconds: the request takes effect that much later, and the connection
    then closes without an answer; a client whose timeout is shorter has given up on it by then,
    as it would on a giosg that applies a write after its answer was lost); ``latency``
    (seconds) delays whatever the answer is. ``times`` limits the fault to its
    first hits; ``rate`` is the share of requests it hits.
    """

    endpoint: str = "*"
    latency: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    drop: bool = False
    hang: bool = False
    late: float | None = None
    times: int | None = None
    rate: float = 1.0

    def __post_init__(self) -> None:
        if self.endpoint != "*" and self.endpoint not in ENDPOINTS:
            raise ValueError(
                f"unknown endpoint {self.endpoint!r}; known: '*', {', '.join(ENDPOINTS)}"
            )
        if not _is_number(self.latency) or self.latency < 0:
            raise ValueError(f"latency must be a number of seconds ≥ 0, not {self.latency!r}")
        if self.status is not None and (
            type(self.status) is not int or not 400 <= self.status <= 599
        ):
            raise ValueError(f"status must be an error status (400-599), not {self.status!r}")
        if self.retry_after is not None and not isinstance(self.retry_after, str):
            raise ValueError(f"retry_after must be a header value (str), not {self.retry_after!r}")
        if self.retry_after is not None and self.status is None:
            raise ValueError("retry_after goes with a status (429 or 503)")
        for name in ("drop", "hang"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}")
        if self.late is not None and (not _is_number(self.late) or not self.late > 0):
            raise ValueError(f"late must be a number of seconds > 0, not {self.late!r}")
        decisive = (self.status is not None) + self.drop + self.hang + (self.late is not None)
        if decisive > 1:
            raise ValueError("a fault is at most one of status, drop, hang and late")
        if not (decisive or self.latency):
            raise ValueError("a fault needs a status, drop, hang, late or latency")
        if self.times is not None and (type(self.times) is not int or self.times < 1):
            raise ValueError(f"times must be an integer ≥ 1, not {self.times!r}")
        if not _is_number(self.rate) or not 0 < self.rate <= 1:
            raise ValueError(f"rate must be in (0, 1], not {self.rate!r}")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Outcome:
    """What the server does with one request."""

    latency: float = 0.0
    action: Literal["answer", "status", "drop", "hang", "late"] = "answer"
    status: int | None = None
    retry_after: str | None = None
    late: float = 0.0  #: seconds until a late request takes effect


class FaultPlan:
    """The active faults and the bookkeeping that makes their hits deterministic."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._used: list[int] = []
        self._seen: Counter[str] = Counter()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)
            self._used.append(0)

    def clear(self) -> None:
        """No faults, and the request history the hits are drawn from forgotten."""
        with self._lock:
            self._faults.clear()
            self._used.clear()
            self._seen.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def decide(self, endpoint: str, request_line: str) -> Outcome:
        """The outcome for a request: latencies of all faults that hit add up; the first hitting
        status, drop, hang or late decides the answer."""
        with self._lock:
            occurrence = self._seen[request_line]
            self._seen[request_line] += 1
            latency = 0.0
            decisive: Fault | None = None
            for index, fault in enumerate(self._faults):
                if fault.endpoint not in ("*", endpoint):
                    continue
                if fault.times is not None and self._used[index] >= fault.times:
                    continue
                if fault.rate < 1 and self._draw(index, request_line, occurrence) >= fault.rate:
                    continue
                failing = fault.status is not None or fault.drop or fault.hang or bool(fault.late)
                if failing and decisive is not None:
                    continue  # the answer is already decided; this fault does not hit
                self._used[index] += 1
                latency += fault.latency
                if failing:
                    decisive = fault
        if decisive is None:
            return Outcome(latency=latency)
        if decisive.status is not None:
            return Outcome(latency, "status", decisive.status, decisive.retry_after)
        if decisive.late is not None:
            return Outcome(latency, "late", late=decisive.late)
        return Outcome(latency, "drop" if decisive.drop else "hang")

    def _draw(self, index: int, request_line: str, occurrence: int) -> float:
        """A uniform number in [0, 1) fixed by the seed, the fault and the request."""
        text = f"{self.seed}|{index}|{request_line}|{occurrence}".encode()
        digest = hashlib.blake2b(text, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64
