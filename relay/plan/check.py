"""Suites a CI server runs: `relaysim check SUITE.yaml`, one verdict per case and seed.

A suite file names cases; each runs a scenario (a path relative to the suite file)
on a design with overrides, for one or more seeds, as a replay or a hunt, and holds
the result to thresholds (`relay.scenario.expect`: the case's `expect:`, the
scenario's own, and `check --expect`):

    name: regression
    cases:
      - name: january-fixed
        scenario: ../jan-2016.yaml
        design: fixed
        set: {calendar.until: 2016-01-26}
        seeds: [1, 2]
        expect: [crashes == 0, hangs == 0, lost == 0]
      - name: races-fixed
        kind: hunt
        scenario: ../smoke.yaml
        design: fixed
        examples: 150
        expect: [crashes == 0, hangs == 0, invariants == 0, windows_missed == 0]

Every case is validated (its scenario, overrides and thresholds) before any runs.
Runs go to a process pool or a Dask cluster (the sweep's executors); each gives a
row: its verdicts, the model's checkers' violations, or the error that stopped it,
and the command that reproduces it. `junit` writes the rows as JUnit XML.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from relay.plan import pools
from relay.plan.replay import command, set_text
from relay.scenario.expect import ExpectError, check_all, judge, measured_by
from relay.scenario.expect import parse as parse_expectation
from relay.scenario.schema import (
    ConfigError,
    apply_override,
    describe_error,
    read_yaml_mapping,
    scenario_from_data,
)

SCHEMA = "relaysim.check/1"


class CaseSpec(BaseModel):
    """One case of a suite (see the module doc)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    scenario: str = Field(description="the scenario file, relative to the suite file")
    kind: Literal["replay", "hunt"] = "replay"
    design: Literal["fixed", "legacy"] | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | None = Field(default=None, min_length=1)
    engine: Literal["fast", "trio"] = "fast"
    examples: int = Field(default=200, ge=1, le=100_000, description="hunt: worlds to search")
    expect: list[str] = Field(default_factory=list)
    smoke: bool = Field(default=False, description="it only has to run: no threshold needed")

    @model_validator(mode="after")
    def _applies(self) -> CaseSpec:
        # A key of the other kind of case would be silently ignored: refused.
        for key, kind in (("examples", "hunt"), ("engine", "replay")):
            if key in self.model_fields_set and self.kind != kind:
                raise ValueError(f"{key}: applies to {kind} cases only, this is a {self.kind} case")
        check_all(self.expect, "expect.", {self.kind})
        return self


class SuiteSpec(BaseModel):
    """A suite file."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    expect: list[str] = Field(
        default_factory=list, description="thresholds for every case that measures them"
    )
    cases: list[CaseSpec] = Field(min_length=1)

    @field_validator("expect")
    @classmethod
    def _parses(cls, texts: list[str]) -> list[str]:
        check_all(texts)
        return texts

    @field_validator("cases")
    @classmethod
    def _unique(cls, cases: list[CaseSpec]) -> list[CaseSpec]:
        seen: set[str] = set()
        for case in cases:
            if case.name in seen:
                raise ValueError(f"two cases are named {case.name!r}")
            seen.add(case.name)
        return cases


@dataclass(frozen=True)
class Run:
    """One case for one seed: what a worker runs, and how a person reruns it."""

    case: CaseSpec
    seed: int
    path: Path  # the scenario file
    data: dict[str, Any]  # its mapping, read once
    overrides: list[tuple[str, Any]]
    expect: tuple[str, ...]  # every threshold it is held to, from wherever it came
    command: str

    @property
    def label(self) -> str:
        """`case [seed N]`, as JUnit names the test."""
        return f"{self.case.name} [seed {self.seed}]"


@dataclass(frozen=True)
class Suite:
    """A validated suite: its runs, in file order."""

    name: str
    path: Path
    runs: list[Run]


def load_suite(path: str | Path, extra: Sequence[str] = ()) -> Suite:
    """Read and validate a suite file, its scenarios and every case's overrides and
    thresholds (`extra`: `check --expect`, held by every case that measures its
    figure); ConfigError in one line naming the suite file, the case and the path."""
    p = Path(path)
    raw = read_yaml_mapping(p)
    try:
        spec = SuiteSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{p}: {_case_error(raw, exc)}") from None
    kinds = {case.kind for case in spec.cases}
    for given, texts in (("expect:", spec.expect), ("check --expect", extra)):
        for text in texts:
            try:
                e = parse_expectation(text)
            except ExpectError as exc:
                raise ConfigError(f"{p}: {given} {exc}") from None
            if not e.kinds & kinds:
                raise ConfigError(
                    f"{p}: {given} {e.text!r}: no case of this suite measures {e.figure} "
                    f"({' and '.join(sorted(e.kinds))} cases do; this suite has "
                    f"{' and '.join(sorted(kinds))} cases)"
                )
    runs: list[Run] = []
    for case in spec.cases:
        where = f"{p}: case {case.name!r}"
        scenario_path = p.parent / case.scenario
        try:
            data = read_yaml_mapping(scenario_path)
        except ConfigError as exc:
            why = str(exc).removeprefix(f"{scenario_path}: ")
            raise ConfigError(
                f"{where}: scenario {case.scenario}: {why} (paths are relative to the suite "
                f"file: {scenario_path.resolve()})"
            ) from None
        overrides = list(case.set.items())
        if case.design is not None:
            overrides.append(("design", case.design))
        scenario = scenario_from_data(data, overrides, where, f"on {scenario_path}")
        wide = [e.text for e in measured_by([*spec.expect, *extra], case.kind)]
        own = [e.text for e in measured_by(scenario.expect, case.kind)]
        if not (case.expect or wide or own or case.smoke):
            raise ConfigError(
                f"{where}: no thresholds: give it expect: [...] (or smoke: true if it only "
                "has to run)"
            )
        for seed in case.seeds or [scenario.seed]:
            command = _command(case, scenario_path, seed, wide)
            expect = (*own, *case.expect, *wide)
            runs.append(Run(case, seed, scenario_path, data, overrides, expect, command))
    return Suite(spec.name or p.stem, p, runs)


def _case_error(raw: dict[str, Any], exc: ValidationError) -> str:
    """A suite's validation error in one line, naming its case by name."""
    error = exc.errors()[0]
    loc = error["loc"]
    cases = raw.get("cases")
    if len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int) and isinstance(cases, list):
        entry = cases[loc[1]] if loc[1] < len(cases) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"case {name!r}" if name else f"case {loc[1] + 1}"
        return f"{label}: {describe_error({**error, 'loc': loc[2:]})}"
    return describe_error(error)


