#!/usr/bin/env python3
"""Benchmark: how faithful `serve --speed X` is, speed by speed, against the replay.

One hour of the smoke day (10:00-11:00, its 5,000 messages in that hour, flat) is
served at each speed by `relaysim serve --speed X` in a child process and loaded
by `relaysim load` in another, over loopback; the same scenario is replayed on the
fast engine in this process. For each speed: the overflow rate, p50 and p99 of
both, their ratios (TCP / replay), the transport's round trip as `load` measured
it (real ms, and scenario ms at that speed) and the share of the p50 it is.

Prints a markdown table (docs/serve.md keeps it), then the JSON line: bench, rows.

    python bench/speed.py [--speeds 25 50 100 200 500]
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
HOUR = ["load.service_hours=[10:00, 11:00]", "load.profile=flat"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speeds", type=float, nargs="+", default=[25.0, 50.0, 100.0, 200.0, 500.0])
    args = ap.parse_args()
    config = str(ROOT / "configs" / "smoke.yaml")
    sets = [arg for s in HOUR for arg in ("--set", s)]
    day: dict[str, Any] = dict(replay(load_scenario(config, HOUR)).summary)
    rows = []
    for speed in args.speeds:
        tcp, wall = serve_and_load(config, sets, speed)
        rows.append(row(speed, day, tcp, wall))
        print(f"{speed:g}x done in {wall:.0f} s", file=sys.stderr)
    print("| speed | overflow rate (replay, tcp) | p50 ms (replay, tcp) | p99 ms (replay, tcp) "
          "| round trip (real ms, scenario ms, % of p50) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['speed']:g}x | {r['overflow_rate'][0]:.2%}, {r['overflow_rate'][1]:.2%} "
            f"(x{r['overflow_rate_ratio']}) | {r['p50_ms'][0]:,.0f}, {r['p50_ms'][1]:,.0f} "
            f"(x{r['p50_ratio']}) | {r['p99_ms'][0]:,.0f}, {r['p99_ms'][1]:,.0f} "
            f"(x{r['p99_ratio']}) | {r['round_trip_ms']}, {r['round_trip_scenario_ms']}, "
            f"{r['round_trip_share']:.1%} |"
        )
    print(json.dumps({"bench": "speed", "scenario": "smoke 10:00-11:00", "rows": rows}))


def serve_and_load(config: str, sets: list[str], speed: float) -> tuple[dict[str, Any], float]:
    """The load's summary of the hour served at `speed`, and the wall time it took."""
    relaysim = [sys.executable, "-m", "relay"]
    duration = 3600.0 / speed + 1.0
    with tempfile.TemporaryDirectory() as tmp:
        serve = [*relaysim, "serve", config, *sets, "--speed", f"{speed:g}"]
        proc, port = start_server(serve, env={"RELAYSIM_STATE": tmp})
        try:
            out = Path(tmp) / "load.json"
            load = [*relaysim, "load", config, *sets, "--target", f"127.0.0.1:{port}"]
            load += ["--duration", f"{duration:.1f}", "--quiet", "--json", str(out)]
            t0 = time.perf_counter()
            subprocess.run(load, check=False, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            tcp: dict[str, Any] = json.loads(out.read_text())
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    return tcp, wall


def row(speed: float, day: dict[str, Any], tcp: dict[str, Any], wall: float) -> dict[str, Any]:
    """One speed's figures against the replay's."""

    def rate(doc: dict[str, Any]) -> float:
        return float(doc["overflows"]) / float(doc["requests"])

    client = tcp["client"]
    p50 = tcp["latency_ms"]["p50"]
    out: dict[str, Any] = {
        "speed": speed,
        "requests": [day["requests"], tcp["requests"]],
        "overflow_rate": [round(rate(day), 5), round(rate(tcp), 5)],
        "overflow_rate_ratio": round(rate(tcp) / rate(day), 3) if rate(day) else None,
        "round_trip_ms": client["round_trip_ms"],
        "round_trip_scenario_ms": client["round_trip_scenario_ms"],
        "round_trip_share": round(client["round_trip_scenario_ms"] / p50, 4) if p50 else None,
        "wall_s": round(wall, 1),
    }
    for p in ("p50", "p99"):
        ours, theirs = day["latency_ms"][p], tcp["latency_ms"][p]
        out[f"{p}_ms"] = [ours, theirs]
        out[f"{p}_ratio"] = round(theirs / ours, 3) if ours else None
    return out


if __name__ == "__main__":
    main()
