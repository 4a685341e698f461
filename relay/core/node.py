"""One relay server: connection limit, work areas, timer, HSM lane, cores, monitor.

The node is state plus small decisions; the order of the relay step itself lives in
`relay.core.tier`, which calls these pieces in the order the incident describes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from relay.core.hsm import HsmQueue
from relay.core.monitor import Monitor
from relay.core.timer import OsTimer
from relay.core.workarea import WorkAreaAllocator


@dataclass(slots=True)
class Outage:
    """A span during which a node could not serve: crash or hang, why, from, until."""

    kind: Literal["crash", "hang"]  # crash: application down; hang: up, HSM silent
    mechanism: str  # e.g. unallocated_free (cause 2), core_contention (cause 1)
    start: float
    end: float | None = None

    def minutes(self, now: float) -> float:
        """Its length in minutes, counting an open outage up to `now`."""
        return ((self.end if self.end is not None else now) - self.start) / 60.0


@dataclass(slots=True)
class Node:
    """Relay server #`number` (1-based, as in the incident)."""

    number: int
    max_connections: int
    cores: int
    interrupt: float  # seconds of core time per HSM reply
    timer: OsTimer
    hsm: HsmQueue
    monitor: Monitor
    rng: random.Random  # which core takes each HSM reply interrupt
    allocator: WorkAreaAllocator = field(default_factory=WorkAreaAllocator)
    active: int = 0  # CS connections open on this node now
    peak: int = 0  # the most CS connections ever open on it at once
    up: bool = True  # the relay application is running
    epoch: int = 0  # bumped at every crash: flows admitted before it are dead
    probe_collisions: int = 0  # probe on the core handling an HSM reply (window reached)
    outages: list[Outage] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The node's display name, `relay1` for relay #1."""
        return f"relay{self.number}"

    def has_room(self) -> bool:
        """Whether one more CS connection fits under the node's limit."""
        return self.active < self.max_connections

    def probe_hits_reply(self, now: float) -> bool:
        """Process an HSM reply arriving at `now` on a core: whether a monitor probe
        landed on that core while it was being processed (cause 1's window)."""
        core = int(self.rng.random() * self.cores)  # uniform; cheaper than randrange
        hit = self.monitor.collides(core, now, self.interrupt)
        if hit:
            self.probe_collisions += 1
        return hit