def _command(case: CaseSpec, scenario: Path, seed: int, extra: Sequence[str]) -> str:
    """The command that runs one case for one seed again, from here, held to the
    case's thresholds and `extra` (the scenario's own it holds by itself)."""
    where = os.path.relpath(scenario)
    sets = [f"{key}={set_text(value)}" for key, value in case.set.items()]
    if case.kind == "replay":
        expect = [*case.expect, *extra]
        return command(
            where, design=case.design, seed=seed, engine=case.engine, sets=sets, expect=expect
        )
    parts = ["relaysim", case.kind, where]
    if case.design is not None:
        parts += ["--design", case.design]
    parts += ["--seed", str(seed)]
    for text in sets:
        parts += ["--set", text]
    parts += ["--examples", str(case.examples)]
    for text in (*case.expect, *extra):
        parts += ["--expect", text]
    return shlex.join(parts)


def run_one(run: Run) -> dict[str, Any]:
    """Run one case for one seed (in a worker): its row. Never raises."""
    t0 = time.perf_counter()
    case = run.case
    row: dict[str, Any] = {
        "case": case.name,
        "seed": run.seed,
        "kind": case.kind,
        "scenario": str(run.path),
        "command": run.command,
    }
    try:
        overrides = [*run.overrides, ("seed", run.seed)]
        scenario = scenario_from_data(run.data, overrides, str(run.path))
        if case.kind == "replay":
            from relay.plan.replay import replay

            result = replay(scenario, engine=case.engine)
            doc: dict[str, Any] = dict(result.summary)
            row["violations"] = list(doc["violations"])
        else:
            from relay.plan.hunt import hunt

            pins: dict[str, Any] = {}
            for key, value in case.set.items():
                apply_override(pins, key.split("."), value, key)
            found = hunt(
                scenario, scenario.design, examples=case.examples, seed=run.seed, pins=pins
            )
            doc = found.result(run.path.stem, scenario.design, run.seed, run.command)
            row["violations"] = []
            row["found"] = doc["failure"]
        held_to = [parse_expectation(t) for t in run.expect]
        row["verdicts"] = [v.document() for v in judge(held_to, doc)]
        row["error"] = None
    except Exception as exc:  # a case that cannot run is that case's error, not the suite's
        row["verdicts"], row["violations"] = [], []
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["passed"] = (
        row["error"] is None and not row["violations"] and all(v["passed"] for v in row["verdicts"])
    )
    row["wall_seconds"] = round(time.perf_counter() - t0, 3)
    return row


# (done, failed, total): after each result, and on each wait for one (POLL_S)
Progress = Callable[[int, int, int], None]


def _errored(run: Run, error: str) -> dict[str, Any]:
    """The row of a run that gave no row of its own: `error` says why."""
    return {
        "case": run.case.name, "seed": run.seed, "kind": run.case.kind,
        "scenario": str(run.path), "command": run.command, "verdicts": [],
        "violations": [], "error": error, "passed": False, "wall_seconds": 0.0,
    }  # fmt: skip


