"""The trio engine: the relay tier's flows as trio tasks, one per request.

**Replays** (`run`, under `trio.testing.MockClock`): a conductor takes the run's
steps from the core's rule book (`relay.core.agenda.Agenda`), moves the virtual
clock to each step's instant and hands the step to the task it belongs to: a new
request's task starts, a waiting one is rescheduled with how its wait ended. The
task performs its flow up to its next effect, tells the agenda what it waits for
and hands control back. One step at a time, in the agenda's order: the trio engine
takes exactly the fast engine's steps (a test holds them to identical summaries),
with trio doing the waiting.

**Serve mode** (`serve` and `perform`, on the real clock): requests arrive from
sockets, so there is no agenda; each request's task waits for its effects itself,
parked on the driver's one timer (`Alarms`) until the simulated service finishes
or the deadline passes, or until the PKCS#11 lane answers its HSM call first
(`DeviceCall`); another device's call is awaited inside a cancel scope
(`DeviceServices`). When it wakes, and with what, is still the core's rule
(`relay.core.agenda.wake`, `due_now`).
"""

from __future__ import annotations

import gc
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import outcome
import trio
import trio.testing

from hsm_adapter import Hsm
from hsm_adapter.errors import HsmError
from hsm_adapter.lane import Pkcs11Hsm
from relay.core.agenda import ACTION, ARRIVAL, CHECK, END, RETRY, Agenda, due_now, wake
from relay.core.events import Event, FaultEvent, OperatorEvent
from relay.core.tier import CallHsm, Effect, Flow, RelayTier, Result, Retry
from relay.engines.common import PROGRESS_EVERY, Progress, RunEnd

REAL_CLOCK_RESOLUTION = 0.001  # trio waits in epoll, whose timeout is whole milliseconds
# The cyclic collector's thresholds while serving (`TrioDriver.serve`). Each request
# a device waits on allocates a few dozen container objects (its task, coroutines,
# frames, cancel statuses) that die with it; Python's default first threshold (700)
# then runs a young collection every hundred requests or so, and the older ones
# walk the whole model with it: 9% of a serving process with the token, by perf.
# Fourteen times fewer young collections, the older ones as often relative to them.
SERVE_GC_THRESHOLDS = (10_000, 10, 10)
PRUNE_MIN = 1024  # `Alarms` drops tasks woken early once its heap holds more


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
    driver then awaits `perform`, which returns DONE when it arrived, or UNANSWERED
    when the service failed it early (the flow then ends it as an error).
    """

    def finish(self, effect: Effect, now: float) -> float | None: ...

    async def perform(self, effect: Effect) -> Result: ...


class SimulatedServices:
    """The core's simulated HSM lanes and backend: every finishing time is known."""

    def __init__(self, tier: RelayTier) -> None:
        self._tier = tier

    def finish(self, effect: Effect, now: float) -> float:
        """When the simulated service finishes (`RelayTier.submit`)."""
        return self._tier.submit(effect, now)

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

    On the PKCS#11 lane (`lane`) the driver does not await the call: it submits it
    (`start`) and parks the flow's task on its own timer until the answer, the
    step's deadline or its node's crash (`DeviceCall`), which costs no cancel scope.
    Any other device is awaited (`perform`) inside one.
    """

    def __init__(self, tier: RelayTier, hsm: Hsm) -> None:
        self._simulated = SimulatedServices(tier)  # the backend, and lost replies
        self._tier = tier
        self._hsm = hsm
        self._log = tier.log
        self.failures = 0
        self.lane = hsm if isinstance(hsm, Pkcs11Hsm) else None
        self._data: dict[str, bytes] = {}  # what each node signs, by node name

    def finish(self, effect: Effect, now: float) -> float | None:
        """None for an HSM step on the device (`perform` it); else as simulated.
        A step nothing will answer (`RelayTier.silent`: a stalled lane, cause 1 or
        an injected stall) never reaches the device: its deadline ends the wait."""
        if type(effect) is not CallHsm or self._tier.silent(effect):
            return self._simulated.finish(effect, now)
        return None

    def _signed(self, effect: Effect) -> bytes:
        name = effect.node.name
        data = self._data.get(name)
        if data is None:
            data = self._data[name] = b"relay step on " + name.encode()
        return data

    async def perform(self, effect: Effect) -> Result:
        """Sign on the device for an HSM step; wait out the simulated backend."""
        if self.finish(effect, trio.current_time()) is not None:
            return await self._simulated.perform(effect)
        try:
            await self._hsm.sign(self._signed(effect))
        except HsmError as exc:
            return self._failed(effect, exc)
        return Result.DONE

    def start(self, effect: Effect, call: DeviceCall) -> None:
        """Submit `effect`'s sign to the lane for `call` (an HSM step on the device:
        `finish` is None), without waiting; a lane that is not serving refuses it
        at once."""
        assert self.lane is not None
        try:
            call.rid = self.lane.submit("sign", (self._signed(effect),), call)
        except HsmError as exc:
            call.refused(exc)

    def forget(self, call: DeviceCall) -> None:
        """`call`'s flow no longer waits for it: a late answer is dropped."""
        assert self.lane is not None
        self.lane.forget(call.rid)

    def ended(self, effect: Effect, call: DeviceCall) -> Result:
        """How `call` ended for its flow: DONE if the lane answered first,
        UNANSWERED if it failed the call (logged), or if the deadline or a crash
        came first."""
        if not call.done:
            return Result.UNANSWERED
        if call.error is not None:
            return self._failed(effect, call.error)
        return Result.DONE

    def _failed(self, effect: Effect, exc: HsmError) -> Result:
        self.failures += 1
        self._log.info("hsm.failed", node=effect.node.name, error=str(exc))
        return Result.UNANSWERED


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


