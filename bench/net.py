#!/usr/bin/env python3
"""Benchmark: serve mode over loopback TCP, against a bare trio echo server's ceiling.

One run, one machine, each server in its own child process and the client (a plain
epoll loop, as cheap as can be, since on 2 cores it competes with the servers and
the token's worker) in this one; every phase, after a second of warm-up load not
counted, `--seconds` (default 10) with
`--connections` (default 50) client connections, each sending a request frame and
waiting for its reply in a loop:

1. **echo**: a bare trio server with the same framing (`relay.serve.protocol`) that
   answers each request at once: the ceiling of this stack on this machine;
1b. **echo, serve's reads**: the same echo reading as serve does
   (`relay.net.received`: what a socket holds already is read without a pass
   through trio's scheduler); serve against it (`reads_ratio`) is what serve's
   own path costs over the transport it uses, where `ratio` also counts that
   serve's transport is leaner than trio's idiomatic one;
2. **relay**: `relaysim serve` (dispatcher, relay step, simulated HSM and backend,
   ledger) with service times of a microsecond and caps that never bite, so what is
   measured is the serving stack, not the model's waits (waits this far below the
   clock's millisecond resolution are done at once: the reader answers each
   request without a task of its own, `TrioDriver.advance`);
3. **raw sign**: the token's single-thread ECDSA P-256 sign rate (bench/hsm.py's),
   measured right before and right after phase 4 (the mean is the comparison);
4. **relay + softhsm**: the same serve with `--hsm softhsm`, every request signed on
   the real token through the lane.

Last line JSON: bench, echo_rps, relay_rps, ratio (relay / echo; target 0.8),
echo_reads_rps, reads_ratio (relay / echo with serve's reads),
p50_ms, p99_ms (relay), raw_sign_ops_s, raw_sign_range, relay_hsm_rps, hsm_ratio
(relay_hsm / raw sign; target 0.85), hsm_p50_ms, hsm_p99_ms, `recorded` (the
medians of the three ratios over the last three bench-net lines in
docs/performance.md: a recorded figure is three runs, and the machine is noisy)
and `regressed`: the ratios more than 10% below them, said on stderr too; the
script then exits 1.

    python bench/net.py [--seconds 10] [--connections 50]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import trio
from hsm import raw_rate

from hsm_adapter.token import TokenConfig
from relay.core.summary import percentiles
from relay.net import received
from relay.serve.protocol import HEADER_SIZE, VERSION, Decoder, Frame, Status, Type

ROOT = Path(__file__).resolve().parent.parent
WARM_UP_S = 1.0  # load before each measured phase, not counted
QUICK = [
    "--set",
    "hsm.service_ms={dist: constant, mean: 0.001}",
    "--set",
    "backend.service_ms={dist: constant, mean: 0.001}",
    "--set",
    "relays.max_connections=100000",
    "--set",
    "load.cs_connections={base: 100000, per_100k: 0, maximum: 100000}",
]


async def echo_server(
    reads: bool = False, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answer every request frame at once with a completed reply (same framing).
    With `reads`, read as serve does (`relay.net.received`: what is there already
    without a pass through the scheduler, else trio's wait)."""

    async def handle(stream: trio.SocketStream) -> None:
        decoder = Decoder()
        try:
            while True:
                data = received(stream) if reads else None
                if data is None:
                    data = await stream.receive_some(65536)
                if not data:
                    return
                out = b"".join(
                    Frame(Type.REPLY, f.id, f.key, f.muni, Status.COMPLETED).encode()
                    for f in decoder.feed(data)
                )
                await stream.send_all(out)
        except trio.BrokenResourceError:
            return

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


# The start of a frame: length, version, type, status, flags, id.
REPLY_HEAD = struct.Struct(">IBBBBQ")
REPLY_SIZE = 4 + HEADER_SIZE  # a reply has no body


def closed_loop(port: int, connections: int, seconds: float) -> tuple[float, list[float]]:
    """Requests answered per second over `seconds`, and each one's latency.

    `connections` sockets, each sending one request and waiting for its reply in a
    loop, driven by one epoll loop in plain Python: the load generator shares the
    machine's 2 cores with the servers under test (and the token's worker), so it
    is kept as cheap as it can be: no framework, one request frame per connection
    with its id patched in place, replies checked from their fixed header.
    """
    poller = select.epoll()
    conns: dict[int, tuple[socket.socket, bytearray]] = {}
    rid: dict[int, int] = {}
    started: dict[int, float] = {}
    latencies: list[float] = []
    now, done = time.perf_counter, latencies.append

    def send(fd: int) -> None:
        sock, frame = conns[fd]
        rid[fd] += 1
        REPLY_HEAD.pack_into(frame, 0, HEADER_SIZE, VERSION, Type.REQUEST, 0, 0, rid[fd])
        started[fd] = now()
        sock.sendall(frame)  # 40 bytes into an empty buffer: never blocks

    for c in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = bytearray(Frame(Type.REQUEST, 0, os.urandom(16), c % 200).encode())
        conns[sock.fileno()], rid[sock.fileno()] = (sock, frame), c << 32
        poller.register(sock.fileno(), select.EPOLLIN)
    t0 = now()
    stop = t0 + seconds
    for fd in conns:
        send(fd)
    buffers = dict.fromkeys(conns, b"")
    open_ = len(conns)
    while open_:
        for fd, _ in poller.poll(1.0):
            data = buffers[fd] + conns[fd][0].recv(65536)
            if not data:
                raise SystemExit(f"connection {fd}: closed by the server")
            if len(data) < REPLY_SIZE:
                buffers[fd] = data
                continue
            buffers[fd] = b""
            _, _, kind, status, _, got = REPLY_HEAD.unpack_from(data)
            if (kind, status, got) != (Type.REPLY, Status.COMPLETED, rid[fd]):
                raise SystemExit(f"request {rid[fd]}: {Decoder().feed(data)}, expected completed")
            t = now()
            done(t - started[fd])
            if t < stop:
                send(fd)
            else:
                poller.unregister(fd)
                open_ -= 1
    elapsed = now() - t0
    for sock, _ in conns.values():
        sock.close()
    poller.close()
    return len(latencies) / elapsed, latencies


