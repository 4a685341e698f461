"""The relay tier: dispatcher, relay nodes, HSMs and backend, and the relay step.

This is the sans-IO heart of relaysim. `RelayTier.arrive` returns the life of one
request as a generator (a *flow*): it yields an effect (call the HSM, forward to the
backend) with its deadline, and a driver sends back how the effect ended and the
time it ended at. Every decision is taken here; drivers only wait (`relay.engines.trio`
under trio, a discrete-event loop for fast replays), so all of them run the same
model.

    req, flow = tier.arrive(cs, attempt=0, now=t)
    step = next(flow)                               # step.request is the message
    while isinstance(step, Wait):
        ... wait for the effect, or its deadline ...
        step = flow.send((Result.DONE, now))
    retry = step                                    # its end: a Retry or None
"""

from __future__ import annotations

import enum
import math
from collections.abc import Generator, Sequence
from typing import Any, Final, Protocol

from relay.core.backend import Backend
from relay.core.design import Design
from relay.core.dispatcher import Dispatcher, Refused
from relay.core.events import Action, FaultEvent, OperatorEvent
from relay.core.faults import KINDS, name_of
from relay.core.hsm import HsmQueue
from relay.core.ledger import Ledger
from relay.core.monitor import Monitor
from relay.core.node import Node, Outage
from relay.core.params import TierParams
from relay.core.request import Outcome, Phase, Request
from relay.core.rng import Streams
from relay.core.timer import OsTimer
from relay.core.workarea import AllocatorError


class LogSink(Protocol):
    """Where the model reports notable events (a structlog logger fits)."""

    def info(self, event: str, *args: Any, **kw: Any) -> Any: ...


class _Silent:
    def info(self, event: str, *args: Any, **kw: Any) -> None:
        return None


class Result(enum.Enum):
    """How a driver says an effect ended."""

    DONE = "done"  # the reply or answer arrived
    # The effect ended without its answer: its deadline passed first, its node
    # crashed under it (woken early), or a real device failed the call. The flow
    # tells them apart (the node's epoch, the clock against the step's timer).
    UNANSWERED = "unanswered"
    # Serve mode: the client's next message of an operation never came (its counter
    # went away); the operation ends and its connection closes. Replays never say it.
    ABANDONED = "abandoned"


class Wait:
    """An effect: what a flow waits for on `node`, until `deadline` at the latest,
    for message `request`.

    Each kind is one class, which says all a driver asks of it (the effect kinds'
    registry): when its simulated service finishes (`finish`), whether nothing will
    answer it (`silent`), whether a real device performs it (`device`), and
    whether, in serve mode, its client ends it (`client`: the operation's next
    message). Methods, not class attributes: compiled, each is a native call.

    A plain class, not a dataclass: compiled, its constructor is native (a
    dataclass's, `slots=True` or not, runs interpreted: 3% of a whole day)."""

    __slots__ = ("deadline", "node", "request")

    def __init__(self, node: Node, deadline: float, request: Request | None = None) -> None:
        self.node = node
        self.deadline = deadline
        self.request = request

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(node={self.node!r}, deadline={self.deadline!r}, "
            f"request={self.request!r})"
        )

    def device(self) -> bool:
        """Whether a real device (the HSM) performs it when there is one."""
        return False

    def client(self) -> bool:
        """Whether, in serve mode, its client ends it."""
        return False

    def finish(self, tier: RelayTier, now: float) -> float:
        """When the simulated service behind it, started at `now`, finishes
        (math.inf: never)."""
        return math.inf

    def silent(self) -> bool:
        """Whether nothing will ever answer it."""
        return False


class CallHsm(Wait):
    """Wait for the node's HSM to process this request, until `deadline` at the latest."""

    def device(self) -> bool:
        """The HSM: a real one signs, where there is one."""
        return True

    def finish(self, tier: RelayTier, now: float) -> float:
        """The node's HSM lane, first come, first served."""
        return self.node.hsm.submit(now)

    def silent(self) -> bool:
        """A lane that has stopped answering answers nothing (a real device is not
        asked)."""
        return bool(self.node.hsm.stuck)


class CallBackend(Wait):
    """Wait for the backend's answer to this request, until `deadline` at the latest."""

    def finish(self, tier: RelayTier, now: float) -> float:
        """The backend's answer."""
        return tier.backend.submit(now)


