#!/usr/bin/env python3
"""Benchmark: a 16-point sweep on 2 local workers, against the same sweep on 1.

    python bench/sweep.py configs/sweeps/relays-vs-caps.yaml [--workers 2]

Runs the sweep's points on a pool of `--workers` processes, then on a pool of one,
in the same run (the machine is shared: the ratio holds, absolute times drift).
Last line JSON: bench, sweep, points, workers, points_per_minute,
one_worker_points_per_minute, speedup, parallel_efficiency (speedup / workers),
failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from relay.plan.pools import local_pool
from relay.plan.sweep import load_sweep, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    plan = load_sweep(args.sweep)
    figures = {}
    for workers in (args.workers, 1):
        with local_pool(workers) as pool:
            doc = run(plan, pool, label=f"{workers} local workers")
        figures[workers] = doc
        print(
            f"{workers} worker(s): {doc['points']} points in {doc['wall_seconds']:.1f} s, "
            f"{doc['points_per_minute']:.1f} per minute, {doc['failed']} failed",
            file=sys.stderr,
        )
    many, one = figures[args.workers], figures[1]
    speedup = many["points_per_minute"] / one["points_per_minute"]
    print(
        json.dumps(
            {
                "bench": "sweep",
                "sweep": plan.name,
                "points": many["points"],
                "workers": args.workers,
                "points_per_minute": many["points_per_minute"],
                "one_worker_points_per_minute": one["points_per_minute"],
                "speedup": round(speedup, 3),
                "parallel_efficiency": round(speedup / args.workers, 3),
                "failed": many["failed"] + one["failed"],
            }
        )
    )


if __name__ == "__main__":
    main()
