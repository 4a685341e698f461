"""What-if sweeps: many replays of one scenario with overrides, in parallel.

A sweep file names a base scenario and the points to run on it, either a grid (the
cartesian product of a few keys' values) or a list of points, each point an override
of scenario keys (the same `KEY=VALUE` paths as `--set`), optionally for several
seeds:

    name: relays-vs-caps
    base: ../2016-03-29.yaml        # relative to the sweep file
    set: {design: fixed}            # on every point
    grid:
      relays.count: [3, 4, 5, 6]
      relays.max_connections: [48, 64, 96, 128]
    seeds: [1, 2]
    goal: {overflow_rate_below: 0.001}

Each point runs in a worker (a local process pool, or a Dask cluster through its
`concurrent.futures` executor) and comes back as one row of summary figures. A point
that fails (its overrides do not validate, the run raises, a checker fails it, the
worker dies) is reported in its row; the others go on. The document written is
`relaysim.sweep/1`: the spec, the axes, one row per point and seed, the wall time and
points per minute.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from relay.core.summary import SIZE_CLASSES
from relay.plan import pools
from relay.scenario.bounds import clamped
from relay.scenario.expect import judge, measured_by
from relay.scenario.schema import (
    ConfigError,
    describe_error,
    parse_override,
    read_yaml_mapping,
    scenario_from_data,
)

SCHEMA = "relaysim.sweep/1"

#: The summary figures each row carries, in table order.
FIGURES = (
    "requests",
    "overflows",
    "overflow_rate",
    "relay_overflows",
    "timeouts",
    "errors",
    "lost",
    "crashes",
    "hangs",
    "outage_minutes",
    "inconsistent",
    "duplicates_applied",
    "p50_ms",
    "p99_ms",
)


def class_column(label: str) -> str:
    """The column of a size class's relay overflows: `<50k` is `relay_overflows_lt_50k`,
    `>=1M` `relay_overflows_ge_1m` (names a DataFrame, a CSV reader and a formula
    take as they are)."""
    tidy = label.lower().replace(">=", "ge_").replace("<", "lt_").replace("-", "_")
    return f"relay_overflows_{tidy}"


#: Overflows at the relays by municipality size class, one column each.
CLASS_FIGURES = tuple(class_column(label) for label, _ in SIZE_CLASSES)


class Goal(BaseModel):
    """What a point must show to meet the planners' goal."""

    model_config = ConfigDict(extra="forbid")
    overflow_rate_below: float | None = Field(default=None, gt=0, le=1)
    relay_overflows_below: int | None = Field(default=None, gt=0)
    relay_overflows_at_most: int | None = Field(default=None, ge=0)
    crashes_at_most: int | None = Field(default=None, ge=0)
    hangs_at_most: int | None = Field(default=None, ge=0)

    def met(self, row: dict[str, Any]) -> bool | None:
        """Whether `row` meets every bound given; None for a failed point."""
        if row.get("error"):
            return None
        if (
            self.overflow_rate_below is not None
            and row["overflow_rate"] >= self.overflow_rate_below
        ):
            return False
        relay = row["relay_overflows"]
        if self.relay_overflows_below is not None and relay >= self.relay_overflows_below:
            return False
        if self.relay_overflows_at_most is not None and relay > self.relay_overflows_at_most:
            return False
        if self.crashes_at_most is not None and row["crashes"] > self.crashes_at_most:
            return False
        return self.hangs_at_most is None or row["hangs"] <= self.hangs_at_most


