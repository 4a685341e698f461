"""Assertions on a replay that say how to get a failure back: its seed and the
`relaysim replay` command that reproduces it.

    import relay
    from relay.testing.assertions import assert_holds

    result = relay.replay("configs/smoke.yaml", overrides={"relays.count": 2}, seed=3)
    assert_holds(result, "lost == 0", "overflow_rate < 1%")

`assert_holds` judges a `relay.Result` as `relaysim replay --expect` does (the
model's invariant checkers, the thresholds given, and the scenario's own
`expect:`), with the same grammar and verdict lines (`relay.scenario.expect`).
On failure the AssertionError reads

    relaysim: 1 threshold(s) failed (seed 3):
      FAIL overflow_rate < 1% (measured 0.0116601)
    replay with: relaysim replay configs/smoke.yaml --design fixed --seed 3 --set
    relays.count=2 --engine fast --expect 'overflow_rate < 1%'

(the command on one line), and running it from the same folder fails the same way
(exit 6, or 4 for a broken invariant). The command is the `Result`'s own (`Result.command`,
spelt by `relay.plan.replay.command`, as `replay` and `check` print theirs),
with the thresholds that failed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Protocol

from relay.core.tier import RelayTier
from relay.scenario.expect import for_kind, judge, measured_by
from relay.scenario.schema import Scenario
from relay.testing.verdicts import judge as judge_world
from relay.testing.worlds import Case

__all__ = ["Replayed", "assert_holds", "assert_world_holds", "failure"]


class Replayed(Protocol):
    """What the assertions read of a replay: `relay.Result` is one."""

    @property
    def summary(self) -> Mapping[str, object]: ...

    @property
    def violations(self) -> Sequence[str]: ...

    @property
    def scenario(self) -> Scenario: ...

    @property
    def command(self) -> str | None: ...


def failure(result: Replayed, *thresholds: str) -> str | None:
    """Why `result` fails its invariant checkers, `thresholds` or its scenario's own
    `expect:`, with its seed and the command that reproduces it; None if it holds.
    A threshold that does not parse, or names a figure a replay does not have (a
    hunt's), raises ValueError before anything is judged."""
    given = [for_kind(text, {"replay"}) for text in thresholds]  # ExpectError: a ValueError
    own = measured_by(result.scenario.expect, "replay")
    verdicts = judge([*own, *given], result.summary)
    failed = [v for v in verdicts if not v.passed]
    seed = result.scenario.seed
    if result.violations:
        lines = [f"relaysim: run failed its checks (seed {seed}):"]
        lines += [f"  {v}" for v in result.violations]
    elif failed:
        lines = [f"relaysim: {len(failed)} threshold(s) failed (seed {seed}):"]
    else:
        return None
    lines += [f"  {v.line()}" for v in failed]
    # The scenario's own thresholds come with its file; the others go on the line.
    extra = [v.expectation.text for v in verdicts[len(own) :] if not v.passed]
    if result.command is None:
        lines.append(
            "replay with: none (the scenario was not read from a file: give relay.replay "
            "or relaysim_replay its path and overrides)"
        )
    else:
        flags = shlex.join([part for text in extra for part in ("--expect", text)])
        lines.append(f"replay with: {result.command} {flags}".rstrip())
    return "\n".join(lines)


def assert_holds(result: Replayed, *thresholds: str) -> None:
    """Assert that `result` passed the model's invariant checkers and holds
    `thresholds` (`--expect`'s grammar: "lost == 0", "overflow_rate < 0.1%") and its
    scenario's own `expect:`; the AssertionError names each failure, the seed and
    the `relaysim replay` command that reproduces it."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    found = failure(result, *thresholds)
    if found is not None:
        raise AssertionError(found)


def assert_world_holds(tier: RelayTier, case: Case, design: str) -> None:
    """Assert that a drawn race world (`run_case(case, design)`'s tier) had no crash,
    no hang, no broken invariant and every request in time: the hunt's properties
    (`relay.testing.verdicts.judge`). The AssertionError names what went wrong,
    the world's seed, and the call that runs the same world again (a drawn world
    is its arrivals and timings, which no scenario file holds)."""
    __tracebackhide__ = True
    verdict = judge_world(tier, case)
    if verdict is not None:
        raise AssertionError(
            f"relaysim: {verdict.kind} ({verdict.mechanism}: {verdict.detail}) on {design}, "
            f"world seed {case.seed}\n"
            f"run it again with: relay.testing.strategies.run_case({case!r}, {design!r})"
        )
