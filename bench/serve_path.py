#!/usr/bin/env python3
"""Benchmark: what serve does per request besides the sockets, in a loop.

Two loops in one run, with bench-net's quick settings (service times of a
microsecond, caps that never bite), so the ratio holds on a noisy machine:

1. **frames**: decode a request frame and encode its reply (`relay.serve.protocol`);
2. **request**: the same, with the model in between as serve runs it: the tier
   admits the request, the driver carries its flow to its outcome in the ledger
   (`TrioDriver.advance`), the reply carries that outcome.

Last line JSON: bench, requests, frames_us, request_us (each per request), and
model_us (their difference: the model's path). `make bench-net` measures the same
path over loopback TCP against a bare echo server; this is where its gap lives.

    python bench/serve_path.py [--requests 300000]
"""

from __future__ import annotations

import argparse
import json
import time

import trio
from net import QUICK, ROOT

from relay.engines.trio import REAL_CLOCK_RESOLUTION, SimulatedServices, TrioDriver
from relay.scenario.build import build
from relay.scenario.schema import load_scenario
from relay.serve.metrics import serving_ledger
from relay.serve.protocol import STATUS_OF, Decoder, Frame, Status, Type


def frames(n: int) -> float:
    """Seconds per request to decode a request frame and encode its reply."""
    wire = Frame(Type.REQUEST, 7, b"k" * 16, 3).encode()
    decoder = Decoder()
    t0 = time.perf_counter()
    for _ in range(n):
        [frame] = decoder.feed(wire)
        Frame(Type.REPLY, frame.id, frame.key, frame.muni, Status.COMPLETED).encode()
    return (time.perf_counter() - t0) / n


def requests(n: int) -> float:
    """Seconds per request for the frames and the model's path between them."""
    scenario = load_scenario(ROOT / "configs" / "smoke.yaml", QUICK[1::2])
    tier = build(scenario, None, serving_ledger(1.0)).tier
    driver = TrioDriver(tier, services=SimulatedServices(tier), resolution=REAL_CLOCK_RESOLUTION)
    wire = [Frame(Type.REQUEST, i, b"k" * 16, i).encode() for i in range(200)]
    took: list[float] = []

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.serve)
            decoder, now = Decoder(), driver.now
            t0 = time.perf_counter()
            for i in range(n):
                [frame] = decoder.feed(wire[i % 200])
                req, flow = tier.admit(frame.muni, 0, now(), None, 1)
                driver.advance(flow)
                assert req.outcome is not None
                status = STATUS_OF[req.outcome]
                Frame(Type.REPLY, frame.id, frame.key, frame.muni, status).encode()
            took.append((time.perf_counter() - t0) / n)
            nursery.cancel_scope.cancel()

    trio.run(run)
    return took[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300_000)
    n = ap.parse_args().requests
    frames(n // 10)  # warm-up
    f, r = frames(n), requests(n)
    print(
        json.dumps(
            {
                "bench": "serve-path",
                "requests": n,
                "frames_us": round(f * 1e6, 2),
                "request_us": round(r * 1e6, 2),
                "model_us": round((r - f) * 1e6, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