class SweepSpec(BaseModel):
    """A sweep file (see the module doc)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    base: str = Field(description="the base scenario, relative to the sweep file")
    engine: Literal["fast", "trio"] = "fast"
    set: dict[str, Any] = Field(default_factory=dict, description="overrides on every point")
    grid: dict[str, list[Any]] | None = None
    points: list[dict[str, Any]] | None = None
    seeds: list[int] | None = Field(default=None, min_length=1)
    goal: Goal | None = None

    @model_validator(mode="after")
    def _one_way(self) -> SweepSpec:
        if (self.grid is None) == (self.points is None):
            raise ValueError("give either grid: or points:, not both and not neither")
        if self.grid is not None:
            if not self.grid:
                raise ValueError("grid: needs at least one key")
            empty = [k for k, values in self.grid.items() if not values]
            if empty:
                raise ValueError(f"grid.{empty[0]}: needs at least one value")
        if self.points is not None and not self.points:
            raise ValueError("points: needs at least one point")
        if self.seeds is not None and any(s < 0 for s in self.seeds):
            raise ValueError("seeds: must be 0 or more")
        return self


class Point(BaseModel):
    """One point of the sweep, for one seed: its label and its overrides."""

    index: int
    label: str
    values: dict[str, Any]
    seed: int | None


class Sweep:
    """A validated sweep: its base scenario's data and its points."""

    def __init__(self, spec: SweepSpec, path: Path, base_data: dict[str, Any]) -> None:
        self.spec = spec
        self.path = path
        self.base_data = base_data
        self.name = spec.name or path.stem
        self.axes = list(spec.grid) if spec.grid is not None else []
        self.points = list(self._points())
        self.warnings: list[str] = []  # values a bound clamps (`check_base`)
        self.invalid = 0  # points whose values do not validate (`check_base`)

    def _points(self) -> Iterator[Point]:
        spec = self.spec
        combos: list[tuple[str, dict[str, Any]]] = []
        if spec.grid is not None:
            keys = list(spec.grid)
            for combo in itertools.product(*spec.grid.values()):
                point = dict(zip(keys, combo, strict=True))
                combos.append((", ".join(f"{k}={v}" for k, v in point.items()), point))
        else:
            for i, raw in enumerate(spec.points or []):
                point = dict(raw)
                label = str(point.pop("label", "") or f"point {i + 1}")
                combos.append((label, point))
        seeds: list[int | None] = list(spec.seeds) if spec.seeds else [None]
        for index, (label, values) in enumerate(combos):
            for seed in seeds:
                yield Point(index=index, label=label, values=values, seed=seed)

    def overrides(self, point: Point) -> list[tuple[str, Any]]:
        """The `(KEY, value)` overrides of `point` on the base scenario."""
        sets = [*self.spec.set.items(), *point.values.items()]
        if point.seed is not None:
            sets.append(("seed", point.seed))
        return sets

    def check_base(self) -> None:
        """Validate the base scenario with the overrides every point shares, then
        every point's own. A sweep none of whose points validates (a misspelt axis)
        is refused before anything runs; a point that does not validate while others
        do keeps its error for its row (`run_point` gives it), the others run.
        Values a bound of the scenario clamps are noted in `warnings`."""
        shared = list(self.spec.set.items())
        base = scenario_from_data(self.base_data, shared, self.base_path, "with the sweep's set:")
        self.warnings = [f"set: {line}" for line in clamped(base)]
        checked: set[int] = set()
        failures: list[ConfigError] = []
        for point in self.points:
            if point.index in checked:
                continue  # the same values for another seed
            checked.add(point.index)
            try:
                scenario = scenario_from_data(
                    self.base_data,
                    self.overrides(point),
                    f"{self.path}: point {point.label!r}",
                    "on " + self.base_path,
                )
            except ConfigError as exc:
                failures.append(exc)
                continue
            self.warnings += [
                f"point {point.label!r}: {line}"
                for line in clamped(scenario)
                if f"set: {line}" not in self.warnings
            ]
        if failures and len(failures) == len(checked):
            raise failures[0]
        self.invalid = len(failures)

    @property
    def base_path(self) -> str:
        """The base scenario's path, as the sweep file's folder sees it."""
        return str(self.path.parent / self.spec.base)


