"""What happens to the tier at an instant, besides requests: operators' actions and
injected faults, from a scenario file, a live admin request or the model itself.

Every source of such events (the scenario's schedule, `relaysim fault` on a serving
tier, operators reacting to a failure) hands the core these same objects, and
`RelayTier.handle` is the one place that carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal[
    "detach", "attach", "add", "restart", "stop_monitor", "start_monitor", "restart_backend"
]
FaultKind = Literal["crash", "hsm_stall", "timer_race", "slow_backend"]


@dataclass(frozen=True, slots=True)
class OperatorEvent:
    """An operator's action at `at` on relay `node` (none for restart_backend).

    detach / attach: take it out of / back into the distributor; add: a new relay
    joins; restart: restart its relay application; stop_monitor / start_monitor:
    its hardware-monitoring agent; restart_backend: the backend.
    """

    at: float
    action: Action
    node: int | None = None


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A fault injected at `at`.

    crash: relay `node`'s application terminates abnormally; hsm_stall: its HSM lane
    stops answering (what cause 1 does); timer_race: a timeout notification is left
    pending on it, as a dropped timer reset leaves one (cause 2's first half);
    slow_backend: the backend runs `factor` times slower (no node; 1 restores it).
    """

    at: float
    kind: FaultKind
    node: int | None = None
    factor: float = 1.0


Event = OperatorEvent | FaultEvent


def order(at: float, fault: bool) -> tuple[float, bool]:
    """The sort key of an event at `at`: time order, operators before faults at equal
    times (a stable sort keeps the order given otherwise). The one order the
    scenario is validated in and every engine carries events out in."""
    return at, fault


def in_order(events: list[Event]) -> list[Event]:
    """`events` in the one order (`order`)."""
    return sorted(events, key=lambda e: order(e.at, isinstance(e, FaultEvent)))
