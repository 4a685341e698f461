"""What a drawn world did wrong, if anything: the properties the hunt searches for
and a test asserts (`relay.testing.assertions.assert_world_holds`), and how often
the world reached each 2016 race window."""

from __future__ import annotations

from dataclasses import dataclass

from relay.core import checkers
from relay.core.tier import RelayTier
from relay.testing.worlds import DRAIN_S, Case

__all__ = ["WINDOWS", "Verdict", "judge", "judge_model", "windows"]


@dataclass(frozen=True)
class Verdict:
    """What went wrong in a world: crash, hang or invariant, and the details."""

    kind: str  # "crash" | "hang" | "invariant"
    mechanism: str
    detail: str


def judge_model(tier: RelayTier) -> Verdict | None:
    """The model's own properties: no crash, no hang, the invariant checkers pass."""
    for node in tier.nodes:
        for o in node.outages:
            return Verdict(o.kind, o.mechanism, f"{node.name} at {o.start:.6f} s")
    violations = checkers.check_run(tier.ledger, tier.nodes)
    if violations:
        return Verdict("invariant", violations[0].checker, str(violations[0]))
    return None


def judge(tier: RelayTier, case: Case) -> Verdict | None:
    """The properties: no crash, no hang, every request in time, invariants hold."""
    verdict = judge_model(tier)
    if verdict is not None:
        return verdict
    last_arrival = case.arrivals[-1][0]
    if tier.ledger.last_outcome_at > last_arrival + case.timeout_s + DRAIN_S:
        return Verdict("invariant", "liveness", "a request ended after its bound")
    return None


WINDOWS = ("same_tick_reset", "probe_collision")


def windows(tier: RelayTier) -> dict[str, int]:
    """How often each race window (named in WINDOWS) was reached in a run."""
    return {
        "same_tick_reset": sum(n.timer.same_tick_resets for n in tier.nodes),
        "probe_collision": sum(n.probe_collisions for n in tier.nodes),
    }
