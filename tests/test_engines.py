"""The fast engine agrees with the trio engine on the same scenario and seed.

Both drive the same core; they differ only in how ties between events at the same
instant are ordered (trio's scheduler versus scheduling order), so their figures may
differ by a little and must not differ by more.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from relay.plan.replay import replay
from relay.scenario.schema import load_scenario
from tests.conftest import CONFIGS

# Scenario file and overrides of each case; the legacy case crashes two nodes at peaks.
CASES = {
    "smoke": ("smoke.yaml", []),
    # 29 March's structure (operations of three messages, both hops) at a 25,000-
    # message scale, its limits scaled down with it so they are met.
    "29-march-reduced": (
        "2016-03-29.yaml",
        [
            "load.requests=25000",
            "load.cs_connections.base=2",
            "load.cs_connections.maximum=2",
            "load.cs_connections.overrides={}",
            "load.terminal_connections.overrides={Yokohama: 2}",
        ],
    ),
    "legacy-with-crashes": (
        "smoke.yaml",
        [
            "design=legacy",
            "load.requests=20000",
            "backend.service_ms.mean=10000",  # enough in flight for a crash to hit
            "faults=[{at: '10:30', kind: crash, node: 1}, {at: '14:30', kind: crash, node: 3}]",
            "operators=[{at: '10:50', action: restart, node: 1},"
            " {at: '15:00', action: restart, node: 3}]",
        ],
    ),
}


def both(config: str, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    s = load_scenario(CONFIGS / config, overrides)
    fast, slow = replay(s, engine="fast"), replay(s, engine="trio")
    assert fast.violations == slow.violations == []
    return fast.summary, slow.summary


def close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel)


@pytest.mark.parametrize("case", CASES)
def test_engines_agree(case: str) -> None:
    """Overflows within 2%, p50 and p99 within 5%, the same crashes and hangs, none lost."""
    fast, slow = both(*CASES[case])
    assert (fast["engine"], slow["engine"]) == ("fast", "trio")
    assert fast["overflows"] > 0  # the comparison is about something
    assert close(fast["overflows"], slow["overflows"], 0.02)
    for p in ("p50", "p99"):
        assert close(fast["latency_ms"][p], slow["latency_ms"][p], 0.05)
    assert (fast["crashes"], fast["hangs"]) == (slow["crashes"], slow["hangs"])
    assert fast["lost"] == slow["lost"] == 0


def test_crashes_are_seen_by_both_engines() -> None:
    """The legacy case really crashes: two outages of 20 and 30 minutes, with errors."""
    fast, slow = both(*CASES["legacy-with-crashes"])
    for doc in (fast, slow):
        crashes = [e for e in doc["events"] if e["kind"] == "crash"]
        assert [(e["node"], e["mechanism"]) for e in crashes] == [
            ("relay1", "injected_crash"),
            ("relay3", "injected_crash"),
        ]
        assert [e["outage_minutes"] for e in crashes] == pytest.approx([20.0, 30.0])
        assert doc["errors"] > 0
