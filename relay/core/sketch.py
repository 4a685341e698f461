"""Latencies as a mergeable sketch: memory flat in the length of a run.

A replay used to keep every completed request's latency (8 bytes each: 210 MB for
the 67 days of January to March 2016, several GB for a year). A `Sketch` counts
them in logarithmic bins instead, DDSketch's way: bin i holds the values in
(gamma^(i-1), gamma^i], gamma = (1 + ALPHA) / (1 - ALPHA), and a quantile is read
as its bin's midpoint 2 gamma^i / (gamma + 1), within ALPHA (0.5%) of the true
sample's value, relatively. The bins a 5-minute bucket uses (latencies from a few
ms to the relay's 19 s timeout) are some 800 counts of 4 bytes, stored densely
between the lowest and highest bin seen. Sketches merge exactly (bin counts add),
so days run apart (the sweep's executors) combine into the same figures as one run.

Quantiles are nearest-rank (the smallest value with at least q of the values at or
below it), as `numpy.percentile(method="inverted_cdf")` gives on the samples; the
minimum and maximum are kept exactly, and the sum, for the mean.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Final

ALPHA: Final = 0.005  # relative accuracy of every quantile
GAMMA: Final = (1.0 + ALPHA) / (1.0 - ALPHA)
_LOG_GAMMA: Final = math.log(GAMMA)
FLOOR: Final = 1e-6  # seconds: values at or below count in the bin of zero


class Sketch:
    """Counts of values in logarithmic bins (see the module doc). `append` as an
    array's, so a request records its latency the same way into either."""

    __slots__ = ("count", "counts", "high", "low", "offset", "total", "zeros")

    def __init__(self) -> None:
        self.counts: array[int] = array("I")  # bins offset, offset + 1, ...
        self.offset = 0
        self.zeros = 0  # values at or below FLOOR
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf

    def append(self, value: float) -> None:
        """Count one value."""
        self.count += 1
        self.total += value
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        if value <= FLOOR:
            self.zeros += 1
            return
        self._add(math.ceil(math.log(value) / _LOG_GAMMA), 1)

    def _add(self, i: int, n: int) -> None:
        counts = self.counts
        if not counts:
            self.offset = i
            counts.append(n)
            return
        j = i - self.offset
        if j < 0:
            self.counts = counts = array("I", bytes(4 * -j)) + counts
            self.offset = i
            j = 0
        elif j >= len(counts):
            counts.extend(array("I", bytes(4 * (j - len(counts) + 1))))
        counts[j] += n

    def merge(self, other: Sketch) -> None:
        """Add `other`'s values to these (exactly: bin counts add)."""
        if not other.count:
            return
        self.count += other.count
        self.total += other.total
        self.zeros += other.zeros
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        for j, n in enumerate(other.counts):
            if n:
                self._add(other.offset + j, n)

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """The nearest-rank quantiles `qs` (0..1), each within ALPHA of the sample's
        value; NaN when empty. q = 1 is the maximum, exactly."""
        if not self.count:
            return [math.nan] * len(qs)
        out = []
        for q in qs:
            rank = max(1, math.ceil(q * self.count - 1e-9))  # 1-based, nearest rank
            out.append(self._at(rank))
        return out

    def _at(self, rank: int) -> float:
        if rank >= self.count:
            return self.high
        seen = self.zeros
        if rank <= seen:
            return self.low
        for j, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                value = 2.0 * GAMMA ** (self.offset + j) / (GAMMA + 1.0)
                return min(max(value, self.low), self.high)
        return self.high

    def at_most(self, value: float) -> int:
        """How many values are at or below `value`, to a bin: those of the bins whose
        upper end is at or below it (the bin holding `value` counts when `value`
        is its upper end)."""
        if value < self.low:
            return 0
        if value >= self.high:
            return self.count
        seen = self.zeros if value > FLOOR else (self.zeros if value >= 0 else 0)
        if value <= FLOOR:
            return seen
        last = math.floor(math.log(value) / _LOG_GAMMA + 1e-12)  # bins ending at or below
        for j, n in enumerate(self.counts):
            if self.offset + j > last:
                break
            seen += n
        return seen

    @property
    def mean(self) -> float:
        """The exact mean; NaN when empty."""
        return self.total / self.count if self.count else math.nan

    def state(self) -> bytes:
        """The sketch's whole state as bytes (a run's fingerprint; `from_state` reads
        it back, in another process)."""
        head = array("d", [self.offset, self.zeros, self.count, self.total, self.low, self.high])
        return head.tobytes() + self.counts.tobytes()

    @staticmethod
    def from_state(state: bytes) -> Sketch:
        """The sketch `state()` gave."""
        head = array("d")
        head.frombytes(state[:48])
        out = Sketch()
        out.offset, out.zeros, out.count = int(head[0]), int(head[1]), int(head[2])
        out.total, out.low, out.high = head[3], head[4], head[5]
        out.counts.frombytes(state[48:])
        return out


def merged(sketches: Iterable[Sketch]) -> Sketch:
    """One sketch of every value of `sketches`."""
    out = Sketch()
    for s in sketches:
        out.merge(s)
    return out
