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

`relay.plan.hunt_server` searches the same worlds served by the real server to
the real load client over the simulated network (`relaysim hunt --server`).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import seed as hypothesis_seed

from relay.plan import pools
from relay.scenario.schema import Scenario
from relay.testing.verdicts import WINDOWS, Verdict, judge, windows
from relay.testing.worlds import Case, ServerWorld, cases, run_case

SCHEMA = "relaysim.hunt/1"


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
    cancelled: str | None = None  # the signal that cut the search short

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
            "cancelled": self.cancelled,
        }


class Found(Exception):
    """A world failed: the search stops (its failure is in the `HuntResult`)."""


def hunt(
    base: Scenario,
    design: str,
    *,
    examples: int,
    seed: int,
    pins: dict[str, Any] | None = None,
) -> HuntResult:
    """Search `examples` worlds around `base` on `design`, with `pins` (keys the user
    fixed) over what each world draws; deterministic for `seed`."""
    result = HuntResult(0, Counter())
    monitor = base.monitor.enabled

    @hypothesis_seed(seed)
    @settings(SEARCH, max_examples=examples)
    @given(cases(monitor=monitor))
    def search(case: Case) -> None:
        pools.checkpoint()
        tier = run_case(case, design, base, pins=pins)
        count_world(result, windows(tier))
        verdict = judge(tier, case)
        if verdict is not None:
            # Hypothesis shrinks, then runs the smallest failing world last.
            result.failure, result.case = verdict, case
            raise Found(verdict.detail)

    with contextlib.suppress(Found):  # the failure is in `result`
        search_until_cancelled(search, result)
    return result


def search_until_cancelled(search: Callable[[], None], result: HuntResult) -> None:
    """Run `search`; if a signal cancels it, the worlds searched so far stand and
    `result` says by which signal (`relay.plan.pools`)."""
    try:
        search()
    except pools.Cancelled as stop:
        result.cancelled = stop.name


def count_world(result: HuntResult, reached: dict[str, int]) -> None:
    """Count a world searched (not one run while shrinking), and steer toward the
    race windows."""
    if result.failure is None:
        result.examples += 1
        for name, count in reached.items():
            result.reached[name] += count > 0
    else:
        result.shrink_runs += 1
    target(float(sum(min(c, 3) for c in reached.values())), label="race windows reached")
