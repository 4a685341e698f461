#!/usr/bin/env python3
"""Benchmark: a whole-day replay on the trio driver, against trio's own floor.

Runs, in one process sequence on the same machine:
1. the trio floor: a bare trio program under the same MockClock that does, per
   request, what the driver cannot avoid (one task, three sleeps: arrival, HSM,
   backend, each inside a cancel scope) and nothing else;
2. `relaysim replay CONFIG --engine trio --quiet --json ...` in a child process (so its peak RSS is
   its own).

Prints progress lines, then one JSON line: bench, scenario, engine, requests, wall_s,
req_per_wall_s, peak_rss_mb, and the floor's wall_s and our overhead over it
(`vs_trio_floor`: our wall / floor wall; ratios hold on a noisy machine, absolute
times drift).

    python bench/replay_trio.py configs/2016-03-29.yaml
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
import trio.testing


async def _floor(n: int) -> None:
    async def one(i: int) -> None:
        now = trio.current_time()
        with trio.move_on_at(now + 30):
            await trio.sleep(0.008)
        with trio.move_on_at(now + 30):
            await trio.sleep(1.5 * ((i * 7919) % 100) / 50)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            await trio.sleep(50_400 / n)
            nursery.start_soon(one, i)


def trio_floor(n: int) -> float:
    """Wall seconds for n requests' worth of bare trio scheduling."""
    t0 = time.perf_counter()
    trio.run(_floor, n, clock=trio.testing.MockClock(autojump_threshold=0))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        cmd = [
            sys.executable,
            "-m",
            "relay",
            "replay",
            str(args.config),
            "--engine",
            "trio",
            "--quiet",
        ]
        for o in args.overrides:
            cmd += ["--set", o]
        cmd += ["--json", str(out)]
        print("running:", " ".join(cmd[2:]), file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        doc = json.loads(out.read_text())
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    requests = doc["requests"]
    print(f"replay: {requests} requests in {wall:.1f} s", file=sys.stderr, flush=True)
    floor = trio_floor(requests)
    print(f"trio floor: {floor:.1f} s", file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "bench": "replay",
                "scenario": doc["scenario"],
                "engine": doc["engine"],
                "requests": requests,
                "overflows": doc["overflows"],
                "wall_s": round(wall, 2),
                "req_per_wall_s": round(requests / wall),
                "peak_rss_mb": round(rss_mb, 1),
                "trio_floor_wall_s": round(floor, 2),
                "vs_trio_floor": round(wall / floor, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