def ms(latencies: list[float], *ps: float) -> list[float]:
    """Nearest-rank percentiles `ps` of `latencies` (seconds), in milliseconds."""
    return [round(v * 1000, 3) for v in percentiles(np.array(latencies), ps)]


def start_server(
    cmd: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """Start a server child that prints its port first on stderr; (process, port).
    `env`: variables added to this process's environment."""
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if not line:
        raise SystemExit(f"{' '.join(cmd)}: exited before listening")
    return proc, int(line.split()[1].split(":")[1])


def measure(
    cmd: list[str], connections: int, seconds: float, label: str
) -> tuple[float, list[float]]:
    """Start the server `cmd`, warm it up for a second, load it, stop it."""
    proc, port = start_server(cmd)
    try:
        closed_loop(port, connections, WARM_UP_S)  # first calls, caches, the token's
        rate, latencies = closed_loop(port, connections, seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(f"{label}: {rate:,.0f} req/s, p50 {ms(latencies, 50)[0]} ms", file=sys.stderr)
    return rate, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--reads", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo_server:  # the child of phases 1 and 1b

        async def run_echo() -> None:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(echo_server, args.reads)
                print(f"echo 127.0.0.1:{port}", file=sys.stderr, flush=True)

        trio.run(run_echo)
        return
    n, secs = args.connections, args.seconds
    echo, _ = measure([sys.executable, __file__, "--echo-server"], n, secs, "echo")
    echo_reads, _ = measure(
        [sys.executable, __file__, "--echo-server", "--reads"], n, secs, "echo, serve's reads"
    )
    serve = [sys.executable, "-m", "relay", "serve", str(ROOT / "configs" / "smoke.yaml"), *QUICK]
    relay, lat = measure([*serve, "--log-format", "json"], n, secs, "relay")
    cfg = TokenConfig()
    # The raw rate right before and right after the phase it is compared with: on a
    # shared machine the token's speed drifts, and the mean of the two brackets it.
    before = raw_rate(cfg, min(secs, 5.0))
    hsm, hsm_lat = measure([*serve, "--hsm", "softhsm"], n, secs, "relay + softhsm")
    after = raw_rate(cfg, min(secs, 5.0))
    raw = (before + after) / 2
    print(f"raw sign: {before:,.0f} before, {after:,.0f} after ops/s", file=sys.stderr)
    p50, p99 = ms(lat, 50, 99)
    hsm_p50, hsm_p99 = ms(hsm_lat, 50, 99)
    figures = {
        "ratio": round(relay / echo, 3),
        "reads_ratio": round(relay / echo_reads, 3),
        "hsm_ratio": round(hsm / raw, 3),
    }
    recorded = last_recorded()
    # Ratios, not rates: both sides of each are measured in this run.
    fell = {
        name: round(value / recorded[name], 3)
        for name, value in figures.items()
        if name in recorded and value < (1 - REGRESSION) * recorded[name]
    }
    for name, share in fell.items():
        print(
            f"REGRESSION: {name} {figures[name]} is {100 * (1 - share):.0f}% below the "
            f"recorded figure in docs/performance.md ({recorded[name]}); more than "
            f"{100 * REGRESSION:.0f}% is a regression",
            file=sys.stderr,
        )
    print(
        json.dumps(
            {
                "bench": "net",
                "connections": n,
                "seconds": secs,
                "echo_rps": round(echo),
                "relay_rps": round(relay),
                "ratio": figures["ratio"],
                "echo_reads_rps": round(echo_reads),
                "reads_ratio": figures["reads_ratio"],
                "p50_ms": p50,
                "p99_ms": p99,
                "raw_sign_ops_s": round(raw),
                "raw_sign_range": [round(min(before, after)), round(max(before, after))],
                "relay_hsm_rps": round(hsm),
                "hsm_ratio": figures["hsm_ratio"],
                "hsm_p50_ms": hsm_p50,
                "hsm_p99_ms": hsm_p99,
                "recorded": recorded,
                "regressed": sorted(fell),
            }
        )
    )
    if fell:
        sys.exit(1)


REGRESSION = 0.10  # a ratio this much below the recorded one is a regression
RATIOS = ("ratio", "reads_ratio", "hsm_ratio")


def last_recorded(runs: int = 3) -> dict[str, float]:
    """Each ratio's median over the last `runs` `bench-net` lines in
    docs/performance.md that have it (none: not recorded yet)."""
    lines = [
        json.loads(line)
        for line in (ROOT / "docs" / "performance.md").read_text(encoding="utf-8").splitlines()
        if line.startswith('{"bench": "net"')
    ]
    found: dict[str, float] = {}
    for name in RATIOS:
        values = [float(doc[name]) for doc in lines if name in doc][-runs:]
        if values:
            found[name] = round(float(np.median(values)), 3)
    return found


if __name__ == "__main__":
    main()
