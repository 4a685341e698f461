"""The card management business server behind the relays.

It serves many requests at once (a thread each), so a call's time does not depend on
the queue: each takes a service time drawn from the scenario's distribution.
"""

from __future__ import annotations

from relay.distributions import Sampler


class Backend:
    """The simulated backend, shared by every relay node."""

    __slots__ = ("_service", "calls", "slowdown")

    def __init__(self, service: Sampler) -> None:
        self._service = service
        self.calls = 0
        self.slowdown = 1.0  # service times are multiplied by it (an injected fault)

    def submit(self, now: float) -> float:
        """Forward a request at `now`; returns when the answer arrives."""
        self.calls += 1
        return now + self._service() * self.slowdown
