"""Predictions with their uncertainty: the open readings drawn, crossed with seeds.

A scenario's `priors:` (`relay.scenario.priors`) give the readings the record
leaves open as distributions. `run` draws `samples` points from them together by
Latin hypercube (`scipy.stats.qmc`, seeded from the scenario: the same command
gives the same draws), replays each point on every seed (the sweep's workers and
rows), and `analyse` reports, for each figure:

- its median and 5-95% interval over every run (draws x seeds);
- how its variance splits between the readings and the seeds, by the law of total
  variance: the seeds' share is the mean variance over seeds at a fixed draw, the
  readings' the rest;
- which reading matters most: Spearman's rank correlation between each reading's
  drawn value and the figure's mean over seeds at that draw.

The document is `relaysim.predict/1`.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats
from scipy.stats import qmc

from relay.plan import sweep as sweeps
from relay.scenario.schema import ConfigError, Scenario, scenario_from_data

SCHEMA = "relaysim.predict/1"

#: The figures a prediction reports, in table order.
FIGURES = ("relay_overflows", "overflows", "overflow_rate", "timeouts", "errors",
           "crashes", "hangs", "p50_ms", "p99_ms")  # fmt: skip

Progress = Callable[[int, int, int], None]  # (done, failed, total)


def draws(scenario: Scenario, samples: int) -> list[dict[str, float | int]]:
    """`samples` draws of the scenario's priors, together, by Latin hypercube (one
    value from each of `samples` equal-probability strata of every reading)."""
    priors = scenario.priors
    if not priors:
        raise ConfigError(f"{scenario.name}: no priors: to predict, give the open readings")
    unit = qmc.LatinHypercube(d=len(priors), rng=np.random.default_rng(scenario.seed))
    grid = unit.random(samples)
    keys = list(priors)
    return [
        {k: priors[k].value(float(grid[i, j])) for j, k in enumerate(keys)} for i in range(samples)
    ]


def check(scenario: Scenario, data: dict[str, Any], source: str) -> None:
    """Each prior's key must be one `--set` takes, at both ends of its range;
    ConfigError in one line naming it."""
    for key, prior in scenario.priors.items():
        for end in (prior.low, prior.high):
            value = round(end) if prior.integer else end
            scenario_from_data(data, [(key, value)], source, f"with priors.{key} at {value:g}")


def run(
    scenario: Scenario,
    executor: cf.Executor,
    *,
    samples: int = 20,
    seeds: Sequence[int] = (1, 2, 3),
    engine: Literal["fast", "trio"] = "fast",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay every draw of the priors on every seed on `executor`; the
    `relaysim.predict/1` document (its figures from `analyse`)."""
    t0 = time.perf_counter()
    data = scenario.model_dump(mode="json", by_alias=True)
    data.pop("priors", None)  # the draws set the readings
    source = f"{scenario.name} (prediction)"
    check(scenario, data, source)
    drawn = draws(scenario, samples)
    futures = {
        executor.submit(sweeps.run_point, data, source, [*d.items(), ("seed", seed)], engine): (
            i,
            seed,
        )
        for i, d in enumerate(drawn)
        for seed in seeds
    }
    rows: list[dict[str, Any]] = []
    failed = 0
    for future in cf.as_completed(futures):
        i, seed = futures[future]
        try:
            figures = future.result()
        except Exception as exc:  # the worker died
            figures = {"error": f"worker: {type(exc).__name__}: {exc}"}
        figures.pop("expectations", None)
        figures.pop("expectations_met", None)
        rows.append({"draw": i, "seed": seed, "values": drawn[i], **figures})
        failed += bool(rows[-1].get("error"))
        if progress:
            progress(len(rows), failed, len(futures))
    rows.sort(key=lambda r: (r["draw"], r["seed"]))
    return {
        "schema": SCHEMA,
        "scenario": scenario.name,
        "date": str(scenario.date),
        "engine": engine,
        "samples": samples,
        "seeds": list(seeds),
        "priors": {k: p.model_dump(exclude_none=True) for k, p in scenario.priors.items()},
        "point": {k: _point(scenario, k) for k in scenario.priors},
        "failed": failed,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "figures": analyse(rows, list(scenario.priors), samples, len(seeds)),
        "rows": rows,
    }


