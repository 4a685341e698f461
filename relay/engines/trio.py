"""The trio driver: runs the relay tier's flows as trio tasks under a virtual clock.

One task per request performs its flow's effects, on trio's clock. The simulated
HSM and backend say when they finish (`SimulatedServices`), and the flow's task is
parked on the driver's one timer (`Alarms`) until that instant or the deadline,
whichever comes first; under a real clock `DeviceServices` calls a real HSM instead
and the deadline is a cancel scope around the call. Under
`trio.testing.MockClock(autojump_threshold=0)` the clock jumps to the next deadline
whenever every task is blocked, so a day runs in wall seconds, not hours.

The run ends when the load has stopped and every request has its outcome, or, at the
latest, `drain_s` after the last arrival (the liveness bound): requests still open
then are lost, and the accounting checker fails the run.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import trio
import trio.testing

from hsm_adapter import Hsm
from hsm_adapter.errors import HsmError
from relay.core.events import FaultEvent, OperatorEvent
from relay.core.tier import CallBackend, CallHsm, Effect, Flow, RelayTier, Result, Retry, Think
from relay.engines.common import PROGRESS_EVERY, Progress, RunEnd

REAL_CLOCK_RESOLUTION = 0.001  # trio waits in epoll, whose timeout is whole milliseconds


@dataclass(slots=True)  # not frozen: one per wait, and a frozen __init__ costs 3x
class Waiting:
    """A flow stopped at an effect it must wait for; `finish` is what the services
    said when the effect started (None: the effect is to be performed)."""

    effect: Effect
    finish: float | None


@dataclass(slots=True)
class Ended:
    """A flow that has ended, with the counter user's retry, if any."""

    retry: Retry | None


class Services(Protocol):
    """Performs a flow's effects.

    `finish` says when the reply or answer arrives if that is known the moment the
    effect starts (the core's simulated services; math.inf for never), or None: the
    driver then awaits `perform`, which returns DONE when it arrived, or DEADLINE
    when the service failed it early (the flow then ends it as an error).
    """

    def finish(self, effect: Effect, now: float) -> float | None: ...

    async def perform(self, effect: Effect) -> Result: ...


class SimulatedServices:
    """The core's simulated HSM lanes and backend: every finishing time is known."""

    def __init__(self, tier: RelayTier) -> None:
        self._backend = tier.backend

    def finish(self, effect: Effect, now: float) -> float:
        """When the simulated reply or answer arrives (math.inf: a lost reply)."""
        if type(effect) is CallHsm:
            return effect.node.hsm.submit(now)
        if type(effect) is CallBackend:
            return self._backend.submit(now)
        if type(effect) is Think:
            return effect.deadline  # the counter's own steps end on time
        return math.inf  # LostReply: nothing will answer; the caller's deadline ends it

    async def perform(self, effect: Effect) -> Result:
        """Wait until the simulated reply or answer arrives."""
        await trio.sleep_until(self.finish(effect, trio.current_time()))
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

    def finish(self, effect: Effect, now: float) -> float | None:
        """None for an HSM step on the device (`perform` it); else as simulated."""
        if type(effect) is not CallHsm:
            return self._simulated.finish(effect, now)
        if effect.node.hsm.stuck:
            # The node's lane is stalled (cause 1, or an injected stall): nothing
            # answers; the step's deadline ends the wait.
            return math.inf
        return None

    async def perform(self, effect: Effect) -> Result:
        """Sign on the device for an HSM step; wait out the simulated backend."""
        if self.finish(effect, trio.current_time()) is not None:
            return await self._simulated.perform(effect)
        try:
            await self._hsm.sign(b"relay step on " + effect.node.name.encode())
        except HsmError as exc:
            self.failures += 1
            self._log.info("hsm.failed", node=effect.node.name, error=str(exc))
            return Result.DEADLINE
        return Result.DONE


