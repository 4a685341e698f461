"""The fast engine and the trio engine give identical runs: one rule book.

Both engines take their steps from the core (`relay.core.agenda`): when a flow
wakes and with what, the order of same-instant events, the health checks, a
crash's clean-up, the liveness bound. So for the same scenario and seed their
summaries must be the same document, apart from the engine's name and the wall
time. The cases exercise every rule: both designs, a legacy day with crashes,
hangs and a timer race, operators detaching, attaching and adding relays, the
backend slowdown, chip-writing re-sends, and a day cut from 29 March.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from relay.core.summary import Summary
from relay.engines import trio as driver_trio
from relay.plan.replay import replay
from relay.scenario.schema import load_scenario
from tests.conftest import CONFIGS

#: Scenario file and overrides of each case.
CASES: dict[str, tuple[str, list[str]]] = {
    "smoke fixed": ("smoke.yaml", []),
    "smoke legacy": ("smoke.yaml", ["design=legacy"]),
    "legacy crashes, hangs and a timer race": (
        "smoke.yaml",
        [
            "design=legacy",
            "load.requests=12000",
            "backend.service_ms.mean=10000",  # enough in flight for a crash to hit
            "relays.timeout_s=19",
            "faults=[{at: '10:30', kind: crash, node: 1}, {at: '11:00', kind: hsm_stall,"
            " node: 2}, {at: '12:00', kind: timer_race, node: 3},"
            " {at: '14:00', kind: slow_backend, factor: 3}, {at: '15:00', kind: slow_backend}]",
            "recovery.detection_min={dist: uniform, mean: 10, spread: 0.5}",
        ],
    ),
    "operators detach, attach and add": (
        "smoke.yaml",
        [
            "relays.count=2",
            "operators=[{at: '09:00', action: add, node: 3}, {at: '10:00', action: detach,"
            " node: 1}, {at: '10:30', action: attach, node: 1}, {at: '11:00', action: restart,"
            " node: 2}, {at: '12:00', action: stop_monitor, node: 3}]",
        ],
    ),
    # 22 February at a 15,000-message scale (1/36): names growing 36 times as fast,
    # and writing them 36 times as slow, keep the afternoon's log queue.
    "the backend slowdown": (
        "2016-02-22.yaml",
        [
            "load.requests=15000",
            "backend.thread_names.growth_chars=6",
            "backend.thread_names.log_us_per_char=36",
        ],
    ),
    "chip re-sends": (
        "smoke.yaml",
        [
            "load.requests=8000",
            "load.chip_write_share=0.5",
            "backend.service_ms.mean=10000",  # enough in flight for the crashes to hit
            "relays.timeout_s=60",
            "faults=[{at: '10:00', kind: crash, node: 1}, {at: '14:30', kind: crash, node: 2}]",
        ],
    ),
    "29 March, cut": (
        "2016-03-29.yaml",
        [
            "load.requests=25000",
            "load.cs_connections.base=2",
            "load.cs_connections.maximum=2",
            "load.cs_connections.overrides={}",
            "load.terminal_connections.overrides={Yokohama: 2}",
        ],
    ),
}


def without_engine(doc: Summary) -> dict[str, Any]:
    """The summary less what names the engine or times it."""
    return {k: v for k, v in doc.items() if k not in ("engine", "wall_seconds")}


def both(case: str) -> tuple[Summary, Summary]:
    config, overrides = CASES[case]
    s = load_scenario(CONFIGS / config, overrides)
    fast, slow = replay(s, engine="fast"), replay(s, engine="trio")
    assert fast.violations == slow.violations == []
    return fast.summary, slow.summary


@pytest.mark.parametrize("case", CASES)
def test_engines_give_identical_summaries(case: str) -> None:
    """Fast and trio give the same summary document, figure for figure."""
    fast, slow = both(case)
    assert (fast["engine"], slow["engine"]) == ("fast", "trio")
    assert without_engine(fast) == without_engine(slow)


def test_the_cases_exercise_what_they_are_named_for() -> None:
    """The agreement means something: each case shows the mechanism it is named for."""
    legacy, _ = both("legacy crashes, hangs and a timer race")
    kinds = {(e["kind"], e["mechanism"]) for e in legacy["events"] or []}
    assert {("crash", "injected_crash"), ("hang", "injected_stall")} <= kinds
    assert ("crash", "unallocated_free") in kinds  # the injected timer race, met
    assert legacy["errors"] > 0
    operators, _ = both("operators detach, attach and add")
    nodes = operators["nodes"] or []  # a replay's are always there
    assert [n["name"] for n in nodes] == ["relay1", "relay2", "relay3"]
    assert all(n["requests"] > 0 for n in nodes)
    slow, _ = both("the backend slowdown")
    backend = slow["backend"]
    assert backend is not None
    assert backend["waits"] > 0
    assert slow["timeouts"] > 0
    chips, _ = both("chip re-sends")
    assert chips["errors"] > 0  # the crashes dropped chip operations ...
    assert chips["deduplicated"] > 0  # ... whose re-sends the backend recognised
    assert chips["inconsistent"] == chips["duplicates_applied"] == 0
    cut, _ = both("29 March, cut")
    assert cut["relay_overflows"] > 0
    assert cut["refusals"]["terminal_limit"] > 0


#: The liveness bound at work: the last request is still with the backend (20 s)
#: when the run's 5 s drain after it ends: it is lost, and the checkers say so.
BOUND = ["run.drain_s=5", "backend.service_ms={dist: constant, mean: 20000}", "load.requests=500"]
SLEEPING = {**CASES, "the liveness bound": ("smoke.yaml", BOUND)}


@pytest.mark.parametrize(
    "case", ["legacy crashes, hangs and a timer race", "chip re-sends", "the liveness bound"]
)
def test_the_conductor_that_sleeps_takes_the_same_steps(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trio driver sleeping until each step on a clock of its own, as serve mode
    does on the real clock, gives the replay's summary figure for figure: health
    checks, same-instant order, a crash's wake-ups in the order the waits began and
    the liveness bound come from the one agenda, not a copy kept for serve mode."""
    config, overrides = SLEEPING[case]
    s = load_scenario(CONFIGS / config, overrides)
    jumping = replay(s, engine="trio").summary
    monkeypatch.setattr(
        "relay.plan.replay.driver_trio.run", functools.partial(driver_trio.run, sleep=True)
    )
    sleeping = replay(s, engine="trio").summary
    assert without_engine(sleeping) == without_engine(jumping)
    assert (jumping["crashes"] or 0) > 0 or jumping["lost"] == 1
