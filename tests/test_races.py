"""The January 2016 races, one mechanism at a time, on both engines.

Cause 2: a timer reset in the expiry's own OS tick is dropped on legacy; the pending
notification reaches the node's next request before it allocates its work area, and
the unchecked free crashes the application. Cause 1: a monitor probe on the core
processing an HSM reply loses the reply and stops the HSM lane: a hang.
"""

from __future__ import annotations

from typing import Any

from relay.core import checkers
from relay.core.events import FaultEvent
from relay.core.request import Outcome
from relay.core.tier import RelayTier
from tests.conftest import Drive, tier_for

NO_OPERATORS = {"operators": False}

# One node; the first request ends 5 ms before its 30 s timer, inside the expiry's
# 15.625 ms tick (expiry 30.01 s is in tick 1920, [30.0, 30.015625)): the race window.
TIMER_RACE: dict[str, Any] = {
    "relays": {"count": 1, "timeout_s": 30, "timer_resolution_ms": 15.625},
    "hsm": {"service_ms": {"dist": "constant", "mean": 10}},
    "backend": {"service_ms": {"dist": "constant", "mean": 29_985}},
    "monitor": {"enabled": False},
    "load": {"retry": {"max_retries": 0}},
    "recovery": NO_OPERATORS,
}
RACE_ARRIVALS = [(0.01, 0), (100.0, 1)]


def outcomes(tier: RelayTier) -> dict[str, int]:
    total = tier.ledger.total
    return {o.value: total.count(o) for o in Outcome if total.count(o)}


def mechanisms(tier: RelayTier) -> list[tuple[str, str]]:
    return [(o.kind, o.mechanism) for n in tier.nodes for o in n.outages]


def test_timer_race_crashes_legacy_on_the_next_request(drive: Drive) -> None:
    """Legacy: the dropped reset's notification crashes the node at its next request."""
    tier = tier_for(**TIMER_RACE, design="legacy")
    drive(tier, RACE_ARRIVALS)
    node = tier.nodes[0]
    assert node.timer.same_tick_resets == 1
    assert outcomes(tier) == {"completed": 1, "error": 1}
    assert mechanisms(tier) == [("crash", "unallocated_free")]
    assert node.outages[0].start == 100.0
    assert not node.up
    assert checkers.check_run(tier.ledger, tier.nodes) == []


def test_checked_free_alone_turns_the_crash_into_a_spurious_timeout(drive: Drive) -> None:
    """With only the April fix, the stale notification times the request out; no crash."""
    tier = tier_for(**TIMER_RACE, design="legacy", switches={"checked_free": True})
    drive(tier, RACE_ARRIVALS)
    assert outcomes(tier) == {"completed": 1, "timeout": 1}
    assert mechanisms(tier) == []


def test_fixed_reaches_the_timer_window_and_survives(drive: Drive) -> None:
    """Fixed: the window is reached (counted) but a request-scoped timer drops nothing."""
    tier = tier_for(**TIMER_RACE, design="fixed")
    drive(tier, RACE_ARRIVALS)
    assert tier.nodes[0].timer.same_tick_resets == 1
    assert outcomes(tier) == {"completed": 2}
    assert mechanisms(tier) == []


# One core, and probes back to back: every HSM reply is processed under a probe.
PROBE_RACE: dict[str, Any] = {
    "relays": {"count": 1, "cores": 1, "timeout_s": 30},
    "hsm": {"service_ms": {"dist": "constant", "mean": 10}, "deadline_ms": 2000},
    "backend": {"service_ms": {"dist": "constant", "mean": 100}},
    "monitor": {"enabled": True, "period_s": 0.001, "handling_ms": 1},
    "load": {"retry": {"max_retries": 0}},
    "recovery": NO_OPERATORS,
}


def test_probe_on_the_reply_core_hangs_legacy(drive: Drive) -> None:
    """Legacy: the lost reply stops the lane; every request waits out its 30 s timer, the
    node stays attached and up."""
    tier = tier_for(**PROBE_RACE, design="legacy")
    drive(tier, [(10.0, 0), (20.0, 1), (50.0, 2)])
    node = tier.nodes[0]
    assert node.probe_collisions == 1  # later calls never get a reply to collide
    assert mechanisms(tier) == [("hang", "core_contention")]
    assert outcomes(tier) == {"timeout": 3}
    assert tier.ledger.last_outcome_at == 80.0
    assert node.up
    assert tier.dispatcher.attached == [True]


def test_fixed_never_loses_a_reply_to_a_probe(drive: Drive) -> None:
    """Fixed: probes land on every reply's core and nothing is lost."""
    tier = tier_for(**PROBE_RACE, design="fixed")
    drive(tier, [(10.0, 0), (20.0, 1), (50.0, 2)])
    assert tier.nodes[0].probe_collisions == 3
    assert outcomes(tier) == {"completed": 3}
    assert mechanisms(tier) == []


def test_hsm_call_deadline_alone_bounds_the_hang(drive: Drive) -> None:
    """Legacy plus per-call deadlines: the hung call fails at its 2 s deadline, the lane is
    reset and the next request is served (the hang lasts 2 s, not until operators)."""
    tier = tier_for(
        **{**PROBE_RACE, "monitor": {"enabled": True, "period_s": 15, "handling_ms": 2}},
        design="legacy",
        switches={"hsm_call_deadline": True},
    )
    tier.nodes[0].monitor.phase = 10.01  # the first probe lands on the first reply
    drive(tier, [(10.0, 0), (20.0, 1)])
    assert mechanisms(tier) == [("hang", "core_contention")]
    hang = tier.nodes[0].outages[0]
    assert (hang.start, hang.end) == (10.01, 12.0)
    assert outcomes(tier) == {"error": 1, "completed": 1}


def test_deep_health_check_detaches_a_hung_node(drive: Drive) -> None:
    """A stalled HSM passes the 2016 check but fails the deep one, which detaches the node
    and re-attaches it once an operator restart has it answering again."""
    base: dict[str, Any] = {
        "relays": {"count": 2, "timeout_s": 30},
        "dispatcher": {"policy": "round_robin"},
        "monitor": {"enabled": False},
        "load": {"retry": {"max_retries": 0}},
        "recovery": {"detection_min": {"dist": "constant", "mean": 10}, "restart_min": 0},
    }
    stall = [FaultEvent(at=100.5, kind="hsm_stall", node=1)]
    arrivals = [(t, 0) for t in (110.0, 111.0, 112.0, 113.0, 800.0, 801.0)]
    legacy = tier_for(**base, design="legacy")
    drive(legacy, arrivals, stall)
    assert legacy.ledger.nodes[1].requests == 3  # round robin keeps feeding the hung node
    deep = tier_for(**base, design="legacy", switches={"deep_health_check": True})
    drive(deep, arrivals, stall)
    # Out at the 105 s check, back at the first check after the 700.5 s restart.
    assert deep.ledger.nodes[1].requests == 1
    assert deep.ledger.nodes[1].count(Outcome.COMPLETED) == 1
    assert deep.dispatcher.attached == [True, True]
    assert [(o.kind, o.end) for o in deep.nodes[0].outages] == [("hang", 700.5)]
