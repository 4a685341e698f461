"""`relaysim hunt`: exit codes, the shrunk failure, and the replay command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.cli import main
from tests.conftest import CONFIGS

SMOKE = str(CONFIGS / "smoke.yaml")
NO_CAUSE_2 = ["--set", "switches.checked_free=true", "--set", "switches.request_scoped_timer=true"]


def hunt(*args: str) -> int:
    try:
        main(["hunt", SMOKE, *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_fixed_survives_and_reaches_every_window(capsys: pytest.CaptureFixture[str]) -> None:
    """On fixed nothing is found and both windows are reached: exit 0, having
    searched exactly the worlds asked for."""
    assert hunt("--design", "fixed", "--examples", "120") == 0
    out = capsys.readouterr().out
    assert "every race window reached" in out
    assert out.startswith("120 worlds searched on fixed; windows:")


def test_legacy_hang_is_found_shrunk_and_replayable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On legacy with cause 2's fixes on (so its crash cannot come first), cause 1's
    hang is found (exit 3), shrunk to one request; the same command finds the same
    world again."""
    out = tmp_path / "hunt.json"
    args = ["--design", "legacy", *NO_CAUSE_2, "--examples", "150"]
    assert hunt(*args, "--json", str(out)) == 3
    doc = json.loads(out.read_text())
    assert doc["failure"]["kind"] == "hang"
    assert doc["failure"]["mechanism"] == "core_contention"
    assert len(doc["case"]["arrivals"]) == 1  # shrunk to a single request
    # Worlds searched are those up to the first failure, within --examples; the runs
    # spent shrinking it are counted apart.
    assert 1 <= doc["examples"] <= 150
    assert doc["shrink_runs"] > 0
    printed = capsys.readouterr().out
    assert f"{doc['examples']} worlds searched on legacy (then {doc['shrink_runs']} runs" in printed
    assert f"replay with: {doc['replay']}" in printed
    again = tmp_path / "again.json"
    assert hunt(*args, "--json", str(again)) == 3
    assert json.loads(again.read_text())["case"] == doc["case"]


def test_legacy_crash_is_found_with_the_monitor_off() -> None:
    """With no probes, the only fault left on legacy is cause 2's crash: exit 1."""
    assert hunt("--design", "legacy", "--set", "monitor.enabled=false") == 1


def test_unreached_window_is_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    """Fixed with the monitor off never meets a probe: exit 5, naming the window."""
    code = hunt("--design", "fixed", "--set", "monitor.enabled=false", "--examples", "40")
    assert code == 5
    assert "never reached probe_collision" in capsys.readouterr().out


def test_bad_config_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad override is reported in one line with exit 2."""
    assert hunt("--set", "relays.count=0") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "relays.count" in err


def test_keys_set_on_the_command_line_are_pinned_in_every_world() -> None:
    """`hunt --set` pins a key the worlds would otherwise draw (eight relays, not the
    worlds' two); keys no world draws come from the scenario (its node limit)."""
    from relay.plan.hunt import hunt as run_hunt
    from relay.scenario.schema import load_scenario
    from relay.testing.worlds import Case, run_case

    case = Case([(10.0, 0), (10.0, 1)], 0.5, 1.0, 100.0, 1, 0.05, 1.0, 0.0, seed=3)
    base = load_scenario(SMOKE, ["relays.max_connections=5"])
    drawn = run_case(case, "fixed", base)
    pinned = run_case(case, "fixed", base, pins={"relays": {"count": 8}})
    assert (len(drawn.nodes), len(pinned.nodes)) == (2, 8)
    assert drawn.nodes[0].max_connections == 5
    result = run_hunt(base, "fixed", examples=5, seed=0, pins={"relays": {"count": 8}})
    assert result.examples == 5
