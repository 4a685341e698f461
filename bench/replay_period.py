#!/usr/bin/env python3
"""Benchmark: a multi-day replay (13 Jan to 19 Mar 2016) on the fast engine.

Issue 4 asks the whole period to replay in under 10 minutes on 2 cores. Runs, one
after the other on the same machine, each in its own child process:
1. the 29 March day (configs/2016-03-29.yaml), the one-day yardstick measured in
   the same run;
2. the period (configs/jan-2016.yaml by default) on its own design.

Prints progress lines, then one JSON line: bench, scenario, design, days, requests,
crashes, hangs, wall_s, process_wall_s, peak_rss_mb, limit_s (600), within_limit,
req_per_wall_s, and the day's req_per_wall_s as day_req_per_wall_s with their
ratio (how much a 67-day run loses per request against one day: the per-day
summary, the longer timeline and the nights' health checks).

    python bench/replay_period.py configs/jan-2016.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from replay_fast import child

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 600.0


def replay(config: Path, extra: list[str]) -> tuple[dict[str, Any], float, float]:
    """The summary, process wall seconds and peak RSS (MB) of one fast replay."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "relay", "replay", str(config), "--engine", "fast", *extra]
        _, wall, rss = child([*cmd, "--quiet", "--json", str(path)])
        doc: dict[str, Any] = json.loads(path.read_text())
    if doc["violations"] or doc["lost"]:
        raise SystemExit(f"{config}: checks failed: {doc['violations']}, lost {doc['lost']}")
    return doc, wall, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path, nargs="?", default=ROOT / "configs" / "jan-2016.yaml")
    ap.add_argument("--day", type=Path, default=ROOT / "configs" / "2016-03-29.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    day, _, _ = replay(args.day, [])
    day_rate = day["requests"] / day["wall_seconds"]
    print(f"one day: {day['requests']} requests in {day['wall_seconds']} s", file=sys.stderr)
    extra = [a for o in args.overrides for a in ("--set", o)]
    doc, proc_wall, rss = replay(args.config, extra)
    wall = doc["wall_seconds"]
    print(f"period: {doc['requests']} requests in {wall} s", file=sys.stderr)
    rate = doc["requests"] / wall
    print(
        json.dumps(
            {
                "bench": "replay-period",
                "scenario": doc["scenario"],
                "design": doc["design"],
                "days": len(doc["days"]),
                "requests": doc["requests"],
                "crashes": doc["crashes"],
                "hangs": doc["hangs"],
                "wall_s": wall,
                "process_wall_s": round(proc_wall, 2),
                "peak_rss_mb": round(rss, 1),
                "limit_s": LIMIT_S,
                "within_limit": proc_wall < LIMIT_S,
                "req_per_wall_s": round(rate),
                "day_req_per_wall_s": round(day_rate),
                "vs_day": round(rate / day_rate, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