class LostReply(Wait):
    """The HSM reply was lost on its core: nothing will answer; wait for `deadline`.

    A driver resumes the flow at the deadline with Result.UNANSWERED (or earlier,
    if the node crashes or restarts).
    """

    def silent(self) -> bool:
        """Lost already."""
        return True


class Think(Wait):
    """The counter works between two messages of one operation (the resident, the
    card) until `deadline`, its connection held open. A driver resumes the flow at
    the deadline with Result.DONE (or earlier, if the node crashes). In serve mode
    its client ends it: once resumed, `request` is the operation's next message."""

    def client(self) -> bool:
        """In serve mode the client's next message ends it."""
        return True

    def finish(self, tier: RelayTier, now: float) -> float:
        """The end of the think: its deadline."""
        return self.deadline


#: What a flow yields: one base class, not a union, so that compiled code reads an
#: effect's `node` and `deadline` as native attributes (measured: 0.5% of a day's
#: instructions).
Effect = Wait


class Retry:
    """A counter user will try the operation again: a new request at `at`.

    A plain class, not a frozen dataclass: compiled, its constructor is native (a
    dataclass's runs interpreted). Nothing changes one once made."""

    __slots__ = ("at", "attempt", "chip", "cs", "key", "messages")

    def __init__(
        self,
        at: float,
        cs: int,
        attempt: int,
        key: int = -1,
        chip: bool = False,
        messages: int = 1,
    ) -> None:
        self.at = at
        self.cs = cs
        self.attempt = attempt
        self.key = key  # the operation's idempotency key, for a chip-writing re-send
        self.chip = chip
        self.messages = messages  # the operation's messages still to send, the failed one first

    def __repr__(self) -> str:
        return (
            f"Retry(at={self.at!r}, cs={self.cs!r}, attempt={self.attempt!r}, key={self.key!r}, "
            f"chip={self.chip!r}, messages={self.messages!r})"
        )


#: One counter operation as the relay step runs it (`RelayTier._relay`): its
#: effects, and its end as its return value.
Step = Generator[Effect, tuple[Result, float], Retry | None]
#: A flow, as drivers resume it: its effects, then its end (a `Retry`, or None)
#: yielded like them; a driver tells the two apart by type (`Wait`) and never
#: resumes a flow after its end.
Flow = Generator[Effect | Retry | None, tuple[Result, float], None]


def _ended(step: Step) -> Flow:
    """`step` as a flow: its effects, then its end yielded. Compiled, `yield from`
    takes the step's return value through its `am_send` slot; resumed directly,
    its return would raise StopIteration, which compiled code catches by way of a
    traceback entry (4% of a whole day's instructions, and half a microsecond of
    every request serve answers)."""
    retry = yield from step
    yield retry


# The relay step's constants as module-level finals: compiled, a load of one of
# these is a C global, not an attribute lookup on a Python enum class.
_DONE: Final = Result.DONE
_ABANDONED: Final = Result.ABANDONED
_FOREVER: Final = math.inf  # a client's think: the server ends it, not the model
_COMPLETED: Final = Outcome.COMPLETED
_TIMEOUT: Final = Outcome.TIMEOUT
_ERROR: Final = Outcome.ERROR
_ALLOCATED: Final = Phase.ALLOCATED
_HSM_PENDING: Final = Phase.HSM_PENDING
_FORWARDED: Final = Phase.FORWARDED
_ANSWERED: Final = Phase.ANSWERED
_FAILED: Final = Phase.FAILED


