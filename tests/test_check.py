"""`relaysim check`: suites of cases, one verdict each, JUnit XML a CI server reads.

The XML is read back with junitparser, a JUnit reader of the kind CI servers use.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

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
        (f"cases:\n  - {{name: a, scenario: {SMOKE}, colour: red}}\n", "cases.0.colour: unknown"),
        (f"cases:\n  - {{name: a, scenario: {SMOKE}, expect: [p99 < 1]}}\n", "unknown figure"),
        ("cases:\n  - {name: a, scenario: nowhere.yaml}\n", "nowhere.yaml: no such file"),
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
