#!/usr/bin/env python3
"""Benchmark: the 29 March 2016 day over TCP, against its replay.

`relaysim serve configs/2016-03-29.yaml --speed S` in one child process (the model
S times faster than real time), `relaysim load` of the same file in another (it
learns S from the server and replays the day's operations, three messages each,
with the counters' own steps and retries); `replay` of the same file and seed on
the fast engine in this one. Both summaries are in the scenario's time, so their
overflow rate, p50 and p99 compare directly; the ratios (TCP / replay) are the
figure. The default speed, 100, fits the day (14 h of service) in 8.4 minutes.

Last line JSON: bench, speed, requests (replay, tcp), overflow_rate (replay, tcp)
and its ratio, p50_ms and p99_ms (replay, tcp) and their ratios, late_sends (the
load's sends more than 10 ms behind schedule), tcp_wall_s, and `within`: whether
the ratios are within the stated tolerances (TOLERANCE: the overflow rate within
25%, the latencies within 15%; the real clock's millisecond is 0.1 s of the model
at 100x, 7% of the day's p50). The script exits 1 when they are not.

    python bench/day_tcp.py [--speed 100] [--scenario configs/2016-03-29.yaml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from net import start_server

from relay.plan.replay import replay
from relay.scenario.schema import load_scenario

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = {"overflow_rate_ratio": 0.25, "p50_ratio": 0.15, "p99_ratio": 0.15}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", type=float, default=100.0)
    ap.add_argument("--scenario", default=str(ROOT / "configs" / "2016-03-29.yaml"))
    args = ap.parse_args()
    scenario = load_scenario(args.scenario)
    day: dict[str, Any] = dict(replay(scenario).summary)
    hours = scenario.load.service_hours
    duration = (hours[1] - hours[0]) / args.speed + 1.0
    relaysim = [sys.executable, "-m", "relay"]
    with tempfile.TemporaryDirectory() as tmp:
        env_state = {"RELAYSIM_STATE": tmp}
        serve = [*relaysim, "serve", args.scenario, "--speed", f"{args.speed:g}"]
        proc, port = start_server(serve, env=env_state)
        try:
            out = Path(tmp) / "load.json"
            load = [*relaysim, "load", args.scenario, "--target", f"127.0.0.1:{port}"]
            load += ["--duration", f"{duration:.1f}", "--quiet", "--json", str(out)]
            print(f"serving at {args.speed:g}x; loading for {duration:.0f} s", file=sys.stderr)
            t0 = time.perf_counter()
            subprocess.run(load, check=True)
            wall = time.perf_counter() - t0
            tcp = json.loads(out.read_text())
        finally:
            proc.terminate()
            proc.wait(timeout=120)

    def rate(doc: dict[str, Any]) -> float:
        return float(doc["overflows"]) / float(doc["requests"])

    figures: dict[str, Any] = {
        "bench": "day-tcp",
        "scenario": scenario.name,
        "speed": args.speed,
        "requests": [day["requests"], tcp["requests"]],
        "overflow_rate": [round(rate(day), 5), round(rate(tcp), 5)],
        "overflow_rate_ratio": round(rate(tcp) / rate(day), 3),
    }
    for p in ("p50", "p99"):
        ours, theirs = day["latency_ms"][p], tcp["latency_ms"][p]
        figures[f"{p}_ms"] = [ours, theirs]
        figures[f"{p}_ratio"] = round(theirs / ours, 3) if ours else None
    figures["late_sends"] = tcp["client"]["late_sends"]
    figures["tcp_wall_s"] = round(wall, 1)
    figures["within"] = all(
        figures[k] is not None and abs(figures[k] - 1) <= t for k, t in TOLERANCE.items()
    )
    print(json.dumps(figures))
    if not figures["within"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
