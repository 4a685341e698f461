"""The driver's HSM calls on a device lane, under trio's virtual clock: a call's
wait joins the core's agenda, due at its step's deadline until the lane answers
(`Agenda.answer`); a crash wakes it at once; a lane that refuses fails the step at
once. The lane here is a stand-in that answers when the test says, so every
instant is exact (tests/test_hsm.py runs the same paths on the real token, in
real time, where only windows can be asserted)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from hsm_adapter.errors import HsmError, HsmUnavailable
from hsm_adapter.lane import Waiter
from relay.core.agenda import Waiting
from relay.core.events import FaultEvent
from relay.core.request import Outcome
from relay.engines.trio import DeviceServices, TrioDriver
from tests.conftest import tier_for

ONE_RELAY = {
    "relays": {"count": 1, "timeout_s": 10},
    "hsm": {"deadline_ms": 2000},
    "backend": {"service_ms": {"dist": "constant", "mean": 100}},
    "monitor": {"enabled": False},
    "load": {"retry": {"max_retries": 0}},
    "design": "fixed",
}


class Lane:
    """A lane that queues signs and answers them only when told (`answer`)."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.waiting: dict[int, Waiter] = {}
        self.forgotten: list[int] = []
        self._ids = 0

    def submit(self, op: str, args: tuple[Any, ...], waiter: Waiter) -> int:
        if self.refuse:
            raise HsmUnavailable("HSM lane restarting: test")
        self._ids += 1
        self.waiting[self._ids] = waiter
        return self._ids

    def forget(self, rid: int) -> None:
        self.forgotten.append(rid)
        self.waiting.pop(rid, None)

    def answer(self, error: HsmError | None = None) -> None:
        for waiter in self.waiting.values():
            waiter.answered(error, b"signature")
        self.waiting.clear()


async def run(lane: Lane, act: Any) -> tuple[Any, list[float]]:
    """Three requests at t=1 through `lane` in serve mode; `act(driver)` runs beside
    them. The tier, and when each request ended."""
    tier = tier_for(**ONE_RELAY)
    services = DeviceServices(tier, hsm=None)  # type: ignore[arg-type]
    services.lane = lane  # type: ignore[assignment]
    driver = TrioDriver(tier, services=services)
    ended: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.serve)
        await trio.sleep_until(1.0)
        for cs in range(3):
            _, flow = tier.admit(cs, 0, trio.current_time())
            state = driver.advance(flow)
            assert isinstance(state, Waiting)  # on the device: its answer is awaited
            driver.follow(flow, state, lambda end: ended.append(trio.current_time()))
        await act(driver)
        await trio.sleep(30.0)
        nursery.cancel_scope.cancel()
    return tier, ended


async def test_the_lanes_answer_ends_the_wait_when_it_comes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Answered 0.5 s after the calls, the requests go on to the backend then and
    complete 0.1 s later; nothing is forgotten."""
    lane = Lane()

    async def act(driver: TrioDriver) -> None:
        await trio.sleep(0.5)
        lane.answer()

    tier, ended = await run(lane, act)
    assert ended == [1.6, 1.6, 1.6]
    assert tier.ledger.total.count(Outcome.COMPLETED) == 3
    assert lane.forgotten == []


async def test_a_silent_lane_ends_the_step_at_its_deadline_and_is_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A lane that never answers: each HSM step ends at its 2 s deadline, as an
    error, and its call is forgotten (a late answer is dropped)."""
    lane = Lane()

    async def act(driver: TrioDriver) -> None:
        await trio.sleep(5.0)
        lane.answer()  # too late: nobody waits

    tier, ended = await run(lane, act)
    assert ended == [3.0, 3.0, 3.0]
    assert tier.ledger.total.count(Outcome.ERROR) == 3
    assert sorted(lane.forgotten) == [1, 2, 3]


async def test_a_crash_wakes_the_calls_on_its_node_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The node crashes 0.2 s into the calls: all three end then, long before
    their deadline, and their calls are forgotten."""
    lane = Lane()

    async def act(driver: TrioDriver) -> None:
        await trio.sleep(0.2)
        driver.apply(FaultEvent(trio.current_time(), "crash", 1))

    tier, ended = await run(lane, act)
    assert ended == [1.2, 1.2, 1.2]
    assert tier.ledger.total.count(Outcome.ERROR) == 3
    assert sorted(lane.forgotten) == [1, 2, 3]


async def test_a_lane_that_refuses_fails_the_step_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A lane that is not serving refuses the call: the step fails then and there,
    one device failure each, no wait."""
    lane = Lane(refuse=True)

    async def act(driver: TrioDriver) -> None:
        await trio.sleep(0.0)

    tier, ended = await run(lane, act)
    assert ended == [1.0, 1.0, 1.0]  # at once: the refusal is the call's answer
    assert tier.ledger.total.count(Outcome.ERROR) == 3
