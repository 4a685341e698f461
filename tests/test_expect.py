"""Thresholds that fail a build: `--expect`, a scenario's `expect:`, per sweep point."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from relay.cli import main
from relay.scenario.expect import ExpectError, figures, judge, parse
from relay.scenario.schema import ConfigError, scenario_from_data
from tests.conftest import CONFIGS

SMOKE = str(CONFIGS / "smoke.yaml")


def run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.parametrize(
    ("text", "figure", "op", "value"),
    [
        ("overflow_rate < 0.001", "overflow_rate", "<", 0.001),
        ("overflow_rate<0.1%", "overflow_rate", "<", 0.001),
        ("  latency_ms.p99   <=  10000 ", "latency_ms.p99", "<=", 10000.0),
        ("crashes == 0", "crashes", "==", 0.0),
        ("outage_minutes >= -1.5e1", "outage_minutes", ">=", -15.0),
        ("hangs != 2", "hangs", "!=", 2.0),
    ],
)
def test_an_expectation_is_a_figure_an_operator_and_a_number(
    text: str, figure: str, op: str, value: float
) -> None:
    """The grammar: a known figure, one of six comparisons, a decimal number (a
    trailing % divides by 100)."""
    e = parse(text)
    assert (e.figure, e.op) == (figure, op)
    assert e.value == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("overflow_rat < 1", "unknown figure 'overflow_rat'; did you mean overflow_rate?"),
        ("crashes = 0", "expected FIGURE OP NUMBER"),
        ("crashes < one", "expected FIGURE OP NUMBER"),
        ("__import__('os').system('true') == 0", "expected FIGURE OP NUMBER"),
        ("crashes < 1 or hangs < 1", "expected FIGURE OP NUMBER"),
        ("", "expected FIGURE OP NUMBER"),
    ],
)
def test_anything_else_is_refused_naming_it(text: str, message: str) -> None:
    """What is not that grammar (code included: nothing is evaluated) is refused with
    one line quoting it."""
    with pytest.raises(ExpectError) as exc:
        parse(text)
    assert str(exc.value).startswith(repr(text))
    assert message in str(exc.value)


def test_figures_come_from_the_summary_and_its_counts() -> None:
    """Rates are derived from the counts; a figure the run lacks (no latency when
    nothing completed) fails whatever its threshold."""
    doc = {
        "requests": 200,
        "overflows": 5,
        "relay_overflows": 4,
        "timeouts": 2,
        "errors": 0,
        "crashes": 1,
        "latency_ms": {"p50": None, "p99": None},
        "violations": ["x"],
    }
    got = figures(doc)
    assert got["overflow_rate"] == pytest.approx(0.025)
    assert got["relay_overflow_rate"] == pytest.approx(0.02)
    assert got["violations"] == 1
    assert got["latency_ms.p99"] is None
    [missing, ok] = judge([parse("latency_ms.p99 < 1e9"), parse("crashes <= 1")], doc)
    assert (missing.passed, missing.measured) == (False, None)
    assert ok.passed
    assert missing.line() == "FAIL latency_ms.p99 < 1e9 (measured none)"


def test_a_hunt_has_its_own_figures() -> None:
    """A hunt's result: what it found, as counts."""
    doc = {"schema": "relaysim.hunt/1", "examples": 40, "failure": {"kind": "hang"}}
    assert figures(doc)["hangs"] == 1
    assert figures(doc)["crashes"] == 0


def test_replay_prints_each_threshold_and_fails_with_its_own_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each threshold is printed PASS or FAIL with the value measured, the JSON has
    the verdicts, and a failed one exits 6 naming the command that replays it."""
    out = tmp_path / "out.json"
    code = run(
        "replay", SMOKE, "--quiet", "--json", str(out),
        "--expect", "overflow_rate < 0.1%", "--expect", "crashes == 0",
    )  # fmt: skip
    printed = capsys.readouterr()
    doc = json.loads(out.read_text())
    assert code == 6
    rate = doc["overflows"] / doc["requests"]
    assert printed.out.splitlines() == [
        f"FAIL overflow_rate < 0.1% (measured {rate:.6g})",
        "PASS crashes == 0 (measured 0)",
    ]
    assert [v["passed"] for v in doc["expectations"]] == [False, True]
    assert "--expect 'overflow_rate < 0.1%'" in printed.err
    assert run("replay", SMOKE, "--quiet", "--expect", "overflow_rate < 5%") == 0


def test_a_bad_threshold_stops_before_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """A threshold that does not parse is a usage error: exit 2, one line, no run."""
    assert run("replay", SMOKE, "--expect", "p99 < 3") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("relaysim: --expect 'p99 < 3': unknown figure 'p99'")


@pytest.mark.parametrize(
    ("command", "text", "message"),
    [
        ("replay", "examples > 0", "examples is measured by hunt runs, not by replay runs"),
        ("replay", "client.late_sends < 5", "measured by load runs, not by replay runs"),
        ("hunt", "overflow_rate < 1%", "measured by load and replay runs, not by hunt runs"),
    ],
)
def test_a_threshold_the_command_cannot_measure_stops_before_the_run(
    command: str, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A threshold of a figure the command's run does not have (a hunt's on a
    replay, a load's client figure on a replay, a replay's on a hunt) is a usage
    error before anything runs: exit 2, one line naming it and where it came from."""
    assert run(command, SMOKE, "--expect", text) == 2
    printed = capsys.readouterr()
    assert printed.out == ""  # nothing ran: a run prints its figures
    err = printed.err
    assert err.count("\n") == 1
    assert err.startswith(f"relaysim: --expect {text!r}: ")
    assert message in err


def test_a_hunt_is_held_to_its_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    """`hunt --expect` holds the search's own figures: a failed one exits 6 with its
    measured value, and the command the hunt prints carries it, so it fails again."""
    hunt = ["hunt", SMOKE, "--design", "fixed", "--examples", "3"]
    assert run(*hunt, "--expect", "examples > 5") == 6
    out = capsys.readouterr().out
    assert "FAIL examples > 5 (measured 3)" in out
    argv = shlex.split(out.split("replay with: ", 1)[1].splitlines()[0])
    assert argv[-2:] == ["--expect", "examples > 5"]
    assert run(*argv[1:]) == 6
    assert run(*hunt, "--expect", "examples >= 3") == 0


def test_a_scenario_carries_its_own_thresholds(tmp_path: Path) -> None:
    """A scenario's `expect:` list is checked when it loads, and held to like
    `--expect` (both apply)."""
    with pytest.raises(ConfigError, match=r"expect: expect\.1: 'lost = 0'"):
        scenario_from_data({"expect": ["crashes == 0", "lost = 0"]}, source="s.yaml")
    own = tmp_path / "own.yaml"
    own.write_text(
        (CONFIGS / "smoke.yaml").read_text() + "expect: ['overflow_rate < 0.1%']\n",
        encoding="utf-8",
    )
    assert run("replay", str(own), "--quiet") == 6
    assert run("replay", str(own), "--quiet", "--set", "expect=[]") == 0


def test_a_sweep_holds_every_point_to_the_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each point gets its verdicts; the table says which failed; any failure exits 6."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {SMOKE}\ngrid: {{load.requests: [50000, 5000]}}\n", encoding="utf-8")
    out = tmp_path / "rows.json"
    code = run(
        "sweep", str(sweep), "--workers", "2", "--json", str(out),
        "--expect", "overflow_rate < 5%",
    )  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert code == 6
    assert [r["expectations_met"] for r in rows] == [False, True]  # ten times the load
    assert "FAIL overflow_rate < 5%" in capsys.readouterr().out
