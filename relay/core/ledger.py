"""The record of outcomes: every request opened, and the one outcome it ended with.

The ledger records; it does not judge. A second outcome for the same request, or an
outcome for a request never opened, is kept as a violation for the accounting
checker (`relay.core.checkers`) to report, so a bug in the model fails the run with its
seed instead of vanishing into a count.

Counts are kept per 5-minute bucket of the request's arrival time, so each bucket
balances on its own: requests == completed + overflows + timeouts + errors.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from typing import Final

from relay.core.request import Outcome, Request
from relay.core.sketch import Sketch

BUCKET_S: Final = 300.0
OUTCOMES: tuple[Outcome, ...] = tuple(Outcome)
_SLOT: Final = {o: i for i, o in enumerate(OUTCOMES, 1)}  # an outcome's slot in Tally.counts
_COMPLETED: Final = _SLOT[Outcome.COMPLETED]


class Tally:
    """Requests and their outcomes for one node or one time bucket."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        # [requests, then one count per outcome in OUTCOMES order]: one flat list,
        # so the per-request path increments a list slot and nothing else.
        self.counts = [0] * (1 + len(OUTCOMES))

    @property
    def requests(self) -> int:
        """How many requests arrived (or were placed on the node)."""
        return self.counts[0]

    def count(self, outcome: Outcome) -> int:
        """How many ended with `outcome`."""
        return self.counts[_SLOT[outcome]]

    @property
    def closed(self) -> int:
        """How many have their outcome."""
        return sum(self.counts) - self.counts[0]


class LatencyHistogram:
    """Latencies counted into fixed buckets (Prometheus' `le` bounds): memory that
    stays flat however many requests a server answers. `append` as a `Sketch`'s,
    so a request records its latency the same way into either."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = sorted(bounds)  # upper bounds, seconds; above the last: +Inf
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.total = 0.0  # seconds, the sum of every latency

    def append(self, seconds: float) -> None:
        """Count one latency."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.total += seconds

    def cumulative(self) -> list[int]:
        """Latencies at or below each bound, then all of them (Prometheus' buckets)."""
        out, running = [], 0
        for n in self.counts:
            running += n
            out.append(running)
        return out


