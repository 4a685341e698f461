#!/usr/bin/env python3
"""Benchmark: serve mode's memory after 10^4 and 10^6 requests.

A server may answer requests for weeks; what it keeps per request must not grow
with them. This drives requests through a serving tier's own path
(`RelayTier.admit`, then `TrioDriver.advance` on the real clock, every service
time far below the clock's resolution, so each request completes inline as serve
mode completes it) and reads the process's resident memory after 10^4 and after
10^6 requests: once with serve mode's ledger (latencies into a bounded
histogram), once with a replay's (every latency kept), in child processes.

Prints progress lines, then one JSON line: bench, requests, and the RSS (MB) of
each ledger at each point.

    python bench/serve_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys

import trio

from relay.core.ledger import Ledger
from relay.engines.trio import REAL_CLOCK_RESOLUTION, TrioDriver
from relay.scenario.build import new_tier
from relay.serve.metrics import BUCKETS
from relay.testing import scenario

CHECKPOINTS = (10_000, 1_000_000)


def rss_mb() -> float:
    """The process's resident memory now, in MB (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * 4096 / 2**20


async def drive(bounded: bool) -> dict[str, float]:
    s = scenario(
        hsm={"service_ms": {"dist": "constant", "mean": 0.001}},
        backend={"service_ms": {"dist": "constant", "mean": 0.001}},
        monitor={"enabled": False},
        load={"population": {"count": 50}},
    )
    ledger = Ledger(latency_bounds=BUCKETS) if bounded else Ledger()
    tier = new_tier(s, cs_caps=[10**9] * 50, ledger=ledger)
    driver = TrioDriver(tier, resolution=REAL_CLOCK_RESOLUTION)
    out: dict[str, float] = {}
    done = 0
    for target in CHECKPOINTS:
        while done < target:
            req, flow = tier.admit(done % 50, 0, trio.current_time())
            driver.advance(flow)
            assert req.outcome is not None  # completed inline: no request left open
            done += 1
            if done % 4096 == 0:
                await trio.lowlevel.checkpoint()
        out[str(target)] = round(rss_mb(), 1)
        print(
            f"{'bounded' if bounded else 'every latency'}: {done} requests, {out[str(target)]} MB",
            file=sys.stderr,
            flush=True,
        )
    return out


def main() -> None:
    if len(sys.argv) > 1:  # a child: one ledger kind
        print(json.dumps(trio.run(drive, sys.argv[1] == "bounded")))
        return
    runs = {}
    for kind in ("bounded", "every"):
        out = subprocess.run(
            [sys.executable, __file__, kind], check=True, capture_output=True, text=True
        )
        sys.stderr.write(out.stderr)
        runs[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    bounded, every = runs["bounded"], runs["every"]
    print(
        json.dumps(
            {
                "bench": "serve-memory",
                "requests": list(CHECKPOINTS),
                "serve_rss_mb": [bounded[str(n)] for n in CHECKPOINTS],
                "serve_growth_mb": round(bounded["1000000"] - bounded["10000"], 1),
                "every_latency_rss_mb": [every[str(n)] for n in CHECKPOINTS],
                "every_latency_growth_mb": round(every["1000000"] - every["10000"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