def load_sweep(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Sweep:
    """Read and validate a sweep file and its base scenario, with `KEY=VALUE`
    overrides added to its `set:`; ConfigError in one line."""
    p = Path(path)
    data = read_yaml_mapping(p)
    for text in overrides:
        key, value = parse_override(text)
        data.setdefault("set", {})
        if not isinstance(data["set"], dict):
            break  # the spec's own validation names it
        data["set"][".".join(key)] = value
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{p}: {describe_error(exc.errors()[0])}") from None
    sweep = Sweep(spec, p, read_yaml_mapping(p.parent / spec.base))
    sweep.check_base()
    return sweep


def run_point(
    base_data: dict[str, Any],
    source: str,
    overrides: list[tuple[str, Any]],
    engine: Literal["fast", "trio"],
    expect: Sequence[str] = (),
) -> dict[str, Any]:
    """Run one point in a worker: the row's figures, or its `error`. Never raises.
    With `expect` (and the scenario's own `expect:`), the row says which thresholds
    held (`expectations`, `expectations_met`)."""
    from relay.plan.replay import replay  # in the worker

    wall0 = time.perf_counter()
    try:
        scenario = scenario_from_data(base_data, overrides, source, "with the point's overrides")
        result = replay(scenario, engine=engine)
    except ConfigError as exc:
        return {"error": f"config: {exc}"}
    except Exception as exc:  # a bug in one point must not stop the sweep
        return {"error": f"{type(exc).__name__}: {exc}"}
    doc = result.summary
    held_to = measured_by([*scenario.expect, *expect], "replay")
    verdicts = judge(held_to, doc)
    figures: Mapping[str, Any] = doc  # read by name, as the row's columns are
    row: dict[str, Any] = {k: figures[k] for k in FIGURES if k in figures}
    row["overflow_rate"] = doc["overflows"] / doc["requests"] if doc["requests"] else 0.0
    row["p50_ms"] = doc["latency_ms"]["p50"]
    row["p99_ms"] = doc["latency_ms"]["p99"]
    # Where it overflows: refusals at the relays per municipality size class.
    blocking = doc["blocking"]
    for r in blocking["by_size"] if blocking is not None else []:
        row[class_column(r["class"])] = r["relay_overflows"]
    row["seed"] = doc["seed"]
    row["design"] = doc["design"]
    row["wall_seconds"] = round(time.perf_counter() - wall0, 3)
    if doc["violations"]:
        row["error"] = f"checks failed: {doc['violations'][0]}"
    row["expectations"] = [v.document() for v in verdicts]
    row["expectations_met"] = all(v.passed for v in verdicts) if verdicts else None
    return row


# (done, failed, total): after each result, and on each wait for one (POLL_S)
Progress = Callable[[int, int, int], None]


def run(
    sweep: Sweep,
    executor: cf.Executor,
    *,
    progress: Progress | None = None,
    label: str = "",
    expect: Sequence[str] = (),
) -> dict[str, Any]:
    """Run every point of `sweep` on `executor`, each held to `expect`; the
    `relaysim.sweep/1` document."""
    t0 = time.perf_counter()
    source = Path(sweep.base_path).name  # rows name the file, not its folder
    futures: dict[cf.Future[dict[str, Any]], int] = {
        executor.submit(
            run_point,
            sweep.base_data,
            source,
            sweep.overrides(p),
            sweep.spec.engine,
            tuple(expect),
        ): i
        for i, p in enumerate(sweep.points)
    }
    rows: list[dict[str, Any]] = []
    failed = 0

    def report() -> None:
        if progress:
            progress(len(rows), failed, len(futures))

    def add(point: Point, figures: dict[str, Any]) -> None:
        nonlocal failed
        row = {"point": point.index, "label": point.label, "values": point.values, **figures}
        row.setdefault("seed", point.seed)
        row["error"] = row.get("error")
        if sweep.spec.goal is not None:
            row["goal_met"] = sweep.spec.goal.met(row)
        failed += row["error"] is not None
        rows.append(row)
        report()

    cut: str | None = None
    left = set(futures.values())  # the points without a row yet
    try:
        # `report` on every wait too: off a terminal its line comes on time (every
        # 10 s), not only when a point ends.
        for i, figures in pools.harvest(executor, futures, report):
            if isinstance(figures, Exception):
                figures = {"error": f"worker: {type(figures).__name__}: {figures}"}
            left.discard(i)
            add(sweep.points[i], figures)
    except pools.Cancelled as stop:  # the points cut short are errors; the rest stand
        cut = stop.name
        for i in sorted(left):
            add(sweep.points[i], {"error": pools.cut_short(cut)})
    rows.sort(key=lambda r: (r["point"], -1 if r["seed"] is None else r["seed"]))
    wall = time.perf_counter() - t0
    return {
        "schema": SCHEMA,
        "name": sweep.name,
        "base": sweep.spec.base,
        "engine": sweep.spec.engine,
        "executor": label,
        "axes": sweep.axes,
        "set": sweep.spec.set,
        "goal": None if sweep.spec.goal is None else sweep.spec.goal.model_dump(exclude_none=True),
        "expect": list(expect),
        "points": len(futures),
        "failed": failed,
        "wall_seconds": round(wall, 3),
        "points_per_minute": round(len(futures) / wall * 60.0, 3) if wall > 0 else None,
        "cancelled": cut,
        "rows": rows,
        "over_seeds": over_seeds(rows),
    }


#: The figures `over_seeds` summarises, per point.
SEED_FIGURES = ("relay_overflows", "overflow_rate", "timeouts", "crashes", "hangs", "p99_ms")


def over_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point run on more than one seed: its label and values, how many seeds ran
    without error, and each of SEED_FIGURES' mean, sd (sample), min and max."""
    by_point: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_point.setdefault(row["point"], []).append(row)
    out = []
    for point, runs in sorted(by_point.items()):
        ok = [r for r in runs if not r.get("error")]
        if len(runs) < 2:
            continue
        entry: dict[str, Any] = {"point": point, "label": runs[0]["label"]}
        entry |= {"values": runs[0]["values"], "seeds": len(ok)}
        for figure in SEED_FIGURES:
            xs = [float(r[figure]) for r in ok if r.get(figure) is not None]
            mean = sum(xs) / len(xs) if xs else None
            sd = (
                math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
                if mean is not None and len(xs) > 1
                else None
            )
            entry[figure] = {"mean": mean, "sd": sd, "min": min(xs, default=None),
                             "max": max(xs, default=None)}  # fmt: skip
        out.append(entry)
    return out


def csv_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The sweep's rows as a CSV header and lines: one column per swept key, then
    the seed, the figures, the goal, the thresholds and the error."""
    keys: list[str] = []
    for row in doc["rows"]:
        keys += [k for k in row["values"] if k not in keys]
    header = ["point", "label", *keys, "seed", *FIGURES, *CLASS_FIGURES, "goal_met"]
    header += ["expectations_met", "error"]
    lines = [
        [
            row["point"],
            row["label"],
            *(row["values"].get(k, "") for k in keys),
            row.get("seed"),
            *(row.get(f, "") for f in FIGURES),
            *(row.get(f, "") for f in CLASS_FIGURES),
            row.get("goal_met", ""),
            "" if row.get("expectations_met") is None else row["expectations_met"],
            row.get("error") or "",
        ]
        for row in doc["rows"]
    ]
    return header, lines