class Ledger:
    """Outcomes of all requests of a run, by node and by arrival bucket.

    Completed requests' latencies go into one `Sketch` per arrival bucket (within
    0.5% at every quantile, memory flat in the length of a run). With
    `latency_bounds` (serve mode's /metrics buckets) every request's time to its
    outcome goes instead into one `LatencyHistogram` per outcome (`by_outcome`;
    `histogram` is the completed requests'), and into one per node and outcome
    (`node_durations`) for those placed on (or refused by) a node. `samples` also
    keeps every completed latency, exactly (to check the sketches against).
    Overflows a node refused are counted by node and reason (`node_refusals`).
    """

    def __init__(
        self, latency_bounds: Sequence[float] | None = None, samples: bool = False
    ) -> None:
        self.by_outcome: dict[Outcome, LatencyHistogram] | None = None
        self.histogram: LatencyHistogram | None = None
        self._by_slot: list[LatencyHistogram] | None = None
        self._bounds = list(latency_bounds or ())
        # Serve mode's durations by node number and outcome.
        self.node_durations: dict[int, dict[Outcome, LatencyHistogram]] | None = None
        if latency_bounds is not None:
            self.node_durations = {}
            self.by_outcome = {o: LatencyHistogram(latency_bounds) for o in OUTCOMES}
            self.histogram = self.by_outcome[Outcome.COMPLETED]
            self._by_slot = [self.histogram, *self.by_outcome.values()]  # by Tally slot
        self.samples: array[float] | None = array("d") if samples else None
        self._next_id = 0
        # The requests without an outcome yet, in the order they were opened: by
        # identity (compiled, a pointer's hash; an id would be boxed at every look-up).
        self._open: dict[Request, None] = {}
        self.total = Tally()
        self.buckets: dict[int, Tally] = {}
        self.latencies: dict[int, Sketch] = {}  # completed, by bucket, seconds
        self._bucket = -(1 << 62)  # the last arrival's bucket, its tally and sketch
        self._tally = Tally()
        self._sketch = Sketch()
        self.nodes: dict[int, Tally] = {}  # by node number
        self.refusals: dict[str, int] = {}
        self.node_refusals: dict[int, dict[str, int]] = {}  # by node number, then reason
        self.violations: list[str] = []
        self.last_outcome_at = 0.0
        # Chip-writing operations (by key) and the registrations the backend applied.
        self.chip_operations: set[int] = set()
        self.registrations: dict[int, int] = {}  # key -> times applied
        self.deduplicated = 0  # re-sends an idempotent backend recognised

    def open(self, cs: int, attempt: int, now: float, key: int = -1, chip: bool = False) -> Request:
        """A new request arrives from CS `cs` at `now`: a first attempt (its key is its
        id) or a re-send of operation `key`. `chip`: the operation already wrote the
        card's chip and must be registered."""
        rid = self._next_id
        self._next_id = rid + 1
        req = Request(rid, cs, attempt, now, key=rid if key < 0 else key)
        self._open[req] = None
        if chip:
            req.chip = True
            self.chip_operations.add(req.key)
        total = self.total.counts
        total[0] = total[0] + 1
        # Arrivals come in time order: the bucket of the last one is nearly always
        # this one's, so its tally and sketch are kept at hand (no lookup, no fmod).
        b = int(now / BUCKET_S) if now >= 0 else int(now // BUCKET_S)
        if b != self._bucket:
            tally = self.buckets.get(b)
            if tally is None:
                tally = self.buckets[b] = Tally()
                self.latencies[b] = Sketch()
            self._bucket, self._tally, self._sketch = b, tally, self.latencies[b]
        tally = self._tally
        counts = tally.counts
        counts[0] = counts[0] + 1
        req.bucket_counts = counts
        histogram = self.histogram
        req.bucket_latencies = self._sketch if histogram is None else histogram
        return req

    def at_node(self, req: Request, number: int) -> None:
        """`req` was placed on (or refused by) node `number`."""
        req.node = number
        tally = self.nodes.get(number)
        if tally is None:
            tally = self.nodes[number] = Tally()
        counts = tally.counts
        counts[0] = counts[0] + 1
        req.node_counts = counts

    def close(self, req: Request, outcome: Outcome, now: float, refusal: str | None = None) -> None:
        """`req` ended with `outcome` at `now`."""
        if req not in self._open:
            self.violations.append(f"request {req.id}: second outcome {outcome.value} at {now}")
            return
        del self._open[req]
        req.outcome = outcome
        i = _SLOT[outcome]
        # `c[i] = c[i] + 1`, not `c[i] += 1`: compiled, an int's addition, where `+=`
        # on a list item is the interpreter's generic in-place add.
        total = self.total.counts
        total[i] = total[i] + 1
        counts = req.bucket_counts
        counts[i] = counts[i] + 1
        node_counts = req.node_counts
        if node_counts is not None:
            node_counts[i] = node_counts[i] + 1
        if i == _COMPLETED:
            latencies = req.bucket_latencies
            if isinstance(latencies, Sketch):
                latencies.append(now - req.arrived)  # compiled: a native call
            else:
                latencies.append(now - req.arrived)
            if self.samples is not None:
                self.samples.append(now - req.arrived)
        elif self._by_slot is not None:
            self._by_slot[i].append(now - req.arrived)
        node = req.node
        if refusal is not None:
            req.refusal = refusal
            self.refusals[refusal] = self.refusals.get(refusal, 0) + 1
            if node >= 0:  # the node refused it (its connection limit)
                by_reason = self.node_refusals.setdefault(node, {})
                by_reason[refusal] = by_reason.get(refusal, 0) + 1
        if self.node_durations is not None and node >= 0:
            self._on_node(node)[outcome].append(now - req.arrived)
        if now > self.last_outcome_at:
            self.last_outcome_at = now

    def _on_node(self, node: int) -> dict[Outcome, LatencyHistogram]:
        """Node `node`'s duration histograms by outcome (serve mode), made when first
        needed: nodes can be added during a run."""
        assert self.node_durations is not None
        by = self.node_durations.get(node)
        if by is None:
            by = self.node_durations[node] = {o: LatencyHistogram(self._bounds) for o in OUTCOMES}
        return by

    def register(self, req: Request, idempotent: bool) -> bool:
        """The backend will apply `req`'s registration (it was forwarded to it). An
        idempotent backend applies each key at most once: True when it recognised
        the key and applies nothing."""
        applied = self.registrations.get(req.key, 0)
        if applied and idempotent:
            self.deduplicated += 1
            return True
        self.registrations[req.key] = applied + 1
        return False

    @property
    def inconsistent(self) -> int:
        """Chip-writing operations whose registration was never applied: the card and
        the card management system disagree (the card must be reissued)."""
        return sum(1 for key in self.chip_operations if key not in self.registrations)

    @property
    def duplicates_applied(self) -> int:
        """Registrations applied more than once for one operation."""
        return sum(n - 1 for n in self.registrations.values() if n > 1)

    @property
    def still_open(self) -> list[Request]:
        """Requests with no outcome yet (lost, once the run is over)."""
        return list(self._open)

    @property
    def closed(self) -> int:
        """How many requests have their outcome."""
        return self.total.closed
