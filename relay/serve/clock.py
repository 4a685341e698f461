"""The clock of a server that runs the model faster than real time (`serve --speed`).

trio asks its clock for the time and for how long to sleep until a deadline; this
one answers in the model's seconds, `speed` of them per real second. Every wait of
the model (service times, think times, deadlines, health checks) then passes `speed`
times faster, with no change to the model or the driver: the speed is a property of
time, injected like any clock. What must stay in real seconds (a client's frame
timeout, the HTTP endpoints' limits) is scaled by the server itself (`Limits.scale`).
"""

from __future__ import annotations

import math
import time

import trio


class ScaledClock(trio.abc.Clock):
    """trio's clock, `speed` model seconds per real second, from 0 at start."""

    def __init__(self, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._real0 = 0.0

    def start_clock(self) -> None:
        """Called by trio once, as the run starts."""
        self._real0 = time.perf_counter()

    def current_time(self) -> float:
        """Model seconds since the run started."""
        return (time.perf_counter() - self._real0) * self.speed

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Real seconds until the model's `deadline`."""
        return max(0.0, (deadline - self.current_time()) / self.speed)


class VirtualClock(trio.abc.Clock):
    """Virtual time that jumps to the next deadline whenever every task waits, as
    `trio.testing.MockClock(autojump_threshold=0)` does, without reading a real
    clock on each `current_time` (MockClock converts from `perf_counter` on every
    call, a tenth of a simulated-network run). For runs with no real I/O: a task
    waiting on a socket or a thread would see its timeouts jump past."""

    def __init__(self) -> None:
        self._now = 0.0

    def start_clock(self) -> None:
        """Time starts at 0."""

    def current_time(self) -> float:
        """The virtual instant."""
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """trio asks only when no task can run: jump to `deadline` and sleep not at
        all (a run with nothing left to wake sleeps, as trio does, in its I/O poll)."""
        if deadline == math.inf:
            return math.inf
        if deadline > self._now:
            self._now = deadline
        return 0.0
