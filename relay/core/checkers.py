"""Checkers beside the model: they read a finished run and list what went wrong.

- accounting: every request opened has exactly one outcome; none is lost;
- allocator balance: no work area leaked, none freed twice or never allocated.

A run with violations fails with its seed (exit code 4 from the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.core.ledger import Ledger
from relay.core.node import Node


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: which checker saw it, and what it saw."""

    checker: str
    detail: str

    def __str__(self) -> str:
        return f"{self.checker}: {self.detail}"


def accounting(ledger: Ledger) -> list[Violation]:
    """requests == completed + overflows + timeouts + errors, and nothing lost."""
    out = [Violation("accounting", v) for v in ledger.violations]
    lost = ledger.still_open
    if lost:
        first = min(lost, key=lambda r: r.id)
        out.append(
            Violation(
                "accounting",
                f"{len(lost)} request(s) never got an outcome (first: request {first.id} "
                f"from CS {first.cs}, arrived at {first.arrived:.3f} s, "
                f"left in phase {first.phase.value})",
            )
        )
    if ledger.total.requests != ledger.closed + len(lost):
        out.append(
            Violation(
                "accounting",
                f"{ledger.total.requests} requests but {ledger.closed} outcomes "
                f"and {len(lost)} open",
            )
        )
    for b, tally in sorted(ledger.buckets.items()):
        if tally.requests < tally.closed:
            out.append(Violation("accounting", f"bucket {b}: more outcomes than requests"))
    return out


def allocator_balance(nodes: list[Node]) -> list[Violation]:
    """Every work area allocated was freed exactly once (the allocator raises on the rest)."""
    return [
        Violation(
            "allocator",
            f"{n.name}: {n.allocator.live} work area(s) never freed "
            f"({n.allocator.allocs} allocated, {n.allocator.frees} freed)",
        )
        for n in nodes
        if n.allocator.live
    ]


def check_run(ledger: Ledger, nodes: list[Node]) -> list[Violation]:
    """All checkers over a finished run."""
    return accounting(ledger) + allocator_balance(nodes)