def run(
    suite: Suite,
    executor: cf.Executor,
    *,
    progress: Progress | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[], None] | None = None,
    label: str = "",
) -> dict[str, Any]:
    """Run every case of `suite` on `executor`; the `relaysim.check/1` document,
    rows in the suite's order. `on_start` is told once every run is handed to the
    executor (a local pool's workers are running then); `on_row` sees each row as
    it comes."""
    t0 = time.perf_counter()
    futures = {executor.submit(run_one, r): i for i, r in enumerate(suite.runs)}
    if on_start is not None:
        on_start()
    rows: list[dict[str, Any] | None] = [None] * len(futures)
    failed = 0

    def report() -> None:
        if progress is not None:
            progress(sum(r is not None for r in rows), failed, len(futures))

    def add(i: int, row: dict[str, Any]) -> None:
        nonlocal failed
        rows[i] = row
        failed += not row["passed"]
        if on_row is not None:
            on_row(row)
        report()

    cut: str | None = None
    try:
        # `report` on every wait too, as sweeps do: a line off a terminal on time.
        for i, row in pools.harvest(executor, futures, report):
            if isinstance(row, Exception):
                row = _errored(suite.runs[i], f"worker: {type(row).__name__}: {row}")
            add(i, row)
    except pools.Cancelled as stop:  # the runs cut short are errors; the rest stand
        cut = stop.name
        for i, r in enumerate(suite.runs):
            if rows[i] is None:
                add(i, _errored(r, pools.cut_short(cut)))
    done = [r for r in rows if r is not None]
    return {
        "schema": SCHEMA,
        "suite": suite.name,
        "file": str(suite.path),
        "executor": label,
        "cases": len({r["case"] for r in done}),  # the suite's cases that ran
        "runs": len(done),  # each case once per seed
        "failed": failed,
        "cancelled": cut,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "rows": done,
    }


def unloadable(path: Path, message: str) -> dict[str, Any]:
    """The `relaysim.check/1` document of a suite that did not load: one errored
    run carrying `message`, so a pipeline's test report shows why."""
    row: dict[str, Any] = {
        "case": "load suite", "seed": None, "kind": None, "scenario": None,
        "command": shlex.join(["relaysim", "check", str(path)]), "verdicts": [],
        "violations": [], "error": message, "passed": False, "wall_seconds": 0.0,
    }  # fmt: skip
    return {
        "schema": SCHEMA, "suite": path.stem, "file": str(path), "executor": None,
        "cases": 0, "runs": 1, "failed": 1, "cancelled": None, "wall_seconds": 0.0,
        "rows": [row],
    }  # fmt: skip


def _name(row: dict[str, Any]) -> str:
    """A row's test name: `case [seed N]`."""
    return row["case"] if row["seed"] is None else f"{row['case']} [seed {row['seed']}]"


def line(row: dict[str, Any]) -> str:
    """One line for a row: PASS, FAIL with what failed, or ERROR."""
    name = _name(row)
    if row["error"] is not None:
        return f"ERROR {name}: {row['error']}"
    if row["passed"]:
        n = len(row["verdicts"])
        return f"PASS  {name}: {n} threshold{'s' * (n != 1)} held ({row['wall_seconds']:.1f} s)"
    return f"FAIL  {name}: {failure_message(row)}; replay: {row['command']}"


def failure_message(row: dict[str, Any]) -> str:
    """What failed in a row, with the values measured, in one line."""
    parts = [
        f"{v['expect']} (measured {_measured(v['measured'])})"
        for v in row["verdicts"]
        if not v["passed"]
    ]
    parts += [f"checker: {v}" for v in row["violations"][:3]]
    found = row.get("found")
    if found:
        parts.append(f"found {found['kind']}: {found['mechanism']} ({found['detail']})")
    return "; ".join(parts) or "failed"


def _measured(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def junit(doc: dict[str, Any]) -> str:
    """The check document as JUnit XML: one testsuite, a testcase per case and seed;
    a failure carries the values measured and the command that reproduces it."""
    suite = ET.Element(
        "testsuite",
        name=doc["suite"],
        tests=str(doc["runs"]),
        failures=str(sum(1 for r in doc["rows"] if not r["passed"] and r["error"] is None)),
        errors=str(sum(1 for r in doc["rows"] if r["error"] is not None)),
        time=f"{doc['wall_seconds']:.3f}",
    )
    for row in doc["rows"]:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{doc['suite']}.{row['case']}",
            name=_name(row),
            time=f"{row['wall_seconds']:.3f}",
        )
        detail = "\n".join(
            [
                *(
                    f"{'PASS' if v['passed'] else 'FAIL'} {v['expect']} "
                    f"(measured {_measured(v['measured'])})"
                    for v in row["verdicts"]
                ),
                *(f"checker: {v}" for v in row["violations"]),
                f"replay with: {row['command']}",
            ]
        )
        if row["error"] is not None:
            error = ET.SubElement(case, "error", message=row["error"], type="error")
            error.text = f"replay with: {row['command']}"
        elif not row["passed"]:
            message = f"{failure_message(row)}; replay with: {row['command']}"
            failure = ET.SubElement(case, "failure", message=message, type="threshold")
            failure.text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    root = ET.Element("testsuites", name=doc["suite"])
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
