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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from relay.plan.replay import command, set_text
from relay.scenario.expect import check_all, judge
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

    @field_validator("expect")
    @classmethod
    def _parses(cls, texts: list[str]) -> list[str]:
        check_all(texts)
        return texts


class SuiteSpec(BaseModel):
    """A suite file."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    cases: list[CaseSpec] = Field(min_length=1)

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
    thresholds (`extra`: `check --expect`, on every case); ConfigError in one line."""
    p = Path(path)
    try:
        spec = SuiteSpec.model_validate(read_yaml_mapping(p))
    except ValidationError as exc:
        raise ConfigError(f"{p}: {describe_error(exc.errors()[0])}") from None
    runs: list[Run] = []
    for case in spec.cases:
        scenario_path = p.parent / case.scenario
        data = read_yaml_mapping(scenario_path)
        overrides = list(case.set.items())
        if case.design is not None:
            overrides.append(("design", case.design))
        where = f"{p}: case {case.name!r}"
        scenario = scenario_from_data(data, overrides, where, f"on {scenario_path}")
        for seed in case.seeds or [scenario.seed]:
            runs.append(
                Run(
                    case,
                    seed,
                    scenario_path,
                    data,
                    overrides,
                    _command(case, scenario_path, seed, extra),
                )
            )
    return Suite(spec.name or p.stem, p, runs)


def _command(case: CaseSpec, scenario: Path, seed: int, extra: Sequence[str]) -> str:
    """The command that runs one case for one seed again, from here."""
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
    return shlex.join(parts)


def run_one(run: Run, extra: Sequence[str] = ()) -> dict[str, Any]:
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
        held_to = [parse_expectation(t) for t in (*scenario.expect, *case.expect, *extra)]
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


Progress = Callable[[int, int, int], None]  # (done, failed, total)


def run(
    suite: Suite,
    executor: cf.Executor,
    *,
    extra: Sequence[str] = (),
    progress: Progress | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    label: str = "",
) -> dict[str, Any]:
    """Run every case of `suite` on `executor`; the `relaysim.check/1` document,
    rows in the suite's order. `on_row` sees each row as it comes."""
    t0 = time.perf_counter()
    futures = {executor.submit(run_one, r, tuple(extra)): i for i, r in enumerate(suite.runs)}
    rows: list[dict[str, Any] | None] = [None] * len(futures)
    failed = 0
    for future in cf.as_completed(futures):
        i = futures[future]
        try:
            row = future.result()
        except Exception as exc:  # the worker itself died
            r = suite.runs[i]
            row = {
                "case": r.case.name, "seed": r.seed, "kind": r.case.kind,
                "scenario": str(r.path), "command": r.command, "verdicts": [],
                "violations": [], "error": f"worker: {type(exc).__name__}: {exc}",
                "passed": False, "wall_seconds": 0.0,
            }  # fmt: skip
        rows[i] = row
        failed += not row["passed"]
        if on_row is not None:
            on_row(row)
        if progress is not None:
            progress(sum(r is not None for r in rows), failed, len(futures))
    done = [r for r in rows if r is not None]
    return {
        "schema": SCHEMA,
        "suite": suite.name,
        "file": str(suite.path),
        "executor": label,
        "cases": len({r["case"] for r in done}),  # the suite's cases that ran
        "runs": len(done),  # each case once per seed
        "failed": failed,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "rows": done,
    }


def line(row: dict[str, Any]) -> str:
    """One line for a row: PASS, FAIL with what failed, or ERROR."""
    name = f"{row['case']} [seed {row['seed']}]"
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
            name=f"{row['case']} [seed {row['seed']}]",
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
