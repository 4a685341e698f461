"""The load names when it ran on serve's two clocks: the scenario's date and time of
day and real UTC, in its summary's client figures, in each bucket of its timeline
and in its table, each labelled; and they are the server's clock: a load started
with serve dates what it saw as serve's log does. On the simulated network under
virtual clocks, so the instants are exact."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
import trio
import trio.testing
from rich.console import Console

from relay.cli import logs, render
from relay.net.sim import SimNetwork
from relay.scenario.schema import Scenario, load_scenario
from relay.serve import load, simnet
from tests.conftest import CONFIGS
from tests.test_serve_log import stamp, utc


def midnight_plus(s: Scenario, seconds: float) -> str:
    """`seconds` after the midnight of `s`'s first day, as its date and time of day
    to the nearest second."""
    at = dt.datetime.combine(s.date, dt.time()) + dt.timedelta(seconds=round(seconds))
    return at.strftime("%Y-%m-%d %H:%M:%S")


def test_a_day_replay_names_its_times_as_the_servers_log_does() -> None:
    """Ten minutes of the smoke day from its opening, served and loaded together:
    the load started at the opening in scenario time and ran its ten minutes' worth
    of real seconds in UTC; each timeline bucket's scenario time is its `t` and its
    UTC as far from the start; the server's failed-request lines fall in the buckets
    of the same names; the table labels both columns and names the start."""
    s = load_scenario(CONFIGS / "smoke.yaml", ["load.profile=flat", "design=legacy"])
    out = io.StringIO()
    run = simnet.run(s, duration=600.0, log=logs.configure("json", "info", out))
    doc, client = run.doc, run.doc["client"]
    assert client is not None
    opens = s.load.service_hours[0]
    assert client["scenario_start"] == stamp(s, 0.0)
    assert client["scenario_end"] == midnight_plus(s, opens + doc["sim_seconds"])
    began = utc(client["utc_start"])
    assert utc(client["utc_end"]) - began == pytest.approx(doc["sim_seconds"], abs=0.002)
    timeline = doc["timeline"]
    assert len(timeline) >= 2
    named = [json.loads(json.dumps(b)) for b in timeline]  # as the JSON has them
    for bucket in named:
        assert bucket["scenario_time"] == midnight_plus(s, bucket["t"])
        assert utc(bucket["utc"]) - began == pytest.approx(bucket["t"] - opens, abs=0.002)
    failed = [json.loads(line) for line in out.getvalue().splitlines()]
    failed = [line for line in failed if line["event"] == "request.failed"]
    assert failed
    starts = [b["scenario_time"] for b in named]
    for line in failed:  # the server's clock is the load's: its lines fall in its buckets
        assert starts[0] <= line["scenario_time"] <= client["scenario_end"]
        assert abs(utc(line["utc"]) - began - (seconds(s, line["scenario_time"]) - opens)) < 1.0
    console = Console(record=True, width=200)
    render.summary_table(doc, console)
    text = console.export_text()
    assert "scenario time" in text
    assert "real time (UTC)" in text
    assert client["scenario_start"] in text
    assert client["utc_start"] in text
    assert "load ran / wall" not in text


def seconds(s: Scenario, scenario_time: str) -> float:
    """A scenario time ("YYYY-MM-DD HH:MM:SS") as seconds since `s`'s first midnight."""
    at = dt.datetime.fromisoformat(scenario_time) - dt.datetime.combine(s.date, dt.time())
    return at.total_seconds()


@pytest.mark.parametrize("rate", [5.0, None])
async def test_a_load_started_after_serve_names_the_servers_clock(
    autojump_clock: trio.testing.MockClock, rate: float | None
) -> None:
    """Started an hour after serve: a fixed-rate load, which has no day of its own,
    runs on the server's clock (INFO), its start and first bucket an hour past the
    opening, not midnight; a day replay starts at the day's opening as ever, and
    says the server's clock read an hour later then, in its summary and table."""
    s = load_scenario(CONFIGS / "smoke.yaml")
    net = SimNetwork(s.seed)
    async with simnet.serving(s, net) as (_, ports):
        await trio.sleep(3600.0)
        doc, _ = await load.run(
            s,
            simnet.SERVER_HOST,
            ports["dispatcher"],
            duration=30.0,
            rate=rate,
            connections=2,
            network=net.host(simnet.CLIENT_HOST),
        )
    client = doc["client"]
    assert client is not None
    assert client["server_scenario_start"] == stamp(s, 3600.0)
    console = Console(record=True, width=200)
    render.summary_table(doc, console)
    said = [line for line in console.export_text().splitlines() if "serve's clock" in line]
    if rate is not None:
        assert client["scenario_start"] == stamp(s, 3600.0)
        first = doc["timeline"][0]["t"]
        assert first == (s.load.service_hours[0] + 3600.0) // 300 * 300
        assert said == []
    else:
        assert client["scenario_start"] == stamp(s, 0.0)
        [row] = said
        assert stamp(s, 3600.0) in row
        assert client["utc_start"] in row