def analyse(
    rows: list[dict[str, Any]], keys: list[str], samples: int, seeds: int
) -> dict[str, dict[str, Any]]:
    """Each figure's median, 5% and 95% quantiles, mean and sd over every run, its
    variance's split between readings and seeds, and each reading's rank
    correlation with it. Failed runs are left out (a draw with any failed seed
    drops out of the split and the correlations)."""
    out: dict[str, dict[str, Any]] = {}
    whole = [r for r in rows if not r.get("error")]
    by_draw: dict[int, list[dict[str, Any]]] = {}
    for r in whole:
        by_draw.setdefault(r["draw"], []).append(r)
    complete = sorted(i for i, rs in by_draw.items() if len(rs) == seeds)
    for figure in FIGURES:
        values = np.array([float(r[figure]) for r in whole])
        if not len(values):
            continue
        doc: dict[str, Any] = {
            "median": float(np.median(values)),
            "p5": float(np.quantile(values, 0.05)),
            "p95": float(np.quantile(values, 0.95)),
            "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        }
        grid = np.array([[float(r[figure]) for r in by_draw[i]] for i in complete])
        doc |= _split(grid)
        means = grid.mean(axis=1) if len(grid) else np.array([])
        doc["rank_correlation"] = {
            key: _spearman([float(by_draw[i][0]["values"][key]) for i in complete], means)
            for key in keys
        }
        out[figure] = doc
    return out


def _split(grid: np.ndarray[Any, Any]) -> dict[str, float | None]:
    """Shares of the variance of `grid` (draws x seeds) from the readings and from
    the seeds (law of total variance); None when it cannot be told."""
    if grid.shape[0] < 2 or grid.shape[1] < 2:
        return {"variance_from_readings": None, "variance_from_seeds": None}
    total = float(grid.var(ddof=1))
    if total == 0.0:
        return {"variance_from_readings": 0.0, "variance_from_seeds": 0.0}
    within = float(grid.var(axis=1, ddof=1).mean())
    seeds = min(within / total, 1.0)
    return {"variance_from_readings": round(1.0 - seeds, 4), "variance_from_seeds": round(seeds, 4)}


def _spearman(x: list[float], y: np.ndarray[Any, Any]) -> float | None:
    """Spearman's rank correlation, None when either side is constant or too short."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y.tolist())) < 2:
        return None
    rho = stats.spearmanr(x, y).statistic
    return round(float(rho), 4)


def _point(scenario: Scenario, key: str) -> Any:
    """The scenario's own (point) value of `key`."""
    node: Any = scenario.model_dump(by_alias=True)
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


#: The figures whose recorded interval `replay` shows beside its point.
SHOWN = ("relay_overflows", "overflows")


def interval(path: str | Path, scenario: str) -> dict[str, Any]:
    """The interval a recorded `relaysim predict` document at `path` gives for
    `scenario`: samples, seeds, where it comes from, and each shown figure's median,
    p5 and p95; ConfigError in one line for a file that is not one."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"prediction: {p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"prediction: {p}: cannot read it: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ConfigError(f"prediction: {p}: not a {SCHEMA} document")
    if doc.get("scenario") != scenario:
        raise ConfigError(f"prediction: {p}: is for {doc.get('scenario')!r}, not {scenario!r}")
    figures = {
        name: {k: doc["figures"][name][k] for k in ("median", "p5", "p95")}
        for name in SHOWN
        if name in doc["figures"]
    }
    return {
        "source": str(p),
        "samples": doc["samples"],
        "seeds": doc["seeds"],
        "figures": figures,
    }
