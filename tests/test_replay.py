"""Whole replays: smoke.yaml end to end, determinism, the summary document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relay.cli import main
from relay.plan.replay import replay
from relay.scenario.schema import load_scenario
from tests.conftest import CONFIGS

SUMMARY_KEYS = {
    "schema", "scenario", "design", "engine", "seed", "requests", "completed", "overflows",
    "timeouts", "errors", "lost", "crashes", "hangs", "outage_minutes", "latency_ms",
    "sim_seconds", "wall_seconds", "nodes", "timeline", "date", "days", "events",
}  # fmt: skip
NODE_KEYS = {
    "name", "requests", "completed", "overflows", "timeouts", "errors", "crashes", "hangs",
}  # fmt: skip
BUCKET_KEYS = {"t", "requests", "completed", "overflows", "timeouts", "errors", "p50_ms", "p99_ms"}


def cli_json(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "summary.json"
    main(["replay", *args, "--quiet", "--json", str(out)])  # returns on success
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def without_wall(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "wall_seconds"}


def balanced(row: dict[str, Any]) -> bool:
    return bool(
        row["requests"] == row["completed"] + row["overflows"] + row["timeouts"] + row["errors"]
    )


def test_smoke_replay_accounts_for_every_request(tmp_path: Path) -> None:
    """smoke.yaml replays with every request accounted for, overall, per node and per bucket."""
    doc = cli_json(tmp_path, str(CONFIGS / "smoke.yaml"))
    assert doc.keys() >= SUMMARY_KEYS
    assert doc["schema"] == "relaysim.summary/3"
    assert (doc["engine"], doc["design"], doc["lost"], doc["violations"]) == (
        "fast",
        "fixed",
        0,
        [],
    )
    assert doc["requests"] >= 5000  # first attempts plus retries
    assert balanced(doc)
    assert doc["overflows"] > 0  # the scaled-down caps are met now and then
    assert sum(doc["refusals"].values()) == doc["overflows"]
    for node in doc["nodes"]:
        assert node.keys() >= NODE_KEYS
        assert balanced(node)
    for bucket in doc["timeline"]:
        assert bucket.keys() >= BUCKET_KEYS
        assert bucket["t"] % 300 == 0
        assert balanced(bucket)
    assert sum(b["requests"] for b in doc["timeline"]) == doc["requests"]
    lat = doc["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert 0 < lat["mean"] <= lat["max"]
    backend = doc["backend"]  # no memory bound: nothing waits for a place
    assert (backend["capacity"], backend["waits"], backend["mean_wait_ms"]) == (None, 0, 0.0)
    assert backend["calls"] >= doc["completed"]


@pytest.mark.parametrize("engine", ["fast", "trio"])
def test_same_seed_same_json(tmp_path: Path, engine: str) -> None:
    """Two runs with the same seed, scenario, design and engine agree on all but wall time."""
    args = (str(CONFIGS / "smoke.yaml"), "--seed", "11", "--engine", engine)
    a, b = cli_json(tmp_path, *args), cli_json(tmp_path, *args)
    assert a["engine"] == engine
    assert without_wall(a) == without_wall(b)


def test_another_seed_another_day(tmp_path: Path) -> None:
    """A different seed gives a different run (the seed really reaches the model)."""
    a = cli_json(tmp_path, str(CONFIGS / "smoke.yaml"), "--seed", "1")
    b = cli_json(tmp_path, str(CONFIGS / "smoke.yaml"), "--seed", "2")
    assert a["timeline"] != b["timeline"]


def test_detached_node_serves_nothing_while_detached() -> None:
    """In smoke.yaml relay #2 is detached from 12:00 to 13:00 and gets no request then."""
    s = load_scenario(CONFIGS / "smoke.yaml", ["dispatcher.policy=round_robin"])
    result = replay(s)
    counts = {n["name"]: n["requests"] for n in result.summary["nodes"] or []}
    # round robin over 4 nodes, one of them out for 1 of ~14 hours: fewer for relay2
    assert counts["relay2"] < min(counts["relay1"], counts["relay3"], counts["relay4"])
    # The summary says why: the operators' actions, which the report marks on its plot.
    assert result.summary["operators"] == [
        {"t": 12 * 3600.0, "action": "detach", "node": 2},
        {"t": 13 * 3600.0, "action": "attach", "node": 2},
    ]


def test_legacy_design_runs_with_its_switches_off(tmp_path: Path) -> None:
    """--design legacy reports the legacy preset with every fix switched off."""
    doc = cli_json(tmp_path, str(CONFIGS / "smoke.yaml"), "--design", "legacy")
    assert doc["design"] == "legacy"
    assert not any(doc["switches"].values())
    assert balanced(doc)


def test_reduced_29_march_day(tmp_path: Path) -> None:
    """The 29 March scenario, cut to 20,000 requests, replays and balances."""
    doc = cli_json(tmp_path, str(CONFIGS / "2016-03-29.yaml"), "--set", "load.requests=20000")
    assert doc["scenario"] == "2016-03-29"
    assert doc["lost"] == 0
    assert balanced(doc)
    assert [n["name"] for n in doc["nodes"]] == ["relay1", "relay2", "relay3", "relay4"]
    busiest = max(doc["timeline"], key=lambda b: b["requests"])
    assert 9.5 * 3600 <= busiest["t"] < 15 * 3600  # a weekday peak


def test_outage_timeline_is_printed_and_in_the_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A legacy crash appears in the summary's events and in the printed outage table."""
    out = tmp_path / "s.json"
    fault = "faults=[{at: '10:30', kind: crash, node: 1}]"
    main(["replay", str(CONFIGS / "smoke.yaml"), "--design", "legacy", "--set", fault])
    printed = capsys.readouterr().out
    assert "outages" in printed
    assert "10:30:00" in printed
    main(["replay", str(CONFIGS / "smoke.yaml"), "--design", "legacy", "--set", fault,
          "--quiet", "--json", str(out)])  # fmt: skip
    events = json.loads(out.read_text())["events"]
    assert [(e["t"], e["node"], e["kind"], e["mechanism"]) for e in events] == [
        (37800.0, "relay1", "crash", "injected_crash")
    ]
    assert 10 <= events[0]["outage_minutes"] <= 95  # detection 10-90 min, restart 5 min


def test_blocking_says_where_connections_were_refused(tmp_path: Path) -> None:
    """The summary's size classes add up to the run's refusals and attempts, and
    every pool that refused at its cap reached that cap and never passed it."""
    doc = cli_json(tmp_path, str(CONFIGS / "smoke.yaml"))
    rows, pools = doc["blocking"]["by_size"], doc["blocking"]["pools"]
    assert sum(r["municipalities"] for r in rows) == len(pools["name"])
    assert sum(r["relay_overflows"] for r in rows) == doc["relay_overflows"] == doc["overflows"]
    # Every request is a connection attempt or a later message of an accepted one.
    assert sum(r["attempts"] for r in rows) == sum(pools["attempts"]) <= doc["requests"]
    assert doc["relay_overflows"] > 0
    assert set(doc["refusals"]) == {"cs_limit"}  # so every refusing pool was full
    for cap, peak, refused in zip(
        pools["cap"], pools["peak"], pools["relay_overflows"], strict=True
    ):
        assert peak <= cap
        if refused:
            assert peak == cap
    for node in doc["nodes"]:
        assert 0 < node["peak_connections"] <= node["max_connections"]
