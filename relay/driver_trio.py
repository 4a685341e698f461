"""The trio driver: runs the relay tier's flows as trio tasks under a virtual clock.

One task per request performs its flow's effects; deadlines are trio cancel scopes
(`move_on_at`), so the timing semantics are trio's own. The simulated HSM and backend
are `sleep_until` the finishing time the core computed (`SimulatedServices`); under a
real clock `DeviceServices` calls a real HSM instead. Under
`trio.testing.MockClock(autojump_threshold=0)` the clock jumps to the next deadline
whenever every task is blocked, so a day runs in wall seconds, not hours.

The run ends when the load has stopped and every request has its outcome, or, at the
latest, `drain_s` after the last arrival (the liveness bound): requests still open
then are lost, and the accounting checker fails the run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import trio
import trio.testing

from hsm_adapter import Hsm
from hsm_adapter.errors import HsmError
from relay.config import FaultEvent, OperatorEvent
from relay.tier import CallBackend, CallHsm, Effect, Flow, RelayTier, Result, Retry

Progress = Callable[[float, RelayTier], None]
PROGRESS_EVERY = 2048  # arrivals between two progress callbacks


@dataclass(frozen=True, slots=True)
class RunEnd:
    """When the run stopped and whether the liveness bound cut it short."""

    start: float
    end: float
    cut_short: bool


class Services(Protocol):
    """Performs a flow's effects: returns DONE when the reply or answer arrived, or
    DEADLINE when the service failed it early (the flow then ends it as an error)."""

    async def perform(self, effect: Effect) -> Result: ...


class SimulatedServices:
    """Performs effects against the core's simulated HSM lanes and backend."""

    def __init__(self, tier: RelayTier) -> None:
        self._backend = tier.backend

    async def perform(self, effect: Effect) -> Result:
        """Wait until the simulated reply or answer arrives."""
        now = trio.current_time()
        if type(effect) is CallHsm:
            await trio.sleep_until(effect.node.hsm.submit(now))
        elif type(effect) is CallBackend:
            await trio.sleep_until(self._backend.submit(now))
        else:  # LostReply: nothing will answer; the caller's deadline ends the wait
            await trio.sleep_forever()
        return Result.DONE


class DeviceServices:
    """Performs HSM calls on a real device (`hsm_adapter`: a PKCS#11 lane, the
    simulated device, or either behind the fault wrapper); the backend stays the
    core's simulated one.

    A device that fails a call (stuck lane, lane restarting, refused operation)
    fails that request's HSM step at once with a clear error in the log, instead of
    letting it wait for its deadline or taking the relay down.
    """

    def __init__(self, tier: RelayTier, hsm: Hsm) -> None:
        self._simulated = SimulatedServices(tier)  # the backend, and lost replies
        self._hsm = hsm
        self._log = tier.log
        self.failures = 0

    async def perform(self, effect: Effect) -> Result:
        """Sign on the device for an HSM step; wait out the simulated backend."""
        if type(effect) is not CallHsm:
            return await self._simulated.perform(effect)
        if effect.node.hsm.stuck:
            # The node's lane is stalled (cause 1, or an injected stall): nothing
            # answers; the step's deadline ends the wait.
            await trio.sleep_forever()
        try:
            await self._hsm.sign(b"relay step on " + effect.node.name.encode())
        except HsmError as exc:
            self.failures += 1
            self._log.info("hsm.failed", node=effect.node.name, error=str(exc))
            return Result.DEADLINE
        return Result.DONE


