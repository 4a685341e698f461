"""Searching for the January 2016 races: drawn worlds, and `relaysim hunt`.

A *world* is a short schedule with its timings: arrivals, HSM and backend service
times, the step timer, the monitor's probe period, phase and length, and the run's
seed (the cores replies land on, the counters' retries). Hypothesis draws worlds
steered toward the race windows: steps that end within a tick of their timer
(cause 2), long probes on few cores (cause 1), arrival grids off the tick. Each
world runs on either engine (the trio engine by default) on top of a base
scenario; both take the same steps (`relay.core.agenda`), so a world fails on both
or on neither.

The property tests (tests/test_race_properties.py) and `relaysim hunt` share this
module: on `fixed` no world crashes, hangs, loses a request or breaks an invariant;
on `legacy` hypothesis finds one and shrinks it.

With `server`, each world is served by the real server to the real load client
over the simulated network, with toxics, link controls, a stop and hostile clients
drawn beside it (`relay.plan.hunt_server`).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import seed as hypothesis_seed

from relay.core import checkers
from relay.core.tier import RelayTier
from relay.scenario.schema import Scenario
from relay.testing.worlds import DRAIN_S, Case, ServerWorld, cases, run_case, server_worlds


@dataclass(frozen=True)
class Verdict:
    """What went wrong in a world: crash, hang or invariant, and the details."""

    kind: str  # "crash" | "hang" | "invariant"
    mechanism: str
    detail: str


def judge(tier: RelayTier, case: Case) -> Verdict | None:
    """The properties: no crash, no hang, every request in time, invariants hold."""
    for node in tier.nodes:
        for o in node.outages:
            return Verdict(o.kind, o.mechanism, f"{node.name} at {o.start:.6f} s")
    violations = checkers.check_run(tier.ledger, tier.nodes)
    if violations:
        return Verdict("invariant", violations[0].checker, str(violations[0]))
    last_arrival = case.arrivals[-1][0]
    if tier.ledger.last_outcome_at > last_arrival + case.timeout_s + DRAIN_S:
        return Verdict("invariant", "liveness", "a request ended after its bound")
    return None


WINDOWS = ("same_tick_reset", "probe_collision")
SCHEMA = "relaysim.hunt/1"


def windows(tier: RelayTier) -> dict[str, int]:
    """How often each race window (named in WINDOWS) was reached in a run."""
    return {
        "same_tick_reset": sum(n.timer.same_tick_resets for n in tier.nodes),
        "probe_collision": sum(n.probe_collisions for n in tier.nodes),
    }


# Everything a search depends on is set here, so a profile loaded elsewhere (the
# test suite's) cannot change what `relaysim hunt --seed N` finds.
# No explain phase: it traces every line run while shrinking (20 times slower) to
# say which lines the failure covered, which the hunt's verdict already says.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
SEARCH = settings(
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow],
    phases=PHASES,
)


@dataclass
class HuntResult:
    """The outcome of a search: worlds searched (up to and including the first that
    failed), windows reached, the runs spent shrinking, the shrunk failure."""

    examples: int
    reached: Counter[str]
    failure: Verdict | None = None
    case: Case | None = None
    shrink_runs: int = 0  # worlds run after the first failure, to shrink it
    # Over the server: the shrunk world whole (its `case` then has the arrivals as
    # the server saw them, for the timeline).
    world: ServerWorld | None = None

    def missed(self) -> list[str]:
        """The race windows no world reached."""
        return [name for name in WINDOWS if not self.reached[name]]

    def result(self, scenario: str, design: str, seed: int, command: str) -> dict[str, Any]:
        """The `relaysim.hunt/1` document: what was searched, what was found, and the
        command that finds it again."""
        return {
            "schema": SCHEMA,
            "scenario": scenario,
            "design": design,
            "seed": seed,
            **self.document(),
            "windows_missed": self.missed(),
            "replay": command,
        }

    def document(self) -> dict[str, Any]:
        """The result as a JSON-ready mapping."""
        return {
            "examples": self.examples,
            "shrink_runs": self.shrink_runs,
            "windows_reached": dict(self.reached),
            "failure": None if self.failure is None else asdict(self.failure),
            "case": None if self.case is None else asdict(self.case),
            "server_world": None if self.world is None else asdict(self.world),
        }


class _Found(Exception):
    pass


def hunt(
    base: Scenario,
    design: str,
    *,
    examples: int,
    seed: int,
    pins: dict[str, Any] | None = None,
    server: bool = False,
) -> HuntResult:
    """Search `examples` worlds around `base` on `design`, with `pins` (keys the user
    fixed) over what each world draws; deterministic for `seed`. `server`: each
    world over the real server and client (`relay.plan.hunt_server`)."""
    result = HuntResult(0, Counter())
    monitor = base.monitor.enabled
    if server:
        return _hunt_server(base, design, examples, seed, pins, result)

    @hypothesis_seed(seed)
    @settings(SEARCH, max_examples=examples)
    @given(cases(monitor=monitor))
    def search(case: Case) -> None:
        tier = run_case(case, design, base, pins=pins)
        _count(result, windows(tier))
        verdict = judge(tier, case)
        if verdict is not None:
            # Hypothesis shrinks, then runs the smallest failing world last.
            result.failure, result.case = verdict, case
            raise _Found(verdict.detail)

    with contextlib.suppress(_Found):  # the failure is in `result`
        search()
    return result


def _count(result: HuntResult, reached: dict[str, int]) -> None:
    """Count a world searched (not one run while shrinking), and steer toward the
    race windows."""
    if result.failure is None:
        result.examples += 1
        for name, count in reached.items():
            result.reached[name] += count > 0
    else:
        result.shrink_runs += 1
    target(float(sum(min(c, 3) for c in reached.values())), label="race windows reached")


def _hunt_server(
    base: Scenario,
    design: str,
    examples: int,
    seed: int,
    pins: dict[str, Any] | None,
    result: HuntResult,
) -> HuntResult:
    from relay.plan.hunt_server import judge_server, run_server_world
    from relay.serve.rogues import ROGUES

    @hypothesis_seed(seed)
    @settings(SEARCH, max_examples=examples)
    @given(server_worlds(monitor=base.monitor.enabled, rogues=tuple(ROGUES)))
    def search(world: ServerWorld) -> None:
        run = run_server_world(world, design, base, pins)
        _count(result, windows(run.server.tier))
        verdict = judge_server(run, world)
        if verdict is not None:
            # The picture draws the model on the arrivals as the server saw them.
            seen = sorted(run.admitted) or world.case.arrivals
            result.failure, result.world = verdict, world
            result.case = replace(world.case, arrivals=seen)
            raise _Found(verdict.detail)

    with contextlib.suppress(_Found):
        search()
    return result
