"""The backend of 22 February 2016: growing thread names, the log file, memory, and
the day's shape on legacy and fixed."""

from __future__ import annotations

import itertools

import pytest

from relay.core.backend import Backend
from relay.core.summary import Summary, backend_figures
from relay.plan.replay import replay
from relay.scenario.schema import ConfigError, load_scenario
from tests.conftest import CONFIGS


def constant(seconds: float) -> Backend:
    return Backend(itertools.repeat(seconds).__next__)


def test_by_default_an_answer_takes_its_service_time() -> None:
    """With no log cost and no memory bound, requests do not affect each other."""
    backend = constant(2.0)
    assert [backend.submit(t) for t in (0.0, 0.0, 0.5)] == [2.0, 2.0, 2.5]


def test_names_grow_while_traffic_never_pauses_and_start_over_after_a_pause() -> None:
    """Each request reusing a name lengthens it; a pause of `reset_pause` resets it,
    and the log write's time follows the name's length."""
    backend = Backend(
        itertools.repeat(0.0).__next__,
        base_chars=10,
        growth_chars=5.0,
        reset_pause=60.0,
        log_per_char=0.001,
    )
    done = [backend.submit(t) for t in (0.0, 1.0, 2.0)]
    assert backend.name_chars == 20.0  # fresh (10), then +5, +5
    assert done == pytest.approx([0.010, 1.015, 2.020])
    done_after_pause = backend.submit(100.0)
    assert backend.name_chars == 10.0
    assert done_after_pause == pytest.approx(100.010)


def test_the_log_file_takes_one_write_at_a_time() -> None:
    """Requests arriving together queue for the log: the n-th waits for n-1 writes."""
    backend = Backend(itertools.repeat(1.0).__next__, base_chars=100, log_per_char=0.01)
    done = [backend.submit(0.0) for _ in range(3)]  # growth 0: each write takes 1 s
    assert done == pytest.approx([2.0, 3.0, 4.0])


def test_memory_bounds_the_work_held_at_once() -> None:
    """With room for two requests, a third waits until the first leaves."""
    backend = Backend(itertools.repeat(5.0).__next__, capacity=2)
    assert [backend.submit(t) for t in (0.0, 1.0, 2.0)] == [5.0, 6.0, 10.0]
    assert backend.memory_waits == 1
    assert backend.wait_total == 3.0  # from 2 s until the first leaves at 5 s


def test_the_summary_reports_the_memory_queue_over_all_calls() -> None:
    """The summary's backend block counts calls and waits and averages the wait
    over every call, and reports no bound and no wait when there is none."""
    bounded = Backend(itertools.repeat(5.0).__next__, capacity=1)
    for t in (0.0, 1.0, 2.0, 20.0):  # wait 4 s, then 8 s, then none
        bounded.submit(t)
    assert backend_figures(bounded) == {
        "calls": 4,
        "capacity": 1,
        "waits": 2,
        "mean_wait_ms": 3000.0,
    }
    free = constant(5.0)
    free.submit(0.0)
    assert backend_figures(free) == {"calls": 1, "capacity": None, "waits": 0, "mean_wait_ms": 0.0}
    assert backend_figures(constant(5.0))["mean_wait_ms"] is None


def test_a_restart_lets_names_start_over_and_drops_the_backlog() -> None:
    """Operators restarting the backend reset the names and the log's queue."""
    backend = Backend(
        itertools.repeat(0.0).__next__, base_chars=10, growth_chars=1000.0, log_per_char=0.001
    )
    for t in range(5):
        backend.submit(float(t))
    assert backend.name_chars > 4000
    backend.restart(10.0)
    assert backend.submit(10.5) == pytest.approx(10.5 + 0.01)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('operators=[{at: "16:30", action: restart_backend, node: 1}]', "takes no node"),
        ('operators=[{at: "16:30", action: detach}]', "needs a node"),
    ],
)
def test_restart_backend_takes_no_node_and_other_actions_need_one(
    override: str, message: str
) -> None:
    """The scenario names the wrong use of `node` in one line."""
    with pytest.raises(ConfigError, match=message):
        load_scenario(CONFIGS / "2016-02-22.yaml", [override])


def p99_at(doc: Summary, hour: float) -> float:
    """The p99 latency (ms) of the 5-minute bucket starting at `hour`."""
    timeline = doc["timeline"]
    assert isinstance(timeline, list)
    [bucket] = [b for b in timeline if b["t"] == int(hour * 3600)]
    assert bucket["p99_ms"] is not None
    return float(bucket["p99_ms"])


@pytest.mark.slow
def test_22_february_slows_down_through_the_afternoon_on_legacy() -> None:
    """On legacy, p99 latency at 16:00 is at least 3 times that at 13:00, timeouts
    climb, and the 16:30 restart brings it back."""
    doc = replay(load_scenario(CONFIGS / "2016-02-22.yaml")).summary
    assert doc["design"] == "legacy"
    assert p99_at(doc, 16) >= 3 * p99_at(doc, 13)
    assert p99_at(doc, 17) < 1.5 * p99_at(doc, 13)  # after the restart
    assert doc["timeouts"] > 0
    assert doc["lost"] == 0


@pytest.mark.slow
def test_22_february_stays_flat_on_fixed() -> None:
    """With short thread names and 2 GB, p99 at 16:00 is within 1.5 times 13:00's."""
    doc = replay(load_scenario(CONFIGS / "2016-02-22.yaml", ["design=fixed"])).summary
    assert p99_at(doc, 16) <= 1.5 * p99_at(doc, 13)
    assert doc["timeouts"] == 0
    assert doc["lost"] == 0
