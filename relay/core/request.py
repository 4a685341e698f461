"""One request through a relay node: its lifecycle as a transition table.

The rules, as the business application ran them (incident-2016.md, "Inside one relay
server"): a request is RECEIVED from a CS, its work area is ALLOCATED, it waits on the
HSM (HSM_PENDING), is FORWARDED to the backend, and is ANSWERED or FAILED; either way
it is then CLEANED UP (timer reset, work area freed). Any other move is a bug in the
model and raises `LifecycleError` (h11 style: the table is the specification).

A request ends with exactly one `Outcome`; a refused connection (overflow) never
enters the lifecycle at all.
"""

from __future__ import annotations

import enum
from array import array
from typing import Final, Protocol


class Outcome(enum.StrEnum):
    """How a request ended, as counted in the summary."""

    COMPLETED = "completed"
    OVERFLOW = "overflow"  # refused at admission: connection cap reached
    TIMEOUT = "timeout"  # the relay step's timer fired first
    ERROR = "error"  # the node failed it (crash, HSM failure)


class Phase(enum.Enum):
    """Where a request is in the relay step."""

    RECEIVED = "received"
    ALLOCATED = "allocated"
    HSM_PENDING = "hsm_pending"
    FORWARDED = "forwarded"
    ANSWERED = "answered"
    FAILED = "failed"
    CLEANED = "cleaned"

    # Members are singletons compared by identity; hashing them by identity keeps
    # look-ups by phase in C (Enum's own __hash__ is Python code).
    __hash__ = object.__hash__


_TRANSITIONS: Final[dict[Phase, frozenset[Phase]]] = {
    Phase.RECEIVED: frozenset({Phase.ALLOCATED, Phase.FAILED}),
    Phase.ALLOCATED: frozenset({Phase.HSM_PENDING, Phase.FAILED}),
    Phase.HSM_PENDING: frozenset({Phase.FORWARDED, Phase.FAILED}),
    Phase.FORWARDED: frozenset({Phase.ANSWERED, Phase.FAILED}),
    Phase.ANSWERED: frozenset({Phase.CLEANED}),
    Phase.FAILED: frozenset({Phase.CLEANED}),
    Phase.CLEANED: frozenset(),
}


class _Moves:
    """A phase and the moves the table allows out of it, each the next phase's own
    `_Moves`: a request holds its phase's, so a move is checked by identity over a
    list or two, with no hashing (compiled: native attribute reads)."""

    __slots__ = ("out", "phase")

    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self.out: list[_Moves] = []


def _moves() -> dict[Phase, _Moves]:
    """`_TRANSITIONS` as linked `_Moves`, in the table's order."""
    moves = {phase: _Moves(phase) for phase in _TRANSITIONS}
    for phase, allowed in _TRANSITIONS.items():
        moves[phase].out = [moves[to] for to in Phase if to in allowed]
    return moves


_START: Final = _moves()[Phase.RECEIVED]


class LifecycleError(Exception):
    """A request was moved along a transition the table does not allow."""


class LatencySink(Protocol):
    """Where a completed request's latency goes: its bucket's array of samples, or
    a bounded histogram (`relay.core.ledger.LatencyHistogram`)."""

    def append(self, seconds: float, /) -> None: ...


_NO_LATENCIES: Final[array[float]] = array("d")


class Request:
    """One upstream request message; a retry is a new Request with `attempt` + 1.

    A plain class, not a dataclass: compiled, its constructor is native (a
    dataclass's runs interpreted), and one is made per message of a whole day.
    """

    def __init__(
        self,
        id: int,
        cs: int,
        attempt: int,
        arrived: float,
        key: int = -1,
    ) -> None:
        self.id = id
        self.cs = cs  # the municipality whose community server sent it
        self.attempt = attempt  # 0 for the first try
        self.arrived = arrived  # seconds since midnight
        self.node = -1  # index of the relay node serving it, -1 before routing
        self.phase = Phase.RECEIVED
        self._moves = _START  # the moves out of `phase` (`_TRANSITIONS`)
        self.area: int | None = None  # work-area handle once allocated
        self.outcome: Outcome | None = None  # set by the ledger when the request ends
        self.refusal: str | None = None  # why an overflow was refused (Refused.reason)
        self.key = key  # the operation's idempotency key: the id of its first attempt
        self.chip = False  # the operation wrote the card's IC chip before registering
        # Where the ledger counts this request (its arrival bucket's counts and
        # latencies, its node's counts), set when it is opened and placed: closing
        # it then costs no lookup.
        self.bucket_counts: list[int] = []
        self.bucket_latencies: LatencySink = _NO_LATENCIES
        self.node_counts: list[int] | None = None

    def __repr__(self) -> str:
        return (
            f"Request(id={self.id}, cs={self.cs}, attempt={self.attempt}, "
            f"phase={self.phase.value}, outcome={self.outcome})"
        )

    def advance(self, to: Phase) -> None:
        """Move to phase `to`, or raise LifecycleError if the table forbids it."""
        for moves in self._moves.out:
            if moves.phase is to:
                self._moves = moves
                self.phase = to
                return
        raise LifecycleError(f"request {self.id}: {self.phase.value} -> {to.value}")