class DeviceCall(Parked):
    """A flow's task waiting for its HSM call on the lane (`DeviceServices.start`),
    parked on `Alarms` until the step's deadline: woken by whichever comes first,
    the lane's answer (`answered`), the deadline, or its node's crash (`cancel`).
    An answer that comes once the wait is over is ignored."""

    __slots__ = ("done", "error", "rid")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        super().__init__(task)
        self.done = False  # the lane answered (with `error`, if it failed the call)
        self.error: HsmError | None = None
        self.rid = -1  # the call's number on the lane

    def answered(self, error: HsmError | None, value: object) -> None:
        """The lane's answer (`hsm_adapter.lane.Waiter`): wake the task with it,
        unless its wait is already over."""
        if self.task is not None:
            self.done, self.error = True, error
            trio.lowlevel.reschedule(self.task)
            self.task = None

    def refused(self, error: HsmError) -> None:
        """The lane refused the call at once (not serving): no wait at all."""
        self.done, self.error, self.task = True, error, None


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
        self._prune_at = PRUNE_MIN

    async def park(self, parked: Parked, when: float) -> None:
        """Sleep until `when`, or until `parked.cancel()` wakes the task early."""
        if when <= trio.current_time():
            # Due now: nothing can wake it earlier; let the other tasks of this
            # instant run first, in the order the scheduler (and its seed) picks.
            parked.task = None
            await trio.lowlevel.checkpoint()
            return
        self._seq += 1
        heap = self._heap
        heapq.heappush(heap, (when, self._seq, parked))
        if len(heap) > self._prune_at:
            # Mostly tasks woken early (device calls answered long before their
            # deadline): drop them, in time linear in what the heap gained since.
            heap[:] = [entry for entry in heap if entry[2].task is not None]
            heapq.heapify(heap)
            self._prune_at = max(PRUNE_MIN, 2 * len(heap))
        timer = self._timer
        if timer is not None and when < timer.deadline:
            timer.deadline = when
        await trio.lowlevel.wait_task_rescheduled(parked.abort)

    async def run(self) -> None:
        """The timer: reschedule every task whose instant has come; until cancelled."""
        heap, pop, reschedule = self._heap, heapq.heappop, trio.lowlevel.reschedule
        while True:
            now = trio.current_time() + self.resolution
            # Due, or woken early already (whose instant need not wake the timer).
            while heap and (heap[0][0] <= now or heap[0][2].task is None):
                parked = pop(heap)[2]
                if parked.task is not None:
                    reschedule(parked.task)
                    parked.task = None
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as self._timer:
                await trio.sleep_forever()
            self._timer = None


