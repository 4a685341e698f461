"""The simulated HSM of one relay node and the queue in front of it, first come,
first served.

A tamper-resistant device works on one request at a time. With service times drawn
when a call is submitted, the queue's finishing time is known at once (virtual
finish time of a FIFO queue), so the model needs no queue object: `submit` returns
when the reply will arrive. A call whose caller gave up still occupies the device,
as a real HSM call cannot be withdrawn. (Not to be confused with `hsm_adapter`'s
lane, the worker process that owns a real token.)
"""

from __future__ import annotations

import math

from relay.core.rng import Sampler, draws


class HsmQueue:
    """One HSM and the queue in front of it."""

    __slots__ = ("_service", "busy_until", "calls", "epoch", "stuck")

    def __init__(self, service: Sampler) -> None:
        self._service = draws(service)
        self.busy_until = 0.0
        self.calls = 0
        self.stuck = False  # a lane that lost a reply never answers again (cause 1)
        # Bumped whenever the lane stops or is re-initialised: a call submitted in
        # an earlier epoch never gets its reply.
        self.epoch = 0

    def submit(self, now: float) -> float:
        """Queue a call at `now`; returns when its reply arrives (inf if the lane is stuck)."""
        self.calls += 1
        if self.stuck:
            return math.inf
        start = self.busy_until if self.busy_until > now else now
        self.busy_until = start + self._service.draw()
        return self.busy_until

    def stop(self) -> None:
        """The lane stops answering: every call in it, and every later one, is lost."""
        self.stuck = True
        self.epoch += 1

    def restart(self, now: float) -> None:
        """The HSM is re-initialised (node restart, lane reset): empty, answering again."""
        self.stuck = False
        self.epoch += 1
        self.busy_until = now
