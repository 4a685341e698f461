"""relaysim as a Python library, for planners in notebooks (docs/api.md).

    import relay

    scenario = relay.load_scenario("configs/2016-03-29.yaml", {"relays.count": 5})
    result = relay.replay(scenario, seed=2)
    result.summary["relay_overflows"]
    result.timeline          # a DataFrame, one row per 5 minutes
    table = relay.sweep(scenario, grid={"relays.count": [4, 5, 6]}, seeds=[1, 2, 3])
    relay.by_point(table)    # mean, sd, min and max over the seeds

The names here are the stable front: `load_scenario`, `replay` (a `Result`),
`sweep` and `by_point` (DataFrames). They take a scenario as a file, a mapping or
a loaded `Scenario`, and overrides as `{key: value}` (the keys of `--set`). A
value a bound of the scenario clamps warns (`ClampWarning`); bad input raises
`ConfigError` with one line naming it. pandas is imported here, matplotlib only
when a plot is drawn.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import warnings
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, cast

import pandas as pd

from relay.core import summary as summaries
from relay.core.tier import RelayTier
from relay.plan import sweep as sweeps
from relay.plan.pools import dask_pool, local_pool
from relay.plan.replay import command as replay_command
from relay.plan.replay import replay as _replay
from relay.plan.replay import set_text
from relay.scenario import schema
from relay.scenario.bounds import clamped
from relay.scenario.schema import ConfigError, Scenario

__all__ = [
    "ClampWarning",
    "ConfigError",
    "Prediction",
    "Result",
    "Scenario",
    "Sought",
    "by_point",
    "load_scenario",
    "predict",
    "replay",
    "seek",
    "sweep",
]

ScenarioLike = Scenario | str | os.PathLike[str] | Mapping[str, Any]
Overrides = Mapping[str, Any] | Sequence[str | tuple[str, Any]] | None
Engine = Literal["fast", "trio"]

#: The figures `by_point` summarises over seeds.
SEED_FIGURES = ("relay_overflows", "overflows", "overflow_rate", "timeouts", "errors",
                "crashes", "hangs", "outage_minutes", "p50_ms", "p99_ms")  # fmt: skip


class ClampWarning(UserWarning):
    """A value that a bound of the scenario overrides: it changes nothing."""


def load_scenario(source: ScenarioLike, overrides: Overrides = None) -> Scenario:
    """A validated scenario from a YAML file, a mapping of its keys, or a scenario,
    with `overrides` (`{"relays.count": 5}`, or `["relays.count=5"]`) applied.

    Raises ConfigError (one line naming the file, key and value) for bad input;
    warns `ClampWarning` for a value a bound clamps."""
    pairs = _pairs(overrides)
    if isinstance(source, Scenario):
        data, where = source.model_dump(mode="json", by_alias=True), source.name
    elif isinstance(source, Mapping):
        data, where = dict(source), "scenario"
    else:
        where = str(Path(source))
        data = schema.read_yaml_mapping(where)
    scenario = schema.scenario_from_data(data, pairs, where, "with overrides")
    for line in clamped(scenario):
        warnings.warn(f"{where}: {line}", ClampWarning, stacklevel=2)
    return scenario


@dataclass(frozen=True)
class Result:
    """One replay: `summary` (the `relaysim.summary/3` document, typed as
    `relay.core.summary.Summary`), `violations` (the checkers' findings, empty on
    success), `scenario`, `tier` (the model after the run), `command` (the
    `relaysim replay` command that runs it again, when the scenario came from a
    file; else None), and DataFrames."""

    summary: summaries.Summary
    violations: list[str]
    scenario: Scenario
    tier: RelayTier
    command: str | None = None

    @cached_property
    def timeline(self) -> pd.DataFrame:
        """One row per 5 minutes: `time` (a timestamp on the scenario's day), `t`
        (seconds since its midnight), requests, completed, overflows, timeouts,
        errors, p50_ms, p99_ms."""
        frame = pd.DataFrame(self.summary["timeline"])
        if frame.empty:
            return frame
        day = pd.Timestamp(self.summary["date"])
        frame.insert(0, "time", day + pd.to_timedelta(frame["t"], unit="s"))
        return frame

    @cached_property
    def pools(self) -> pd.DataFrame:
        """One row per CS pool (municipality): its cap, peak, attempts, overflows at
        the relays and refusals at the CS."""
        blocking = self.summary["blocking"]
        return pd.DataFrame(dict(blocking["pools"]) if blocking is not None else {})

    @cached_property
    def by_size(self) -> pd.DataFrame:
        """One row per municipality size class: municipalities, residents, caps,
        attempts, overflows at the relays and at the CS, pools at their cap."""
        blocking = self.summary["blocking"]
        rows = list(blocking["by_size"]) if blocking is not None else []
        return pd.DataFrame(rows).rename(columns={"class": "size_class"})

    @cached_property
    def nodes(self) -> pd.DataFrame:
        """One row per relay node: requests, outcomes, crashes, hangs, outage
        minutes, connections, HSM calls and the race windows it met."""
        return pd.json_normalize([dict(n) for n in self.summary["nodes"] or []], sep="_")

    def plot(self) -> Any:
        """The day's traffic (requests and overflows per 5 minutes) as a matplotlib
        Figure (shown inline by a notebook). matplotlib is loaded here."""
        import datetime as dt

        from relay.plan import report

        start = dt.date.fromisoformat(self.summary["date"])
        actions = [dict(a) for a in self.summary["operators"]]
        return report._traffic([dict(b) for b in self.summary["timeline"]], start, actions)


def replay(
    scenario: ScenarioLike,
    *,
    seed: int | None = None,
    engine: Engine = "fast",
    overrides: Overrides = None,
) -> Result:
    """Replay `scenario` (with `overrides`, and `seed` instead of its own) on
    `engine`; the checkers' findings are in `Result.violations`, never raised."""
    given = _pairs(overrides)
    pairs = given + ([("seed", seed)] if seed is not None else [])
    source = scenario
    if not isinstance(scenario, Scenario) or pairs:
        scenario = load_scenario(scenario, pairs)
    done = _replay(scenario, engine=engine)
    command = None
    if not isinstance(source, Scenario | Mapping):  # a file: it can be run again
        sets = [p if isinstance(p, str) else f"{p[0]}={set_text(p[1])}" for p in given]
        command = replay_command(
            source, design=scenario.design, seed=scenario.seed, engine=engine, sets=sets
        )
    violations = [str(v) for v in done.violations]
    return Result(done.summary, violations, scenario, done.tier, command)


def sweep(
    scenario: ScenarioLike,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    points: Sequence[Mapping[str, Any]] | None = None,
    seeds: Sequence[int] | None = None,
    overrides: Overrides = None,
    workers: int | None = None,
    dask: str | None = None,
    engine: Engine = "fast",
    goal: Mapping[str, Any] | None = None,
    expect: Sequence[str] = (),
) -> pd.DataFrame:
    """Replay `scenario` at every point of `grid` (the product of its keys' values)
    or of `points` (each a `{key: value}`, with an optional `label`), for each of
    `seeds`, on `workers` local processes (default: one per core) or the Dask
    cluster at `dask`. One row per point and seed: `point`, `label`, one column per
    key set, `seed`, the figures (`relay_overflows`, `overflow_rate`, `p99_ms`, ...,
    `relay_overflows_ge_1m` per size class), `goal_met` with a `goal`
    (`{"relay_overflows_below": 1000}`), and `error` (None, or why the point
    failed: it does not stop the others)."""
    spec: dict[str, Any] = {"engine": engine}
    spec |= {"grid": _lists(grid)} if grid is not None else {}
    spec |= {"points": [dict(p) for p in points]} if points is not None else {}
    spec |= {"seeds": list(seeds)} if seeds is not None else {}
    spec |= {"goal": dict(goal)} if goal is not None else {}
    plan = _plan("sweep", load_scenario(scenario, overrides), spec)
    with _pool(workers, dask) as running:
        doc = sweeps.run(plan, running, expect=expect)
    return frame_of(doc)


def _plan(what: str, base: Scenario, spec: dict[str, Any]) -> sweeps.Sweep:
    """A sweep of `base` by `spec` (a sweep file's keys but `base`), checked; a value
    a bound clamps warns. ConfigError in one line naming `what` was asked."""
    spec = {"name": base.name, "base": f"{base.name} (in memory)", **spec}
    try:
        parsed = sweeps.SweepSpec.model_validate(spec)
    except Exception as exc:  # pydantic's ValidationError: one line
        raise ConfigError(f"{what}: {_first_error(exc)}") from None
    plan = sweeps.Sweep(parsed, Path(base.name), base.model_dump(mode="json", by_alias=True))
    plan.check_base()
    for line in plan.warnings:
        warnings.warn(f"{what}: {line}", ClampWarning, stacklevel=3)
    return plan


def _pool(workers: int | None, dask: str | None) -> AbstractContextManager[cf.Executor]:
    """The Dask cluster at `dask`, or `workers` local processes (one per core)."""
    if dask is not None:
        return dask_pool(dask)
    return local_pool(workers or os.cpu_count() or 1)


@dataclass(frozen=True)
class Prediction:
    """A prediction with its uncertainty (`relaysim predict`): `doc` (the
    `relaysim.predict/1` document), `figures` (one row per figure: median, p5,
    p95, mean, sd, variance_from_readings, variance_from_seeds, and
    `rank_<reading>` per reading) and `runs` (one row per draw and seed: the
    readings drawn and the run's figures)."""

    doc: dict[str, Any]

    @cached_property
    def figures(self) -> pd.DataFrame:
        """One row per figure (the index), as `relaysim predict` prints them."""
        rows = {}
        for name, f in self.doc["figures"].items():
            ranks = {f"rank_{k}": v for k, v in f["rank_correlation"].items()}
            rows[name] = {k: v for k, v in f.items() if k != "rank_correlation"} | ranks
        return pd.DataFrame.from_dict(rows, orient="index")

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per draw and seed: `draw`, `seed`, each reading, the figures."""
        records = [
            {"draw": r["draw"], "seed": r["seed"], **r["values"]}
            | {k: r.get(k) for k in sweeps.FIGURES}
            | {"error": r.get("error")}
            for r in self.doc["rows"]
        ]
        return pd.DataFrame.from_records(records)


def predict(
    scenario: ScenarioLike,
    *,
    samples: int = 20,
    seeds: Sequence[int] = (1, 2, 3),
    overrides: Overrides = None,
    workers: int | None = None,
    dask: str | None = None,
    engine: Engine = "fast",
) -> Prediction:
    """Draw the scenario's priors (`priors:`, the readings the record leaves open)
    `samples` times by Latin hypercube, replay each draw on every seed, and report
    each figure's median and 5-95% interval, its variance split between readings
    and seeds, and each reading's rank correlation (docs/calibration.md)."""
    from relay.plan import predict as predictions

    base = load_scenario(scenario, overrides)
    with _pool(workers, dask) as running:
        doc = predictions.run(base, running, samples=samples, seeds=seeds, engine=engine)
    return Prediction(doc)


@dataclass(frozen=True)
class Sought:
    """What `seek` found: `doc` (`relaysim.seek/1`), `answer` (the cheapest point's
    values, None when no point of the grid meets the goal) and `tested` (one row per
    point evaluated and seed: the values, `met` for the point, the figures)."""

    doc: dict[str, Any]

    @property
    def answer(self) -> dict[str, Any] | None:
        """The cheapest point's values, or None."""
        found = self.doc["answer"]
        return None if found is None else dict(found["values"])

    @cached_property
    def tested(self) -> pd.DataFrame:
        """One row per point evaluated and seed."""
        records = [
            {**point["values"], "point_met": point["met"], **row}
            for point in self.doc["tested"]
            for row in point["rows"]
        ]
        return pd.DataFrame.from_records(records)


def seek(
    scenario: ScenarioLike,
    *,
    axes: Mapping[str, Sequence[Any]],
    goal: str,
    seeds: Sequence[int] | None = None,
    need: float = 1.0,
    overrides: Overrides = None,
    workers: int | None = None,
    dask: str | None = None,
    engine: Engine = "fast",
) -> Sought:
    """The cheapest point meeting `goal` (a threshold: `"relay_overflows <= 1000"`)
    on at least `need` of `seeds`: `axes` in the order of their cost (the first
    dearest), each from cheapest to dearest value; searched by bisection, one axis
    at a time, assuming a dearer value never hurts (docs/capacity.md)."""
    from relay.plan import seek as seeking

    spec: dict[str, Any] = {"engine": engine, "grid": _lists(axes)}
    spec |= {"seeds": list(seeds)} if seeds is not None else {}
    plan = _plan("seek", load_scenario(scenario, overrides), spec)
    with _pool(workers, dask) as running:
        return Sought(seeking.run(plan, goal, running, need=need))


def frame_of(doc: Mapping[str, Any]) -> pd.DataFrame:
    """A `relaysim.sweep/1` document's rows as a DataFrame, in the CSV's columns (see
    `sweep`); a figure a failed point lacks is NaN."""
    header, _ = sweeps.csv_rows(dict(doc))
    records = []
    for row in doc["rows"]:
        record = {"point": row["point"], "label": row["label"], **row["values"]}
        record |= {k: row.get(k) for k in header if k not in record}
        records.append(record)
    return pd.DataFrame.from_records(records, columns=header)


def by_point(table: pd.DataFrame, figures: Sequence[str] = SEED_FIGURES) -> pd.DataFrame:
    """Over the seeds of each point of a `sweep` table: how many ran without error
    (`seeds`), and the mean, sd, min and max of each of `figures` (columns
    `relay_overflows_mean`, `relay_overflows_sd`, ...). A point none of whose
    seeds ran is left out (its rows in `table` say why)."""
    ok = table[table["error"].isna()]
    first, last = table.columns.get_loc("label"), table.columns.get_loc("seed")
    assert isinstance(first, int)
    assert isinstance(last, int)
    swept = list(table.columns[first + 1 : last])
    grouped = ok.groupby(["point", "label", *swept], sort=True, dropna=False)
    stats = grouped[list(figures)].agg(["mean", "std", "min", "max"])
    pairs = cast(list[tuple[str, str]], list(stats.columns))  # (figure, statistic)
    stats.columns = pd.Index([f"{f}_{'sd' if s == 'std' else s}" for f, s in pairs])
    stats.insert(0, "seeds", grouped.size())
    return stats.reset_index()


def _pairs(overrides: Overrides) -> list[str | tuple[str, Any]]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [(str(k), v) for k, v in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def _lists(grid: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    return {str(k): list(v) for k, v in grid.items()}


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return schema.describe_error(errors()[0])
    return str(exc)