class RelayTier:
    """Everything between the CSs and the backend, for one run."""

    def __init__(
        self,
        params: TierParams,
        cs_caps: Sequence[int],
        streams: Streams,
        log: LogSink | None = None,
        terminal_caps: Sequence[int | None] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        """`params`: the run's parameters (`relay.scenario.build` makes them from a
        scenario); `cs_caps` / `terminal_caps`: each CS's CS-to-relay and
        terminal-to-CS simultaneous-connection limits (`relay.core.dispatcher`);
        `ledger`: where outcomes go (default: a replay's, every latency kept)."""
        self.params = params
        self.design: Design = params.design
        # The switches the relay step reads on every message, as plain attributes.
        self._deadline_on = self.design.hsm_call_deadline
        self._scoped_timer = self.design.request_scoped_timer
        self.log: LogSink = log or _Silent()
        self._streams = streams
        self.ledger = ledger or Ledger()
        self.backend = self._make_backend()
        self.dispatcher = Dispatcher(
            [self.make_node(n) for n in range(1, params.relays.count + 1)],
            cs_caps,
            params.policy,
            terminal_caps,
        )
        counters = params.counters
        self._think = counters.retry_think_s.sampler(streams.stream("counter-users"))
        self._counters = counters
        self._messages = counters.messages
        self._between = counters.step_think_s.sampler(streams.stream("counter-steps"))
        self._hsm_deadline = params.hsm.deadline_s
        self._max_resends = counters.max_resends
        # Which operations write the card's chip first: their own stream, drawn only
        # when the share is set (every other stream stays as it was).
        self._chip_share = counters.chip_write_share
        self._operations = streams.stream("operations") if self._chip_share else None
        # Nodes that crashed since the driver last looked: it wakes their waiting
        # flows at once instead of letting them sleep until their deadlines.
        self.crashed: list[Node] = []
        # Actions the model itself scheduled (operators reacting to a failure) since
        # the driver last looked; the driver runs each at its time.
        self.agenda: list[OperatorEvent] = []
        recovery = params.recovery
        operators = streams.stream("operators")
        self._detection = recovery.detection_min.sampler(operators)
        self._standby_detection = recovery.standby_detection_min.sampler(operators)
        self._standby_from = math.inf if recovery.standby_from is None else recovery.standby_from

    def _make_backend(self) -> Backend:
        b, design = self.params.backend, self.design
        memory = b.memory_mb_raised if design.large_backend_memory else b.memory_mb
        return Backend(
            b.service_ms.sampler(self._streams.stream("backend"), 1e-3),
            base_chars=b.base_chars,
            growth_chars=0.0 if design.short_thread_names else b.growth_chars,
            reset_pause=b.reset_pause_s,
            log_per_char=b.log_s_per_char,
            capacity=int(memory // b.request_mb) if b.request_mb else None,
        )

    def make_node(self, number: int) -> Node:
        """Relay `number` as this tier builds one (an operator's `add` too)."""
        p, r, m = self.params, self.params.relays, self.params.monitor
        rng = self._streams.stream(f"relay{number}")
        phase = rng.uniform(0.0, m.period_s)  # drawn either way: the stream stays as it was
        return Node(
            number=number,
            max_connections=r.max_connections,
            cores=r.cores,
            interrupt=p.hsm.interrupt_s,
            timer=OsTimer(r.timeout_s, r.timer_resolution_s),
            hsm=HsmQueue(p.hsm.service_ms.sampler(self._streams.stream(f"hsm{number}"), 1e-3)),
            monitor=Monitor(
                enabled=m.enabled,
                period=m.period_s,
                handling=m.handling_s,
                cores=r.cores,
                phase=phase if m.phase_s is None else m.phase_s,
                salt=rng.getrandbits(64),
            ),
            rng=rng,
        )

    def submit(self, effect: Effect, now: float) -> float:
        """When the simulated service behind `effect`, started at `now`, finishes:
        the node's HSM lane (first come, first served), the backend, the end of a
        think; never (math.inf) for a lost reply (`Wait.finish`)."""
        return effect.finish(self, now)

    def silent(self, effect: Effect) -> bool:
        """Whether nothing will ever answer `effect`: a reply already lost, or a call
        into an HSM lane that has stopped answering (`Wait.silent`)."""
        return effect.silent()

    @property
    def longest_message_s(self) -> float:
        """The longest one message, once admitted, can take to end: every wait of its
        relay step ends by the step timer's expiry (`OsTimer.arm`: the timeout), and
        a wake-up lands at most one OS tick after it. What a server's drain needs."""
        r = self.params.relays
        return r.timeout_s + r.timer_resolution_s

    @property
    def nodes(self) -> list[Node]:
        """Every relay node that has been part of the tier, in number order."""
        return self.dispatcher.nodes

    # -- the relay step ---------------------------------------------------------

    def arrive(self, cs: int, attempt: int, now: float) -> tuple[Request, Flow]:
        """A counter operation from CS `cs` reaches the distributor at `now`: its first
        message and its flow."""
        req = self._message(cs, attempt, now)
        return req, _ended(self._relay(req, now, None, self._messages))

    def again(self, retry: Retry) -> tuple[Request, Flow]:
        """The counter user's next try (`Retry`) reaches the distributor: its first
        message and its flow."""
        req = self.ledger.open(retry.cs, retry.attempt, retry.at, retry.key, retry.chip)
        return req, _ended(self._relay(req, retry.at, None, retry.messages))

    def _message(self, cs: int, attempt: int, now: float) -> Request:
        """Open a new upstream message of an operation of CS `cs` in the ledger."""
        ops = self._operations
        chip = ops is not None and ops.random() < self._chip_share
        return self.ledger.open(cs, attempt, now, chip=chip)

    def admit(
        self, cs: int, attempt: int, now: float, at: Node | None = None, messages: int = 1
    ) -> tuple[Request, Flow]:
        """An operation of `messages` messages as a client of serve mode sends them,
        and its first message, whose `outcome` is set when it ends (serve mode
        answers the client with it). Between two messages the flow waits on a
        `Think` whose end is the client's next message (`Result.DONE`; once resumed,
        the think's `request` is that message) or its absence (`Result.ABANDONED`). With
        `at`, the request came in on that node's own port: the distributor's choice
        is bypassed."""
        req = self.ledger.open(cs, attempt, now)
        return req, _ended(self._relay(req, now, at, messages, client=True))

    def _relay(
        self, req: Request, now: float, at: Node | None = None, left: int = 1, client: bool = False
    ) -> Step:
        """One counter operation: its connection, then its `left` messages, each a
        relay step; `req` is the first message, already open in the ledger. With
        `client`, the counter between two messages is a real client (serve mode):
        the wait ends when its next message comes, with no time of the model's."""
        ledger, design, dispatcher = self.ledger, self.design, self.dispatcher
        node = dispatcher.route(req.cs) if at is None else dispatcher.place(req.cs, at)
        if isinstance(node, Refused):
            if node.node is not None:
                ledger.at_node(req, node.node.number)
            ledger.close(req, Outcome.OVERFLOW, now, refusal=node.reason)
            return self._retry(req, Outcome.OVERFLOW, now, left)
        epoch = node.epoch
        # One effect object of each kind per operation, its deadline set before each
        # wait: a driver reads an effect when the flow yields it and never keeps it
        # past the flow's next step, and three allocations a message are a tenth of
        # a whole-day replay.
        hsm_call, backend_call, think = CallHsm(node, 0.0), CallBackend(node, 0.0), Think(node, 0.0)
        while True:
            # Each effect carries the message it is for.
            hsm_call.request = backend_call.request = think.request = req
            ledger.at_node(req, node.number)
            if not node.up or node.epoch != epoch:
                # The application is down, or died while the connection sat open:
                # the OS takes the message and drops the connection; an error.
                outcome = self._close(req, _FAILED, _ERROR, now)
                break
            # 1. start the timer for the whole step.
            expiry = node.timer.arm(now)
            if node.timer.pending:
                # Cause 2: a timeout notification a dropped reset left pending
                # arrives now, before this request has allocated its work area.
                outcome = self._stale_timeout(req, node, now)
                break
            # 2. allocate the work area.
            req.area = node.allocator.allocate()
            req.advance(_ALLOCATED)
            # 3. the HSM processes the data; its reply is an interrupt on one core.
            hsm_deadline = expiry
            if self._deadline_on:
                hsm_deadline = min(expiry, now + self._hsm_deadline)
            req.advance(_HSM_PENDING)
            lane = node.hsm.epoch
            hsm_call.deadline = hsm_deadline
            result, now = yield hsm_call
            if node.epoch != epoch:
                outcome = self._died(req, now)
                break
            if result is _DONE and self._reply_lost(node, lane, now):
                result, now = yield LostReply(node, hsm_deadline, req)
                if node.epoch != epoch:
                    outcome = self._died(req, now)
                    break
            if result is _DONE:
                # 4. forward to the backend and return its answer. The backend
                # applies the registration whatever becomes of the reply.
                req.advance(_FORWARDED)
                known = req.chip and ledger.register(req, design.idempotent_backend)
                if not known:  # a known key is confirmed at once, and nothing applied
                    backend_call.deadline = expiry
                    result, now = yield backend_call
                    if node.epoch != epoch:
                        outcome = self._died(req, now)
                        break
            elif self._deadline_on and node.hsm.stuck:
                # The HSM call's own deadline passed on a silent lane: reset the
                # lane (re-open the HSM session) so the next request is served again.
                self._reset_lane(node, now)
            if result is _DONE:
                req.advance(_ANSWERED)
                outcome = _COMPLETED
                # 5. reset the timer: a reset in the expiry's own tick may be
                # dropped, leaving the notification pending for the next request.
                node.timer.reset(now, expiry, scoped=self._scoped_timer)
            else:
                req.advance(_FAILED)
                outcome = _TIMEOUT if now >= expiry else _ERROR
            # 5. free the work area.
            node.allocator.free(req.area)
            self._close(req, None, outcome, now)
            if outcome is not _COMPLETED:
                break  # the operation stops at its failed message
            left -= 1
            if not left:
                break
            # The counter's own steps before the operation's next message (the
            # resident, the card): the connection stays open meanwhile.
            think.deadline = _FOREVER if client else now + self._between.draw()
            result, now = yield think
            if result is _ABANDONED:
                break  # the client's next message never came
            req = think.request = self._message(req.cs, req.attempt, now)
        # The operation is over: its connection closes.
        dispatcher.release(node, req.cs)
        return self._retry(req, outcome, now, left)

    def _reply_lost(self, node: Node, lane: int, now: float) -> bool:
        """Whether the HSM reply due at `now` for a call made in lane epoch `lane` is lost."""
        if node.hsm.epoch != lane:
            return True  # the lane stopped or was reset while the call was in it
        if node.probe_hits_reply(now) and not self.design.probe_safe_interrupts:
            # Cause 1: a monitor probe took the core while it processed this reply;
            # the reply is lost and the lane never answers again.
            self.hang(node, now, "core_contention")
            return True
        return False

    def _stale_timeout(self, req: Request, node: Node, now: float) -> Outcome:
        """The termination path runs for a request that has no work area yet."""
        node.timer.pending -= 1
        req.advance(Phase.FAILED)
        if self.design.checked_free:
            # The April fix: check the allocation first; nothing to free. The
            # application reports the (spurious) timeout and carries on.
            return self._close(req, None, Outcome.TIMEOUT, now)
        try:
            node.allocator.free(req.area)
        except AllocatorError:
            self.crash(node, now, "unallocated_free")
        return self._close(req, None, Outcome.ERROR, now)

    def _died(self, req: Request, now: float) -> Outcome:
        # The process died under the request: its work area went with it.
        req.area = None
        return self._close(req, Phase.FAILED, Outcome.ERROR, now)

    def _close(self, req: Request, phase: Phase | None, outcome: Outcome, now: float) -> Outcome:
        """End one message: cleaned up, its outcome recorded."""
        if phase is not None:
            req.advance(phase)
        req.advance(Phase.CLEANED)
        self.ledger.close(req, outcome, now)
        return outcome

    def _retry(self, req: Request, outcome: Outcome, now: float, left: int) -> Retry | None:
        """What the counter does after its operation ended at `req` with `outcome`,
        `left` messages short of done: nothing, or try again later (`Retry`)."""
        if not left:
            return None
        if req.chip:
            # The chip is written already: on legacy the operation cannot be redone
            # (the card is reissued); with re-sends the terminal tries again with the
            # same key until it is confirmed.
            if not self.design.resend_chip_operations or req.attempt >= self._max_resends:
                return None
            return Retry(now + self._think.draw(), req.cs, req.attempt + 1, req.key, True, left)
        if not self._counters.retries(outcome.value, req.attempt):
            return None
        return Retry(now + self._think.draw(), req.cs, req.attempt + 1, messages=left)

    # -- operators ----------------------------------------------------------------

    def handle(self, event: OperatorEvent | FaultEvent, now: float) -> None:
        """Carry out an operator action or a fault at `now`: scheduled by a scenario,
        injected live (`relay.serve.admin`), or decided by the model itself. What
        each kind does is its entry in `relay.core.faults.KINDS`."""
        kind = KINDS[name_of(event)]
        nodes = self.dispatcher.nodes
        at = event.node
        node = nodes[at - 1] if kind.on_node and at is not None and at <= len(nodes) else None
        kind.apply(self, node, event, now)

    def heal(self, now: float) -> None:
        """Undo every fault still in effect at `now` (`relaysim fault clear`): the
        backend back to speed, no timeout notification pending, every crashed or
        stalled node restarted and every node attached."""
        self.handle(FaultEvent(now, "slow_backend", factor=1.0), now)
        for node in self.nodes:
            node.timer.pending = 0
            if not node.up or node.hsm.stuck:
                self.handle(OperatorEvent(now, "restart", node.number), now)
            if not self.dispatcher.attached[node.number - 1]:
                self.handle(OperatorEvent(now, "attach", node.number), now)

    def health_check(self, now: float) -> None:
        """The distributor checks every node once at `now` and acts on the results."""
        d = self.dispatcher
        deep = self.design.deep_health_check
        for node in d.nodes:
            # Deep: a request end to end through the HSM with a short deadline, which
            # a crashed node and a silent HSM lane both fail. Without it (2016) the
            # distributor's check saw the server, not the application: it kept
            # sending to a crashed or hung relay until operators detached it.
            ok = node.up and not node.hsm.stuck if deep else True
            change = d.health(node, ok)
            if change is not None:
                self.log.info(f"health.{change}", t=now, node=node.name)
            if deep and node.up and node.hsm.stuck and self.design.hsm_call_deadline:
                # The check's own HSM call met the silent lane; with per-call deadlines
                # that resets it, so a detached node is not left stalled for want of
                # traffic, and the next check can pass and re-attach it.
                self._reset_lane(node, now)

    # -- failures and recovery --------------------------------------------------------

    def crash(self, node: Node, now: float, mechanism: str) -> None:
        """The relay application on `node` terminates abnormally at `now`.

        Its in-flight requests end with an error (their work areas die with the
        process) and it serves nothing until restarted: by the supervisor at once on
        a design with `auto_restart`, otherwise by operators after they notice.
        """
        if not node.up:
            return
        self._end_hang(node, now)  # a crash ends a hang: the process is gone
        node.up = False
        self._kill_in_flight(node)
        node.outages.append(Outage("crash", mechanism, now))
        self.log.info("node.crash", t=now, node=node.name, mechanism=mechanism)
        if self.design.auto_restart:
            self.restart(node, now)
        else:
            self._call_operators(node, now)

    def hang(self, node: Node, now: float, mechanism: str) -> None:
        """The node's HSM lane stops answering at `now`; the node still accepts work."""
        if node.hsm.stuck or not node.up:
            return
        node.hsm.stop()
        node.outages.append(Outage("hang", mechanism, now))
        self.log.info("node.hang", t=now, node=node.name, mechanism=mechanism)
        if not self.design.hsm_call_deadline:
            self._call_operators(node, now)

    def _reset_lane(self, node: Node, now: float) -> None:
        """Reset a silent HSM lane (re-open the session): it answers again."""
        self._end_hang(node, now)
        node.hsm.restart(now)
        self.log.info("hsm.reset", t=now, node=node.name)

    def _end_hang(self, node: Node, now: float) -> None:
        if node.hsm.stuck and node.outages and node.outages[-1].end is None:
            node.outages[-1].end = now

    def _kill_in_flight(self, node: Node) -> None:
        # Flows admitted before this see the epoch change and end as errors; the
        # driver wakes the ones waiting on this node at once.
        node.epoch += 1
        node.allocator.reset()
        self.crashed.append(node)

    def _call_operators(self, node: Node, now: float) -> None:
        """Operators notice the failed node after a detection delay, detach it,
        restart it and put it back `recovery.restart_min` later (January 2016).

        From `recovery.standby_from` on, staff waiting in the server room notice
        within `standby_detection_min` instead (from 22 January 2016).
        """
        rec = self.params.recovery
        if not rec.operators:
            return
        standby = now >= self._standby_from
        noticed = now + 60.0 * (self._standby_detection() if standby else self._detection())
        back = noticed + 60.0 * rec.restart_min
        plan: tuple[tuple[float, Action], ...] = (
            (noticed, "detach"),
            (back, "restart"),
            (back, "attach"),
        )
        for at, action in plan:
            self.agenda.append(OperatorEvent(at=at, action=action, node=node.number))

    def restart(self, node: Node, now: float) -> None:
        """Restart the relay application on `node`: up, empty, HSM re-initialised.

        A crashed node comes back; a hung one loses its in-flight requests (the
        process is replaced) and its HSM answers again. A healthy node is left alone.
        """
        if node.up and not node.hsm.stuck:
            return
        if node.up:
            self._end_hang(node, now)
            self._kill_in_flight(node)
        else:
            node.outages[-1].end = now
        node.up = True
        node.hsm.restart(now)
        node.timer.pending = 0
        self.log.info("node.restart", t=now, node=node.name)