@contextlib.contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Make trio's choice among tasks runnable at the same instant follow `seed`.

    trio shuffles each batch of runnable tasks with a private generator seeded from
    the OS; pytest-trio's hypothesis support seeds it and sorts batches first. We do
    the same, so one seed reproduces a run task for task. Private names: checked
    against trio 0.35; if they move, runs stay correct but lose bit-reproducibility,
    which the determinism test will catch.
    """
    core = trio._core._run
    saved_state = core._r.getstate()
    saved_flag = core._ALLOW_DETERMINISTIC_SCHEDULING
    core._r.seed(f"relaysim-trio:{seed}")
    setattr(core, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 - Final in trio
    try:
        yield
    finally:
        core._r.setstate(saved_state)
        setattr(core, "_ALLOW_DETERMINISTIC_SCHEDULING", saved_flag)  # noqa: B010


class TrioDriver:
    """Drives one RelayTier through a stream of arrivals and operator events."""

    def __init__(
        self,
        tier: RelayTier,
        *,
        services: Services | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.tier = tier
        self.services = services or SimulatedServices(tier)
        self._progress = progress
        # The latest instant at which load is known to arrive: the last arrival so
        # far, or a retry some counter user has already decided on.
        self._horizon = -math.inf
        self._load_done = trio.Event()
        self._cut_short = False
        # Cancel scopes of the waits in progress, by node number, so a crash can
        # wake every flow on the crashed node at the crash instant.
        self._waiting: dict[int, set[trio.CancelScope]] = {}
        self._outer: trio.Nursery | None = None

    async def run(
        self,
        arrivals: Iterable[tuple[float, int]],
        events: Iterable[OperatorEvent | FaultEvent] = (),
    ) -> RunEnd:
        """Feed `arrivals` (time, CS) and scheduled `events`; return when the run is over."""
        drain = self.tier.scenario.run.drain_s
        start = trio.current_time()
        async with trio.open_nursery() as outer:
            self._outer = outer
            outer.start_soon(self._scheduled, list(events))
            outer.start_soon(self._health_checks, self.tier.scenario.dispatcher.health_check_s)
            async with trio.open_nursery() as work:
                outer.start_soon(self._liveness_bound, work.cancel_scope, drain)
                await self._feed(work, arrivals)
            outer.cancel_scope.cancel()
        end = trio.current_time()
        if self._progress:
            self._progress(end, self.tier)
        return RunEnd(start, end, self._cut_short)

    async def _feed(self, work: trio.Nursery, arrivals: Iterable[tuple[float, int]]) -> None:
        tier, serve = self.tier, self._serve
        for count, (t, cs) in enumerate(arrivals, 1):
            if t > trio.current_time():
                await trio.sleep_until(t)
            self._horizon = max(self._horizon, t)
            work.start_soon(serve, work, tier.arrive(cs, 0, t))
            if self._progress and count % PROGRESS_EVERY == 0:
                self._progress(t, tier)
        self._load_done.set()

    async def _serve(self, work: trio.Nursery, flow: Flow) -> None:
        retry = await self.perform(flow)
        if retry is not None:
            self._horizon = max(self._horizon, retry.at)
            work.start_soon(self._retry, work, retry)

    async def perform(self, flow: Flow) -> Retry | None:
        """Perform `flow`'s effects until it ends; the counter user's retry, if any.

        Requires `run` (or `serve`) to be running: operator actions the model
        decides on are scheduled in its nursery.
        """
        perform, tier, waiting = self.services.perform, self.tier, self._waiting
        retry: Retry | None = None
        try:
            effect = next(flow)
            while True:
                result = Result.DEADLINE
                scopes = waiting.setdefault(effect.node.number, set())
                with trio.move_on_at(effect.deadline) as scope:
                    scopes.add(scope)
                    try:
                        result = await perform(effect)
                    finally:
                        scopes.discard(scope)
                effect = flow.send((result, trio.current_time()))
                if tier.crashed or tier.agenda:
                    self._notice()
        except StopIteration as stop:
            retry = stop.value
        if tier.crashed or tier.agenda:
            self._notice()
        return retry

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the tier's periodic work (health checks, operators' reactions) going
        until cancelled, for requests performed one by one (`perform`): serve mode."""
        async with trio.open_nursery() as outer:
            self._outer = outer
            outer.start_soon(self._health_checks, self.tier.scenario.dispatcher.health_check_s)
            task_status.started()
            await trio.sleep_forever()

    def _notice(self) -> None:
        """Act on what the model reported: wake flows on crashed nodes, and schedule
        the actions it decided on (operators reacting to a failure)."""
        tier = self.tier
        while tier.crashed:
            node = tier.crashed.pop()
            for scope in self._waiting.get(node.number, ()):
                scope.cancel()
        if tier.agenda:
            # One task per batch, in order: "detach, restart, attach" at one instant
            # must not be reordered by the scheduler.
            assert self._outer is not None  # set before any flow runs
            batch: list[OperatorEvent | FaultEvent] = [*tier.agenda]
            tier.agenda.clear()
            self._outer.start_soon(self._scheduled, batch)

    async def _retry(self, work: trio.Nursery, retry: Retry) -> None:
        await trio.sleep_until(retry.at)
        await self._serve(work, self.tier.arrive(retry.cs, retry.attempt, retry.at))

    async def _liveness_bound(self, scope: trio.CancelScope, drain: float) -> None:
        # Load has stopped once the arrival stream is exhausted and every retry
        # decided on has arrived; from then on everything must end within `drain`.
        await self._load_done.wait()
        while trio.current_time() < self._horizon + drain:  # noqa: ASYNC110 - horizon moves
            await trio.sleep_until(self._horizon + drain)
        self._cut_short = True
        scope.cancel()

    async def _health_checks(self, period: float) -> None:
        while True:
            await trio.sleep(period)
            self.tier.health_check(trio.current_time())

    async def _scheduled(self, events: list[OperatorEvent | FaultEvent]) -> None:
        # One task, in the scenario's order: equal times keep their order.
        for event in sorted(events, key=lambda e: e.at):
            await self._at(event)

    async def _at(self, event: OperatorEvent | FaultEvent) -> None:
        await trio.sleep_until(event.at)
        self.apply(event)

    def apply(self, event: OperatorEvent | FaultEvent) -> None:
        """Carry out an operator action or a fault now, and act on its consequences
        (wake flows on a crashed node, schedule operators' reactions)."""
        self.tier.handle(event, trio.current_time())
        self._notice()


def run(
    tier: RelayTier,
    arrivals: Iterable[tuple[float, int]],
    events: Iterable[OperatorEvent | FaultEvent] = (),
    *,
    seed: int,
    progress: Progress | None = None,
) -> RunEnd:
    """Run a whole replay under trio's virtual clock; deterministic for a given seed."""
    driver = TrioDriver(tier, progress=progress)
    clock = trio.testing.MockClock(autojump_threshold=0)
    with deterministic_scheduling(seed):
        return trio.run(driver.run, arrivals, events, clock=clock)
