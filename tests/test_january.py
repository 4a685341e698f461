"""configs/jan-2016.yaml: the January 2016 races on legacy, none on fixed.

The whole period (26 million requests, about 4 minutes a design) is calibrated with
bench/calibrate.py and recorded in docs/calibration.md; here its first two weeks
(13-26 January: two relays, #3 from the 24th, operators on standby from the 22nd)
replay on both designs with the calibrated parameters.
"""

from __future__ import annotations

import pytest

from relay.core.summary import Summary
from relay.plan.replay import replay
from relay.scenario.schema import load_scenario
from tests.conftest import CONFIGS

FORTNIGHT = ["calendar.until=2016-01-26"]


def run(design: str) -> Summary:
    result = replay(load_scenario(CONFIGS / "jan-2016.yaml", [*FORTNIGHT, f"design={design}"]))
    assert result.violations == []
    assert result.summary["lost"] == 0
    return result.summary


@pytest.mark.slow
def test_legacy_fortnight_crashes_and_hangs_and_operators_recover() -> None:
    """On legacy both causes strike on their own mechanisms, and every outage ends with
    the operators' restart (none is still open at the end)."""
    doc = run("legacy")
    events, nodes = doc["events"], doc["nodes"]
    assert events is not None  # a replay's are always known (a load's may not be)
    assert nodes is not None
    mechanisms = {e["mechanism"] for e in events}
    assert mechanisms == {"unallocated_free", "core_contention"}
    assert doc["crashes"] == sum(e["kind"] == "crash" for e in events) > 0
    assert doc["hangs"] == sum(e["kind"] == "hang" for e in events) > 0
    assert all(e["end"] is not None for e in events)
    # Relay #3 joined on the 24th and serves from then on.
    assert [n["name"] for n in nodes] == ["relay1", "relay2", "relay3"]
    assert nodes[2]["requests"] > 0


@pytest.mark.slow
def test_fixed_fortnight_reaches_the_windows_and_never_fails() -> None:
    """On fixed the same fortnight reaches both race windows and never crashes or hangs."""
    doc = run("fixed")
    assert (doc["crashes"], doc["hangs"], doc["events"]) == (0, 0, [])
    windows = [n["race_windows"] for n in doc["nodes"] or []]
    assert sum(w["same_tick_resets"] for w in windows) > 0
    assert sum(w["probe_collisions"] for w in windows) > 0
