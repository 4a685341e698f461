"""The test kit's public front: assertions on a replay that give its seed and a
command reproducing the failure (`relay.testing.assertions`), and the strategies'
fault schedules (`relay.testing.strategies`)."""

from __future__ import annotations

import os
import shlex
from typing import Any

import pytest
from hypothesis import given, settings

import relay
from relay.testing.assertions import assert_holds, failure
from relay.testing.strategies import FACTORS, fault_schedules
from tests.conftest import CONFIGS
from tests.test_check import run


def test_a_failed_assertion_gives_its_seed_and_a_command_that_fails_the_same_way(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """assert_holds on a replay over a threshold names its seed, the verdict and a
    `relaysim replay` command that, run from here, exits 6 with the same verdict."""
    smoke = os.path.relpath(CONFIGS / "smoke.yaml")
    result = relay.replay(smoke, overrides={"relays.count": 2}, seed=3)
    assert_holds(result, "lost == 0")  # holds: no message
    with pytest.raises(AssertionError) as caught:
        assert_holds(result, "lost == 0", "overflow_rate < 1%")
    message = str(caught.value)
    assert "threshold(s) failed (seed 3)" in message
    [verdict] = [line.strip() for line in message.splitlines() if line.strip().startswith("FAIL")]
    assert verdict.startswith("FAIL overflow_rate < 1% (measured ")
    argv = shlex.split(message.split("replay with: ", 1)[1])
    assert argv[:3] == ["relaysim", "replay", smoke]
    assert run(*argv[1:], "--quiet") == 6
    assert verdict in capsys.readouterr().out


def test_a_threshold_a_replay_cannot_measure_is_refused() -> None:
    """A hunt's figure (`windows_missed`) on a replay is a ValueError, not a failure
    that no replay could ever pass."""
    result = relay.replay(CONFIGS / "smoke.yaml")
    with pytest.raises(ValueError, match="windows_missed is measured by hunt runs, not by replay"):
        assert_holds(result, "windows_missed == 0")


def test_a_replay_of_a_scenario_in_memory_says_it_has_no_command() -> None:
    """A replay of a loaded `Scenario` has no file to name: `command` is None and a
    failure says so, rather than print a command that would run something else."""
    result = relay.replay(relay.load_scenario(CONFIGS / "smoke.yaml"))
    assert result.command is None
    message = failure(result, "requests < 1")
    assert message is not None
    assert "replay with: none (the scenario was not read from a file" in message


@settings(max_examples=50)
@given(fault_schedules(nodes=2, within=(3600, 7200), min_faults=1, max_faults=3))
def test_drawn_fault_schedules_are_valid_faults_within_their_bounds(
    schedule: list[dict[str, Any]],
) -> None:
    """Every drawn schedule is a `faults:` list the scenario schema takes: one to
    three faults in time order, within the instants and relays asked for."""
    scenario = relay.load_scenario(CONFIGS / "smoke.yaml", {"relays.count": 2, "faults": schedule})
    faults = scenario.faults
    assert 1 <= len(faults) <= 3
    assert [f.at for f in faults] == sorted(f.at for f in faults)
    assert all(3600 <= f.at <= 7200 for f in faults)
    assert all(
        f.node in (1, 2) if f.kind != "slow_backend" else f.factor in FACTORS for f in faults
    )


def test_a_schedule_of_operators_actions_is_refused_at_once() -> None:
    """`detach` is an operator's action, not a fault: ValueError naming it, before any draw."""
    with pytest.raises(ValueError, match="detach: kinds are some of crash"):
        fault_schedules(kinds=["crash", "detach"])


def test_a_failed_world_names_its_fault_and_the_call_that_runs_it_again() -> None:
    """assert_world_holds on a legacy world where the timer race strikes names the
    crash and its mechanism, and the call it prints runs the same world to the same
    failure; the same world on fixed holds."""
    from hypothesis import find
    from hypothesis import settings as hsettings

    from relay.testing import strategies
    from relay.testing.assertions import assert_world_holds
    from relay.testing.verdicts import judge

    case = find(
        strategies.cases(focus="timer"),
        lambda c: judge(strategies.run_case(c, "legacy"), c) is not None,
        settings=hsettings(derandomize=True, database=None, max_examples=300),
    )
    with pytest.raises(AssertionError) as caught:
        assert_world_holds(strategies.run_case(case, "legacy"), case, "legacy")
    message = str(caught.value)
    assert "unallocated_free" in message
    assert f"world seed {case.seed}" in message
    call = message.split("run it again with: ", 1)[1]
    # The call as printed, evaluated: `relay` is the package, `Case` the world's class.
    again = eval(call, {"relay": relay, "Case": strategies.Case})
    assert judge(again, case) == judge(strategies.run_case(case, "legacy"), case)
    assert_world_holds(strategies.run_case(case, "fixed"), case, "fixed")
