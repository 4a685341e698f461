"""The record of outcomes: every request opened, and the one outcome it ended with.

The ledger records; it does not judge. A second outcome for the same request, or an
outcome for a request never opened, is kept as a violation for the accounting
checker (`relay.checkers`) to report, so a bug in the model fails the run with its
seed instead of vanishing into a count.

Counts are kept per 5-minute bucket of the request's arrival time, so each bucket
balances on its own: requests == completed + overflows + timeouts + errors.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from relay.request import Outcome, Request

BUCKET_S = 300.0
OUTCOMES: tuple[Outcome, ...] = tuple(Outcome)
_INDEX = {o: i for i, o in enumerate(OUTCOMES)}  # per-close lookup on the hot path


@dataclass(slots=True)
class Tally:
    """Requests and their outcomes for one node or one time bucket."""

    requests: int = 0
    outcomes: list[int] = field(default_factory=lambda: [0] * len(OUTCOMES))

    def count(self, outcome: Outcome) -> int:
        """How many ended with `outcome`."""
        return self.outcomes[_INDEX[outcome]]


class Ledger:
    """Outcomes of all requests of a run, by node and by arrival bucket."""

    def __init__(self) -> None:
        self._next_id = 0
        self._open: dict[int, Request] = {}
        self.total = Tally()
        self.buckets: dict[int, Tally] = {}
        self.latencies: dict[int, array[float]] = {}  # completed, by bucket, seconds
        self.nodes: dict[int, Tally] = {}  # by node number
        self.refusals: dict[str, int] = {}
        self.violations: list[str] = []
        self.last_outcome_at = 0.0

    def open(self, cs: int, attempt: int, now: float) -> Request:
        """A new request arrives from CS `cs` at `now`."""
        req = Request(self._next_id, cs, attempt, now)
        self._next_id += 1
        self._open[req.id] = req
        self.total.requests += 1
        b = int(now // BUCKET_S)
        tally = self.buckets.get(b)
        if tally is None:
            tally = self.buckets[b] = Tally()
            self.latencies[b] = array("d")
        tally.requests += 1
        return req

    def at_node(self, req: Request, number: int) -> None:
        """`req` was placed on (or refused by) node `number`."""
        req.node = number
        tally = self.nodes.get(number)
        if tally is None:
            tally = self.nodes[number] = Tally()
        tally.requests += 1

    def close(self, req: Request, outcome: Outcome, now: float, refusal: str | None = None) -> None:
        """`req` ended with `outcome` at `now`."""
        if self._open.pop(req.id, None) is None:
            self.violations.append(f"request {req.id}: second outcome {outcome.value} at {now}")
            return
        i = _INDEX[outcome]
        self.total.outcomes[i] += 1
        b = int(req.arrived // BUCKET_S)
        self.buckets[b].outcomes[i] += 1
        if req.node >= 0:
            self.nodes[req.node].outcomes[i] += 1
        if outcome is Outcome.COMPLETED:
            self.latencies[b].append(now - req.arrived)
        if refusal is not None:
            self.refusals[refusal] = self.refusals.get(refusal, 0) + 1
        if now > self.last_outcome_at:
            self.last_outcome_at = now

    @property
    def still_open(self) -> list[Request]:
        """Requests with no outcome yet (lost, once the run is over)."""
        return list(self._open.values())

    @property
    def closed(self) -> int:
        """How many requests have their outcome."""
        return sum(self.total.outcomes)
