"""The trio driver: one conductor carries out the core's rule book
(`relay.core.agenda.Agenda`) on trio's clock, for replays and for serve mode alike.

The conductor takes the agenda's steps in its order (actions and health checks,
then the waits due, in the order they began, then first attempts) and carries
each flow on itself, up to its next wait, which joins the agenda (`expect`). A
crash wakes the waits on its node in the order they began (`Agenda.settle`); a
replay ends at the liveness bound. The two uses differ only in their clock and
where requests come from:

- **replays** (`run`): first attempts from the scenario's stream; under a
  `trio.testing.MockClock` with the simulated services the conductor moves the
  clock to each step's instant (`jump`), so the trio engine takes exactly the
  fast engine's steps (a test holds them to identical summaries); on any other
  clock, or with a real device, it sleeps until each step is due;
- **serve mode** (`serve`): an open agenda: requests come from clients, through
  `advance` (which runs a flow until it must wait; on the real clock an effect
  that ends within the clock's resolution is no wait at all) and `follow` (the
  conductor carries it on and says when it ends). The conductor sleeps until the
  next step is due; whatever adds an earlier one (a wait, a device's answer, an
  injected fault) brings its wake-up forward.

A wait on a real device's call (`DeviceServices`: the PKCS#11 lane) is due at its
deadline until the device answers (`Agenda.answer`); the lane's calls are
submitted and answered by callback (`DeviceCall`), any other device's awaited in a
task of its own.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable
from typing import Protocol

import trio
import trio.testing

from hsm_adapter import Hsm
from hsm_adapter.errors import HsmError
from hsm_adapter.lane import Pkcs11Hsm
from relay.core.agenda import (
    ACTION,
    ARRIVAL,
    CHECK,
    END,
    RETRY,
    WAKE,
    Agenda,
    Carrier,
    Ended,
    Waiting,
)
from relay.core.events import Event, FaultEvent, OperatorEvent
from relay.core.tier import Effect, Flow, RelayTier, Result, Retry
from relay.engines.common import PROGRESS_EVERY, Progress, RunEnd

REAL_CLOCK_RESOLUTION = 0.001  # trio waits in epoll, whose timeout is whole milliseconds
# The cyclic collector's thresholds while serving (`TrioDriver.serve`). Each request
# a device waits on allocates a few dozen container objects (its task, coroutines,
# frames, cancel statuses) that die with it; Python's default first threshold (700)
# then runs a young collection every hundred requests or so, and the older ones
# walk the whole model with it: 9% of a serving process with the token, by perf.
# Fourteen times fewer young collections, the older ones as often relative to them.
SERVE_GC_THRESHOLDS = (10_000, 10, 10)
YIELD_EVERY = 64  # serve mode: steps the conductor takes before letting sockets in


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
    (`start`), and the flow's wait in the agenda ends at the lane's answer, the
    step's deadline or its node's crash, whichever comes first (`DeviceCall`). Any
    other device is awaited (`perform`) in a task, under the step's deadline.
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
        if not effect.device() or effect.silent():
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


class DeviceCall:
    """A flow's HSM call on the PKCS#11 lane (`DeviceServices.start`): the lane's
    answer (`answered`) ends the flow's wait at once, unless the wait is over
    already (its deadline, or its node's crash, came first)."""

    __slots__ = ("done", "driver", "error", "follow", "rid", "seq")

    def __init__(self, driver: TrioDriver, follow: _Follow) -> None:
        self.driver = driver
        self.follow: _Follow | None = follow  # None once the wait is over
        self.done = False  # the lane answered (with `error`, if it failed the call)
        self.error: HsmError | None = None
        self.rid = -1  # the call's number on the lane
        self.seq = -1  # the wait's number in the agenda

    def answered(self, error: HsmError | None, value: object) -> None:
        """The lane's answer (`hsm_adapter.lane.Waiter`)."""
        follow = self.follow
        if follow is not None and follow.call is self:
            self.done, self.error = True, error
            self.driver.answer(follow, self.seq, Result.DONE)

    def refused(self, error: HsmError) -> None:
        """The lane refused the call at once (not serving): no wait at all."""
        self.done, self.error = True, error


#: What `follow` reports when a flow ends or stops for its client: how (`Ended`,
#: or `Waiting` on a client's `Think`), or the exception a step of it raised.
Done = Callable[["Waiting | Ended | Exception"], None]


class _Follow:
    """A flow the conductor carries on: where its end is reported (`done`),
    whether a `Think` is its client's (serve mode: the next message ends it), and
    what it waits on (the effect, a device call, an awaited device's task)."""

    __slots__ = ("call", "client", "done", "effect", "flow", "task")

    def __init__(self, flow: Flow, done: Done, client: bool) -> None:
        self.flow = flow
        self.done = done
        self.client = client
        self.effect: Effect | None = None
        self.call: DeviceCall | None = None
        self.task: trio.CancelScope | None = None


class TrioDriver:
    """Carries out one RelayTier's agenda on trio's clock: a whole replay (`run`),
    or serve mode's open agenda (`serve`), whose requests come in through
    `advance` and `follow`."""

    def __init__(
        self,
        tier: RelayTier,
        *,
        services: Services | None = None,
        progress: Progress | None = None,
        resolution: float = 0.0,
    ) -> None:
        """`resolution`: how finely the clock wakes a task: 0 for a virtual clock,
        `REAL_CLOCK_RESOLUTION` on the real one (an effect ending within it is no
        wait at all, `advance`)."""
        self.tier = tier
        self.services = services or SimulatedServices(tier)
        # The PKCS#11 lane's calls are submitted and answered by callback (`DeviceCall`).
        self._device = (
            self.services
            if isinstance(self.services, DeviceServices) and self.services.lane is not None
            else None
        )
        self._progress = progress
        self.resolution = resolution
        # The core's own services are asked directly (compiled), any other's `finish`.
        simulated = type(self.services) is SimulatedServices
        self._carrier = Carrier(
            tier,
            resolution,
            None if simulated else self.services.finish,
            self._settle,
            trio.current_time,
        )
        #: `advance(flow, step=None, now=None)`: run `flow` from its start (at `now`,
        #: default the clock's) or resumed with `step` until it must wait; the
        #: effect to wait for next (`Waiting`), or how the flow ended (`Ended`). On
        #: the real clock, effects that end (reply or deadline) within the clock's
        #: resolution are done at once, without a wait (in serve mode, with service
        #: times below a millisecond, a whole request), at the instant it began;
        #: under virtual time every effect is waited for. The core's `Carrier`: one
        #: compiled call, where a method here would add a Python frame per request.
        self.advance = self._carrier.advance
        self.agenda: Agenda | None = None  # the run's, while `run` or `serve` goes on
        self._nursery: trio.Nursery | None = None  # awaited devices' tasks
        self._sleep: trio.CancelScope | None = None  # the conductor's, between steps
        self._jump: trio.testing.MockClock | None = None  # a replay's clock, moved by hand

    @property
    def now(self) -> Callable[[], float]:
        """The run's clock, read directly once `run` or `serve` has begun (a request
        reads it a few times, and trio.current_time goes through three calls); the
        one `advance` reads."""
        return self._carrier.clock

    # -- the runs ---------------------------------------------------------------------

    async def run(
        self, arrivals: Iterable[tuple[float, int]], events: Iterable[Event] = ()
    ) -> RunEnd:
        """Replay `arrivals` (time, CS) and `events`; return when the run is over
        (every flow ended, or the liveness bound cut it short)."""
        clock = trio.lowlevel.current_clock()
        self._carrier.clock = clock.current_time
        # A virtual clock nothing else moves, and services whose every finishing
        # time is known: the conductor moves the clock to each step itself.
        jump = (
            isinstance(clock, trio.testing.MockClock)
            and clock.autojump_threshold == math.inf
            and isinstance(self.services, SimulatedServices)
        )
        start = trio.current_time()
        agenda = Agenda(self.tier, arrivals, events, start=start)
        self._jump = clock if jump and isinstance(clock, trio.testing.MockClock) else None
        async with trio.open_nursery() as self._nursery:
            await self._conduct(agenda)
            self._nursery.cancel_scope.cancel()  # devices' calls still out: lost
        end = trio.current_time()
        if self._progress:
            self._progress(end, self.tier)
        return RunEnd(start, end, agenda.cut_short)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Carry out serve mode's open agenda until cancelled: health checks, the
        model's own actions (operators reacting to a failure), and the waits of the
        requests `follow` hands over. The garbage collector runs at
        `SERVE_GC_THRESHOLDS` meanwhile."""
        thresholds = gc.get_threshold()
        gc.set_threshold(*SERVE_GC_THRESHOLDS)
        self._carrier.clock = trio.lowlevel.current_clock().current_time
        try:
            agenda = Agenda(self.tier, (), (), start=trio.current_time(), open=True)
            async with trio.open_nursery() as self._nursery:
                self.agenda = agenda
                task_status.started()
                await self._conduct(agenda)
        finally:
            self.agenda = None
            gc.set_threshold(*thresholds)

    async def _conduct(self, agenda: Agenda) -> None:
        """Take `agenda`'s steps in its order until it ends: at each step's instant,
        by moving the replay's clock there (`_jump`) or by sleeping until it."""
        self.agenda = agenda
        tier, jump, progress, clock = self.tier, self._jump, self._progress, self.now
        taken = 0
        while True:
            if jump is None:
                at = agenda.peek()
                if at > clock():
                    # Nothing due yet: sleep until it, unless something earlier is
                    # added meanwhile (`_poke`).
                    with trio.CancelScope(deadline=at) as self._sleep:
                        await trio.sleep_forever()
                    self._sleep = None
                    continue
                taken += 1
                if taken % YIELD_EVERY == 0:
                    await trio.lowlevel.checkpoint()  # a burst of steps: let sockets in
                    continue
            kind = agenda.next()
            now = agenda.now
            if jump is not None:
                if now > jump.current_time():
                    jump.jump(now - jump.current_time())
            elif kind != END:
                now = max(now, clock())  # a late wake-up is charged
            if kind == END:
                break
            if kind == WAKE:
                self._woken(agenda.waiter, agenda.result, now)
            elif kind == ARRIVAL:
                _, flow = tier.arrive(agenda.cs, 0, now)
                self._carry(_Follow(flow, self._ended, False), None)
                if progress and agenda.arrivals % PROGRESS_EVERY == 0:
                    progress(now, tier)
            elif kind == RETRY:
                assert agenda.retry is not None
                _, flow = tier.again(agenda.retry)
                self._carry(_Follow(flow, self._ended, False), None)
            elif kind == ACTION:
                assert agenda.event is not None
                tier.handle(agenda.event, now)
            elif kind == CHECK:
                tier.health_check(now)
            if agenda.pending:
                agenda.settle()

    def _ended(self, state: Waiting | Ended | Exception) -> None:
        """A replay's flow ended: its counter user may try again."""
        if isinstance(state, Exception):
            raise state
        assert type(state) is Ended
        agenda = self.agenda
        assert agenda is not None
        agenda.ended(state.retry)

    # -- carrying flows on ------------------------------------------------------------

    def follow(self, flow: Flow, waiting: Waiting, done: Done) -> None:
        """Carry `flow` on from `waiting` (where `advance` left it) until it ends, or
        waits on its client's `Think` (serve mode: the client's next message ends
        that wait); then `done(state)`, or `done(exc)` if a step of it raised.
        Needs `serve` (or `run`) going on."""
        self._wait(_Follow(flow, done, True), waiting)

    async def perform(self, flow: Flow) -> Retry | None:
        """Perform `flow` until it ends; the counter user's retry, if any (a
        convenience over `advance` and `follow`)."""
        state: Waiting | Ended | Exception = self.advance(flow)
        if type(state) is Waiting:
            finished = trio.Event()
            result: list[Waiting | Ended | Exception] = []

            def done(end: Waiting | Ended | Exception) -> None:
                result.append(end)
                finished.set()

            self._wait(_Follow(flow, done, False), state)
            await finished.wait()
            state = result[0]
        if isinstance(state, Exception):
            raise state
        assert type(state) is Ended
        return state.retry

    def _carry(self, follow: _Follow, step: tuple[Result, float] | None) -> None:
        """Run `follow`'s flow on from `step` until it waits (the agenda has the
        wait) or ends (its `done` is told)."""
        try:
            state = self.advance(follow.flow, step)
        except Exception as exc:  # a bug in one flow: its owner answers for it
            follow.done(exc)
            return
        if type(state) is Waiting:
            self._wait(follow, state)
        else:
            follow.done(state)

    def _wait(self, follow: _Follow, waiting: Waiting) -> None:
        """`follow` waits on `waiting`'s effect: the agenda has it, due when the
        core's rule says, or when a device answers."""
        effect, finish = waiting.effect, waiting.finish
        if follow.client and effect.client():
            follow.done(waiting)  # the client's turn: its next message resumes it
            return
        agenda = self.agenda
        assert agenda is not None, "the driver's run() or serve() must be going on"
        follow.effect = effect
        if finish is not None:
            agenda.expect(follow, effect, finish)
            self._poke(min(finish, effect.deadline))
            return
        device = self._device
        if device is not None:
            call = follow.call = DeviceCall(self, follow)
            device.start(effect, call)
            if call.done:  # refused at once: no wait at all
                follow.call = None
                self._carry(follow, (device.ended(effect, call), self.now()))
                return
            call.seq = agenda.expect(follow, effect, math.inf)
            self._poke(effect.deadline)
            return
        # Another device: its call awaited in a task, under the step's deadline.
        seq = agenda.expect(follow, effect, math.inf)
        self._poke(effect.deadline)
        assert self._nursery is not None
        self._nursery.start_soon(self._performed, follow, effect, seq)

    async def _performed(self, follow: _Follow, effect: Effect, seq: int) -> None:
        with trio.CancelScope(deadline=effect.deadline) as follow.task:
            result = await self.services.perform(effect)
            follow.task = None
            self.answer(follow, seq, result)

    def answer(self, follow: _Follow, seq: int, result: Result) -> None:
        """A device answered `follow`'s wait number `seq` now, with `result`."""
        agenda, effect = self.agenda, follow.effect
        if agenda is None or effect is None:
            return  # the run is over
        now = self.now()
        agenda.answer(seq, follow, effect.node.number, now, result)
        self._poke(now)

    def _woken(self, follow: object, result: Result, now: float) -> None:
        """The agenda woke `follow` at `now` with `result`: carry its flow on."""
        assert isinstance(follow, _Follow)
        call = follow.call
        if call is not None:
            follow.call = None
            device = self._device
            assert device is not None
            assert follow.effect is not None
            if result is Result.DONE:  # the lane answered
                result = device.ended(follow.effect, call)
            elif not call.done:  # its deadline or its node's crash came first
                device.forget(call)
        if follow.task is not None:  # an awaited device: it is too late now
            follow.task.cancel()
            follow.task = None
        self._carry(follow, (result, now))

    def _poke(self, at: float) -> None:
        """Something is due at `at`: wake the conductor then, if it sleeps past it."""
        sleep = self._sleep
        if sleep is not None and at < sleep.deadline:
            sleep.deadline = at

    def _settle(self) -> None:
        """Take in what the model reported outside the conductor's steps (a crash
        at a request's arrival, an injected fault): the waits on a crashed node
        wake now, in the order they began; the actions it decided on join the
        schedule."""
        agenda = self.agenda
        if agenda is None:
            return
        if self._jump is None:
            agenda.now = max(agenda.now, self.now())
        agenda.settle()
        self._poke(agenda.now)

    # -- faults and operator actions from outside (serve mode's admin endpoint) -------

    def heal(self) -> None:
        """Undo every fault still in effect now (`RelayTier.heal`), and act on it."""
        self.tier.heal(trio.current_time())
        self._settle()

    def apply(self, event: OperatorEvent | FaultEvent) -> None:
        """Carry out an operator action or a fault now, and act on its consequences
        (wake flows on a crashed node, schedule operators' reactions)."""
        self.tier.handle(event, trio.current_time())
        self._settle()


def run(
    tier: RelayTier,
    arrivals: Iterable[tuple[float, int]],
    events: Iterable[Event] = (),
    *,
    progress: Progress | None = None,
    sleep: bool = False,
) -> RunEnd:
    """Run a whole replay on the trio engine under a virtual clock: the same steps
    as the fast engine (`relay.core.agenda`), deterministic by construction. The
    conductor moves the clock itself, step by step; with `sleep` it sleeps until
    each step instead, on a clock that jumps when every task waits, as serve mode
    does on the real clock (the same steps: a test holds the three together)."""
    driver = TrioDriver(tier, progress=progress)
    clock = trio.testing.MockClock(autojump_threshold=0 if sleep else math.inf)
    return trio.run(driver.run, arrivals, events, clock=clock)
