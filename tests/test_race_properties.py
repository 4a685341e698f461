"""Property tests of the January 2016 races, in virtual time, on both engines.

Hypothesis draws the arrival schedule, service times, the timer's timeout, the probe
period, phase and length, and the run's seed. Draws are steered toward the race windows:
arrivals on a coarse grid and service times that end the relay step within a tick of
its timer (cause 2), probes that are long against their period on few cores
(cause 1). The properties hold on `fixed`, and a pass counts only if the windows were
reached in a stated share of examples; the same properties fail on `legacy`.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, target

from relay.core import checkers
from relay.engines.common import ENGINES, Engine
from relay.testing.verdicts import judge, windows
from relay.testing.worlds import MIN_SHARE, Case, cases, run_case


def check_never_fails(case: Case, design: str, hits: Counter[str], engine: Engine) -> None:
    """The properties: no crash, no hang, every request ends in time, invariants hold."""
    tier = run_case(case, design, engine=engine)
    hits["examples"] += 1
    reached = windows(tier)
    hits["timer"] += reached["same_tick_reset"] > 0
    hits["probe"] += reached["probe_collision"] > 0
    target(float(sum(min(c, 3) for c in reached.values())), label="race windows reached")
    outages = [(o.kind, o.mechanism) for n in tier.nodes for o in n.outages]
    assert outages == [], f"{design}: {outages}"
    assert checkers.check_run(tier.ledger, tier.nodes) == []
    # Liveness: every request (retries included) ended within its timer of the last
    # arrival plus the bound; none was cut by the run's end.
    assert not tier.ledger.still_open
    assert judge(tier, case) is None


# Examples per property and derandomisation come from the profile (tests/conftest.py):
# 150 fixed examples in CI, 3,000 fresh ones with RELAYSIM_HYPOTHESIS=nightly.
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("engine", ENGINES)
def test_fixed_never_crashes_or_hangs_and_reaches_both_windows(engine: Engine) -> None:
    """On fixed, no drawn world crashes, hangs, loses or leaks; both windows are reached."""
    hits: Counter[str] = Counter()

    @SETTINGS
    @given(cases())
    def prop(case: Case) -> None:
        check_never_fails(case, "fixed", hits, engine)

    prop()
    assert hits["timer"] >= MIN_SHARE * hits["examples"], hits
    assert hits["probe"] >= MIN_SHARE * hits["examples"], hits


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("focus", "mechanism"), [("timer", "unallocated_free"), ("probe", "core_contention")]
)
def test_the_same_property_fails_on_legacy(focus: str, mechanism: str, engine: Engine) -> None:
    """On legacy, hypothesis finds a world where each fault strikes on its own."""

    @SETTINGS
    @given(cases(focus=focus))
    def prop(case: Case) -> None:
        check_never_fails(case, "legacy", Counter(), engine)

    with pytest.raises(AssertionError, match=f"legacy: .*{mechanism}"):
        prop()
