"""Property tests of the January 2016 races under trio, in virtual time.

Hypothesis draws the arrival schedule, service times, the timer's timeout, the probe
period, phase and length, and the seed of trio's scheduler (so the interleaving of
tasks at the same instant is drawn too). Draws are steered toward the race windows:
arrivals on a coarse grid and service times that end the relay step within a tick of
its timer (cause 2), probes that are long against their period on few cores
(cause 1). The properties hold on `fixed`, and a pass counts only if the windows were
reached in a stated share of examples; the same properties fail on `legacy`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from relay import checkers, driver_trio
from relay.rng import Streams
from relay.tier import RelayTier
from tests.conftest import scenario

# The liveness bound: after the last arrival every request has its outcome within
# its deadline (the step timer) plus this, or the run is cut and the request lost.
DRAIN_S = 120.0
MIN_SHARE = 0.25  # of examples that must reach each window


@dataclass(frozen=True)
class Case:
    """One drawn world: load, timings, probes and the scheduler's seed."""

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
def cases(draw: st.DrawFn, focus: str = "both") -> Case:
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
        monitor=focus != "timer",
    )


def run_case(case: Case, design: str) -> RelayTier:
    s = scenario(**case.overrides(), design=design)
    tier = RelayTier(s, cs_caps=[100] * 4, streams=Streams(s.seed))
    for node in tier.nodes:
        node.monitor.phase = case.phase_s
    driver_trio.run(tier, case.arrivals, seed=case.seed)
    return tier


def check_never_fails(case: Case, design: str, hits: Counter[str]) -> None:
    """The properties: no crash, no hang, every request ends in time, invariants hold."""
    tier = run_case(case, design)
    hits["examples"] += 1
    timer = sum(n.timer.same_tick_resets for n in tier.nodes)
    probes = sum(n.probe_collisions for n in tier.nodes)
    hits["timer"] += timer > 0
    hits["probe"] += probes > 0
    target(float(min(timer, 3) + min(probes, 3)), label="race windows reached")
    outages = [(o.kind, o.mechanism) for n in tier.nodes for o in n.outages]
    assert outages == [], f"{design}: {outages}"
    assert checkers.check_run(tier.ledger, tier.nodes) == []
    # Liveness: every request (retries included) ended within its timer of the last
    # arrival plus the bound; none was cut by the run's end.
    assert not tier.ledger.still_open
    last_arrival = case.arrivals[-1][0]
    assert tier.ledger.last_outcome_at <= last_arrival + case.timeout_s + DRAIN_S


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every CI run: no flaky red
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_fixed_never_crashes_or_hangs_and_reaches_both_windows() -> None:
    """On fixed, no drawn world crashes, hangs, loses or leaks; both windows are reached."""
    hits: Counter[str] = Counter()

    @SETTINGS
    @given(cases())
    def prop(case: Case) -> None:
        check_never_fails(case, "fixed", hits)

    prop()
    assert hits["timer"] >= MIN_SHARE * hits["examples"], hits
    assert hits["probe"] >= MIN_SHARE * hits["examples"], hits


@pytest.mark.parametrize(
    ("focus", "mechanism"), [("timer", "unallocated_free"), ("probe", "core_contention")]
)
def test_the_same_property_fails_on_legacy(focus: str, mechanism: str) -> None:
    """On legacy, hypothesis finds a world where each fault strikes on its own."""

    @SETTINGS
    @given(cases(focus=focus))
    def prop(case: Case) -> None:
        check_never_fails(case, "legacy", Counter())

    with pytest.raises(AssertionError, match=f"legacy: .*{mechanism}"):
        prop()
