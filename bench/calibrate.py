#!/usr/bin/env python3
"""Calibration: overflow events of a scenario over seeds, for candidate parameter values.

For each value of one scenario key (the parameter being fitted) and each seed, runs
a full replay on the fast engine and counts connection-overflow events; prints a
line per run, a table of mean and spread per value, and as its last line JSON with
the value whose mean is closest to the target. docs/calibration.md records how the
29 March 2016 fit was made with this script.

    python bench/calibrate.py configs/2016-03-29.yaml \\
        --key backend.service_ms.mean --values 1800 1900 2000 \\
        --seeds 1 2 3 4 5 --target 12650 --workers 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from relay.config import load_scenario
from relay.replay import replay


def one(config: Path, sets: list[str], seed: int) -> tuple[int, int]:
    """Overflows and requests of one replay."""
    scenario = load_scenario(config, [*sets, f"seed={seed}"])
    doc = replay(scenario).summary
    if doc["violations"]:
        raise SystemExit(f"seed {seed} {sets}: checks failed: {doc['violations']}")
    return doc["overflows"], doc["requests"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--key", help="scenario key to vary (omit to check the file as it is)")
    ap.add_argument("--values", nargs="*", default=[], help="candidate values of --key")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--target", type=float, default=12650)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    values: list[str | None] = list(args.values) if args.key else [None]

    def sets_for(value: str | None) -> list[str]:
        return [*args.overrides, *([f"{args.key}={value}"] if value is not None else [])]

    jobs = [(value, seed) for value in values for seed in args.seeds]
    results: dict[str | None, list[int]] = {v: [] for v in values}
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [(v, s, pool.submit(one, args.config, sets_for(v), s)) for v, s in jobs]
        for value, seed, fut in futures:
            overflows, requests = fut.result()
            results[value].append(overflows)
            print(
                f"{args.key}={value} seed={seed}: {overflows} overflows of {requests}",
                file=sys.stderr,
                flush=True,
            )

    rows = []
    for value, counts in results.items():
        mean = statistics.fmean(counts)
        sd = statistics.stdev(counts) if len(counts) > 1 else 0.0
        rows.append(
            {
                "value": value,
                "mean": round(mean),
                "sd": round(sd),
                "min": min(counts),
                "max": max(counts),
                "vs_target": round(mean / args.target - 1, 4),
            }
        )
        print(
            f"{value}: mean {mean:.0f} sd {sd:.0f} range {min(counts)}-{max(counts)}",
            file=sys.stderr,
        )
    best = min(rows, key=lambda r: abs(float(r["vs_target"])))
    print(
        json.dumps(
            {
                "bench": "calibrate",
                "scenario": args.config.stem,
                "key": args.key,
                "seeds": args.seeds,
                "target": args.target,
                "best": best,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
