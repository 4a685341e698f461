#!/usr/bin/env python3
"""Benchmark: the fiscal year 2016 (configs/fy2016.yaml, 365 days, about 104 million
requests) replayed in one process, then in stretches of days on 2 workers
(`replay --workers 2`, relay.plan.split), one after the other in this run.

Issue 26's bounds: the year replays in under 1 GB. Each run is a child process;
its peak RSS is the largest of its process tree (the workers included).

Last line JSON: bench, scenario, days, then for 1 and 2 workers: requests, wall_s,
peak_rss_mb, req_per_wall_s; speedup (1 worker's wall over 2 workers'), and
relay_overflows and p99_ms of each (other draws on 2 workers: they agree within the
seeds' spread, docs/capacity.md).

    python bench/year.py [configs/fy2016.yaml]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from replay_period import replay

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path, nargs="?", default=ROOT / "configs" / "fy2016.yaml")
    args = ap.parse_args()
    figures: dict[str, Any] = {"bench": "year", "scenario": args.config.stem}
    walls = {}
    for workers in (1, 2):
        doc, wall, rss = replay(args.config, ["--workers", str(workers)] if workers > 1 else [])
        walls[workers] = wall
        figures["days"] = len(doc["days"])
        figures[f"w{workers}"] = {
            "requests": doc["requests"],
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(rss, 1),
            "req_per_wall_s": round(doc["requests"] / wall),
            "relay_overflows": doc["relay_overflows"],
            "p99_ms": doc["latency_ms"]["p99"],
        }
        print(f"{workers} worker(s): {wall:,.1f} s, {rss:,.0f} MB", file=sys.stderr)
    figures["speedup"] = round(walls[1] / walls[2], 2)
    figures["limit_mb"] = LIMIT_MB
    figures["within_limit"] = all(figures[f"w{w}"]["peak_rss_mb"] < LIMIT_MB for w in (1, 2))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
