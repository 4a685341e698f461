#!/usr/bin/env python3
"""Benchmark: the hunt over the real server on `fixed`, 10,000 worlds.

Each world (`relay.testing.worlds.server_worlds`: the replay hunt's race timings,
with drawn toxics on the dispatcher's port, a held or partitioned link, a stop and
hostile clients) is served by `RelayServer` to `relaysim load` over the simulated
network and judged (`relay.plan.hunt_server.judge_server`). The baseline, in the
same run: the replay hunt's worlds on the model alone (`relay.plan.hunt`, trio
engine), `--baseline` of them.

Last line JSON: bench, design, worlds, failures (none is the pass), windows reached
(worlds per race window), what the worlds drew (toxics by kind, controls, stops,
rogues by name), server_wall_s, server_worlds_s, model_worlds_s (baseline), and
cost_vs_model (seconds per server world over seconds per model world).

    python bench/hunt_server.py [--worlds 10000] [--baseline 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import seed as hypothesis_seed

from relay.plan.hunt import SEARCH, hunt, windows
from relay.plan.hunt_server import judge_server, run_server_world
from relay.scenario.schema import load_scenario
from relay.serve.rogues import ROGUES
from relay.testing.worlds import ServerWorld, server_worlds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = load_scenario("configs/smoke.yaml", ["design=fixed"])

    t0 = time.perf_counter()
    model = hunt(base, "fixed", examples=args.baseline, seed=args.seed)
    model_wall = time.perf_counter() - t0

    drew: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []

    @hypothesis_seed(args.seed)
    @settings(SEARCH, max_examples=args.worlds)
    @given(server_worlds(rogues=tuple(ROGUES)))
    def search(world: ServerWorld) -> None:
        run = run_server_world(world, "fixed", base)
        drew["worlds"] += 1
        for name, count in windows(run.server.tier).items():
            reached[name] += count > 0
        drew.update(f"toxic {t['type']}" for t in world.toxics)
        drew.update(f"control {c}" for _, c, _ in world.controls)
        drew["stop"] += world.stop_at is not None
        drew.update(f"rogue {r}" for r in world.rogues)
        verdict = judge_server(run, world)
        if verdict is not None:
            failures.append({"verdict": str(verdict), "world": repr(world)})
        if drew["worlds"] % 1000 == 0:
            print(f"{drew['worlds']:,} worlds", file=sys.stderr)

    t0 = time.perf_counter()
    search()
    server_wall = time.perf_counter() - t0
    worlds = drew.pop("worlds")
    server_rate, model_rate = worlds / server_wall, model.examples / model_wall
    print(
        json.dumps(
            {
                "bench": "hunt-server",
                "design": "fixed",
                "worlds": worlds,
                "failures": len(failures),
                "first_failure": failures[0] if failures else None,
                "windows_reached": dict(reached),
                "drew": dict(sorted(drew.items())),
                "server_wall_s": round(server_wall, 1),
                "server_worlds_s": round(server_rate, 1),
                "model_worlds_s": round(model_rate, 1),
                "cost_vs_model": round(model_rate / server_rate, 2),
            }
        )
    )
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
