"""The load's summary never contradicts itself or hides what it saw (issue 27,
finding 5): the server's outages are the one source of its crashes, hangs and
outage (per day, per node and in all); what the server could not say is null and
"unknown", with an exit code of its own; a signal gets the partial summary; off a
terminal, progress comes as lines, and `--quiet` still gives the result.

In-process runs are the real server and client on the simulated network under
trio's virtual clock. The CLI runs against a scripted server on loopback in a
thread (tests/test_load_trust.py's), and the signals go to a real `relaysim load`
against a real `relaysim serve` (real time, every wait bounded).
"""

from __future__ import annotations

import io
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import trio
import trio.testing
from rich.console import Console

from relay.cli import main, progress, render
from relay.cli.options import EXIT_SERVER_STOPPED
from relay.core.events import FaultEvent
from relay.core.summary import Summary
from relay.engines.trio import TrioDriver
from relay.net.sim import SimNetwork
from relay.scenario.build import new_tier
from relay.serve import load
from relay.serve.protocol import ErrorCode, Frame, error_frame
from relay.serve.server import RelayServer
from relay.testing import scenario
from tests.conftest import CONFIGS
from tests.test_load import SERVER, against, small
from tests.test_load_trust import hostile, in_a_thread, reply
from tests.test_serve import FAST
from tests.test_serve_cli import FAST as SERVE_FAST
from tests.test_serve_cli import serving

SMOKE = str(CONFIGS / "smoke.yaml")


def legacy_server(net: SimNetwork, **over: Any) -> RelayServer:
    """A legacy tier of two relays (nothing recovers by itself), on host SERVER."""
    tier = new_tier(scenario(**{**FAST, "design": "legacy", **over}), cs_caps=[100] * 50)
    return RelayServer(tier, TrioDriver(tier), network=net.host(SERVER))


async def loaded_while(
    server: RelayServer, net: SimNetwork, meanwhile: Callable[[], Awaitable[None]], **options: Any
) -> tuple[Summary, load.LoadRun]:
    """`load.run` of `small()` against `server`, with `meanwhile` running beside it."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(meanwhile)
        return await against(server, small(), net, **options)


def table(doc: Summary) -> str:
    """The summary table as `relaysim load` prints it (no terminal)."""
    out = io.StringIO()
    render.summary_table(doc, Console(file=out, width=200))
    return out.getvalue()


def row(text: str, label: str) -> str:
    """The value of the table row whose label starts with `label`."""
    [line] = [line for line in text.splitlines() if f"│ {label}" in line]
    return line.split("│")[2].strip()


async def test_the_servers_outages_are_the_one_source_of_every_outage_figure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A crash and a hang during the load: the summary's events are the server's, on
    the load's clock; crashes, hangs and outage minutes per day, per node and in
    all are those events counted and summed; the table prints them as the JSON has
    them."""
    net = SimNetwork(1)
    server = legacy_server(net)

    struck: list[float] = []  # on the server's scenario clock, as the load names time

    async def faults() -> None:
        await trio.sleep(0.5)  # virtual: half-way through the load
        server.driver.apply(FaultEvent(trio.current_time(), "crash", 1))
        struck.append(server.clock.seconds(trio.current_time()))
        await trio.sleep(0.2)
        server.driver.apply(FaultEvent(trio.current_time(), "hsm_stall", 2))
        struck.append(server.clock.seconds(trio.current_time()))

    with trio.fail_after(20):
        doc, _ = await loaded_while(server, net, faults, duration=1.0, rate=400.0)
    events, nodes = doc["events"], doc["nodes"]
    assert events is not None
    assert nodes is not None
    assert [(e["node"], e["kind"], e["end"]) for e in events] == [
        ("relay1", "crash", None),  # legacy: both still out when the load ends
        ("relay2", "hang", None),
    ]
    # A --rate load runs on the server's clock: the events are when they struck.
    assert [e["t"] for e in events] == pytest.approx(struck, abs=0.002)
    # Each lasted from its start to the load's end, 0.5 s and 0.7 s into the load.
    assert [e["outage_minutes"] for e in events] == pytest.approx(
        [(doc["sim_seconds"] - 0.5) / 60, (doc["sim_seconds"] - 0.7) / 60], abs=0.001
    )
    total = doc["outage_minutes"]
    assert (doc["crashes"], doc["hangs"]) == (1, 1)
    assert total == round(sum(e["outage_minutes"] for e in events), 3) > 0
    [day] = doc["days"]
    assert (day["crashes"], day["hangs"]) == (1, 1)
    assert [(n["name"], n["crashes"], n["hangs"]) for n in nodes] == [
        ("relay1", 1, 0),
        ("relay2", 0, 1),
    ]
    assert sum(n["outage_minutes"] for n in nodes) == pytest.approx(total, abs=0.001)
    # The nodes' counts are the server's over the load (here the only client's).
    ledger = server.tier.ledger.nodes
    assert [n["requests"] for n in nodes] == [ledger[1].requests, ledger[2].requests]
    assert all(n["requests"] > 0 for n in nodes)
    printed = table(doc)
    assert row(printed, "crashes / hangs (the server's)") == "1 / 1"
    assert row(printed, "outage minutes (the server's)") == f"{total:,.3f}"


