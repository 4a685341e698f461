"""Serve's log: every line names its instant twice, as the scenario's time of day and
as real UTC, on the one clock INFO and /metrics read too; failed requests are
logged, at most a few a second of each outcome, and what was held back is counted
in one line as its window ends. Under virtual clocks: the instants are exact."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client import generate_latest

from relay.cli import logs
from relay.core.events import FaultEvent
from relay.scenario.schema import Scenario, load_scenario
from relay.serve import simnet
from relay.serve.clock import ScenarioClock
from relay.serve.metrics import registry_for
from tests.conftest import CONFIGS
from tests.test_metrics import parse, value


def stamp(s: Scenario, seconds: float) -> str:
    """`seconds` after the opening of `s`'s day, as its date and time of day."""
    midnight = dt.datetime.combine(s.date, dt.time())
    at = midnight + dt.timedelta(seconds=s.load.service_hours[0] + seconds)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def utc(text: str) -> float:
    """An ISO 8601 UTC time ("...Z") as Unix seconds."""
    assert text.endswith("Z")
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.utcoffset() == dt.timedelta(0)
    return parsed.timestamp()


def test_log_info_and_metrics_name_one_instant_alike() -> None:
    """Serving the smoke day on legacy, a hang injected 5 s in is logged with the
    scenario time of the day's opening plus 5 s and the UTC 5 s after serve
    started, and no bare `t`; every line carries both names; 10 s later INFO and
    /metrics read the same clock, and INFO dates the hang as the log did."""
    s = load_scenario(CONFIGS / "smoke.yaml", ["design=legacy", "recovery.operators=false"])
    out = io.StringIO()
    looked: list[tuple[dict[str, Any], str, float]] = []

    def stall(here: simnet.Situation) -> None:
        here.server.driver.apply(FaultEvent(trio.current_time(), "hsm_stall", 1))

    def look(here: simnet.Situation) -> None:
        text = generate_latest(registry_for(here.server)).decode()
        looked.append((here.server.info(), text, here.server.clock.started_utc))

    simnet.run(
        s,
        duration=20.0,
        rate=5.0,
        log=logs.configure("json", "info", out),
        actions=[(5.0, stall), (15.0, look)],
    )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    [(info, metrics, started)] = looked
    assert "node.hang" in {line["event"] for line in lines}
    assert all("scenario_time" in line and "utc" in line for line in lines)
    assert not [line for line in lines if "t" in line]
    [hang] = [line for line in lines if line["event"] == "node.hang"]
    assert hang["scenario_time"] == stamp(s, 5.0)
    assert utc(hang["utc"]) == pytest.approx(started + 5.0, abs=0.001)
    assert info["scenario_time"] == stamp(s, 15.0)
    assert info["scenario_clock_s"] == s.load.service_hours[0] + 15.0
    assert utc(info["utc"]) == pytest.approx(started + 15.0, abs=0.001)
    assert [e["scenario_time"] for e in info["events"]] == [hang["scenario_time"]]
    clock = value(parse(metrics), "relaysim_scenario_clock_seconds")
    assert clock == info["scenario_clock_s"]


def test_at_speed_a_real_second_is_speed_scenario_seconds() -> None:
    """A clock of serve --speed 60 started at trio's 1000.0 and a known wall time:
    90 model seconds later it is the opening plus 90 s in the scenario and 1.5 s
    later in UTC; `at` undoes `seconds`; a logged event's model instant `t` is
    replaced by both names."""
    s = load_scenario(CONFIGS / "smoke.yaml")
    clock = ScenarioClock.of(s, speed=60.0)
    clock.start(1000.0, utc=1_459_209_600.0)  # 2016-03-29T00:00:00Z
    assert clock.scenario_time(1090.0) == stamp(s, 90.0)
    assert clock.utc(1090.0) == "2016-03-29T00:00:01.500Z"
    assert clock.at(clock.seconds(1234.5)) == 1234.5
    got: list[tuple[str, dict[str, Any]]] = []

    class Sink:
        def info(self, event: str, *args: Any, **kw: Any) -> None:
            got.append((event, kw))

    clock.named(Sink()).info("node.crash", t=1090.0, node="relay1")
    assert got == [
        (
            "node.crash",
            {"node": "relay1", "scenario_time": stamp(s, 90.0), "utc": clock.utc(1090.0)},
        )
    ]
    once = clock.named(Sink())
    assert clock.named(once) is once  # wrapped once, not twice
