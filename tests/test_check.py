"""`relaysim check`: suites of cases, one verdict each, JUnit XML a CI server reads.

The XML is read back with junitparser, a JUnit reader of the kind CI servers use.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from relay.cli import main
from tests.conftest import CONFIGS

SMOKE = (CONFIGS / "smoke.yaml").as_posix()


def run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(body, encoding="utf-8")
    return path


SMALL = f"""
name: small
cases:
  - name: holds
    scenario: {SMOKE}
    seeds: [1, 2]
    expect: [crashes == 0, lost == 0]
  - name: too-strict
    scenario: {SMOKE}
    set: {{load.requests: 20000}}
    expect: ["overflow_rate < 0.01%", "crashes == 0"]
  - name: search
    kind: hunt
    scenario: {SMOKE}
    design: fixed
    examples: 20
    seeds: [0]
    expect: [crashes == 0, hangs == 0]
"""


def test_a_suite_gives_one_verdict_per_case_and_seed_in_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every case and seed is a testcase; a failed one carries the values measured
    and the command that reproduces it, which, run, fails the same way; the exit
    code says a case failed."""
    xml, out = tmp_path / "out.xml", tmp_path / "out.json"
    code = run(
        "check", str(suite(tmp_path, SMALL)), "--workers", "2", "--junit", str(xml),
        "--json", str(out),
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 6
    [parsed] = list(JUnitXml.fromfile(str(xml)))
    cases = {c.name: c for c in parsed}
    assert sorted(cases) == ["holds [seed 1]", "holds [seed 2]", "search [seed 0]",
                             "too-strict [seed 7]"]  # fmt: skip
    assert (parsed.tests, parsed.failures, parsed.errors) == (4, 1, 0)
    assert cases["holds [seed 1]"].is_passed
    [failure] = cases["too-strict [seed 7]"].result
    assert isinstance(failure, Failure)
    doc = json.loads(out.read_text())
    [strict] = [r for r in doc["rows"] if r["case"] == "too-strict"]
    rate = strict["verdicts"][0]["measured"]
    assert f"overflow_rate < 0.01% (measured {rate:.6g})" in failure.message
    command = failure.message.split("replay with: ", 1)[1]
    assert f"FAIL  too-strict [seed 7]: overflow_rate < 0.01% (measured {rate:.6g})" in printed
    # The command in the message reproduces the failure.
    argv = shlex.split(command)
    assert argv[:2] == ["relaysim", "replay"]
    assert run(*argv[1:], "--quiet") == 6
    assert "3 of 4 runs held (3 cases)" in printed  # holds runs on two seeds
    assert (doc["cases"], doc["runs"]) == (3, 4)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("cases: []\n", "cases: "),
        (f"cases:\n  - {{name: a, scenario: {SMOKE}, colour: red}}\n", "case 'a': colour: unknown"),
        (f"cases:\n  - {{name: a, scenario: {SMOKE}, expect: [p99 < 1]}}\n", "unknown figure"),
        (
            "cases:\n  - {name: a, scenario: nowhere.yaml}\n",
            "case 'a': scenario nowhere.yaml: no such file (paths are relative to the suite file",
        ),
        (
            f"cases:\n  - {{name: a, scenario: {SMOKE}, examples: 50, expect: [lost == 0]}}\n",
            "case 'a': examples: applies to hunt cases only, this is a replay case",
        ),
        (
            f"cases:\n  - {{name: a, kind: hunt, scenario: {SMOKE}, engine: trio, "
            "expect: [crashes == 0]}\n",
            "case 'a': engine: applies to replay cases only, this is a hunt case",
        ),
        (
            f"cases:\n  - {{name: a, scenario: {SMOKE}, expect: [examples > 0]}}\n",
            "case 'a': expect.0: 'examples > 0': examples is measured by hunt runs, not by "
            "replay runs",
        ),
        (f"cases:\n  - {{name: a, scenario: {SMOKE}}}\n", "case 'a': no thresholds"),
        (
            f"expect: [examples > 0]\ncases:\n  - {{name: a, scenario: {SMOKE}, "
            "expect: [lost == 0]}\n",
            "expect: 'examples > 0': no case of this suite measures examples",
        ),
        (
            f"cases:\n  - {{name: a, scenario: {SMOKE}}}\n  - {{name: a, scenario: {SMOKE}}}\n",
            "two cases are named 'a'",
        ),
        (
            f"cases:\n  - {{name: a, scenario: {SMOKE}, set: {{relays.cuont: 3}}}}\n",
            "case 'a' (on",
        ),
    ],
)
def test_a_bad_suite_is_one_line_before_anything_runs(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown keys, thresholds that do not parse, missing scenarios, twice the same
    name, overrides a scenario refuses: exit 2 and one line, no case run."""
    assert run("check", str(suite(tmp_path, body))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_a_missing_scenario_names_the_suite_the_case_and_the_resolved_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error for a scenario that is not there says which suite file and case
    named it, and the absolute path it was looked for at (relative to the suite)."""
    path = suite(tmp_path, "cases:\n  - {name: first, scenario: ../smoke.yaml, smoke: true}\n")
    assert run("check", str(path)) == 2
    err = capsys.readouterr().err
    assert f"{path}: case 'first': scenario ../smoke.yaml: no such file" in err
    assert str((tmp_path.parent / "smoke.yaml").resolve()) in err


def test_a_suite_that_does_not_load_still_writes_its_junit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A suite that fails to load exits 2 and still writes a JUnit file, with one
    errored test case carrying the message, for the pipeline's test report."""
    xml, report = tmp_path / "out.xml", tmp_path / "out.json"
    path = suite(tmp_path, f"cases:\n  - {{name: a, scenario: {SMOKE}, colour: red}}\n")
    assert run("check", str(path), "--junit", str(xml), "--json", str(report)) == 2
    message = capsys.readouterr().err.removeprefix("relaysim: ").strip()
    [parsed] = list(JUnitXml.fromfile(str(xml)))
    [case] = list(parsed)
    [error] = case.result
    assert isinstance(error, Error)
    assert error.message == message
    assert (parsed.tests, parsed.errors) == (1, 1)
    assert json.loads(report.read_text())["rows"][0]["error"] == message


def test_a_threshold_for_the_whole_run_holds_only_where_it_is_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check --expect` and a suite's `expect:` bind only the cases that measure the
    figure: a replay's rate leaves the hunt case alone (no "measured none"), the
    replay command printed for a failure carries it, a smoke case runs with none,
    and a figure no case measures is refused before anything runs."""
    body = f"""
expect: ["lost == 0"]
cases:
  - name: busy
    scenario: {SMOKE}
    set: {{load.requests: 20000}}
    smoke: true
  - name: search
    kind: hunt
    scenario: {SMOKE}
    design: fixed
    examples: 10
    seeds: [0]
    expect: [crashes == 0]
"""
    path = suite(tmp_path, body)
    report = tmp_path / "out.json"
    assert run("check", str(path), "--expect", "overflow_rate < 0.01%", "--json", str(report)) == 6
    rows = {r["case"]: r for r in json.loads(report.read_text())["rows"]}
    assert [v["expect"] for v in rows["search"]["verdicts"]] == ["crashes == 0"]
    assert rows["search"]["passed"]
    busy = rows["busy"]
    assert [v["expect"] for v in busy["verdicts"]] == ["lost == 0", "overflow_rate < 0.01%"]
    assert not busy["passed"]
    argv = shlex.split(busy["command"])
    assert argv[-4:] == ["--expect", "lost == 0", "--expect", "overflow_rate < 0.01%"]
    assert run(*argv[1:], "--quiet") == 6  # the printed command fails the same way
    capsys.readouterr()
    only_replays = suite(tmp_path, f"cases:\n  - {{name: a, scenario: {SMOKE}, smoke: true}}\n")
    assert run("check", str(only_replays), "--expect", "windows_missed == 0") == 2
    assert "no case of this suite measures windows_missed" in capsys.readouterr().err


def test_the_regression_suite_holds_on_fixed(tmp_path: Path) -> None:
    """configs/suites/regression.yaml, the fixed design's guarantees, passes; every
    case and seed reads back from its JUnit XML as passed."""
    xml = tmp_path / "regression.xml"
    assert run("check", str(CONFIGS / "suites" / "regression.yaml"), "--junit", str(xml)) == 0
    [parsed] = list(JUnitXml.fromfile(str(xml)))
    names = sorted(c.name for c in parsed)
    assert names == [
        "backend-slowdown-fixed [seed 1]",
        "backend-slowdown-fixed [seed 2]",
        "january-fixed [seed 1]",
        "january-fixed [seed 2]",
        "march-raised-limits [seed 1]",
        "races-fixed [seed 0]",
    ]
    assert all(c.is_passed for c in parsed)


def test_the_legacy_suite_has_teeth(tmp_path: Path) -> None:
    """The same cases on the 2016 design fail (exit 6): the JUnit failures name the
    crashes and hangs found and the command that replays each."""
    xml = tmp_path / "legacy.xml"
    assert run("check", str(CONFIGS / "suites" / "legacy.yaml"), "--junit", str(xml)) == 6
    [parsed] = list(JUnitXml.fromfile(str(xml)))
    results = {c.name: c.result for c in parsed}
    [january] = results["january-legacy [seed 1]"]
    assert isinstance(january, Failure)
    assert "crashes == 0 (measured" in january.message
    assert "hangs == 0 (measured" in january.message
    assert "replay with: relaysim replay" in january.message
    assert "--set calendar.until=2016-01-26 --engine fast" in january.message
    [races] = results["races-legacy [seed 0]"]
    assert "found crash" in races.message or "found hang" in races.message
    assert "replay with: relaysim hunt" in races.message
