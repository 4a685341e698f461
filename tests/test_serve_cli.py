"""`relaysim serve` as an SRE runs it: a real process on loopback, metrics, SIGTERM.

Real processes and sockets, so trio's real clock; every wait is bounded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from hsm_adapter.token import TokenConfig, ensure
from relay.cli.options import EXIT_SERVER_STOPPED
from relay.serve.protocol import Decoder, Frame, Status, Type
from tests.conftest import CONFIGS

# Fast services, and room for everything: smoke.yaml caps each of its 200 CSs at one
# connection and each relay at 8, so a burst would be mostly overflows.
# The admin endpoint of the server `serving` started last: port, token, state folder.
admin: dict[str, Any] = {}

FAST = [
    "--set",
    "backend.service_ms={dist: constant, mean: 5}",
    "--set",
    "relays.max_connections=256",
]


@asynccontextmanager
async def serving(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[trio.Process, int, int, list[str]]]:
    """`relaysim serve` in a child process; its dispatcher and metrics ports and a
    list that fills with its JSON log lines once it has exited."""
    cmd = [sys.executable, "-m", "relay", "serve", str(CONFIGS / "smoke.yaml"), *args]
    if env is None:  # the admin token goes to a state folder of this run's own
        env = {**os.environ, "RELAYSIM_STATE": tempfile.mkdtemp(prefix="relaysim-state-")}
    proc = await trio.lowlevel.open_process(cmd, stdout=PIPE, stderr=PIPE, env=env)
    assert proc.stderr is not None
    assert proc.stdout is not None
    logs: list[str] = []
    admin.clear()
    try:
        text = b""
        with trio.fail_after(30):
            while b"/faults\n" not in text:  # the admin line comes last
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, f"serve exited early: {text.decode()}"
                text += chunk
        # "dispatcher 127.0.0.1:P (...)", "relay1 127.0.0.1:P", "metrics http://...:P/metrics",
        # "token T (in PATH, ...)"
        lines = {line.split()[0]: line.split()[1] for line in text.decode().splitlines()}
        ports = {
            name: int(value.rsplit(":", 1)[1].split("/")[0])
            for name, value in lines.items()
            if name != "token"
        }
        admin.update(port=ports["admin"], token=lines["token"], state=env["RELAYSIM_STATE"])
        yield proc, ports["dispatcher"], ports["metrics"], logs
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.fail_after(30):
            await proc.wait()
            out = b""
            while chunk := await proc.stdout.receive_some(65536):
                out += chunk
        logs += out.decode().splitlines()
        await proc.stdout.aclose()
        await proc.stderr.aclose()


async def send_requests(port: int, n: int) -> list[Frame]:
    """`n` pipelined requests on one connection; their replies."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        ids = range(1, n + 1)
        wire = b"".join(Frame(Type.REQUEST, i, os.urandom(16), i % 200).encode() for i in ids)
        await stream.send_all(wire)
        decoder, replies = Decoder(), list[Frame]()
        while len(replies) < n:
            data = await stream.receive_some(65536)
            assert data, "server closed before answering everything"
            replies += [f for f in decoder.feed(data) if f.id]  # not a notice (id 0)
    return replies


