"""The calibrated 29 March 2016: the audit's overflow count, from the model's mechanisms."""

from __future__ import annotations

import pytest

from relay.plan.replay import replay
from relay.scenario.schema import load_scenario
from tests.conftest import CONFIGS

AUDIT_OVERFLOWS = 12_650  # incident-2016.md: connection-overflow events on 29 March 2016
AUDIT_REQUESTS = 715_000  # upstream request messages that day


@pytest.mark.slow
def test_29_march_shows_the_audited_overflows() -> None:
    """The whole day on seed 1 shows the relays' 12,650 overflow events within 15%,
    nothing lost, checks clean."""
    scenario = load_scenario(CONFIGS / "2016-03-29.yaml", [])
    assert scenario.seed == 1
    result = replay(scenario)
    doc = result.summary
    assert result.violations == []
    assert doc["lost"] == 0
    assert doc["relay_overflows"] == pytest.approx(AUDIT_OVERFLOWS, rel=0.15)
    # Retries come on top of the day's first attempts, and stay a small share of it.
    assert AUDIT_REQUESTS <= doc["requests"] <= AUDIT_REQUESTS * 1.03
    # Where: the pools of the cities of a million and more, tens of connections at
    # their limits at the peaks (what the remedies aimed at); no smaller one refuses.
    blocking = doc["blocking"]
    assert blocking is not None
    by_size = {r["class"]: r for r in blocking["by_size"]}
    assert by_size[">=1M"]["relay_overflows"] == doc["relay_overflows"]
    assert by_size[">=1M"]["pools_at_cap"] >= 5
    assert (by_size[">=1M"]["cap_min"] or 0) >= 30


def test_18_april_changes_only_what_the_incident_lists() -> None:
    """configs/2016-04-18.yaml is 29 March with only the listed changes: the day and
    its volume, flattened peaks, and limits raised for the large municipalities."""
    march = load_scenario(CONFIGS / "2016-03-29.yaml").model_dump()
    april = load_scenario(CONFIGS / "2016-04-18.yaml").model_dump()
    changed = {
        ("name",),
        ("date",),
        ("load", "requests"),
        ("load", "peak_flattening"),
        ("load", "cs_connections", "raise_"),
        ("priors",),  # the open readings, for relaysim predict
        ("prediction",),  # and what it gave
    }

    def flat(doc: dict[str, object], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
        out: dict[tuple[str, ...], object] = {}
        for key, value in doc.items():
            here = (*path, key)
            if isinstance(value, dict) and here not in changed:
                out |= flat(value, here)
            else:
                out[here] = value
        return out

    a, b = flat(march), flat(april)
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == changed
    assert april["load"]["requests"] == 549_000
    assert april["load"]["peak_flattening"] > 0
    assert april["date"].weekday() == 0  # a Monday


@pytest.mark.slow
def test_18_april_predicts_fewer_overflows_than_29_march() -> None:
    """The April day, smaller and flatter, with larger caps, overflows less than the
    drop in volume alone would explain (29 March's audited count scaled to April's
    volume); nothing is lost."""
    result = replay(load_scenario(CONFIGS / "2016-04-18.yaml"))
    doc = result.summary
    assert result.violations == []
    assert doc["lost"] == 0
    assert 549_000 <= doc["requests"] <= 549_000 * 1.03
    assert doc["relay_overflows"] < AUDIT_OVERFLOWS * 549_000 / AUDIT_REQUESTS
