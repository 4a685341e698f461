"""Faults and operators' actions: one registry entry per kind.

Every source of events names a kind from `KINDS`: a scenario's schedule
(`operators:`, `faults:`), `relaysim fault` on a serving tier, operators reacting
to a failure. Each entry says what the kind acts on (a relay node, or the
backend), whether it is a fault or an operator's action, whether a serving tier
takes it live, what it does (`apply`: `RelayTier.handle` calls it) and whether it
is still in effect (`in_effect`: the admin endpoint shows the faults that are).
The scenario schema, the admin endpoint and `RelayTier.handle` all read this
table, so a new kind is one entry here, and its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from relay.core.backend import Backend
from relay.core.dispatcher import Dispatcher
from relay.core.events import FaultEvent, OperatorEvent
from relay.core.node import Node

Event = OperatorEvent | FaultEvent


class RelayTier(Protocol):
    """What a kind may act on: `relay.core.tier.RelayTier` (which reads this table,
    hence a protocol here rather than an import back)."""

    log: Any
    backend: Backend
    dispatcher: Dispatcher

    def crash(self, node: Node, now: float, mechanism: str) -> None: ...

    def hang(self, node: Node, now: float, mechanism: str) -> None: ...

    def restart(self, node: Node, now: float) -> None: ...

    def make_node(self, number: int) -> Node: ...


def _never(tier: RelayTier, node: Node | None, factor: float) -> bool:
    return False


def _down(tier: RelayTier, node: Node | None, factor: float) -> bool:
    return not _node(node).up


def _stuck(tier: RelayTier, node: Node | None, factor: float) -> bool:
    return bool(_node(node).hsm.stuck)


def _pending(tier: RelayTier, node: Node | None, factor: float) -> bool:
    return int(_node(node).timer.pending) > 0


def _slowed(tier: RelayTier, node: Node | None, factor: float) -> bool:
    return bool(tier.backend.slowdown == factor != 1.0)


def _detached(tier: RelayTier, node: Node | None, factor: float) -> bool:
    return not tier.dispatcher.attached[_node(node).number - 1]


@dataclass(frozen=True)
class Kind:
    """One kind of fault or operator action (see the module doc).

    `apply(tier, node, event, now)` carries it out (`node`: the relay it names, None
    for the backend and for `add`, whose relay does not exist yet); `in_effect(tier,
    node, factor)` says whether what it did still holds."""

    doc: str
    operator: bool  # an operator's action (OperatorEvent), else a fault (FaultEvent)
    on_node: bool  # acts on relay `node`; else on the backend (no node)
    live: bool  # `relaysim fault` may inject it into a serving tier
    apply: Callable[[RelayTier, Node | None, Event, float], None]
    in_effect: Callable[[RelayTier, Node | None, float], bool] = _never


def _node(node: Node | None) -> Node:
    assert node is not None  # the schema and the admin endpoint checked the node
    return node


def _crash(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
    tier.crash(_node(node), now, "injected_crash")


def _stall(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
    tier.hang(_node(node), now, "injected_stall")


def _timer_race(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
    # What a dropped reset leaves behind (cause 2's first half): the node's next
    # request meets a pending timeout notification.
    _node(node).timer.pending += 1
    tier.log.info("fault.timer_race", t=now, node=_node(node).name)


def _slow_backend(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
    assert isinstance(event, FaultEvent)
    tier.backend.slowdown = event.factor
    tier.log.info("fault.slow_backend", t=now, factor=event.factor)


def _operator(
    act: Callable[[RelayTier, Node | None, Event, float], None],
) -> Callable[[RelayTier, Node | None, Event, float], None]:
    """An operator's action, logged as `operator.ACTION` with its relay."""

    def apply(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
        act(tier, node, event, now)
        assert isinstance(event, OperatorEvent)
        tier.log.info(f"operator.{event.action}", t=now, node=f"relay{event.node}")

    return apply


def _add(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
    assert event.node is not None
    tier.dispatcher.add(tier.make_node(event.node))


def _restart(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
    tier.restart(_node(node), now)


def _detach(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
    tier.dispatcher.detach(_node(node))


def _attach(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
    tier.dispatcher.attach(_node(node))


def _monitor(on: bool) -> Callable[[RelayTier, Node | None, Event, float], None]:
    def apply(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
        _node(node).monitor.enabled = on

    return apply


def _restart_backend(tier: RelayTier, node: Node | None, event: Event, now: float) -> None:
    tier.backend.restart(now)
    tier.log.info("operator.restart_backend", t=now)


#: The registry: every kind of fault and operator action, once.
KINDS: dict[str, Kind] = {
    "crash": Kind(
        "the relay application terminates abnormally (what cause 2 does)",
        operator=False,
        on_node=True,
        live=True,
        apply=_crash,
        in_effect=_down,
    ),
    "hsm_stall": Kind(
        "the relay's HSM lane stops answering (what cause 1 does)",
        operator=False,
        on_node=True,
        live=True,
        apply=_stall,
        in_effect=_stuck,
    ),
    "timer_race": Kind(
        "a timeout notification is left pending on the relay, as a dropped timer reset "
        "leaves one (cause 2's first half)",
        operator=False,
        on_node=True,
        live=True,
        apply=_timer_race,
        in_effect=_pending,
    ),
    "slow_backend": Kind(
        "the backend runs `factor` times slower (1 restores it)",
        operator=False,
        on_node=False,
        live=True,
        apply=_slow_backend,
        in_effect=_slowed,
    ),
    "detach": Kind(
        "take the relay out of the distributor",
        operator=True,
        on_node=True,
        live=True,
        apply=_operator(_detach),
        in_effect=_detached,
    ),
    "attach": Kind(
        "put the relay back into the distributor",
        operator=True,
        on_node=True,
        live=True,
        apply=_operator(_attach),
    ),
    "add": Kind(
        "a new relay joins (#3 on 24 Jan 2016, #4 on 4 Feb)",
        operator=True,
        on_node=True,
        live=False,
        apply=_operator(_add),
    ),
    "restart": Kind(
        "restart the relay application (January's by-hand recovery)",
        operator=True,
        on_node=True,
        live=False,
        apply=_operator(_restart),
    ),
    "stop_monitor": Kind(
        "stop the relay's hardware-monitoring agent (March 2016's interim fix)",
        operator=True,
        on_node=True,
        live=False,
        apply=_operator(_monitor(False)),
    ),
    "start_monitor": Kind(
        "resume the relay's hardware-monitoring agent",
        operator=True,
        on_node=True,
        live=False,
        apply=_operator(_monitor(True)),
    ),
    "restart_backend": Kind(
        "restart the backend (the recovery of 22 February 2016)",
        operator=True,
        on_node=False,
        live=False,
        apply=_restart_backend,
    ),
}

FAULTS = tuple(name for name, kind in KINDS.items() if not kind.operator)
ACTIONS = tuple(name for name, kind in KINDS.items() if kind.operator)
LIVE = tuple(name for name, kind in KINDS.items() if kind.live)


def name_of(event: Event) -> str:
    """The kind an event names."""
    return event.action if isinstance(event, OperatorEvent) else event.kind