async def scrape(port: int) -> dict[str, float]:
    """GET /metrics, parsed as Prometheus text; samples by name and labels."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = b""
        while chunk := await stream.receive_some(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


async def test_serve_answers_load_reports_metrics_and_stops_cleanly() -> None:
    """Requests over TCP get replies; /metrics parses and agrees with them; SIGTERM
    drains and exits 0 with nothing in flight; every log line names its instant in
    real UTC and in the scenario's time of day."""
    began = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with serving(*FAST) as (proc, port, metrics, logs):
        with trio.fail_after(30):
            replies = await send_requests(port, 200)
            samples = await scrape(metrics)
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    ended = dt.datetime.now(dt.UTC)
    assert sorted(r.id for r in replies) == list(range(1, 201))
    done = sum(r.status == Status.COMPLETED for r in replies)
    assert done == 200
    assert samples["relaysim_requests_total"] == 200
    assert samples["relaysim_outcomes_total{outcome=completed}"] == done
    assert samples["relaysim_request_duration_seconds_count{outcome=completed}"] == done
    assert samples["relaysim_node_up{node=relay1}"] == 1
    assert samples["relaysim_serve_limit_seconds{limit=idle_timeout}"] == 300
    assert samples["relaysim_serve_limit_seconds{limit=drain}"] == 30 + 0.015625 + 5
    assert samples["relaysim_rejected_input_total{code=BUSY}"] == 0  # every code, from 0
    assert samples["relaysim_connections_refused_total{limit=per_peer}"] == 0
    assert proc.returncode == 0
    lines = [json.loads(line) for line in logs]
    # Every line names its instant: real time in UTC, within the test's, and the
    # scenario's time of day, from the smoke day's opening (07:30) when serve started.
    for line in lines:
        assert line["utc"].endswith("Z")
        assert began <= dt.datetime.fromisoformat(line["utc"]) <= ended
        assert "t" not in line
    opening = dt.datetime(2016, 3, 29, 7, 30)
    for line in lines:  # at --speed 1, a scenario second a real one
        assert opening <= dt.datetime.fromisoformat(line["scenario_time"])
        assert dt.datetime.fromisoformat(line["scenario_time"]) <= opening + (ended - began)
    assert lines[0]["event"] == "serve.started"
    stopped = [line for line in lines if line["event"] == "serve.stopped"]
    assert stopped[0].pop("utc") >= lines[0]["utc"]
    assert stopped[0].pop("scenario_time") >= lines[0]["scenario_time"]
    assert stopped == [
        {
            "event": "serve.stopped",
            "level": "info",
            "requests": 200,
            "replies": 200,
            "undelivered": 0,
            "refused_stopping": 0,
            "cut": 0,
            "aborted": 0,
            "in_flight": 0,
            "outcomes": {"completed": 200, "overflow": 0, "timeout": 0, "error": 0},
        }
    ]


async def test_sigterm_drains_requests_in_flight() -> None:
    """Requests accepted before SIGTERM are all answered before the server exits."""
    slow = [*FAST, "--set", "backend.service_ms={dist: constant, mean: 500}"]
    async with serving(*slow) as (proc, port, metrics, logs):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                got: list[Frame] = []

                async def client() -> None:
                    got.extend(await send_requests(port, 20))

                nursery.start_soon(client)
                # Until the server holds all 20 (each scrape is a real round trip).
                while (await scrape(metrics))["relaysim_in_flight"] < 20:
                    pass
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert len(got) == 20
    assert {f.status for f in got} == {Status.COMPLETED}
    assert proc.returncode == 0
    assert any('"in_flight": 0' in line for line in logs)


