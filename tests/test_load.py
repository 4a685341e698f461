"""`relaysim load` against a serving tier: open model, every request counted.

The real server and client on the simulated network (`relay.net.sim`) under
trio's virtual clock: nothing sleeps in real time. tests/test_load_trust.py and
tests/test_serve_cli.py run the load over loopback's real sockets.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from hsm_adapter.lane import unwrap_group
from relay.cli import main
from relay.core.events import FaultEvent
from relay.core.request import Outcome
from relay.core.summary import Summary
from relay.engines.trio import TrioDriver
from relay.net.sim import SimNetwork
from relay.net.toxics import toxic_from
from relay.scenario.build import new_tier
from relay.scenario.schema import Scenario
from relay.serve import load, load_summary
from relay.serve.protocol import Decoder, ErrorCode, Frame, Status, Type, error_frame
from relay.serve.server import Limits, RelayServer
from relay.testing import scenario
from tests.test_serve import FAST

SERVER, CLIENT = "127.0.0.1", "127.0.0.2"


def small(**over: object) -> Scenario:
    return scenario(load={"requests": 600, "population": {"count": 50}}, **over)


async def against(
    server: RelayServer, s: Scenario, net: SimNetwork, **options: Any
) -> tuple[Summary, load.LoadRun]:
    """Serve with `server` on `net` and run `load.run` for `s` against it; stopped
    after. The load's failure is raised as itself."""
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            options.setdefault("connections", 8)
            got = await load.run(s, SERVER, port, network=net.host(CLIENT), **options)
            server.stop()
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None
    return got


def fast_server(net: SimNetwork, **over: Any) -> RelayServer:
    """A fast tier serving 50 municipalities, on host SERVER of `net`."""
    tier = new_tier(scenario(**{**FAST, **over}), cs_caps=[100] * 50)
    return RelayServer(tier, TrioDriver(tier), network=net.host(SERVER))


async def against_server(s: Scenario, **options: Any) -> tuple[Summary, RelayServer]:
    """Run `load.run` for `s` against a fast tier serving its 50 municipalities."""
    net = SimNetwork(1)
    server = fast_server(net)
    doc, _ = await against(server, s, net, **options)
    return doc, server


