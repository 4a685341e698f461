#!/usr/bin/env python3
"""Benchmark: a cut of 29 March through the real server and load client on the
simulated network, against the trio engine's replay of the same cut, in one run.

The cut is 29 March's peak hour: the day's population, caps and services, with the
10:00-11:00 hour's 104,700 messages (14.6% of the day's first attempts fall in it)
sent flat over that hour, and serve's idle timeout an hour (`CUT`). The replay
runs it on the trio engine under MockClock; `relay.serve.simnet` runs `RelayServer`
and `relaysim load` over a simulated network that delays nothing, on a virtual
clock too, in this process. Both
summaries are in the scenario's time, so overflow rate, p50 and p99 compare
directly (the tolerance: 2% each); `vs_replay` is wall time over wall time (the
goal: 5 or less).

Last line JSON: bench, requests (replay, simnet), overflow_rate (replay, simnet)
and its ratio, p50_ms and p99_ms (replay, simnet) and their ratios, replay_wall_s,
simnet_wall_s, vs_replay, within (the figures within 2%). Exits 1 when not within.

    python bench/day_simnet.py [--requests 104700]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from relay.plan.replay import replay
from relay.scenario.schema import load_scenario
from relay.serve import simnet

SCENARIO = "configs/2016-03-29.yaml"
# The counters think between an operation's messages (103 s on average, exponential):
# serve abandons an operation whose next message has not come within its idle
# timeout (300 s by default; 5% of the thinks are longer), the replay's counters
# hold on however long they think. An hour's timeout compares like with like.
CUT = ["load.service_hours=[10:00, 11:00]", "load.profile=flat", "serve.idle_timeout_s=3600"]
TOLERANCE = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=104_700)
    args = parser.parse_args()
    scenario = load_scenario(SCENARIO, [*CUT, f"load.requests={args.requests}"])

    t0 = time.perf_counter()
    day = replay(scenario, engine="trio").summary
    replay_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = simnet.run(scenario, duration=86_400.0).doc
    simnet_wall = time.perf_counter() - t0

    def rate(doc: Any) -> float:
        return float(doc["overflows"]) / float(doc["requests"])

    figures: dict[str, Any] = {
        "bench": "day-simnet",
        "scenario": f"{scenario.name} 10:00-11:00",
        "requests": [day["requests"], sim["requests"]],
        "overflow_rate": [round(rate(day), 5), round(rate(sim), 5)],
        "overflow_rate_ratio": round(rate(sim) / rate(day), 4) if rate(day) else None,
    }
    for p in ("p50", "p99"):
        ours, theirs = day["latency_ms"][p], sim["latency_ms"][p]
        figures[f"{p}_ms"] = [ours, theirs]
        figures[f"{p}_ratio"] = round(theirs / ours, 4) if ours else None
    figures["lost"] = sim["lost"]
    figures["replay_wall_s"] = round(replay_wall, 2)
    figures["simnet_wall_s"] = round(simnet_wall, 2)
    figures["vs_replay"] = round(simnet_wall / replay_wall, 2)
    ratios = ("overflow_rate_ratio", "p50_ratio", "p99_ratio")
    figures["within"] = sim["lost"] == 0 and all(
        figures[k] is not None and abs(figures[k] - 1) <= TOLERANCE for k in ratios
    )
    print(json.dumps(figures))
    if not figures["within"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