class Parked:
    """A flow's task asleep until an instant (see `Alarms`)."""

    __slots__ = ("early", "task")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task: trio.lowlevel.Task | None = task
        self.early = False  # woken before its instant (its node crashed)

    def cancel(self) -> None:
        """Wake the task now, before its instant (named like CancelScope.cancel, so
        the driver wakes parked flows and scoped calls alike)."""
        if self.task is not None:
            self.early = True
            trio.lowlevel.reschedule(self.task)
            self.task = None

    def abort(self, raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        """The task was cancelled from outside (the run's liveness bound): forget it."""
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED


class Alarms:
    """Wakes parked tasks at their instants, with one trio timer for all of them.

    A task sleeping on a cancel scope's deadline costs a scope and a Cancelled
    exception raised and caught; parked here, it costs a heap entry and a
    reschedule, and one timer wake-up serves every task due by then. Ties wake in
    the order they were parked.

    `resolution` is how finely the clock can wake a task: 0 for a virtual clock; on
    the real clock trio waits in epoll, whose timeout is in whole milliseconds. The
    timer wakes every task due within `resolution` of its wake-up (and
    `TrioDriver.advance` never parks a wait shorter than that).
    """

    def __init__(self, resolution: float = 0.0) -> None:
        self.resolution = resolution
        self._heap: list[tuple[float, int, Parked]] = []
        self._seq = 0
        self._timer: trio.CancelScope | None = None

    async def park(self, parked: Parked, when: float) -> None:
        """Sleep until `when`, or until `parked.cancel()` wakes the task early."""
        if when <= trio.current_time():
            # Due now: nothing can wake it earlier; let the other tasks of this
            # instant run first, in the order the scheduler (and its seed) picks.
            parked.task = None
            await trio.lowlevel.checkpoint()
            return
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, parked))
        timer = self._timer
        if timer is not None and when < timer.deadline:
            timer.deadline = when
        await trio.lowlevel.wait_task_rescheduled(parked.abort)

    async def run(self) -> None:
        """The timer: reschedule every task whose instant has come; until cancelled."""
        heap, pop, reschedule = self._heap, heapq.heappop, trio.lowlevel.reschedule
        while True:
            now = trio.current_time() + self.resolution
            while heap and heap[0][0] <= now:
                parked = pop(heap)[2]
                if parked.task is not None:
                    reschedule(parked.task)
                    parked.task = None
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as self._timer:
                await trio.sleep_forever()
            self._timer = None


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
        resolution: float = 0.0,
    ) -> None:
        """`resolution`: the clock's waking resolution (`Alarms`); 0 for a virtual
        clock, `REAL_CLOCK_RESOLUTION` on the real one."""
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
        self._waiting: dict[int, set[trio.CancelScope | Parked]] = {}
        self._alarms = Alarms(resolution)
        self._outer: trio.Nursery | None = None

    async def run(
        self,
        arrivals: Iterable[tuple[float, int]],
        events: Iterable[OperatorEvent | FaultEvent] = (),
    ) -> RunEnd:
        """Feed `arrivals` (time, CS) and scheduled `events`; return when the run is over."""
        drain = self.tier.params.drain_s
        start = trio.current_time()
        async with trio.open_nursery() as outer:
            self._outer = outer
            outer.start_soon(self._alarms.run)
            outer.start_soon(self._scheduled, list(events))
            outer.start_soon(self._health_checks, self.tier.params.health_check_s)
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

    def advance(self, flow: Flow, step: tuple[Result, float] | None = None) -> Waiting | Ended:
        """Run `flow` from its start (or resumed with `step`) until it must wait.

        On the real clock, effects that end (reply or deadline) within the clock's
        resolution are done at once, without a wait (in serve mode, with service
        times below a millisecond, a whole request); under virtual time every effect
        is waited for. Returns the effect to wait for next, or how the flow ended.
        """
        tier, now_, resolution = self.tier, trio.current_time, self._alarms.resolution
        finish_of = self.services.finish
        try:
            effect = next(flow) if step is None else flow.send(step)
            while True:
                if tier.crashed or tier.agenda:
                    self._notice()
                now = now_()
                finish = finish_of(effect, now)
                deadline = effect.deadline
                if not resolution or finish is None or min(finish, deadline) > now + resolution:
                    return Waiting(effect, finish)
                result = Result.DONE if finish <= deadline else Result.DEADLINE
                effect = flow.send((result, now))
        except StopIteration as stop:
            if tier.crashed or tier.agenda:
                self._notice()
            return Ended(stop.value)

    async def wait(self, waiting: Waiting) -> tuple[Result, float]:
        """Wait for `waiting`'s effect: its reply or its deadline, whichever comes
        first, or the crash of its node. How it ended and when, for `advance`."""
        effect, finish = waiting.effect, waiting.finish
        deadline = effect.deadline
        scopes = self._waiting.setdefault(effect.node.number, set())
        if finish is not None:
            # Known finishing time: parked until the reply or the deadline (a reply
            # landing on the deadline is in time, as in the fast engine), or earlier
            # by a crash (`_notice`).
            parked = Parked(trio.lowlevel.current_task())
            scopes.add(parked)
            try:
                await self._alarms.park(parked, finish if finish < deadline else deadline)
            finally:
                scopes.discard(parked)
            in_time = finish <= deadline and not parked.early
            return (Result.DONE if in_time else Result.DEADLINE), trio.current_time()
        result = Result.DEADLINE
        with trio.move_on_at(deadline) as scope:
            scopes.add(scope)
            try:
                result = await self.services.perform(effect)
            finally:
                scopes.discard(scope)
        return result, trio.current_time()

    async def perform(self, flow: Flow, waiting: Waiting | None = None) -> Retry | None:
        """Perform `flow`'s effects until it ends (from where `advance` left it, if
        `waiting` is given); the counter user's retry, if any.

        Requires `run` (or `serve`) to be running: operator actions the model
        decides on are scheduled in its nursery.
        """
        state: Waiting | Ended = self.advance(flow) if waiting is None else waiting
        while type(state) is Waiting:
            state = self.advance(flow, await self.wait(state))
        assert type(state) is Ended
        return state.retry

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the tier's periodic work (health checks, operators' reactions) going
        until cancelled, for requests performed one by one (`perform`): serve mode."""
        async with trio.open_nursery() as outer:
            self._outer = outer
            outer.start_soon(self._alarms.run)
            outer.start_soon(self._health_checks, self.tier.params.health_check_s)
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
        await self._serve(work, self.tier.again(retry))

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

    def heal(self) -> None:
        """Undo every fault still in effect now (`RelayTier.heal`), and act on it."""
        self.tier.heal(trio.current_time())
        self._notice()

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