async def test_a_server_that_stops_mid_load_leaves_its_figures_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server stops half-way through the load: it cannot be asked at the end, so
    its crashes, hangs, outage, events and nodes are null (per day too), not 0, and
    the table says "unknown"."""
    net = SimNetwork(1)
    server = legacy_server(net)

    async def stop() -> None:
        await trio.sleep(0.5)
        server.stop()

    with trio.fail_after(20):
        doc, record = await loaded_while(server, net, stop, duration=1.0, rate=400.0)
    assert doc["requests"] > 0
    assert record.stopped_by_server
    client = doc["client"]
    assert client is not None
    assert (client["stopped_by_server"], client["server_figures"]) == (True, False)
    unknown = (doc["crashes"], doc["hangs"], doc["outage_minutes"], doc["events"], doc["nodes"])
    assert unknown == (None, None, None, None, None)
    assert [(d["crashes"], d["hangs"]) for d in doc["days"]] == [(None, None)]
    printed = table(doc)
    assert row(printed, "crashes / hangs (the server's)") == "unknown / unknown"
    assert row(printed, "outage minutes (the server's)") == "unknown"


#: What the scripted server says of itself: a relaysim dispatcher with its figures.
INFO = json.dumps(
    {
        "protocol": 1,
        "design": "fixed",
        "speed": 1,
        "uptime_s": 0,
        "crashes": 0,
        "hangs": 0,
        "outage_minutes": 0,
        "events": [],
        "nodes": [],
    }
).encode()


def stopping_after(n: int) -> Callable[[trio.SocketStream], object]:
    """A dispatcher that answers `n` requests and then stops as serve does: a
    SHUTTING_DOWN notice, and any request that crossed it refused unread."""
    answered = 0

    def answer(frame: Frame) -> bytes:
        nonlocal answered
        if answered >= n:
            return error_frame(ErrorCode.SHUTTING_DOWN, "stopping", frame.id).encode()
        answered += 1
        if answered < n:
            return reply(frame)
        return reply(frame) + error_frame(ErrorCode.SHUTTING_DOWN, "server stopping").encode()

    return hostile(answer, INFO)


def cli(*args: str) -> int:
    """`relaysim` in this process: its exit code."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_the_load_command_exits_7_and_says_unknown_when_the_server_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relaysim load` against a server that stops before the load has finished:
    the table and the result line say "unknown", the JSON has null, and the exit
    code is the documented one for it, not 0."""
    out = tmp_path / "load.json"
    with in_a_thread(stopping_after(20)) as port:
        code = cli(
            *("load", SMOKE, "--target", f"127.0.0.1:{port}", "--rate", "200"),
            *("--duration", "5", "--connections", "1", "--json", str(out)),
        )
    printed = capsys.readouterr()
    assert code == EXIT_SERVER_STOPPED == 7, printed.err
    doc = json.loads(out.read_text())
    assert (doc["crashes"], doc["hangs"], doc["outage_minutes"]) == (None, None, None)
    assert doc["client"]["stopped_by_server"] is True
    assert row(printed.out, "crashes / hangs (the server's)") == "unknown / unknown"
    assert "the server's crashes unknown, hangs unknown, outage unknown min" in printed.out
    assert "relaysim: the server stopped during the load: " in printed.err


def test_quiet_still_prints_the_one_line_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relaysim load --quiet` prints no table and no progress, but its result in one
    line on stdout, with the figures the JSON has."""
    out = tmp_path / "load.json"
    with in_a_thread(stopping_after(10_000)) as port:
        code = cli(
            *("load", SMOKE, "--target", f"127.0.0.1:{port}", "--rate", "100"),
            *("--duration", "0.3", "--connections", "1", "--quiet", "--json", str(out)),
        )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    doc = json.loads(out.read_text())
    assert doc["requests"] > 0
    [line] = printed.out.splitlines()
    assert line.startswith(
        f"load smoke: {doc['requests']:,} requests, {doc['completed']:,} completed, "
        f"{doc['overflows']:,} overflows (0.00%), "
    )
    assert line.endswith("; the server's crashes 0, hangs 0, outage 0.000 min")
    assert "relaysim: load smoke:" not in printed.err  # no progress line (warnings may come)


