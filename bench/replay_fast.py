#!/usr/bin/env python3
"""Benchmark: the 29 March 2016 day on the fast engine, against the SimPy yardstick.

Runs, alternating on the same machine, `--rounds` times each (3 by default):
1. ../shared/bench/simpy_baseline.py --requests 715000 --relays 4 (the capacity model
   a planner would write by hand in SimPy: no faults, retries, caps or checkers);
2. relaysim replay CONFIG --engine fast --quiet --json ..., every mechanism on.

Each in its own child process, so each peak RSS is its own (os.wait4). Each side's
figure is its best round (the shared machine's drift only ever slows a run down);
the ratio of each round is printed too. Prints progress lines, then one JSON line:
bench, scenario, engine, requests, rounds, wall_s, req_per_wall_s, peak_rss_mb,
baseline_wall_s, speedup_vs_simpy (baseline wall / our wall), speedup_per_round,
plus the process wall times. Both wall_s figures are what each program times
itself: SimPy's excludes drawing its arrivals, ours includes building the load, the
run and the checks (so the comparison is, if anything, unfair to us).

    python bench/replay_fast.py configs/2016-03-29.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT.parent / "shared" / "bench" / "simpy_baseline.py"


def child(cmd: list[str]) -> tuple[str, float, float]:
    """Run `cmd`; its stdout, its wall seconds and its own peak RSS in MB."""
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[1]} exited with {proc.returncode}")
    return out, wall, usage.ru_maxrss / 1024


def last_json(text: str) -> dict[str, Any]:
    """The last JSON line a program printed."""
    doc: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--baseline", type=Path, default=BASELINE, help="simpy_baseline.py")
    ap.add_argument("--requests", type=int, default=715_000)
    ap.add_argument("--relays", type=int, default=4)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each program")
    args = ap.parse_args()
    if not args.baseline.is_file():
        raise SystemExit(f"baseline {args.baseline} not found (expected ../shared beside the repo)")

    base_cmd = [
        sys.executable,
        str(args.baseline),
        "--requests",
        str(args.requests),
        "--relays",
        str(args.relays),
    ]
    ours: list[tuple[float, float, float, dict[str, Any]]] = []
    theirs: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "relay", "replay", str(args.config), "--engine", "fast"]
        for o in args.overrides:
            cmd += ["--set", o]
        # Rounds alternate the two programs, so both meet the same drift of a shared
        # machine; each side's best round is its figure (the least disturbed run).
        for _ in range(args.rounds):
            out, base_proc_wall, base_rss = child(base_cmd)
            base = last_json(out)
            print(f"simpy: {base['requests']} requests in {base['wall_s']} s", file=sys.stderr)
            theirs.append((base["wall_s"], base_proc_wall, base_rss))
            _, proc_wall, rss = child([*cmd, "--quiet", "--json", str(path)])
            doc = json.loads(path.read_text())
            print(
                f"relaysim: {doc['requests']} requests in {doc['wall_seconds']} s", file=sys.stderr
            )
            ours.append((doc["wall_seconds"], proc_wall, rss, doc))
    wall, proc_wall, rss, doc = min(ours, key=lambda r: r[0])
    base_wall, base_proc_wall, base_rss = min(theirs)
    ratios = [b[0] / o[0] for b, o in zip(theirs, ours, strict=True)]
    print(
        json.dumps(
            {
                "bench": "replay",
                "scenario": doc["scenario"],
                "engine": doc["engine"],
                "requests": doc["requests"],
                "overflows": doc["overflows"],
                "rounds": args.rounds,
                "wall_s": wall,
                "req_per_wall_s": round(doc["requests"] / wall),
                "peak_rss_mb": round(rss, 1),
                "process_wall_s": round(proc_wall, 2),
                "baseline_wall_s": base_wall,
                "baseline_process_wall_s": round(base_proc_wall, 2),
                "baseline_peak_rss_mb": round(base_rss, 1),
                "speedup_vs_simpy": round(base_wall / wall, 2),
                "speedup_per_round": [round(r, 2) for r in ratios],
            }
        )
    )


if __name__ == "__main__":
    main()
