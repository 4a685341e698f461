"""relaysim from your own pytest suite: the plugin's fixtures, a hypothesis strategy
and an assertion that prints the command replaying a failure (docs/ci.md).

The plugin loads by itself wherever relaysim is installed; the async test needs
pytest-trio. From the checkout (paths are read from pytest's root folder):

    .venv/bin/pytest docs/examples/test_with_relaysim.py

Each test holds the fixed design to what the April 2016 fixes promise; on
`legacy` every one of them fails (tests/test_pytest_plugin.py runs this file both
ways). About five seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio.testing
from hypothesis import given, settings

from relay.api import Result
from relay.pytest_plugin import Served
from relay.scenario.schema import Scenario
from relay.testing.assertions import assert_holds
from relay.testing.strategies import fault_schedules

DESIGN = "fixed"
SMOKE = "configs/smoke.yaml"  # a small day: about 5,000 requests on four relays


def test_a_stall_at_ten_costs_a_few_timeouts_at_most(
    relaysim_replay: Callable[..., Result],
) -> None:
    """An HSM stall on relay 1 at 10:00 loses nothing and times out 5 requests at most."""
    stall = [{"at": "10:00", "kind": "hsm_stall", "node": 1}]
    result = relaysim_replay(SMOKE, {"design": DESIGN, "faults": stall}, seed=3)
    assert_holds(result, "lost == 0", "timeouts <= 5")


# Five drawn schedules, the same ones every run (derandomize): a few seconds.
@settings(max_examples=5, deadline=None, database=None, derandomize=True)
@given(
    schedule=fault_schedules(
        kinds=["crash", "hsm_stall", "timer_race"],
        within=(10 * 3600, 16 * 3600),
        min_faults=1,
        max_faults=2,
    )
)
def test_any_crash_or_stall_is_over_within_a_minute(
    relaysim_replay: Callable[..., Result], schedule: list[dict[str, Any]]
) -> None:
    """One or two crashes, HSM stalls or timer races between 10:00 and 16:00 keep no
    relay out for a minute, lose nothing and time out 5 requests at most."""
    result = relaysim_replay(SMOKE, {"design": DESIGN, "faults": schedule})
    assert_holds(result, "lost == 0", "outage_minutes < 1", "timeouts <= 5")


@pytest.mark.trio
async def test_a_stall_injected_live_is_reset_before_the_load_notices(
    relaysim_scenario: Callable[..., Scenario],
    relaysim_server: Callable[..., AbstractAsyncContextManager[Served]],
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Served on the simulated network, an HSM stall injected through the admin
    endpoint is reset: five minutes of load see no timeout, and it is gone."""
    scenario = relaysim_scenario(SMOKE, {"design": DESIGN})
    async with relaysim_server(scenario) as served:
        await served.admin.inject("hsm_stall", node=1)
        doc = await served.load(300, rate=5)  # five requests a second
        state = await served.admin.state()
    assert doc["requests"] > 1000  # the load ran
    assert doc["lost"] == 0
    assert doc["timeouts"] == 0
    assert state["faults"] == []