async def test_a_signal_stops_the_sending_and_the_summary_is_the_partial_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A first signal half-way through a 2 s load stops the sending; what was owed is
    still answered, the server is asked for its figures, and the summary is the
    partial run's, naming the signal."""
    net = SimNetwork(1)
    server = legacy_server(net)

    async def signals(stop: Callable[[str], None]) -> None:
        await trio.sleep(1.0)
        stop("SIGINT")

    with trio.fail_after(20):
        doc, record = await against(server, small(), net, duration=2.0, rate=200.0, signals=signals)
    client = doc["client"]
    assert client is not None
    assert (client["cancelled"], record.cancelled) == ("SIGINT", "SIGINT")
    assert 150 < doc["requests"] < 250  # about a second's worth, not two
    assert doc["requests"] == server.tier.ledger.total.requests
    assert doc["lost"] == 0
    assert client["server_figures"] is True
    assert doc["sim_seconds"] < 1.5


async def test_a_second_signal_stops_waiting_for_replies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With replies still owed (a 4 s backend), a second signal ends the wait at
    once: the unanswered requests are lost, and the server was not asked (its
    figures unknown, without claiming it was silent)."""
    net = SimNetwork(1)
    server = legacy_server(net, backend={"service_ms": {"dist": "constant", "mean": 4000}})

    async def signals(stop: Callable[[str], None]) -> None:
        await trio.sleep(0.5)
        stop("SIGTERM")
        await trio.sleep(0.1)
        stop("SIGTERM")

    with trio.fail_after(20):
        doc, record = await against(server, small(), net, duration=2.0, rate=200.0, signals=signals)
    assert record.cancelled == "SIGTERM"
    assert doc["lost"] > 0
    assert doc["sim_seconds"] == pytest.approx(0.6, abs=0.01)
    assert doc["crashes"] is None
    assert record.silent_at_end is False


async def everything(stream: trio.abc.ReceiveStream) -> str:
    """What a child process wrote to `stream`, to its end."""
    data = b""
    while chunk := await stream.receive_some(1 << 16):
        data += chunk
    return data.decode()


async def first_line(stream: trio.abc.ReceiveStream) -> str:
    """A child process's first line on `stream` (one byte at a time: nothing after
    it is taken from `everything`)."""
    data = b""
    while not data.endswith(b"\n"):
        byte = await stream.receive_some(1)
        if not byte:
            break
        data += byte
    return data.decode()


async def test_ctrl_c_and_sigterm_print_and_write_the_partial_summary(tmp_path: Path) -> None:
    """A real `relaysim load` against a real `relaysim serve`, signalled while it
    sends: SIGINT exits 130 and SIGTERM 143, each after printing the table and the
    result line (marked cancelled) and writing --json with the partial summary."""
    got = []
    async with serving(*SERVE_FAST) as (proc, port, _, _):
        for signum in (signal.SIGINT, signal.SIGTERM):
            out = tmp_path / f"{signum.name}.json"
            cmd = [sys.executable, "-m", "relay", "load", SMOKE, "--target", f"127.0.0.1:{port}"]
            cmd += ["--rate", "100", "--duration", "60", "--json", str(out)]
            cmd += ["--progress-interval", "1"]
            loading = await trio.lowlevel.open_process(cmd, stdout=PIPE, stderr=PIPE)
            assert loading.stdout is not None
            assert loading.stderr is not None
            with trio.fail_after(60):
                # Its first progress line (off a terminal, after a second of real
                # time): the load is under way. A blocking read, not a poll.
                first = await first_line(loading.stderr)
                assert first.startswith("relaysim: load ")
                loading.send_signal(signum)
                stdout, stderr = await everything(loading.stdout), await everything(loading.stderr)
                stderr = first + stderr
                await loading.wait()
            await loading.stdout.aclose()
            await loading.stderr.aclose()
            doc = json.loads(out.read_text()) if out.exists() else None
            got.append((signum, loading.returncode, stdout, stderr, doc))
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            await proc.wait()
    for signum, code, stdout, stderr, doc in got:
        assert code == 128 + signum, stderr
        assert doc is not None, stderr
        assert doc["client"]["cancelled"] == signum.name
        assert 30 <= doc["requests"] < 100 * 60 / 2  # stopped long before its minute
        assert doc["lost"] == 0
        assert doc["client"]["server_figures"] is True
        assert "│ requests" in stdout  # the table
        assert f"{doc['requests']:,} requests" in stdout
        assert stdout.rstrip().endswith(f"(cancelled by {signum.name})")
        assert f"relaysim: cancelled by {signum.name}: " in stderr


async def test_off_a_terminal_the_load_prints_a_line_every_interval(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not on a terminal, `relaysim load`'s progress is a line on stderr every 10 s of
    the load (virtual here), saying how far it got; nothing with --quiet."""
    net = SimNetwork(1)
    server = legacy_server(net)
    off = Console(file=io.StringIO())  # not a terminal
    assert not off.is_terminal
    with progress.load("smoke", 25.0, quiet=False, interval=10.0, console=off) as hook:
        assert hook is not None
        with trio.fail_after(60):
            doc, _ = await against(server, small(), net, duration=25.0, rate=5.0, progress=hook)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "relaysim: load smoke: 10 of 25 s (real)",
        "relaysim: load smoke: 20 of 25 s (real)",
    ]
    sent = [int(line.split(", ")[1].removesuffix(" sent").replace(",", "")) for line in lines]
    assert 0 < sent[0] < sent[1] < doc["requests"]  # about 50, 100 and 125
    with progress.load("smoke", 25.0, quiet=True, interval=10.0, console=off) as quiet:
        assert quiet is None


