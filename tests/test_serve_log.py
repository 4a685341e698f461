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
from relay.core.request import Outcome, Request
from relay.engines.trio import TrioDriver
from relay.net.sim import SimNetwork
from relay.scenario.build import new_tier
from relay.scenario.schema import Scenario, load_scenario
from relay.serve import failures, simnet
from relay.serve.clock import ScenarioClock
from relay.serve.metrics import registry_for
from relay.serve.protocol import Frame, Type
from relay.serve.server import Limits, RelayServer
from relay.testing import scenario
from tests.conftest import CONFIGS
from tests.test_metrics import parse, value
from tests.test_serve_limits import connect


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
    assert {"node.hang", "request.failed"} <= {line["event"] for line in lines}
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


class Recorder:
    """A log sink keeping each event with trio's instant when it was logged."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str, dict[str, Any]]] = []

    def info(self, event: str, *args: Any, **kw: Any) -> None:
        self.lines.append((trio.current_time(), event, kw))


@pytest.mark.parametrize("speed", [1.0, 60.0])
async def test_failed_requests_are_logged_a_few_a_second_and_the_rest_counted(
    autojump_clock: trio.testing.MockClock, speed: float
) -> None:
    """One relay whose HSM lane stalls at once; 8 CSs of one connection each send a
    request that will time out, and CS 0 sends 7 more that overflow (cs_limit) at
    once: the first 5 overflows are logged at once and 1 real second later one line
    counts the other 2; the 8 timeouts come 5 scenario seconds on, their own
    outcome's first 5 logged and the other 3 counted a real second after."""
    tier = new_tier(
        scenario(
            design="legacy",
            relays={"count": 1, "timeout_s": 5, "max_connections": 64},
            monitor={"enabled": False},
            recovery={"operators": False},
            load={"retry": {"max_retries": 0}},
        ),
        cs_caps=[1] * 8,
    )
    recorder = Recorder()
    tier.log = recorder
    server = RelayServer(
        tier, TrioDriver(tier), Limits(scale=speed), network=SimNetwork(1).host("127.0.0.1")
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        start = trio.current_time()
        server.driver.apply(FaultEvent(start, "hsm_stall", 1))
        wire = [Frame(Type.REQUEST, 100 + cs, bytes(16), cs, 0, b"x") for cs in range(8)]
        wire += [Frame(Type.REQUEST, i, bytes(16), 0, 0, b"x") for i in range(1, 8)]
        stream = connect(server)
        await stream.send_all(b"".join(f.encode() for f in wire))
        await trio.sleep(10.0 * speed)
        server.stop()
    failed = [(t - start, kw["outcome"]) for t, event, kw in recorder.lines
              if event == "request.failed"]  # fmt: skip
    counted = [(t - start, kw["outcome"], kw["suppressed"]) for t, event, kw in recorder.lines
               if event == "request.failed.suppressed"]  # fmt: skip
    overflows = [kw for _, event, kw in recorder.lines
                 if event == "request.failed" and kw["outcome"] == "overflow"]  # fmt: skip
    assert [(kw["id"], kw["reason"], kw["cs"]) for kw in overflows] == [
        (i, "cs_limit", 0) for i in range(1, failures.LINES + 1)
    ]
    timed_out = [t for t, outcome in failed if outcome == "timeout"]
    assert len(timed_out) == failures.LINES
    late = timed_out[0]
    assert 5.0 <= late < 5.1  # the relay step's timer, and an OS tick
    assert failed == [(0.0, "overflow")] * failures.LINES + [(late, "timeout")] * failures.LINES
    window = failures.WINDOW_S * speed
    assert counted == [(window, "overflow", 2), (late + window, "timeout", 3)]
    timeouts = [kw for _, event, kw in recorder.lines
                if event == "request.failed" and kw["outcome"] == "timeout"]  # fmt: skip
    assert {kw["node"] for kw in timeouts} == {"relay1"}
    assert [kw["duration_s"] for kw in timeouts] == [pytest.approx(late / speed, abs=1e-6)] * len(
        timeouts
    )


async def test_a_stop_mid_window_says_what_it_held_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Seven timeouts at once, then a stop half a window later: five lines, then at
    the stop one line counting the other two (a stop does not lose the count)."""
    recorder = Recorder()
    log = failures.FailureLog(recorder)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.run)
        await trio.testing.wait_all_tasks_blocked()
        for rid in range(1, 8):
            req = Request(rid, cs=3, attempt=0, arrived=trio.current_time())
            req.outcome = Outcome.TIMEOUT
            log.failed(req, rid, trio.current_time())
        await trio.sleep(failures.WINDOW_S / 2)
        nursery.cancel_scope.cancel()
    said = [(t, event, kw.get("id", kw.get("suppressed"))) for t, event, kw in recorder.lines]
    assert said == [(0.0, "request.failed", rid) for rid in range(1, 6)] + [
        (failures.WINDOW_S / 2, "request.failed.suppressed", 2)
    ]
