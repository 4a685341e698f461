"""The cheapest configuration that meets a goal, without running the whole grid.

A planner's question: the fewest relays, then the lowest per-CS limit, that keep
29 March at `relay_overflows <= 1000` on at least 9 of 10 seeds. The sweep file's
grid gives the axes in the order of their cost (the first is the dearest to
raise) and each axis's values from cheapest to dearest; the goal is a threshold
(docs/ci.md's grammar); a point meets it when at least `need` of its seeds do.

The search assumes what the question does: a dearer value never makes the goal
harder to meet (more relays, a higher limit). Then the lexicographically cheapest
point that meets the goal is found one axis at a time, by bisection: the dearest
axis's cheapest value that meets the goal with every later axis at its dearest,
that value fixed, then the next axis. Each test is one point on every seed, so
the evaluations are about the sum of log2 of the axes' lengths, not their product.
The answer's cheaper neighbours (one axis one step cheaper) are run as well: they
must fail, which checks the assumption where it matters, and are reported with
the answer's per-seed figures.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from relay.plan import sweep as sweeps
from relay.scenario.expect import parse as parse_expectation

SCHEMA = "relaysim.seek/1"

Progress = Callable[[int, int], None]  # (points evaluated, the most the search may need)


class Seeker:
    """One search: `plan`'s axes (its grid, in cost order) and seeds, the goal, the
    share of seeds that must meet it, and the executor the runs go to."""

    def __init__(
        self,
        plan: sweeps.Sweep,
        goal: str,
        executor: cf.Executor,
        *,
        need: float = 1.0,
        progress: Progress | None = None,
    ) -> None:
        if plan.spec.grid is None:
            raise ValueError("seek needs a grid: its axes, each from cheapest to dearest")
        parse_expectation(goal)  # ExpectError, one line, before anything runs
        self.plan = plan
        self.axes = list(plan.spec.grid.items())
        self.seeds: list[int | None] = list(plan.spec.seeds) if plan.spec.seeds else [None]
        self.goal = goal
        self.need = need
        self.executor = executor
        self.progress = progress
        self.tested: dict[tuple[Any, ...], dict[str, Any]] = {}  # by point

    @property
    def bound(self) -> int:
        """The most points the bisection can need, its neighbours aside."""
        return sum(math.ceil(math.log2(len(values))) + 1 for _, values in self.axes)

    def met(self, point: tuple[Any, ...]) -> bool:
        """Whether `point` meets the goal on at least `need` of its seeds (run once)."""
        return bool(self.evaluate(point)["met"])

    def evaluate(self, point: tuple[Any, ...]) -> dict[str, Any]:
        """`point` on every seed: its rows, how many seeds met the goal, and whether
        enough did. Run once; a point asked again is remembered."""
        if point in self.tested:
            return self.tested[point]
        values = {key: v for (key, _), v in zip(self.axes, point, strict=True)}
        futures = [
            self.executor.submit(
                sweeps.run_point,
                self.plan.base_data,
                self.plan.base_path,
                self.plan.overrides(sweeps.Point(index=-1, label="", values=values, seed=s)),
                self.plan.spec.engine,
                (self.goal,),
            )
            for s in self.seeds
        ]
        rows = []
        for seed, future in zip(self.seeds, futures, strict=True):
            try:
                row = future.result()
            except Exception as exc:  # the worker died
                row = {"error": f"worker: {type(exc).__name__}: {exc}"}
            row.setdefault("seed", seed)
            rows.append(row)
        meeting = sum(1 for r in rows if not r.get("error") and r.get("expectations_met"))
        result = {
            "values": values,
            "seeds_met": meeting,
            "seeds": len(rows),
            "met": meeting >= math.ceil(self.need * len(rows) - 1e-9),
            "errors": [r["error"] for r in rows if r.get("error")],
            "rows": [_figures(r) for r in rows],
        }
        self.tested[point] = result
        if self.progress:
            self.progress(len(self.tested), self.bound)
        return result

    def search(self) -> tuple[Any, ...] | None:
        """The cheapest point meeting the goal, or None when even the dearest does not."""
        dearest = tuple(values[-1] for _, values in self.axes)
        if not self.met(dearest):
            return None
        chosen: list[Any] = []
        for i, (_, values) in enumerate(self.axes):
            rest = tuple(v[-1] for _, v in self.axes[i + 1 :])
            lo, hi = 0, len(values) - 1  # values[hi] meets the goal (with `rest`)
            while lo < hi:
                mid = (lo + hi) // 2
                if self.met((*chosen, values[mid], *rest)):
                    hi = mid
                else:
                    lo = mid + 1
            chosen.append(values[hi])
        return tuple(chosen)

    def neighbours(self, point: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The points one axis one step cheaper than `point`."""
        out = []
        for i, (_, values) in enumerate(self.axes):
            at = values.index(point[i])
            if at > 0:
                out.append((*point[:i], values[at - 1], *point[i + 1 :]))
        return out


def run(
    plan: sweeps.Sweep,
    goal: str,
    executor: cf.Executor,
    *,
    need: float = 1.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Search `plan` for its cheapest point meeting `goal`; the `relaysim.seek/1`
    document: the answer (None: no point of the grid meets it), the points
    evaluated against the grid's, and the answer's and its cheaper neighbours'
    per-seed figures (each neighbour failing is what makes the answer the cheapest;
    `monotone: false` says one did not)."""
    t0 = time.perf_counter()
    seeker = Seeker(plan, goal, executor, need=need, progress=progress)
    answer = seeker.search()
    searched = len(seeker.tested)
    neighbours = [seeker.evaluate(p) for p in seeker.neighbours(answer)] if answer else []
    grid = math.prod(len(values) for _, values in seeker.axes)
    return {
        "schema": SCHEMA,
        "name": plan.name,
        "base": plan.spec.base,
        "axes": [key for key, _ in seeker.axes],
        "goal": goal,
        "need": need,
        "seeds": seeker.seeds,
        "answer": None if answer is None else seeker.evaluate(answer),
        "neighbours": neighbours,
        "monotone": not any(n["met"] for n in neighbours),
        "evaluated": len(seeker.tested),
        "searched": searched,
        "grid": grid,
        "runs": len(seeker.tested) * len(seeker.seeds),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "tested": list(seeker.tested.values()),
    }


#: The figures each per-seed row of a seek keeps.
KEPT = ("seed", "relay_overflows", "overflows", "overflow_rate", "crashes", "hangs",
        "p99_ms", "expectations_met", "error")  # fmt: skip


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in KEPT}


def describe(doc: dict[str, Any]) -> Sequence[str]:
    """The answer in a few lines of text."""
    if doc["answer"] is None:
        return [f"no point of the grid meets {doc['goal']}, not even the dearest"]
    values = ", ".join(f"{k}={v}" for k, v in doc["answer"]["values"].items())
    return [
        f"cheapest meeting {doc['goal']} on {doc['answer']['seeds_met']}/{doc['answer']['seeds']}"
        f" seeds: {values}",
        f"{doc['evaluated']} points evaluated ({doc['runs']} runs) of the grid's {doc['grid']}",
    ]
