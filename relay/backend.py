"""The card management business server behind the relays.

It serves many requests at once (a thread each), so a call's time does not depend on
the queue: each takes a service time drawn from the scenario's distribution.
"""

from __future__ import annotations

from relay.distributions import Sampler


class Backend:
    """The simulated backend, shared by every relay node."""

    __slots__ = ("_base", "_service", "_slowdown", "calls")

    def __init__(self, service: Sampler) -> None:
        self._base = self._service = service
        self._slowdown = 1.0
        self.calls = 0

    @property
    def slowdown(self) -> float:
        """How many times slower than the scenario's service times (an injected fault)."""
        return self._slowdown

    @slowdown.setter
    def slowdown(self, factor: float) -> None:
        # Swap the sampler rather than multiply on every request: replays never pay.
        base = self._base
        self._slowdown = factor
        self._service = base if factor == 1.0 else (lambda: base() * factor)

    def submit(self, now: float) -> float:
        """Forward a request at `now`; returns when the answer arrives."""
        self.calls += 1
        return now + self._service()
