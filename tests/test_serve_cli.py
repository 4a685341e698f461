"""`relaysim serve` as an SRE runs it: a real process on loopback, metrics, SIGTERM.

Real processes and sockets, so trio's real clock; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from hsm_adapter.token import TokenConfig, ensure
from relay.serve.protocol import Decoder, Frame, Status, Type
from tests.conftest import CONFIGS

# Fast services, and room for everything: smoke.yaml caps each of its 200 CSs at one
# connection and each relay at 8, so a burst would be mostly overflows.
admin_ports: list[int] = []  # the admin port of the server `serving` started last

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
    proc = await trio.lowlevel.open_process(cmd, stdout=PIPE, stderr=PIPE, env=env)
    assert proc.stderr is not None
    assert proc.stdout is not None
    logs: list[str] = []
    admin_ports.clear()
    try:
        text = b""
        with trio.fail_after(30):
            while b"/faults\n" not in text:  # the admin line comes last
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, f"serve exited early: {text.decode()}"
                text += chunk
        # "dispatcher 127.0.0.1:P (...)", "relay1 127.0.0.1:P", "metrics http://...:P/metrics"
        ports = {
            line.split()[0]: int(line.split()[1].rsplit(":", 1)[1].split("/")[0])
            for line in text.decode().splitlines()
        }
        admin_ports.append(ports["admin"])
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
        wire = b"".join(Frame(Type.REQUEST, i, os.urandom(16), i % 200).encode() for i in range(n))
        await stream.send_all(wire)
        decoder, replies = Decoder(), list[Frame]()
        while len(replies) < n:
            data = await stream.receive_some(65536)
            assert data, "server closed before answering everything"
            replies += decoder.feed(data)
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
    drains and exits 0 with nothing in flight."""
    async with serving(*FAST) as (proc, port, metrics, logs):
        with trio.fail_after(30):
            replies = await send_requests(port, 200)
            samples = await scrape(metrics)
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert sorted(r.id for r in replies) == list(range(200))
    done = sum(r.status == Status.COMPLETED for r in replies)
    assert done == 200
    assert samples["relaysim_requests_total"] == 200
    assert samples["relaysim_outcomes_total{outcome=completed}"] == done
    assert samples["relaysim_latency_seconds_count"] == done
    assert samples["relaysim_node_up{node=relay1}"] == 1
    assert proc.returncode == 0
    stopped = [json.loads(line) for line in logs if '"serve.stopped"' in line]
    assert stopped == [
        {"event": "serve.stopped", "level": "info", "requests": 200, "replies": 200, "in_flight": 0}
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
    assert proc.returncode == 0
    assert any('"in_flight": 0' in line for line in logs)


async def test_serve_on_the_softhsm_token(tmp_path: Path) -> None:
    """With --hsm softhsm every request is signed on the real token; the lane shows
    as ready in the metrics."""
    env = {**os.environ, "RELAYSIM_STATE": str(tmp_path), "RELAYSIM_HSM_PIN": "pin-4d2a"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELAYSIM_HSM_PIN", "pin-4d2a")
        ensure(TokenConfig(state=tmp_path))
    async with serving(*FAST, "--hsm", "softhsm", env=env) as (proc, port, metrics, _):
        with trio.fail_after(30):
            replies = await send_requests(port, 100)
            samples = await scrape(metrics)
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert all(r.status == Status.COMPLETED for r in replies)
    assert samples["relaysim_hsm_lane_state{state=ready}"] == 1
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


async def relaysim(*args: str) -> tuple[int, str, str]:
    """Run the relaysim CLI as a child process: exit code, stdout, stderr."""
    cmd = [sys.executable, "-m", "relay", *args]
    result = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_relaysim_fault_injects_into_a_running_server() -> None:
    """`relaysim fault` crashes a node of a running fixed server (the supervisor restarts
    it at once: the outage shows in the metrics), and refuses an unknown kind in one
    line with exit 2."""
    async with serving(*FAST) as (proc, port, metrics, _):
        admin = f"127.0.0.1:{admin_ports[0]}"
        with trio.fail_after(30):
            code, out, _ = await relaysim(
                "fault", "--admin", admin, "inject", "crash", "--node", "1"
            )
            samples = await scrape(metrics)
            bad = await relaysim("fault", "--admin", admin, "inject", "meteor", "--node", "1")
            replies = await send_requests(port, 20)
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert code == 0
    assert json.loads(out)["nodes"][0]["outages"] == 1
    assert samples["relaysim_node_outages_total{kind=crash,node=relay1}"] == 1
    assert samples["relaysim_node_up{node=relay1}"] == 1  # fixed: restarted at once
    assert bad[0] == 2
    assert bad[2].strip().splitlines() == [
        "relaysim: fault inject: kind: expected one of hsm_stall, crash, timer_race, "
        "slow_backend, detach, attach, got 'meteor'"
    ]
    assert all(r.status == Status.COMPLETED for r in replies)
