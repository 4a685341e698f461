#!/usr/bin/env python3
"""Calibration: one figure of a scenario over seeds, for candidate parameter values.

For each value of one scenario key (the parameter being fitted) and each seed, runs
a full replay on the fast engine and reads one figure: a count of the summary
(`overflows`, `crashes`, `hangs`, ...) or the number of events of one mechanism
(`core_contention`, `unallocated_free`). Prints a line per run, a table of mean and
spread per value, and as its last line JSON with the value whose mean is closest to
the target. docs/calibration.md records how each fit was made with this script.

    python bench/calibrate.py configs/2016-03-29.yaml \\
        --key backend.service_ms.mean --values 1800 1900 2000 \\
        --seeds 1 2 3 4 5 --target 12650 --workers 2
    python bench/calibrate.py configs/jan-2016.yaml --figure core_contention \\
        --key monitor.period_s --values 300 400 --seeds 1 2 3 --target 15
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from relay.plan.replay import replay
from relay.scenario.schema import load_scenario


def figure(doc: dict[str, Any], name: str) -> float:
    """A summary figure (a count, outage_minutes), or the number of events whose
    mechanism is `name`."""
    value = doc.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return sum(1 for e in doc["events"] if e["mechanism"] == name)


def one(config: Path, sets: list[str], seed: int, names: list[str]) -> tuple[list[float], int]:
    """The figures `names` and the requests of one replay."""
    scenario = load_scenario(config, [*sets, f"seed={seed}"])
    doc = replay(scenario).summary
    if doc["violations"]:
        raise SystemExit(f"seed {seed} {sets}: checks failed: {doc['violations']}")
    return [figure(doc, n) for n in names], doc["requests"]


def parse_figure(text: str) -> tuple[str, float | None]:
    """`NAME` or `NAME=TARGET`."""
    name, _, target = text.partition("=")
    return name, float(target) if target else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument(
        "--figure",
        action="append",
        default=[],
        help="NAME[=TARGET]: a summary count or event mechanism (repeatable; "
        "default overflows with --target)",
    )
    ap.add_argument("--key", help="scenario key to vary (omit to check the file as it is)")
    ap.add_argument("--values", nargs="*", default=[], help="candidate values of --key")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--target", type=float, default=12650, help="target of the default figure")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    values: list[str | None] = list(args.values) if args.key else [None]

    def sets_for(value: str | None) -> list[str]:
        return [*args.overrides, *([f"{args.key}={value}"] if value is not None else [])]

    figures = [parse_figure(f) for f in args.figure] or [("overflows", args.target)]
    names = [n for n, _ in figures]
    jobs = [(value, seed) for value in values for seed in args.seeds]
    results: dict[str | None, list[list[float]]] = {v: [] for v in values}
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [(v, s, pool.submit(one, args.config, sets_for(v), s, names)) for v, s in jobs]
        for value, seed, fut in futures:
            counts, requests = fut.result()
            results[value].append(counts)
            got = ", ".join(f"{c} {n}" for n, c in zip(names, counts, strict=True))
            where = f"{args.key}={value} " if args.key else ""
            print(
                f"{where}seed={seed}: {got} of {requests} requests",
                file=sys.stderr,
                flush=True,
            )

    rows = []
    for value, runs in results.items():
        row: dict[str, Any] = {"value": value}
        for i, (name, target) in enumerate(figures):
            counts = [run[i] for run in runs]
            mean = statistics.fmean(counts)
            sd = statistics.stdev(counts) if len(counts) > 1 else 0.0
            row[name] = {"mean": round(mean, 1), "sd": round(sd, 1), "min": min(counts)}
            row[name]["max"] = max(counts)
            if target:
                row[name]["vs_target"] = round(mean / target, 3)
            where = f"{args.key}={value} " if args.key else ""
            print(
                f"{where}{name}: mean {mean:.1f} sd {sd:.1f} "
                f"range {min(counts)}-{max(counts)}" + (f" target {target:g}" if target else ""),
                file=sys.stderr,
            )
        rows.append(row)
    # Per figure with a target: the value whose mean is closest to it (by ratio).
    best: dict[str, str | None] = {}
    for name, target in figures:
        if target:

            def distance(row: dict[str, Any], n: str = name, t: float = target) -> float:
                return abs(math.log(max(row[n]["mean"], 1e-9) / t))

            best[name] = min(rows, key=distance)["value"]
    print(
        json.dumps(
            {
                "bench": "calibrate",
                "scenario": args.config.stem,
                "key": args.key,
                "seeds": args.seeds,
                "targets": {n: t for n, t in figures if t},
                "best": best,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
