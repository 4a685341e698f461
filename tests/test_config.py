"""Scenario files and the CLI's bad-input handling: one line, exit code 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from relay.cli import main
from relay.scenario.schema import ConfigError, load_scenario
from tests.conftest import CONFIGS


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.mark.parametrize("name", ["smoke.yaml", "2016-03-29.yaml"])
def test_shipped_scenarios_validate(name: str) -> None:
    """Every shipped scenario file loads without error."""
    s = load_scenario(CONFIGS / name)
    assert s.load.requests > 0


def test_time_of_day_accepts_clock_and_seconds(tmp_yaml: Callable[[str], Path]) -> None:
    """Operator times may be "HH:MM" or seconds since midnight."""
    p = tmp_yaml(
        "operators:\n"
        "  - {at: '10:52', action: detach, node: 1}\n"
        "  - {at: 40000, action: attach, node: 1}\n"
    )
    s = load_scenario(p)
    assert [e.at for e in s.operators] == [10 * 3600 + 52 * 60, 40000.0]


def test_unquoted_clock_time_is_a_time_not_base_60(tmp_yaml: Callable[[str], Path]) -> None:
    """An unquoted 12:00 means noon, not YAML 1.1's base-60 integer 720 (00:12)."""
    p = tmp_yaml("operators:\n  - {at: 12:00, action: detach, node: 1}\nrelays: {timeout_s: 1e1}\n")
    s = load_scenario(p, ["operators=[{at: 13:30, action: attach, node: 1}]"])
    assert [e.at for e in s.operators] == [13.5 * 3600]
    assert load_scenario(p).operators[0].at == 12 * 3600
    assert load_scenario(p).relays.timeout_s == 10.0


def test_set_overrides_nested_keys(tmp_yaml: Callable[[str], Path]) -> None:
    """--set KEY=VALUE reaches nested keys and parses the value as YAML."""
    p = tmp_yaml("load:\n  requests: 10\n")
    s = load_scenario(p, ["load.requests=25", "relays.count=2", "switches.checked_free=false"])
    assert (s.load.requests, s.relays.count) == (25, 2)
    assert s.resolved_design().checked_free is False


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("load: [1, 2\n", [], "YAML syntax error: line 2"),
        ("load:\n  peak_factor: 2\n", [], "load.peak_factor: unknown key"),
        ("load:\n  requests: many\n", [], "load.requests: expected a valid integer"),
        (
            "relays:\n  count: 0\n",
            [],
            "relays.count: expected a number that is greater than or equal to 1, got 0",
        ),
        ("hsm:\n  service_ms: {dist: gamma, mean: 1}\n", [], "hsm.service_ms.dist:"),
        ("operators:\n  - {at: '25:99', action: detach, node: 1}\n", [], "operators.0.at"),
        ("switches: {no_such_fix: true}\n", [], "unknown switch 'no_such_fix'"),
        (
            "operators:\n  - {at: '10:00', action: add, node: 6}\n",
            [],
            "add of relay #6 at 36000 s, but the next relay to add is #5",
        ),
        (
            "relays: {count: 2}\noperators:\n  - {at: '10:00', action: detach, node: 3}\n",
            [],
            "detach of relay #3 at 36000 s, but only 2 relay(s) exist then",
        ),
        (
            "load: {profile: weekend, service_hours: ['19:00', '21:00']}\n",
            [],
            "profile 'weekend' has no traffic inside the service hours",
        ),
        ("- just\n- a list\n", [], "expected a mapping of keys at the top level"),
        (
            "backend: {request_mb: 600}\n",
            [],
            "backend: request_mb 600 is more than the memory (512 MB)",
        ),
        ("load: {operation: {messages: 0}}\n", [], "load.operation.messages: expected a number"),
        (
            "load: {cs_connections: {raise: {from_residents: 1000000, factor: 0.5}}}\n",
            [],
            "load.cs_connections.raise.factor: expected a number that is greater than 1",
        ),
        ("load:\n  requests: 10\n", ["load.requests=-3"], "(with --set): load.requests"),
        ("load:\n  requests: 10\n", ["load.requests.x=1"], "load.requests is not a mapping"),
        ("load:\n  requests: 10\n", ["novalue"], "expected KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_naming_file_and_key(
    tmp_yaml: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    text: str,
    overrides: list[str],
    expected: str,
) -> None:
    """Each kind of bad input exits 2 with one line naming the problem, no traceback."""
    p: Path = tmp_yaml(text)
    args = ["replay", str(p), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert str(p) in lines[0]
    assert "Traceback" not in err


def test_missing_file_is_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A scenario path that does not exist exits 2 naming the path."""
    code, _, err = run_cli(["replay", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2
    assert err.strip() == f"relaysim: {tmp_path / 'nope.yaml'}: no such file"


def test_bad_usage_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown options and bad choices exit 2 with one line, not click's usage block."""
    for args in (["replay", "x.yaml", "--bogus"], ["replay", "x.yaml", "--design", "modern"]):
        code, _, err = run_cli(args, capsys)
        assert code == 2
        assert len(err.strip().splitlines()) == 1, err


def test_json_into_missing_directory_is_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--json into a directory that does not exist is refused before the run."""
    target = tmp_path / "no" / "such" / "dir" / "s.json"
    code, _, err = run_cli(["replay", str(CONFIGS / "smoke.yaml"), "--json", str(target)], capsys)
    assert code == 2
    assert "does not exist" in err


def test_config_error_is_raised_by_the_library(tmp_yaml: Callable[[str], Path]) -> None:
    """Library callers get ConfigError, not pydantic's exception."""
    with pytest.raises(ConfigError, match=r"relays\.cores"):
        load_scenario(tmp_yaml("relays:\n  cores: x\n"))
