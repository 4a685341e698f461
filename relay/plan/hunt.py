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
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

from hypothesis import HealthCheck, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from relay.core import checkers
from relay.core.rng import Streams
from relay.core.tier import RelayTier
from relay.engines import fast as driver_fast
from relay.engines import trio as driver_trio
from relay.plan.replay import Engine
from relay.scenario.build import tier_params
from relay.scenario.schema import Scenario

# The liveness bound: after the last arrival every request has its outcome within
# its deadline (the step timer) plus this, or the run is cut and the request lost.
DRAIN_S = 120.0
MIN_SHARE = 0.25  # of examples that must reach each window


@dataclass(frozen=True)
class Case:
    """One drawn world: load, timings, probes and the run's seed."""

    arrivals: list[tuple[float, int]]
    timeout_s: float
    hsm_ms: float
    backend_ms: float
    cores: int
    period_s: float
    handling_ms: float
    phase_s: float
    seed: int
    monitor: bool = True

    def overrides(self) -> dict[str, Any]:
        """The scenario keys this world sets."""
        return {
            "seed": self.seed,
            "relays": {"count": 2, "cores": self.cores, "timeout_s": self.timeout_s},
            "dispatcher": {"policy": "round_robin"},
            "hsm": {"service_ms": {"dist": "constant", "mean": self.hsm_ms}},
            "backend": {"service_ms": {"dist": "constant", "mean": self.backend_ms}},
            "monitor": {
                "enabled": self.monitor,
                "period_s": self.period_s,
                "handling_ms": self.handling_ms,
            },
            "load": {"retry": {"max_retries": 1, "think_s": {"dist": "constant", "mean": 1}}},
            "recovery": {"detection_min": {"dist": "constant", "mean": 1}, "restart_min": 0},
            "run": {"drain_s": DRAIN_S},
        }


@st.composite
def cases(draw: st.DrawFn, focus: str = "both", monitor: bool = True) -> Case:
    """Worlds near both windows; focus "timer" or "probe" keeps only that one open."""
    timeout_s = draw(st.sampled_from([0.5, 1.0, 2.0]))
    hsm_ms = draw(st.sampled_from([1.0, 5.0, 10.0]))
    # End the step `slack` before the timer: within one 15.625 ms tick often, and
    # exactly on the tick boundary sometimes (slack 0: reset and expiry coincide).
    slack_ms = 200.0 if focus == "probe" else draw(st.floats(min_value=0.0, max_value=40.0))
    backend_ms = max(0.1, timeout_s * 1000 - hsm_ms - slack_ms)
    period_s = draw(st.sampled_from([0.005, 0.05, 0.5]))
    handling_ms = draw(st.floats(min_value=0.5, max_value=period_s * 1000))
    # Arrival grids that are not multiples of the tick, with a drawn offset, so
    # expiries fall anywhere inside their tick (a tick-aligned expiry can never
    # share its tick with an earlier reset).
    grid = draw(st.sampled_from([0.005, 0.013, 0.37]))
    offset = draw(st.floats(min_value=0.0, max_value=0.015625))
    steps = draw(st.lists(st.integers(0, 40), min_size=1, max_size=25))
    arrivals = sorted((10.0 + offset + grid * k, i % 4) for i, k in enumerate(steps))
    return Case(
        arrivals=arrivals,
        timeout_s=timeout_s,
        hsm_ms=hsm_ms,
        backend_ms=backend_ms,
        cores=draw(st.integers(1, 2)),
        period_s=period_s,
        handling_ms=handling_ms,
        phase_s=draw(st.floats(min_value=0.0, max_value=period_s)),
        seed=draw(st.integers(0, 2**32 - 1)),
        monitor=monitor and focus != "timer",
    )


def run_case(
    case: Case, design: str, base: Scenario | None = None, engine: Engine = "trio"
) -> RelayTier:
    """Run one drawn world on `engine`, on top of `base` (its other settings)."""
    s = world(case, design, base)
    params = tier_params(s)
    params = replace(params, monitor=replace(params.monitor, phase_s=case.phase_s))
    tier = RelayTier(params, cs_caps=[100] * 4, streams=Streams(s.seed))
    if engine == "fast":
        driver_fast.run(tier, case.arrivals)
    else:
        driver_trio.run(tier, case.arrivals)
    return tier


def world(case: Case, design: str, base: Scenario | None = None) -> Scenario:
    """The scenario of one world: `base` (without its scripted events) plus the draws."""
    doc: dict[str, Any] = {"name": "hunt", "load": {"requests": 0}}
    if base is not None:
        doc = base.model_dump(mode="json", exclude={"operators", "faults"})
    return Scenario.model_validate(_merge(doc, {**case.overrides(), "design": design}))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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


def windows(tier: RelayTier) -> dict[str, int]:
    """How often each race window (named in WINDOWS) was reached in a run."""
    return {
        "same_tick_reset": sum(n.timer.same_tick_resets for n in tier.nodes),
        "probe_collision": sum(n.probe_collisions for n in tier.nodes),
    }


# Everything a search depends on is set here, so a profile loaded elsewhere (the
# test suite's) cannot change what `relaysim hunt --seed N` finds.
SEARCH = settings(
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class HuntResult:
    """The outcome of a search: examples run, windows reached, the shrunk failure."""

    examples: int
    reached: Counter[str]
    failure: Verdict | None = None
    case: Case | None = None

    def missed(self) -> list[str]:
        """The race windows no world reached."""
        return [name for name in WINDOWS if not self.reached[name]]

    def document(self) -> dict[str, Any]:
        """The result as a JSON-ready mapping."""
        return {
            "examples": self.examples,
            "windows_reached": dict(self.reached),
            "failure": None if self.failure is None else asdict(self.failure),
            "case": None if self.case is None else asdict(self.case),
        }


class _Found(Exception):
    pass


def hunt(base: Scenario, design: str, *, examples: int, seed: int) -> HuntResult:
    """Search `examples` worlds around `base` on `design`; deterministic for `seed`."""
    result = HuntResult(0, Counter())
    monitor = base.monitor.enabled

    @hypothesis_seed(seed)
    @settings(SEARCH, max_examples=examples)
    @given(cases(monitor=monitor))
    def search(case: Case) -> None:
        tier = run_case(case, design, base)
        result.examples += 1
        reached = windows(tier)
        for name, count in reached.items():
            result.reached[name] += count > 0
        target(float(sum(min(c, 3) for c in reached.values())), label="race windows reached")
        verdict = judge(tier, case)
        if verdict is not None:
            # Hypothesis shrinks, then runs the smallest failing world last.
            result.failure, result.case = verdict, case
            raise _Found(verdict.detail)

    with contextlib.suppress(_Found):  # the failure is in `result`
        search()
    return result
