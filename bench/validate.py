#!/usr/bin/env python3
"""Validation: every queueing-theory point on both engines, longer than the tests.

The points, formulas and estimators are tests/test_validation.py's (docs/validation.md
says what reduces to what): Erlang B (one capped CS), Erlang B through counter
operations (insensitivity), Erlang C (the memory-bound backend) and the HSM-backend
tandem (Jackson), plus Ciw's run of the tandem. Each point runs on the fast engine
`--fast-scale` times as long as the tests run it there, and on the trio engine
`--trio-scale` times that (single-run points: more requests; replicated points:
more replications of the same length, at least 8). The defaults take about six
minutes on one core: the trio engine's share is most of it.

Prints progress lines on stderr, a markdown table on stdout (point, quantity,
formula, each engine's figure and tolerance of 4 SE, within?), the Ciw cross-check,
and as its last line one JSON object: bench, checks, within, all_within, the scales,
wall_s and the rows.

    python bench/validate.py [--fast-scale 4] [--trio-scale 0.5]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the points and formulas live with the tests

from tests import test_validation as v  # noqa: E402


def points() -> list[v.Point]:
    """Every distinct point of the tests, at its fast-engine length."""
    seen: dict[tuple[Any, ...], v.Point] = {}
    for p in (
        *v.ERLANG_B,
        *v.ERLANG_B_TRIO,
        *v.OPERATIONS,
        *v.OPERATIONS_TRIO,
        *v.ERLANG_C,
        *v.ERLANG_C_TRIO,
        v.TANDEM,
    ):
        seen.setdefault((p.system, p.c, p.load, p.hsm_load), p)
    return list(seen.values())


def fmt(x: float) -> str:
    """Shares to four places, times in whole ms."""
    return f"{x:.4f}" if abs(x) < 1 else f"{x:,.0f}"


#: The trio engine's runs take other seeds than the fast engine's: with the same
#: seed and length the two engines give the same numbers (no two events tie here),
#: and the table would show one measurement twice.
TRIO_SEEDS = 10_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast-scale", type=float, default=4.0)
    ap.add_argument("--trio-scale", type=float, default=0.5)
    ap.add_argument("--ciw-days", type=int, default=16)
    args = ap.parse_args()
    wall0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for base in points():
        checks: dict[str, list[v.Check]] = {}
        for engine, scale in (("fast", args.fast_scale), ("trio", args.trio_scale)):
            point = base.longer(scale)
            if engine == "trio":
                point = replace(point, seed=point.seed + TRIO_SEEDS)
            t0 = time.perf_counter()
            checks[engine] = list(v.measure(point, engine))
            print(
                f"{point.label} on {engine}: {point.requests:,} requests x {point.runs} "
                f"run(s) in {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        for fast, trio in zip(checks["fast"], checks["trio"], strict=True):
            rows.append(
                {
                    "point": base.label,
                    "quantity": fast.quantity,
                    "formula": fast.reference,
                    "fast": fast.sim.value,
                    "fast_tol": fast.tolerance,
                    "fast_within": fast.within,
                    "trio": trio.sim.value,
                    "trio_tol": trio.tolerance,
                    "trio_within": trio.within,
                }
            )
    print("| point | quantity | formula | fast | ± tol | trio | ± tol | within? (fast, trio) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        yes = ", ".join("yes" if r[k] else "**no**" for k in ("fast_within", "trio_within"))
        print(
            f"| {r['point']} | {r['quantity']} | {fmt(r['formula'])} | {fmt(r['fast'])} | "
            f"{fmt(r['fast_tol'])} | {fmt(r['trio'])} | {fmt(r['trio_tol'])} | {yes} |"
        )

    # Ciw's run of the tandem, against Jackson and against the fast engine's figure.
    tandem = next(r for r in rows if r["point"] == v.TANDEM.label)
    t0 = time.perf_counter()
    ciw = v.ciw_tandem(v.TANDEM, args.ciw_days, v.CIW_SEED)
    print(f"Ciw: {args.ciw_days} days in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    ciw_tol = v.SIGMAS * ciw.se
    vs_fast = v.SIGMAS * math.hypot(ciw.se, tandem["fast_tol"] / v.SIGMAS)
    ciw_ok = abs(ciw.value - tandem["formula"]) <= ciw_tol
    fast_ok = abs(ciw.value - tandem["fast"]) <= vs_fast
    print()
    print("| network | Jackson | Ciw | ± tol | within? | fast − Ciw | ± tol | within? |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {v.TANDEM.label} | {fmt(tandem['formula'])} | {fmt(ciw.value)} | {fmt(ciw_tol)} | "
        f"{'yes' if ciw_ok else '**no**'} | {fmt(tandem['fast'] - ciw.value)} | "
        f"{fmt(vs_fast)} | {'yes' if fast_ok else '**no**'} |"
    )
    within = sum(r["fast_within"] + r["trio_within"] for r in rows) + ciw_ok + fast_ok
    checks_n = 2 * len(rows) + 2
    print(
        json.dumps(
            {
                "bench": "validate",
                "checks": checks_n,
                "within": within,
                "all_within": within == checks_n,
                "fast_scale": args.fast_scale,
                "trio_scale": args.trio_scale,
                "ciw_days": args.ciw_days,
                "ciw_mean_latency_ms": round(ciw.value, 1),
                "wall_s": round(time.perf_counter() - wall0, 1),
                "rows": [
                    {k: round(x, 6) if isinstance(x, float) else x for k, x in r.items()}
                    for r in rows
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
