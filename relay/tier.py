"""The relay tier: dispatcher, relay nodes, HSMs and backend, and the relay step.

This is the sans-IO heart of relaysim. `RelayTier.arrive` returns the life of one
request as a generator (a *flow*): it yields an effect (call the HSM, forward to the
backend) with its deadline, and a driver sends back how the effect ended and the
time it ended at. Every decision is taken here; drivers only wait (`relay.driver_trio`
under trio, a discrete-event loop for fast replays), so all of them run the same
model.

    flow = tier.arrive(cs, attempt=0, now=t)
    effect = next(flow)
    while True:
        ... wait for effect, or its deadline ...
        effect = flow.send((Result.DONE, now))      # StopIteration.value: a Retry or None
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from relay.backend import Backend
from relay.config import FaultEvent, OperatorEvent, Scenario
from relay.design import Design
from relay.dispatcher import Dispatcher, Refused
from relay.hsm import HsmLane
from relay.ledger import Ledger
from relay.monitor import Monitor
from relay.node import Node, Outage
from relay.request import Outcome, Phase, Request
from relay.rng import Streams
from relay.timer import OsTimer


class LogSink(Protocol):
    """Where the model reports notable events (a structlog logger fits)."""

    def info(self, event: str, *args: Any, **kw: Any) -> Any: ...


class _Silent:
    def info(self, event: str, *args: Any, **kw: Any) -> None:
        return None


class Result(enum.Enum):
    """How a driver says an effect ended."""

    DONE = "done"  # the reply or answer arrived
    DEADLINE = "deadline"  # the effect's deadline passed first (or the driver woke
    # the wait early because the node crashed; the flow tells the two apart)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 3x, twice per request
class CallHsm:
    """Wait for the node's HSM to process this request, until `deadline` at the latest."""

    node: Node
    deadline: float


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 3x, twice per request
class CallBackend:
    """Wait for the backend's answer to this request, until `deadline` at the latest."""

    node: Node
    deadline: float


Effect = CallHsm | CallBackend


@dataclass(frozen=True, slots=True)
class Retry:
    """A counter user will try the operation again: a new request at `at`."""

    at: float
    cs: int
    attempt: int


Flow = Generator[Effect, tuple[Result, float], Retry | None]