async def test_a_fixed_rate_is_sent_answered_and_counted_on_both_sides(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A Poisson rate for one second: every request gets its reply, the client's counts
    equal the server's, and latencies come from the histogram."""
    with trio.fail_after(20):
        doc, server = await against_server(small(), duration=1.0, rate=300.0)
    assert 200 < doc["requests"] < 400  # about 300 in one second
    assert doc["lost"] == 0
    assert doc["engine"] == "tcp"
    served = server.tier.ledger.total
    assert served.requests == doc["requests"]
    assert doc["completed"] + doc["overflows"] + doc["timeouts"] + doc["errors"] == doc["requests"]
    assert doc["completed"] == served.count(Outcome.COMPLETED)
    lat = doc["latency_ms"]
    p50, p99, top = lat["p50"], lat["p99"], lat["max"]
    assert p50 is not None
    assert p99 is not None
    assert top is not None
    assert 0 < p50 <= p99 <= top


async def test_a_speed_other_than_the_servers_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The load replays the day at the server's own speed: a --speed that disagrees
    (the README's old `--speed 840` against a real-time server, 840x overloaded) is
    refused in one line naming both."""
    net = SimNetwork(1)
    server = fast_server(net)
    with trio.fail_after(20), pytest.raises(load.LoadError) as exc:
        await against(server, small(), net, duration=1.0, speed=840.0)
    assert server.tier.ledger.total.requests == 0  # nothing was sent
    assert str(exc.value) == (
        "--speed 840: the server runs the model at 1x real time; "
        "start it with `serve --speed 840`, or leave --speed out"
    )


def test_schedule_is_open_and_seeded() -> None:
    """The schedule is a pure function of the scenario (seed) and ignores responses;
    a rate gives about rate x duration requests, in increasing time."""
    s = small()
    a = list(load.schedule(s, duration=10.0, rate=100.0, speed=None))
    assert a == list(load.schedule(s, duration=10.0, rate=100.0, speed=None))
    assert [t for t, _ in a] == sorted(t for t, _ in a)
    assert 800 < len(a) < 1200
    assert all(0 <= cs < 50 for _, cs in a)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--target", "nohost"], "--target 'nohost': expected HOST:PORT"),
        (["--target", "127.0.0.1:1", "--rate", "5", "--speed", "2"], "choose one"),
        (["--target", "127.0.0.1:1", "--duration", "0.2"], "cannot connect to 127.0.0.1:1"),
    ],
)
def test_bad_load_input_gets_one_line(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed target, both schedules at once, or no server there: one line, exit 2."""
    from tests.conftest import CONFIGS

    with pytest.raises(SystemExit) as exc:
        main(["load", str(CONFIGS / "smoke.yaml"), "--quiet", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1
    assert expected in err


async def test_ids_start_at_1_and_a_connection_error_is_nobodys(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The protocol reserves id 0 for "no particular request": the load numbers its
    requests from 1, so an error frame about a connection (a BUSY notice, id 0) is
    not booked as some request's error."""
    seen: list[int] = []

    async def server(stream: trio.abc.Stream) -> None:
        await stream.send_all(error_frame(ErrorCode.BUSY, "just saying").encode())
        decoder = Decoder()
        while data := await stream.receive_some(65536):
            for frame in decoder.feed(data):
                if frame.type is Type.INFO:  # who is there: a relaysim server
                    info = Frame(Type.INFO, frame.id, body=b'{"protocol": 1, "design": "fixed"}')
                    await stream.send_all(info.encode())
                    continue
                seen.append(frame.id)
                reply = Frame(Type.REPLY, frame.id, frame.key, frame.muni, Status.COMPLETED)
                await stream.send_all(reply.encode())

    net = SimNetwork(1)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listener, port = await net.host(SERVER).listen(SERVER, 0)
            nursery.start_soon(trio.serve_listeners, server, [listener])
            doc, record = await load.run(
                small(), SERVER, port, duration=0.5, rate=100.0, network=net.host(CLIENT)
            )
            nursery.cancel_scope.cancel()
    assert min(seen) == 1
    assert sorted(seen) == list(range(1, doc["requests"] + 1))
    assert (doc["completed"], doc["errors"], doc["lost"]) == (doc["requests"], 0, 0)
    assert record.notices == {"BUSY": 50}
    client = doc["client"]
    assert client is not None
    assert client["error_frames"] == {}


async def test_the_summary_has_the_servers_reasons_design_and_outages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """What the client cannot see, the server tells it: each overflow's reason (in
    the reply), and at the end its design and the crashes during the load (INFO);
    the two sides then agree on overflows by reason."""
    net = SimNetwork(1)
    tier = new_tier(scenario(**{**FAST, "design": "legacy"}), cs_caps=[1] * 50)
    server = RelayServer(tier, TrioDriver(tier), network=net.host(SERVER))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def crash_midway() -> None:
                await trio.sleep(0.5)  # virtual: half-way through the load
                server.driver.apply(FaultEvent(trio.current_time(), "crash", 1))

            nursery.start_soon(crash_midway)
            doc, _ = await against(server, small(), net, duration=1.0, rate=400.0)
    assert doc["overflows"] > 0
    assert doc["refusals"] == tier.ledger.refusals
    assert doc["relay_overflows"] == doc["overflows"]  # cs_limit: counted at the relays
    assert doc["design"] == "legacy"
    assert doc["crashes"] == 1  # on legacy the node stays down: its outage runs on
    assert (doc["outage_minutes"] or 0) > 0
    client = doc["client"]
    assert client is not None
    assert client["server_figures"] is True


async def test_a_load_that_falls_behind_says_so(autojump_clock: trio.testing.MockClock) -> None:
    """A client stalled now and then (here its progress line takes 30 ms to draw)
    sends requests late: they are counted, with the worst delay, and past 1% of
    sends the load warns that it did not send what was asked."""

    def slow_progress(state: load.LoadRun, elapsed: float) -> None:
        autojump_clock.jump(0.03)  # 30 ms pass while the terminal draws, the load stalled

    with trio.fail_after(20):
        doc, _ = await against_server(small(), duration=1.2, rate=400.0, progress=slow_progress)
    client = doc["client"]
    assert client is not None
    assert client["late_sends"] >= 5
    assert client["latest_send_ms"] >= 10
    warning = load_summary.behind(doc)
    assert warning is not None
    assert warning.startswith(f"the load fell behind its schedule: {client['late_sends']:,} of")
    assert load_summary.behind({**doc, "client": {**client, "late_sends": 0}}) is None


async def test_a_load_summary_reads_as_a_load_in_the_report(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """`report` on a load's summary does not claim the model's checks passed (they
    ran in the server), marks the server's figures as the server's, and draws the
    traffic over the scenario's own hours."""
    from relay.plan.report import html_report

    with trio.fail_after(20):
        doc, _ = await against_server(small(), duration=1.0, rate=200.0)
    page = html_report([("load.json", dict(doc))])
    assert "not run by a client" in page
    assert "checks</td><td>passed" not in page
    assert "crashes (the server&#x27;s)" in page
    assert page.count("<img") >= 2  # traffic and latency per 5 minutes


async def test_connections_closed_for_idleness_are_replaced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A sparse load against a server with a short idle timeout: connections are told
    IDLE and closed between requests; the load opens fresh ones and every request
    still gets its answer."""
    net = SimNetwork(1)
    tier = new_tier(scenario(**FAST), cs_caps=[100] * 50)
    limits = Limits(idle_timeout=0.15, frame_timeout=0.1)
    server = RelayServer(tier, TrioDriver(tier), limits, network=net.host(SERVER))
    with trio.fail_after(20):
        doc, record = await against(server, small(), net, duration=1.5, rate=20.0, connections=4)
    assert record.notices.get("IDLE", 0) >= 2
    assert server.stats.closed["IDLE"] >= 2
    assert doc["lost"] == 0
    assert doc["completed"] == doc["requests"] > 10


async def test_a_refused_load_says_what_the_server_said(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The load's address already holds the server's per-peer limit in working
    connections: the load is refused, and says so in the server's own words, with
    the reason, not that nothing answered."""
    net = SimNetwork(1)
    tier = new_tier(scenario(**FAST), cs_caps=[100] * 50)
    server = RelayServer(tier, TrioDriver(tier), Limits(per_peer=2), network=net.host(SERVER))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            tier.backend.slowdown = 1000.0  # a request runs to its 5 s step timer
            for i in range(2):  # working connections: a request running on each
                held = await net.host(CLIENT).connect(SERVER, port)
                await held.send_all(Frame(Type.REQUEST, i + 1, muni=i).encode())
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(load.LoadError) as exc:
                await load.run(
                    small(), SERVER, port, duration=1.0, connections=1, network=net.host(CLIENT)
                )
            server.stop()
    assert str(exc.value) == (
        f"{SERVER}:{port} refused the connection: BUSY: limit of 2 connections from "
        f"{CLIENT} reached"
    )


async def test_the_transports_round_trip_is_measured_and_said_when_it_distorts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A network with 5 ms each way: the load measures the round trip (10 ms real,
    the same in the scenario at 1x) and, the model's own p50 being 3 ms, warns that
    latencies are the network's, naming the speed at which they would not be; on a
    network that delays nothing it measures 0 and says nothing."""
    net = SimNetwork(1)
    server = fast_server(net)
    delay = {"type": "latency", "attributes": {"latency": 5}}
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        for stream in ("upstream", "downstream"):
            net.add_toxic((SERVER, port), toxic_from({**delay, "stream": stream}))
        doc, _ = await load.run(
            small(), SERVER, port, duration=1.0, rate=50.0, network=net.host(CLIENT)
        )
        server.stop()
    client = doc["client"]
    assert client is not None
    assert (client["round_trip_ms"], client["round_trip_scenario_ms"]) == (10.0, 10.0)
    assert client["clock_resolution_ms"] == 0.0  # a virtual clock: no tick
    warning = load_summary.unfaithful(doc)
    assert warning is not None
    assert warning.startswith("real time adds 10.000 ms to each latency (round trip 10.000 ms,")
    assert "at 0.015x or slower it would be under 5%" in warning
    # On the real clock its millisecond counts too: 0.3 ms + 1 ms at 200x is 260 ms.
    real_clock = client.copy()
    real_clock["round_trip_ms"], real_clock["clock_resolution_ms"] = 0.3, 1.0
    real_clock["speed"] = 200.0
    lat = doc["latency_ms"].copy()
    lat["p50"] = 1415.0
    said = load_summary.unfaithful({**doc, "client": real_clock, "latency_ms": lat})
    assert said is not None
    assert "260.0 ms of the scenario at 200x: 18% of the p50" in said
    assert "at 44.4x or slower" in said
    quiet, _ = await against_server(small(), duration=1.0, rate=50.0)
    assert quiet["client"] is not None
    assert quiet["client"]["round_trip_ms"] == 0.0
    assert load_summary.unfaithful(quiet) is None