async def test_a_second_signal_stops_at_once_and_says_what_it_cut() -> None:
    """A second SIGTERM during the drain ends serve at once (not after the drain of
    the 30 s timer), logging how many requests it cut."""
    slow = [*FAST, "--set", "backend.service_ms={dist: constant, mean: 20000}"]
    async with serving(*slow) as (proc, port, metrics, logs):
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            ids = range(1, 11)
            await stream.send_all(b"".join(Frame(Type.REQUEST, i, muni=i).encode() for i in ids))
            while (await scrape(metrics))["relaysim_in_flight"] < 10:
                pass
            proc.send_signal(signal.SIGTERM)
            while (await scrape(metrics))[
                "relaysim_connections_closed_total{reason=SHUTTING_DOWN}"
            ] < 1:
                pass
            proc.send_signal(signal.SIGTERM)
            start = trio.current_time()
            await proc.wait()
            took = trio.current_time() - start
            await stream.aclose()
    events = {e["event"]: e for e in map(json.loads, logs) if e["event"].startswith("serve.")}
    assert took < 5
    assert proc.returncode == 0
    assert events["serve.cut"]["cut"] == 10
    assert (events["serve.stopped"]["aborted"], events["serve.stopped"]["in_flight"]) == (10, 10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
async def test_a_stop_signal_under_load_loses_nothing_on_either_side(
    signum: signal.Signals, tmp_path: Path
) -> None:
    """SIGTERM or SIGHUP (a terminal gone away) while `relaysim load` sends 300
    requests a second: serve drains, logs its stop and removes its admin token; the
    load stops when told, exits 7 (the server stopped first: its own figures are
    unknown) with nothing lost, and every request it sent has
    exactly one outcome on both sides: admitted and answered with the outcome the
    server recorded, or refused unread with SHUTTING_DOWN (the client's error)."""
    slow = [*FAST, "--set", "backend.service_ms={dist: exponential, mean: 200}"]
    out = tmp_path / "load.json"
    async with serving(*slow) as (proc, port, metrics, logs):
        load = [
            *("load", str(CONFIGS / "smoke.yaml"), "--target", f"127.0.0.1:{port}"),
            *("--rate", "300", "--duration", "30", "--quiet", "--json", str(out)),
        ]
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                result: list[tuple[int, str, str]] = []

                async def client() -> None:
                    result.append(await relaysim(*load))

                nursery.start_soon(client)
                # Until the load is well under way (each scrape is a real round trip).
                while (await scrape(metrics))["relaysim_requests_total"] < 300:
                    pass
                proc.send_signal(signum)
            await proc.wait()
    [(code, _, err)] = result
    doc = json.loads(out.read_text())
    [stopping] = [json.loads(line) for line in logs if '"serve.stopping"' in line]
    [stopped] = [json.loads(line) for line in logs if '"serve.stopped"' in line]
    assert stopping["signal"] == signum.name
    assert not list(Path(admin["state"]).glob("admin-*.token"))
    assert (code, proc.returncode) == (EXIT_SERVER_STOPPED, 0), (
        err,
        {k: doc[k] for k in ("requests", "lost", "completed", "errors", "client")},
        stopped,
    )
    assert "the server stopped during the load" in err
    assert (doc["crashes"], doc["hangs"], doc["outage_minutes"]) == (None, None, None)
    assert 300 <= doc["requests"] < 300 * 30 / 2
    assert doc["lost"] == 0
    # Every request the client sent reached the server once: admitted or refused.
    refused = stopped["refused_stopping"]
    assert doc["requests"] == stopped["requests"] + refused
    assert doc["client"]["error_frames"].get("SHUTTING_DOWN", 0) == refused
    assert doc["client"]["stopped_by_server"] is True
    # Each admitted one has the outcome the server recorded; none was cut or undelivered.
    served = stopped["outcomes"]
    assert (doc["completed"], doc["overflows"], doc["timeouts"]) == (
        served["completed"],
        served["overflow"],
        served["timeout"],
    )
    assert doc["errors"] == served["error"] + refused
    assert (stopped["undelivered"], stopped["cut"], stopped["in_flight"]) == (0, 0, 0)


async def test_serve_on_the_softhsm_token(tmp_path: Path) -> None:
    """With --hsm softhsm every request is signed on the real token, each call timed
    in real seconds; the lane shows as ready in the metrics, and once relay1's lane
    is stalled (the token still answering the others), as stuck on relay1, as its
    stuck flag says."""
    env = {**os.environ, "RELAYSIM_STATE": str(tmp_path), "RELAYSIM_HSM_PIN": "pin-4d2a"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELAYSIM_HSM_PIN", "pin-4d2a")
        ensure(TokenConfig(state=tmp_path))
    async with serving(*FAST, "--hsm", "softhsm", env=env) as (proc, port, metrics, _):
        with trio.fail_after(30):
            replies = await send_requests(port, 100)
            samples = await scrape(metrics)
            # On fixed the stall lasts until a call on it passes its 2 s deadline:
            # a scrape right after the inject sees it.
            where = f"127.0.0.1:{admin['port']}"
            stall = ("fault", "--admin", where, "inject", "hsm_stall", "--node", "1")
            assert (await relaysim(*stall, state=admin["state"]))[0] == 0
            stalled = await scrape(metrics)
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert all(r.status == Status.COMPLETED for r in replies)
    assert samples["relaysim_hsm_lane_state{node=relay1,state=ready}"] == 1
    calls = "relaysim_hsm_token_call_duration_seconds"
    answered = samples[f"{calls}_count{{result=answered}}"]
    assert answered >= 100  # a sign at least for each request
    assert samples[f"{calls}_bucket{{le=+Inf,result=answered}}"] == answered
    assert 0 < samples[f"{calls}_sum{{result=answered}}"] / answered < 2.0  # within the deadline
    assert stalled["relaysim_node_hsm_stuck{node=relay1}"] == 1
    assert stalled["relaysim_hsm_lane_state{node=relay1,state=stuck}"] == 1
    assert stalled["relaysim_hsm_lane_state{node=relay1,state=ready}"] == 0
    assert stalled["relaysim_hsm_lane_state{node=relay2,state=ready}"] == 1
    assert proc.returncode == 0


async def test_serve_with_a_wrong_pin_says_so_in_one_line(tmp_path: Path) -> None:
    """A token that will not open stops serve at start: one line, exit 2, no PIN."""
    env = {**os.environ, "RELAYSIM_STATE": str(tmp_path), "RELAYSIM_HSM_PIN": "pin-4d2a"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELAYSIM_HSM_PIN", "pin-4d2a")
        ensure(TokenConfig(state=tmp_path))
    env["RELAYSIM_HSM_PIN"] = "wrong-77aa"
    cmd = [sys.executable, "-m", "relay", "serve", str(CONFIGS / "smoke.yaml"), "--hsm", "softhsm"]
    with trio.fail_after(30):
        result = await trio.run_process(
            cmd, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    err = result.stderr.decode()
    assert result.returncode == 2
    assert err.strip().splitlines() == ["relaysim: token 'relaysim': login: wrong PIN"]
    assert "wrong-77aa" not in err + result.stdout.decode()


async def relaysim(*args: str, state: str | None = None) -> tuple[int, str, str]:
    """Run the relaysim CLI as a child process (with RELAYSIM_STATE `state`): exit
    code, stdout, stderr."""
    cmd = [sys.executable, "-m", "relay", *args]
    env = {**os.environ, **({"RELAYSIM_STATE": state} if state else {})}
    result = await trio.run_process(
        cmd, capture_stdout=True, capture_stderr=True, check=False, env=env
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_relaysim_fault_injects_into_a_running_server() -> None:
    """`relaysim fault` crashes a node of a running fixed server (the supervisor restarts
    it at once: the outage shows in the metrics), and refuses an unknown kind in one
    line with exit 2."""
    async with serving(*FAST) as (proc, port, metrics, _):
        where = f"127.0.0.1:{admin['port']}"
        with trio.fail_after(30):
            code, out, _ = await relaysim(
                "fault",
                "--admin",
                where,
                "inject",
                "crash",
                "--node",
                "1",
                "--json",
                state=admin["state"],
            )
            samples = await scrape(metrics)
            bad = await relaysim(
                "fault", "--admin", where, "inject", "meteor", "--node", "1", state=admin["state"]
            )
            stalled = await relaysim(
                "fault",
                "--admin",
                where,
                "inject",
                "hsm_stall",
                "--node",
                "2",
                state=admin["state"],
            )
            shown = await relaysim("fault", "--admin", where, "show")
            wrong = [
                await relaysim("fault", "--admin", f"127.0.0.1:{p}", "show")
                for p in (metrics, port)
            ]
            extra = await relaysim(
                "fault", "--admin", where, "clear", "crash", "--node", "2", state=admin["state"]
            )
            await relaysim("fault", "--admin", where, "clear", state=admin["state"])
            replies = await send_requests(port, 20)
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert code == 0
    assert json.loads(out)["nodes"][0]["outages"] == 1
    # Shown for a person, right after the change (on fixed, the deep health check
    # resets the lane within seconds, so a later `show` may find it answering again):
    # the stalled lane, and the fault in effect with its relay.
    assert stalled[0] == 0
    assert "not answering" in stalled[1]
    assert re.search(r"hsm_stall\s+relay2\s+since", stalled[1])
    assert shown[0] == 0
    assert "design fixed" in shown[1]
    for wrong_code, _, wrong_err in wrong:  # metrics and dispatcher ports: not admin
        assert wrong_code == 2
        [line] = wrong_err.strip().splitlines()
        assert line.endswith("is not a relaysim admin endpoint (serve prints it as `admin`)")
    assert extra[0] == 2
    assert "clear takes no KIND, --node" in extra[2]
    assert samples["relaysim_node_outages_total{kind=crash,node=relay1}"] == 1
    assert samples["relaysim_node_up{node=relay1}"] == 1  # fixed: restarted at once
    assert bad[0] == 2
    assert bad[2].strip().splitlines() == [
        "relaysim: fault inject: kind: expected one of crash, hsm_stall, timer_race, "
        "slow_backend, detach, attach, got 'meteor'"
    ]
    assert all(r.status == Status.COMPLETED for r in replies)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--port", "65533"],
            "relaysim: --port 65533: the relay nodes need ports 65534..65537, past 65535; "
            "choose a port up to 65531",
        ),
        (
            ["--metrics-port", "{taken}"],
            "relaysim: cannot listen on 127.0.0.1:{taken} (metrics port):",
        ),
        (["--admin-port", "{taken}"], "relaysim: cannot listen on 127.0.0.1:{taken} (admin port):"),
        (["--port", "{below}"], "relaysim: cannot listen on 127.0.0.1:{taken} (relay2 port):"),
    ],
)
async def test_port_problems_name_the_port_in_one_line(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    """A base port whose relay nodes would pass 65535, or a port already taken (the
    metrics', the admin's, a node's): one line naming that port and what it was
    for, exit 2."""
    taken = trio.socket.socket()
    await taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    fill = {"taken": str(port), "below": str(port - 2)}
    try:
        with trio.fail_after(30):
            code, _, err = await relaysim(
                "serve",
                str(CONFIGS / "smoke.yaml"),
                *(a.format(**fill) for a in args),
                state=str(tmp_path),
            )
    finally:
        taken.close()
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(expected.format(**fill))


async def test_the_admin_token_is_private_required_and_found_by_fault(tmp_path: Path) -> None:
    """serve prints a token and writes it 0600 under the state folder; a change
    without it is refused (401) while `relaysim fault` finds it there; without the
    file `fault` says so in one line; the file goes when serve stops."""
    env = {**os.environ, "RELAYSIM_STATE": str(tmp_path)}
    async with serving(*FAST, env=env) as (proc, _, _, _):
        saved = tmp_path / f"admin-{admin['port']}.token"
        mode = saved.stat().st_mode & 0o777
        written = saved.read_text().strip()
        where = f"127.0.0.1:{admin['port']}"
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream("127.0.0.1", admin["port"])
            async with stream:
                body = b'{"kind": "crash", "node": 1}'
                head = (
                    f"POST /faults HTTP/1.1\r\nhost: {where}\r\ncontent-type: application/json"
                    f"\r\ncontent-length: {len(body)}\r\n\r\n"
                )
                await stream.send_all(head.encode() + body)
                raw = b""
                while chunk := await stream.receive_some(65536):
                    raw += chunk
            ok = await relaysim(
                "fault",
                "--admin",
                where,
                "inject",
                "crash",
                "--node",
                "2",
                "--json",
                state=str(tmp_path),
            )
            elsewhere = await relaysim(
                "fault", "--admin", where, "clear", state=str(tmp_path / "no")
            )
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert (mode, written) == (0o600, admin["token"])
    assert raw.startswith(b"HTTP/1.1 401")
    assert ok[0] == 0
    assert json.loads(ok[1])["nodes"][1]["outages"] == 1
    assert elsewhere[0] == 2
    assert elsewhere[2].strip().splitlines() == [
        f"relaysim: fault clear: no admin token: {tmp_path / 'no'}/admin-{admin['port']}.token "
        "cannot be read (run this where serve runs, or pass --token)"
    ]
    assert not saved.exists()


# One hour of the smoke day with operations long against the real clock's resolution
# at 120x (1 ms real is 0.12 s of the model: 1% of these ~14 s latencies).
HOUR = [
    *("--set", "load.service_hours=[10:00, 11:00]", "--set", "load.requests=500"),
    *("--set", "load.profile=flat", "--set", "relays.timeout_s=120"),
    *("--set", "backend.service_ms={dist: lognormal, mean: 20000, cv: 1.0}"),
]


async def test_load_against_a_faster_server_agrees_with_the_replay(tmp_path: Path) -> None:
    """`serve --speed 120` runs the model 120x faster; `load` learns the speed from
    the server, replays the scenario's hour at it (first attempts and the counter
    users' retries) and reports in the scenario's time: its summary agrees with
    `replay` of the same scenario and seed within sampling noise: overflow rate
    within 25%, p50 and p99 within 15%."""
    replayed, loaded = tmp_path / "replay.json", tmp_path / "load.json"
    code, _, err = await relaysim(
        "replay", str(CONFIGS / "smoke.yaml"), *HOUR, "--quiet", "--json", str(replayed)
    )
    assert code == 0, err
    async with serving(*HOUR, "--speed", "120") as (proc, port, _, _):
        with trio.fail_after(90):
            code, _, err = await relaysim(
                *("load", str(CONFIGS / "smoke.yaml"), *HOUR, "--target", f"127.0.0.1:{port}"),
                *("--duration", "30", "--quiet", "--json", str(loaded)),
            )
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert code == 0, err
    r, t = json.loads(replayed.read_text()), json.loads(loaded.read_text())
    assert t["client"]["speed"] == 120
    assert t["requests"] > 500  # the first attempts and their retries
    assert abs(t["requests"] / r["requests"] - 1) < 0.1
    rate = [d["overflows"] / d["requests"] for d in (r, t)]
    assert 0.05 < rate[0] < 0.5  # congested enough to measure
    assert abs(rate[1] / rate[0] - 1) < 0.25, rate
    for p, tolerance in (("p50", 0.15), ("p99", 0.15)):
        ratio = t["latency_ms"][p] / r["latency_ms"][p]
        assert abs(ratio - 1) < tolerance, (p, ratio)
    assert t["refusals"].keys() == r["refusals"].keys()  # the same reasons, cs_limit
    assert 0.9 < t["sim_seconds"] / r["sim_seconds"] < 1.2  # the hour, in scenario time