class _Conductor:
    """The replay's conductor task and the handshake with the flows' tasks: one of
    them runs at a time, so the steps happen in the agenda's order."""

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task = trio.lowlevel.current_task()

    async def hand_over(self) -> None:
        """Sleep until the task just woken or started hands control back."""
        await trio.lowlevel.wait_task_rescheduled(_abort)

    def take_back(self) -> None:
        """(In a flow's task) hand control back to the conductor."""
        trio.lowlevel.reschedule(self.task)


class _FlowTask:
    """A flow's task as the agenda knows it: what to reschedule when it wakes."""

    __slots__ = ("task",)

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task


def _abort(raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED  # cancelled (the liveness bound): let it go


class TrioDriver:
    """Drives one RelayTier: a whole replay under a virtual clock (`run`), or the
    requests of serve mode one by one on the real clock (`serve`, `perform`)."""

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
        # The PKCS#11 lane's calls are submitted and parked on (`DeviceCall`).
        self._device = (
            self.services
            if isinstance(self.services, DeviceServices) and self.services.lane is not None
            else None
        )
        self._progress = progress
        # Serve mode: the waits in progress by node number (a crash wakes them).
        self._waiting: dict[int, set[trio.CancelScope | Parked]] = {}
        self._alarms = Alarms(resolution)
        self._outer: trio.Nursery | None = None
        self._start = 0.0  # serve mode: when the periodic work began

    # -- replays: the conductor ------------------------------------------------------

    async def run(
        self, arrivals: Iterable[tuple[float, int]], events: Iterable[Event] = ()
    ) -> RunEnd:
        """Replay `arrivals` (time, CS) and `events`; return when the run is over.

        Under a `MockClock` with the simulated services, step by step in the
        agenda's order. Otherwise (a real device, the real clock) the requests run
        as in serve mode, each task waiting for its own effects (`_run_live`).
        """
        clock = trio.lowlevel.current_clock()
        if not isinstance(clock, trio.testing.MockClock) or not isinstance(
            self.services, SimulatedServices
        ):
            return await self._run_live(arrivals, events)
        tier = self.tier
        agenda = Agenda(tier, arrivals, events)
        conductor = _Conductor()
        start = trio.current_time()
        async with trio.open_nursery() as work:
            while True:
                kind = agenda.next()
                now = agenda.now
                if now > clock.current_time():
                    clock.jump(now - clock.current_time())
                if kind == END:
                    break
                if kind == ARRIVAL:
                    work.start_soon(self._flow, tier.arrive(agenda.cs, 0, now), agenda, conductor)
                    await conductor.hand_over()
                    if self._progress and agenda.arrivals % PROGRESS_EVERY == 0:
                        self._progress(now, tier)
                elif kind == RETRY:
                    assert agenda.retry is not None
                    work.start_soon(self._flow, tier.again(agenda.retry), agenda, conductor)
                    await conductor.hand_over()
                elif kind == ACTION:
                    assert agenda.event is not None
                    tier.handle(agenda.event, now)
                elif kind == CHECK:
                    tier.health_check(now)
                else:  # WAKE
                    waiter = agenda.waiter
                    assert isinstance(waiter, _FlowTask)
                    trio.lowlevel.reschedule(waiter.task, outcome.Value((agenda.result, now)))
                    await conductor.hand_over()
                if agenda.pending:
                    agenda.settle()
            # The liveness bound (or the end): what still waits is lost.
            work.cancel_scope.cancel()
        end = trio.current_time()
        if self._progress:
            self._progress(end, tier)
        return RunEnd(start, end, agenda.cut_short)

    async def _flow(self, flow: Flow, agenda: Agenda, conductor: _Conductor) -> None:
        """One request's task in a replay: perform its flow, one effect per step."""
        me = _FlowTask(trio.lowlevel.current_task())
        step: tuple[Result, float] | None = None
        while True:
            try:
                effect = next(flow) if step is None else flow.send(step)
            except StopIteration as stop:
                agenda.ended(stop.value)
                conductor.take_back()
                return
            agenda.wait(me, effect, trio.current_time())
            conductor.take_back()
            step = await trio.lowlevel.wait_task_rescheduled(_abort)

    async def _run_live(
        self, arrivals: Iterable[tuple[float, int]], events: Iterable[Event]
    ) -> RunEnd:
        """Arrivals and events on whatever clock runs, the requests performed as serve
        mode performs them; over when every request and retry has ended."""
        start = trio.current_time()
        async with trio.open_nursery() as outer:
            await outer.start(self.serve)
            outer.start_soon(self._scheduled, list(events))
            async with trio.open_nursery() as work:
                for t, cs in arrivals:
                    await trio.sleep_until(t)
                    work.start_soon(self._live, work, self.tier.arrive(cs, 0, t))
            outer.cancel_scope.cancel()
        return RunEnd(start, trio.current_time(), False)

    async def _live(self, work: trio.Nursery, flow: Flow) -> None:
        retry = await self.perform(flow)
        if retry is not None:
            await trio.sleep_until(retry.at)
            work.start_soon(self._live, work, self.tier.again(retry))

    # -- serve mode: requests one by one on the real clock -----------------------------

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
                if finish is None or not due_now(finish, effect.deadline, now, resolution):
                    return Waiting(effect, finish)
                effect = flow.send((wake(finish, effect.deadline)[1], now))
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
            # Known finishing time: parked until the core's rule says (`wake`), or
            # earlier by a crash (`_notice`).
            when, result = wake(finish, deadline)
            parked = Parked(trio.lowlevel.current_task())
            scopes.add(parked)
            try:
                await self._alarms.park(parked, when)
            finally:
                scopes.discard(parked)
            return (Result.UNANSWERED if parked.early else result), trio.current_time()
        device = self._device
        if device is not None and device.finish(effect, trio.current_time()) is None:
            # On the lane: parked until the answer, or the deadline (noticed at it,
            # never before: a timer wake-up may come `resolution` early), or a crash.
            call = DeviceCall(trio.lowlevel.current_task())
            scopes.add(call)
            try:
                device.start(effect, call)
                if call.task is not None:
                    await self._alarms.park(call, deadline + self._alarms.resolution)
            finally:
                scopes.discard(call)
                if not call.done:  # the deadline, a crash or a cancellation came first
                    device.forget(call)
            return device.ended(effect, call), trio.current_time()
        result = Result.UNANSWERED
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
        until cancelled, for requests performed one by one (`perform`): serve mode.
        The garbage collector runs at `SERVE_GC_THRESHOLDS` meanwhile."""
        thresholds = gc.get_threshold()
        gc.set_threshold(*SERVE_GC_THRESHOLDS)
        try:
            async with trio.open_nursery() as outer:
                self._outer = outer
                self._start = trio.current_time()
                outer.start_soon(self._alarms.run)
                outer.start_soon(self._health_checks, self.tier.params.health_check_s)
                task_status.started()
                await trio.sleep_forever()
        finally:
            gc.set_threshold(*thresholds)

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

    async def _health_checks(self, period: float) -> None:
        # Check k at k * period from the start, as the agenda schedules them (a sum
        # of sleeps would drift).
        k = 1
        while True:
            await trio.sleep_until(self._start + k * period)
            self.tier.health_check(trio.current_time())
            k += 1

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
    events: Iterable[Event] = (),
    *,
    progress: Progress | None = None,
) -> RunEnd:
    """Run a whole replay on the trio engine under a virtual clock: the same steps
    as the fast engine (`relay.core.agenda`), deterministic by construction."""
    driver = TrioDriver(tier, progress=progress)
    # The conductor moves the clock itself, step by step: no autojump needed.
    clock = trio.testing.MockClock(autojump_threshold=math.inf)
    return trio.run(driver.run, arrivals, events, clock=clock)