def test_progress_lines_keep_to_their_interval_without_bursts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run of many's lines (sweep, check) come once an interval of the clock has
    passed, whenever the hook is called; one called late writes one line, not the
    ones it missed."""
    now = [100.0]
    monkeypatch.setattr(progress, "CLOCK", lambda: now[0])
    off = Console(file=io.StringIO())
    with progress.runs(
        "sweep caps", 4, what="points", quiet=False, interval=10.0, console=off
    ) as hook:
        assert hook is not None
        for t, done in ((5, 0), (10, 1), (12, 1), (47, 3), (49, 3), (50, 4)):
            now[0] = 100.0 + t
            hook(done, 0, 4)
    assert capsys.readouterr().err.splitlines() == [
        "relaysim: sweep caps: 1 of 4 points done, 0 failed, 10 s",
        "relaysim: sweep caps: 3 of 4 points done, 0 failed, 47 s",
        "relaysim: sweep caps: 4 of 4 points done, 0 failed, 50 s",
    ]


SWEEP = f"""
base: {SMOKE}
name: two
points:
  - {{relays.count: 2}}
  - {{relays.count: 3}}
"""


def test_a_sweep_off_a_terminal_prints_lines_and_quiet_its_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relaysim sweep` in a CI log (no terminal) prints progress lines on stderr as
    its clock passes each interval (here a clock 10 s on at every reading), and with
    --quiet prints its result in one line instead of nothing."""
    ticks = iter(range(0, 10**6, 10))
    monkeypatch.setattr(progress, "CLOCK", lambda: float(next(ticks)))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP, encoding="utf-8")
    assert cli("sweep", str(sweep), "--workers", "1") == 0
    printed = capsys.readouterr()
    lines = printed.err.splitlines()
    assert lines
    assert all(line.startswith("relaysim: sweep two: ") for line in lines)
    assert lines[-1].startswith("relaysim: sweep two: 2 of 2 points done, 0 failed, ")
    assert cli("sweep", str(sweep), "--workers", "1", "--quiet") == 0
    quiet = capsys.readouterr()
    [line] = quiet.out.splitlines()
    assert line.startswith("2 points in ")
    assert line.endswith(" on 1 local worker")
    assert quiet.err == ""
