"""The clock of a server that runs the model faster than real time (`serve --speed`).

trio asks its clock for the time and for how long to sleep until a deadline; this
one answers in the model's seconds, `speed` of them per real second. Every wait of
the model (service times, think times, deadlines, health checks) then passes `speed`
times faster, with no change to the model or the driver: the speed is a property of
time, injected like any clock. What must stay in real seconds (a client's frame
timeout, the HTTP endpoints' limits) is scaled by the server itself (`Limits.scale`).
"""

from __future__ import annotations

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
