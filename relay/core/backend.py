"""The card management business server behind the relays.

It serves many requests at once (a thread each), so a request's own processing time
does not depend on the others: each takes a service time drawn from the scenario's
distribution. Two things of 22 February 2016 make it depend on them
(incident-2016.md, "The backend slowdown"; docs/backend.md):

- **Thread names and the log.** A thread writes its name to the log file when it
  takes a request, and the log file takes one write at a time. Under the legacy
  naming rule a reused name grows each time it is reused while traffic never
  pauses; a write costs time in proportion to the name's length. So the log
  becomes a queue whose service time grows all day, until a pause in traffic (or a
  restart) lets names start over.
- **Memory.** The backend's allocation bounds how many requests it holds at once;
  beyond that a request waits for one to leave (512 MB on legacy, 2 GB on fixed).

With no growth, no log cost and no memory bound (the defaults), a request's answer
arrives its service time after it was forwarded, as on any other day.
"""

from __future__ import annotations

import heapq
import math

from relay.core.rng import Sampler, draws


class Backend:
    """The simulated backend, shared by every relay node."""

    __slots__ = (
        "_base",
        "_base_chars",
        "_capacity",
        "_growth",
        "_last",
        "_log_free",
        "_pause",
        "_per_char",
        "_service",
        "_slots",
        "_slowdown",
        "calls",
        "memory_waits",
        "name_chars",
        "wait_total",
    )

    def __init__(
        self,
        service: Sampler,
        *,
        base_chars: int = 24,
        growth_chars: float = 0.0,
        reset_pause: float = 300.0,
        log_per_char: float = 0.0,
        capacity: int | None = None,
    ) -> None:
        """`log_per_char` in seconds; `capacity`: requests held at once (None: no bound)."""
        self._base = self._service = draws(service)
        self._slowdown = 1.0
        self._base_chars = base_chars
        self._growth = growth_chars
        self._pause = reset_pause
        self._per_char = log_per_char
        self._capacity = capacity or 0
        # When each request held now leaves (at most `capacity` of them): the earliest
        # is the next place free. None: no bound.
        self._slots: list[float] | None = [] if capacity is not None else None
        self._last = -math.inf  # when the previous request came in
        self._log_free = -math.inf  # when the log file finishes its last write
        self.name_chars = float(base_chars)  # the length of the name being reused now
        self.calls = 0
        self.memory_waits = 0  # requests that waited for memory
        self.wait_total = 0.0  # seconds those requests waited for it, in all

    @property
    def capacity(self) -> int | None:
        """Requests the backend holds at once (None: no bound)."""
        return self._capacity if self._slots is not None else None

    @property
    def slowdown(self) -> float:
        """How many times slower than the scenario's service times (an injected fault)."""
        return self._slowdown

    @slowdown.setter
    def slowdown(self, factor: float) -> None:
        # Swap the sampler rather than multiply on every request: replays never pay.
        base = self._base
        self._slowdown = factor
        self._service = base if factor == 1.0 else draws(lambda: base.draw() * factor)

    def submit(self, now: float) -> float:
        """Forward a request at `now`; returns when the answer arrives."""
        self.calls += 1
        start = now
        slots = self._slots
        if slots is not None and len(slots) >= self._capacity:
            free = heapq.heappop(slots)  # the place that frees first
            if free > start:
                # Accumulated here only: a backend without a memory bound (every
                # replay's default) pays nothing per request for the figure.
                self.wait_total += free - start
                start = free
                self.memory_waits += 1
        if self._per_char:
            # Names grow while traffic never pauses, and start over after a pause.
            if now - self._last >= self._pause:
                self.name_chars = float(self._base_chars)
            else:
                self.name_chars += self._growth
            # The thread logs its name: one write at a time on the log file.
            logged = max(start, self._log_free) + self.name_chars * self._per_char
            self._log_free = start = logged
        self._last = now
        done = start + self._service.draw()
        if slots is not None:
            heapq.heappush(slots, done)
        return done

    def restart(self, now: float) -> None:
        """Operators restart the backend at `now`: names start over, the log's backlog
        and the memory held are gone. (Requests already inside are answered as
        scheduled: the model does not drop them.)"""
        self.name_chars = float(self._base_chars)
        self._last = -math.inf  # the next request takes a fresh thread, a fresh name
        self._log_free = now
        if self._slots is not None:
            self._slots.clear()