class RelayTier:
    """Everything between the CSs and the backend, for one run."""

    def __init__(
        self,
        scenario: Scenario,
        cs_caps: Sequence[int],
        streams: Streams,
        log: LogSink | None = None,
    ) -> None:
        self.scenario = scenario
        self.design: Design = scenario.resolved_design()
        self.log: LogSink = log or _Silent()
        self._streams = streams
        self.ledger = Ledger()
        self.backend = Backend(scenario.backend.service_ms.sampler(streams.stream("backend"), 1e-3))
        self.dispatcher = Dispatcher(
            [self._make_node(n) for n in range(1, scenario.relays.count + 1)],
            cs_caps,
            scenario.dispatcher.policy,
        )
        retry = scenario.load.retry
        self._think = retry.think_s.sampler(streams.stream("counter-users"))
        self._retry_on = frozenset(Outcome(o) for o in retry.outcomes)
        self._max_retries = retry.max_retries
        self._hsm_deadline = scenario.hsm.deadline_ms / 1000.0
        # Nodes that crashed since the driver last looked: it wakes their waiting
        # flows at once instead of letting them sleep until their deadlines.
        self.crashed: list[Node] = []

    def _make_node(self, number: int) -> Node:
        s, r = self.scenario, self.scenario.relays
        rng = self._streams.stream(f"relay{number}")
        return Node(
            number=number,
            max_connections=r.max_connections,
            cores=r.cores,
            interrupt=s.hsm.interrupt_ms / 1000.0,
            timer=OsTimer(r.timeout_s, r.timer_resolution_ms / 1000.0),
            hsm=HsmLane(s.hsm.service_ms.sampler(self._streams.stream(f"hsm{number}"), 1e-3)),
            monitor=Monitor(
                enabled=s.monitor.enabled,
                period=s.monitor.period_s,
                handling=s.monitor.handling_ms / 1000.0,
                cores=r.cores,
                phase=rng.uniform(0.0, s.monitor.period_s),
                salt=rng.getrandbits(64),
            ),
            rng=rng,
        )

    @property
    def nodes(self) -> list[Node]:
        """Every relay node that has been part of the tier, in number order."""
        return self.dispatcher.nodes

    # -- the relay step ---------------------------------------------------------

    def arrive(self, cs: int, attempt: int, now: float) -> Flow:
        """A request from CS `cs` reaches the distributor at `now`; its flow."""
        return self._relay(self.ledger.open(cs, attempt, now), now)

    def _relay(self, req: Request, now: float) -> Flow:
        ledger = self.ledger
        node = self.dispatcher.route(req.cs)
        if isinstance(node, Refused):
            if node.node is not None:
                ledger.at_node(req, node.node.number)
            ledger.close(req, Outcome.OVERFLOW, now, refusal=node.reason)
            return self._retry(req, Outcome.OVERFLOW, now)
        ledger.at_node(req, node.number)
        if not node.up:
            # The application is down: the connection is accepted by the OS and
            # dropped, the CS sees an error.
            return self._end(req, node, Phase.FAILED, Outcome.ERROR, now)
        epoch = node.epoch
        # 1. start the timer for the whole step; 2. allocate the work area.
        expiry = node.timer.arm(now)
        req.area = node.allocator.allocate()
        req.advance(Phase.ALLOCATED)
        # 3. the HSM processes the data; its reply is an interrupt on one core.
        hsm_deadline = expiry
        if self.design.hsm_call_deadline:
            hsm_deadline = min(expiry, now + self._hsm_deadline)
        req.advance(Phase.HSM_PENDING)
        result, now = yield CallHsm(node, hsm_deadline)
        if node.epoch != epoch:
            return self._died(req, node, now)
        if result is Result.DONE:
            node.hsm_reply_core(now)
            # 4. forward to the backend and return its answer.
            req.advance(Phase.FORWARDED)
            result, now = yield CallBackend(node, expiry)
            if node.epoch != epoch:
                return self._died(req, node, now)
        if result is Result.DONE:
            req.advance(Phase.ANSWERED)
            outcome = Outcome.COMPLETED
            # 5. reset the timer (the race window of cause 2 is judged here).
            node.timer.reset(now, expiry, scoped=self.design.request_scoped_timer)
        else:
            req.advance(Phase.FAILED)
            outcome = Outcome.TIMEOUT if now >= expiry else Outcome.ERROR
        # 5. free the work area; the connection closes.
        node.allocator.free(req.area)
        return self._end(req, node, None, outcome, now)

    def _died(self, req: Request, node: Node, now: float) -> Retry | None:
        # The process died under the request: its work area went with it.
        req.area = None
        return self._end(req, node, Phase.FAILED, Outcome.ERROR, now)

    def _end(
        self, req: Request, node: Node, phase: Phase | None, outcome: Outcome, now: float
    ) -> Retry | None:
        if phase is not None:
            req.advance(phase)
        req.advance(Phase.CLEANED)
        self.dispatcher.release(node, req.cs)
        self.ledger.close(req, outcome, now)
        return self._retry(req, outcome, now)

    def _retry(self, req: Request, outcome: Outcome, now: float) -> Retry | None:
        if outcome not in self._retry_on or req.attempt >= self._max_retries:
            return None
        return Retry(now + self._think(), req.cs, req.attempt + 1)

    # -- operators ----------------------------------------------------------------

    def handle(self, event: OperatorEvent | FaultEvent, now: float) -> None:
        """Carry out a scheduled operator action or fault injection at `now`."""
        d = self.dispatcher
        if isinstance(event, FaultEvent):
            self.crash(d.nodes[event.node - 1], now, "injected_crash")
            return
        if event.action == "add":
            d.add(self._make_node(event.node))
        elif event.action == "restart":
            self.restart(d.nodes[event.node - 1], now)
        elif event.action == "detach":
            d.detach(d.nodes[event.node - 1])
        else:
            d.attach(d.nodes[event.node - 1])
        self.log.info(f"operator.{event.action}", t=now, node=f"relay{event.node}")

    def health_check(self, now: float) -> None:
        """The distributor checks every node once at `now` and acts on the results."""
        d = self.dispatcher
        for node in d.nodes:
            change = d.health(node, self._tcp_check(node))
            if change is not None:
                self.log.info(f"health.{change}", t=now, node=node.name)

    @staticmethod
    def _tcp_check(node: Node) -> bool:
        # A TCP connect succeeds while the relay application listens: a crashed
        # application fails it, a hung HSM lane does not (cause 1 hid behind this).
        return node.up

    # -- crashes and restarts ---------------------------------------------------------

    def crash(self, node: Node, now: float, mechanism: str) -> None:
        """The relay application on `node` terminates abnormally at `now`.

        Its in-flight requests end with an error (their work areas die with the
        process) and it serves nothing until restarted: by the supervisor at once on
        a design with `auto_restart`, otherwise by an operator.
        """
        if not node.up:
            return
        node.up = False
        node.epoch += 1
        node.allocator.reset()
        node.outages.append(Outage(mechanism, now))
        self.crashed.append(node)
        self.log.info("node.crash", t=now, node=node.name, mechanism=mechanism)
        if self.design.auto_restart:
            self.restart(node, now)

    def restart(self, node: Node, now: float) -> None:
        """Restart the relay application on `node`: up, empty, HSM re-initialised."""
        if node.up:
            return
        node.up = True
        node.hsm.restart(now)
        node.timer.pending = 0
        node.outages[-1].end = now
        self.log.info("node.restart", t=now, node=node.name)
