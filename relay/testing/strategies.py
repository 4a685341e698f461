"""Hypothesis strategies for property tests of the relay tier: the public front.

The worlds here are the ones `relaysim hunt` searches (its search and your tests
draw from the same code, `relay.testing.worlds`), and fault schedules to lay over
a scenario of your own:

    import relay
    from hypothesis import given, settings
    from relay.testing.strategies import cases, fault_schedules, run_case

    @given(cases())
    def test_fixed_never_crashes_or_hangs_near_the_race_windows(case):
        tier = run_case(case, "fixed", engine="fast")
        assert [o.mechanism for node in tier.nodes for o in node.outages] == []

    @settings(max_examples=10)
    @given(fault_schedules(kinds=["hsm_stall"], nodes=4, within=(36000, 54000)))
    def test_fixed_rides_out_stalls(schedule):
        result = relay.replay("configs/smoke.yaml", overrides={"faults": schedule})
        assert result.summary["lost"] == 0

Race worlds (`cases`, `Case`, `run_case`): a few requests on two relays timed
around the January 2016 windows, the relay-step timer's reset falling in its
expiry's 15.625 ms OS tick (cause 2) and a monitor probe landing on the core an
HSM reply interrupts (cause 1); `run_case` runs one on a design and returns the
model (`relay.core.tier.RelayTier`: `nodes`, `ledger`). `world_document` is the
scenario a world runs, `DRAWN` the keys it draws.

Server worlds (`server_worlds`, `ServerWorld`, `toxics`): a race world served over
the simulated network with Toxiproxy's toxics, held or partitioned links, a stop
and hostile clients, as `relaysim hunt --server` draws them.

Update worlds (`worlds`, `World`, `run_updates`): chip-writing operations under
congestion, for the lost and duplicated card updates.

Fault schedules (`fault_schedules`): a scenario's `faults:` list, from the
registry of fault kinds (`relay.core.faults`), for `--set faults=...` or the
library's `overrides={"faults": ...}`.

Every strategy is deterministic under hypothesis's `derandomize=True` (the
project's CI profile), and shrinks towards fewer and earlier faults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from relay.core.faults import FAULTS, KINDS
from relay.testing.worlds import (
    DRAWN,
    Case,
    ServerWorld,
    World,
    cases,
    run_case,
    run_updates,
    server_worlds,
    toxics,
    world_document,
    worlds,
)

__all__ = [
    "DRAWN",
    "FACTORS",
    "Case",
    "ServerWorld",
    "World",
    "cases",
    "fault_schedules",
    "run_case",
    "run_updates",
    "server_worlds",
    "toxics",
    "world_document",
    "worlds",
]

#: How many times slower a drawn `slow_backend` makes the backend: from none (1,
#: restoring it) to past the relay's step timer at the default service times.
FACTORS = (1.0, 2.0, 5.0, 20.0, 100.0)


def fault_schedules(
    kinds: Sequence[str] = FAULTS,
    nodes: int = 4,
    within: tuple[float, float] = (9 * 3600.0, 17 * 3600.0),
    min_faults: int = 0,
    max_faults: int = 3,
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """A scenario's `faults:` list: `min_faults` to `max_faults` faults of `kinds`
    (names of `relay.core.faults.FAULTS`), each at a whole second of `within`
    (seconds since the scenario's midnight) on a relay of 1..`nodes`, or for
    `slow_backend` with a factor of `FACTORS`; in time order. ValueError at once
    for a kind that is no fault (an operator's action) or unknown."""
    unknown = sorted(set(kinds) - set(FAULTS))
    if unknown or not kinds:
        raise ValueError(
            f"fault_schedules: {', '.join(unknown) or 'no kinds'}: kinds are some of "
            f"{', '.join(FAULTS)}"
        )
    return _schedules(tuple(kinds), nodes, (int(within[0]), int(within[1])), min_faults, max_faults)


@st.composite
def _schedules(
    draw: st.DrawFn,
    kinds: tuple[str, ...],
    nodes: int,
    within: tuple[int, int],
    min_faults: int,
    max_faults: int,
) -> list[dict[str, Any]]:
    fault = st.tuples(st.integers(*within), st.sampled_from(kinds))
    schedule: list[dict[str, Any]] = []
    for at, kind in draw(st.lists(fault, min_size=min_faults, max_size=max_faults)):
        if KINDS[kind].on_node:
            schedule.append({"at": at, "kind": kind, "node": draw(st.integers(1, nodes))})
        else:
            schedule.append({"at": at, "kind": kind, "factor": draw(st.sampled_from(FACTORS))})
    return sorted(schedule, key=lambda f: (f["at"], f["kind"]))
