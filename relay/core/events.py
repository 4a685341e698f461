"""What happens to the tier at an instant, besides requests: operators' actions and
injected faults, from a scenario file, a live admin request or the model itself.

Every source of such events (the scenario's schedule, `relaysim fault` on a serving
tier, operators reacting to a failure) hands the core these same objects, and
`RelayTier.handle` is the one place that carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass

#: An operator's action and a fault's kind: names from the one registry of them,
#: `relay.core.faults.KINDS` (what each does, what it acts on, whether it holds).
Action = str
FaultKind = str


@dataclass(frozen=True, slots=True)
class OperatorEvent:
    """An operator's action at `at` on relay `node` (none for one on the backend):
    a name from `relay.core.faults.ACTIONS`."""

    at: float
    action: Action
    node: int | None = None


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A fault injected at `at` on relay `node` (none for one on the backend, which
    runs `factor` times slower): a name from `relay.core.faults.FAULTS`."""

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
