#!/usr/bin/env python3
"""Benchmark: a whole-day replay on the trio driver, against trio's own floor.

Runs, in one process sequence on the same machine:
1. `relaysim replay CONFIG --engine trio --quiet --json ...` in a child process (so
   its peak RSS is its own);
2. the trio floor: a bare trio program under the same MockClock doing what the
   trio engine cannot avoid (relay.engines.trio: a conductor, one task per
   request, and per step of the run a clock jump and a hand-over to the step's
   task and back) for as many requests and steps as the replay took, and nothing
   else.

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

#: Steps per request in the floor: a start, an HSM wait and a backend wait per
#: message, and a think between messages (two in three messages, on 29 March),
#: about three in all.
STEPS_PER_REQUEST = 3


def _abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


async def _floor(requests: int) -> None:
    conductor = trio.lowlevel.current_task()
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    started: list[trio.lowlevel.Task] = []

    async def request() -> None:
        started.append(trio.lowlevel.current_task())
        for _ in range(STEPS_PER_REQUEST - 1):
            trio.lowlevel.reschedule(conductor)
            await trio.lowlevel.wait_task_rescheduled(_abort)
        trio.lowlevel.reschedule(conductor)

    async with trio.open_nursery() as nursery:
        for _ in range(requests):
            clock.jump(0.001)
            nursery.start_soon(request)
            await trio.lowlevel.wait_task_rescheduled(_abort)
            task = started.pop()
            for _ in range(STEPS_PER_REQUEST - 1):
                clock.jump(0.001)
                trio.lowlevel.reschedule(task)
                await trio.lowlevel.wait_task_rescheduled(_abort)


def trio_floor(requests: int) -> float:
    """Wall seconds of bare trio doing the engine's unavoidable work."""
    t0 = time.perf_counter()
    trio.run(_floor, requests, clock=trio.testing.MockClock(autojump_threshold=float("inf")))
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
