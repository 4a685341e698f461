"""`relaysim load`: an open-model load of municipal counters against a serving tier.

Open model: each request is sent at its scheduled instant whether or not earlier
ones have been answered (arrivals do not wait on responses), spread round robin
over `connections` pipelined TCP connections. Latency runs from the *scheduled*
instant, not the moment the bytes left, so a server that stalls the sender is
charged for it (no coordinated omission); sends later than their schedule are
counted. The schedule is either a fixed `rate` (Poisson, seeded from the scenario)
or the scenario's own day from the opening of its service hours at the server's
speed (it asks, with an INFO frame): the day's counter operations, each message
after the counter's own steps with the operation's key (the server holds its
connection meanwhile), and the counter users' retries by the scenario's rule
(`CountersParams.retries`); both stop at `duration` real seconds.

Each request is recorded in a client-side `Ledger` in the scenario's time (opened
when sent, closed by its reply), so the summary (`relay.serve.load_summary`) is
the replay's document (`relaysim.summary/3`, engine `tcp`) and compares with a
replay's: requests without a reply when the run ends are `lost`. Overflow replies
carry their reason; the server's own figures (design, outages, nodes) come from its INFO answers
(`relay.serve.figures`).
Latency percentiles come from an HDR histogram (microseconds, 3 significant
digits). Request ids start at 1 (the protocol's 0 means "no particular request").

The server may close a connection: an `IDLE` notice (nothing sent for its idle
timeout) and the next request goes out on a fresh connection (one that crossed the
notice, refused unread, goes again as itself); a `SHUTTING_DOWN`
notice (the server is stopping) and nothing more is sent there, while replies owed
still arrive; a request that crossed the notice comes back refused with its id,
booked as that request's error. Once every connection is shutting down the load
stops (`stopped_by_server`): later requests of the schedule are never sent.

A signal (`run`'s `signals`: the CLI's SIGINT and SIGTERM) stops the sending
between two requests; what is owed is still awaited up to the drain, the server
asked for its figures, and the summary is the partial run's. A second signal stops
the waiting too.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import trio
from hdrh.histogram import HdrHistogram

from hsm_adapter.lane import unwrap_group
from loadgen import arrivals, calendar, municipalities
from relay.core import summary
from relay.core.ledger import Ledger
from relay.core.params import CountersParams
from relay.core.request import Outcome, Request
from relay.core.rng import Streams
from relay.net import REAL, Network
from relay.scenario.build import tier_params
from relay.scenario.schema import Scenario
from relay.serve import figures
from relay.serve.load_summary import LATE_S, document
from relay.serve.protocol import (
    OUTCOME_OF,
    VERSION,
    Decoder,
    ErrorCode,
    Frame,
    ProtocolError,
    Status,
    Type,
)

PINGS = 3  # INFO exchanges at the start: the quickest is the transport's round trip
INFO_TIMEOUT_S = 5.0
REASONS = frozenset({"terminal_limit", "cs_limit", "node_limit", "no_node"})


class LoadError(Exception):
    """The load cannot run (no server there, bad target); one line for the user."""


class Next(NamedTuple):
    """A message a counter user will send: when (trio's clock and the scenario's),
    from which CS, on which try, of which operation, with how many messages left."""

    due: float
    order: int
    at: float
    cs: int
    attempt: int
    key: bytes
    left: int
    again: Request | None = None  # sent before, refused unread: the same request
    link: _Link | None = None  # an operation's next message: its operation's connection


@dataclass
class LoadRun:
    """What a load run did, live: the progress line reads it."""

    sent: int = 0
    answered: int = 0
    errors: int = 0  # error frames and connections the server closed on us
    error_codes: Counter[str] = field(default_factory=Counter)  # requests' error frames
    notices: Counter[str] = field(default_factory=Counter)  # connections' (id 0), by code
    # What the server sent that breaks the protocol, by kind (VIOLATIONS): counted,
    # never booked as a request's outcome.
    violations: Counter[str] = field(default_factory=Counter)
    last_id: int = 0  # the highest request id sent: ids up to it that are not pending
    # were answered already
    stopped_by_server: bool = False  # every connection got SHUTTING_DOWN
    refusal: str | None = None  # the server's words refusing a connection (BUSY), if any
    round_trips: list[float] = field(default_factory=list)  # INFO exchanges, real seconds
    # Trio's clock half-way through each of them: about when the server answered
    # (where its clock meets the load's).
    heard_at: list[float] = field(default_factory=list)
    silent_at_end: bool = False  # the server could not be asked for its figures at the end
    cancelled: str | None = None  # the signal that cut the load short, if one did
    send_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    end_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    in_send: bool = False  # a frame is being written: a first signal waits for it
    late: int = 0  # sent more than LATE_S after their schedule
    latest: float = 0.0  # the worst lateness, seconds
    # INFO answers, in order (for one that is not the server's, what is wrong with it)
    infos: list[dict[str, Any] | str] = field(default_factory=list)
    info_came: trio.Event = field(default_factory=trio.Event)
    origin: float = 0.0  # trio's clock when the schedule began: its time 0
    utc0: float = 0.0  # the wall clock then (Unix seconds)
    _order: Iterator[int] = field(default_factory=itertools.count)
    # What the counter users send next, decided as replies come in: an operation's
    # next message after their own steps, or a retry after a failed one. A heap of
    # `Next`; `wake` rouses the sender when one is added.
    later: list[Next] = field(default_factory=list)
    wake: trio.Event = field(default_factory=trio.Event)
    counters: CountersParams = field(default_factory=CountersParams)
    think: Callable[[], float] = lambda: 60.0  # before a retry
    step: Callable[[], float] = lambda: 60.0  # between two messages of an operation
    keys: random.Random = field(default_factory=random.Random)  # operations' keys
    sending: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # id: (key, left)
    # The scenario's time then: the day's opening, or for a rate the server's clock
    # (its INFO's scenario_clock_s; 0 if it does not say), or 0 for given arrivals.
    base: float = 0.0
    served: float = 0.0  # the server's scenario clock then (INFO; 0: not said)
    scale: float = 1.0  # scenario seconds per real second: the server's speed

    def after(
        self, req: Request, outcome: Outcome, now: float, key: bytes, left: int, link: _Link
    ) -> None:
        """Do what the scenario's counter user does when message `req` of operation
        `key` (`left` messages to go, itself included) ended with `outcome` at
        scenario time `now`: its next message after the counter's own steps, on the
        operation's connection `link`, or, if it failed, perhaps the operation again
        from it after a think (the core's rule, `CountersParams.retries`), with a
        new key."""
        if outcome is Outcome.COMPLETED:
            if left > 1:
                self._later(now + self.step(), req.cs, req.attempt, key, left - 1, link)
        elif self.counters.retries(outcome.value, req.attempt):
            self._later(now + self.think(), req.cs, req.attempt + 1, self.key(), left)

    def interrupt(self, name: str) -> None:
        """Signal `name` arrived: the first stops the sending (between two frames: a
        frame cut in half would garble the connection for the last INFO); a second
        stops waiting for replies and for the server's figures too."""
        if self.cancelled is None:
            self.cancelled = name
            if not self.in_send:
                self.send_scope.cancel()
            return
        self.send_scope.cancel()
        self.end_scope.cancel()

    def key(self) -> bytes:
        """A new operation's idempotency key (from the seed: a run repeats)."""
        return self.keys.randbytes(16)

    def resend(self, req: Request, key: bytes, left: int) -> None:
        """Send `req` again as soon as the sender can (it was refused unread)."""
        now = trio.current_time()
        entry = Next(now, next(self._order), req.arrived, req.cs, req.attempt, key, left, req)
        heapq.heappush(self.later, entry)
        self.wake.set()

    def _later(
        self, at: float, cs: int, attempt: int, key: bytes, left: int, link: _Link | None = None
    ) -> None:
        real = self.origin + (at - self.base) / self.scale
        entry = Next(real, next(self._order), at, cs, attempt, key, left, None, link)
        heapq.heappush(self.later, entry)
        self.wake.set()

    def scenario_time(self, real: float) -> float:
        """The scenario's time at trio's `real` instant (seconds since midnight of
        the scenario's first day)."""
        return self.base + (real - self.origin) * self.scale

    histogram: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 3_600_000_000, 3))
    ledger: Ledger = field(default_factory=Ledger)
    pending: dict[int, Request] = field(default_factory=dict)  # sent, not answered
    sending_done: bool = False
    all_answered: trio.Event = field(default_factory=trio.Event)


def opening(scenario: Scenario) -> float:
    """When the scenario's first day opens (seconds since midnight): where a load
    that replays the day starts."""
    return calendar.days(scenario)[0].opens


def schedule(
    scenario: Scenario, *, duration: float, rate: float | None, speed: float | None
) -> Iterator[tuple[float, int]]:
    """(real seconds from the start, municipality) of each request, in time order:
    a Poisson `rate` a real second, or the scenario's day from its opening, `speed`
    times faster than real time."""
    streams = Streams(scenario.seed)
    load = scenario.load
    munis = municipalities.build(load.population, load.cs_connections)
    if rate is not None:
        rng = streams.stream("load-rate")
        weights = [m.population for m in munis]
        t = rng.expovariate(rate)
        while t < duration:
            yield t, rng.choices(range(len(munis)), weights)[0]
            t += rng.expovariate(rate)
        return
    factor = speed or 1.0
    days = calendar.days(scenario)
    opens = opening(scenario)
    messages = load.operation.messages  # the day's operations are what arrive
    for t, cs in arrivals.over_days(days, munis, streams.stream("arrivals"), messages):
        start = (t - opens) / factor
        if start >= duration:
            return
        yield start, cs


class _Link:
    """One connection to the server, and whether the server is closing it."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.closing: ErrorCode | None = None  # the notice the server sent
        self.open = True


@dataclass(frozen=True)
class Target:
    """The server the load goes to: an address on a network."""

    host: str
    port: int
    network: Network = REAL

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    async def connect(self) -> trio.abc.Stream:
        """A new connection to it, or LoadError saying why not."""
        try:
            return await self.network.connect(self.host, self.port)
        except OSError as exc:
            raise LoadError(f"cannot connect to {self}: {exc.strerror or exc}") from None


async def run(
    scenario: Scenario,
    host: str,
    port: int,
    *,
    duration: float,
    rate: float | None = None,
    speed: float | None = None,
    connections: int = 50,
    drain: float = 30.0,
    progress: Callable[[LoadRun, float], None] | None = None,
    network: Network = REAL,
    arrivals: Sequence[tuple[float, int]] | None = None,
    signals: Callable[[Callable[[str], None]], Awaitable[None]] | None = None,
) -> tuple[summary.Summary, LoadRun]:
    """Run the load against `host`:`port` on `network`; the summary document and the
    live record. `arrivals`: the first attempts' (seconds from the start, CS), in
    time order, instead of the scenario's day or a rate (a hunt's drawn world); the
    counter users retry and send their operations' next messages as the day's do.
    `signals`: a task given `LoadRun.interrupt`, which it calls with a signal's name
    as each arrives (`relay.plan.pools.signalled`)."""
    wall0 = time.perf_counter()
    state = LoadRun()
    links: list[_Link] = []
    target = Target(host, port, network)
    try:
        for _ in range(connections):
            links.append(_Link(await target.connect()))
        async with trio.open_nursery() as nursery:
            if signals is not None:
                nursery.start_soon(signals, state.interrupt)
            for link in links:
                nursery.start_soon(_receive, link, links, state)
            first = await _ask(links, state, target)
            for _ in range(PINGS - 1):  # the quickest of a few is the transport's own
                await _ask(links, state, target)
            speed, messages = _agree(state, scenario, first, rate, speed, arrivals is not None)
            start = state.origin = trio.current_time()
            state.utc0 = time.time()
            if progress is not None:
                nursery.start_soon(_report, progress, state, start)
            sender = _Sender(state, links, target, nursery)
            plan = iter(
                arrivals
                if arrivals is not None
                else schedule(scenario, duration=duration, rate=rate, speed=speed)
            )
            with state.send_scope:  # a signal ends the sending here
                await sender.send(plan, messages, drain)
                if not state.stopped_by_server and state.cancelled is None:
                    # An open model runs for its duration, whether or not anything was due.
                    await trio.sleep_until(start + duration)
            # Load has stopped: wait for the answers still due, up to `drain`.
            state.sending_done = True
            if not state.pending or not any(link.open for link in links):
                state.all_answered.set()
            drained: float | None = None
            last: dict[str, Any] | None = None
            with state.end_scope:  # a second signal: the summary now, without them
                with trio.move_on_after(drain):
                    await state.all_answered.wait()
                drained = trio.current_time()
                last = await _ask(links, state, target) if first is not None else None
            end = state.scenario_time(trio.current_time() if drained is None else drained)
            # Not asked (a second signal) is not silent: the cancel says why.
            state.silent_at_end = last is None and not state.end_scope.cancel_called
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # a nursery's one failure, as itself
        raise unwrap_group(group) from None
    finally:
        for link in links:
            with trio.CancelScope(shield=True):
                await link.stream.aclose()
    return document(scenario, state, first, last, end, time.perf_counter() - wall0), state


def _agree(
    state: LoadRun,
    scenario: Scenario,
    first: dict[str, Any] | None,
    rate: float | None,
    speed: float | None,
    given: bool = False,
) -> tuple[float | None, int]:
    """Set the load to the server's clock and the scenario's counters: the speed the
    schedule runs at, and the messages of an operation. LoadError for a --speed that
    is not the server's."""
    # The server's speed is the load's: its model runs that many times faster than
    # real time, so the day is replayed at it and its latencies are scaled back into
    # the scenario's seconds.
    served = _speed(first)
    if speed is not None and abs(speed - served) > 1e-9 * served:
        raise LoadError(
            f"--speed {speed:g}: the server runs the model at {served:g}x real time; "
            f"start it with `serve --speed {speed:g}`, or leave --speed out"
        )
    # The server's scenario clock as the load starts (its last INFO): a rate, which
    # has no day of its own, runs on it; a day replay starts at the day's opening.
    state.served = state.base = _server_clock(state.infos[-1] if state.infos else None)
    if rate is None:
        speed = served  # the scenario's day (or the arrivals given), at the server's pace
        state.base = 0.0 if given else opening(scenario)
    state.scale = served
    # Replaying the day, the counter users retry as the scenario's do, and send their
    # operations' messages after their own steps (the server holds the connection
    # meanwhile); a fixed rate is the load asked for, one message each, and no more.
    # They are the replay's counter users: the same streams (`RelayTier`'s
    # counter-users and counter-steps), drawn as their messages end, so on a network
    # that delays nothing they think what the replay's think, in the same order.
    counters = tier_params(scenario).counters
    state.counters = counters if rate is None else replace(counters, max_retries=0)
    streams = Streams(scenario.seed)
    state.think = counters.retry_think_s.sampler(streams.stream("counter-users"))
    state.step = counters.step_think_s.sampler(streams.stream("counter-steps"))
    state.keys = streams.stream("load-keys")
    return speed, counters.messages if rate is None else 1


class _Sender:
    """Sends the schedule's first attempts and what the counter users send next."""

    def __init__(
        self, state: LoadRun, links: list[_Link], target: Target, nursery: trio.Nursery
    ) -> None:
        self.state = state
        self.links = links
        self.target = target
        self.nursery = nursery
        self.turn = itertools.cycle(range(len(links)))
        self.ids = itertools.count(1)

    async def send(
        self, arrivals: Iterator[tuple[float, int]], messages: int, drain: float
    ) -> None:
        """Until nothing is due and no reply can bring more (or the server stops)."""
        state, start = self.state, self.state.origin
        upcoming = next(arrivals, None)
        while True:
            # The next send: the schedule's next first attempt, or a counter user's next
            # message or retry (decided as replies come in), whichever is due first.
            first_due = start + upcoming[0] if upcoming is not None else math.inf
            later_due = state.later[0].due if state.later else math.inf
            due = min(first_due, later_due)
            if due == math.inf and not state.pending:
                return  # nothing is due, and no reply is left to bring more
            if due > trio.current_time():
                state.wake = trio.Event()
                with trio.move_on_at(due if due < math.inf else trio.current_time() + drain):
                    await state.wake.wait()
                if due == math.inf and not state.wake.is_set():
                    return  # replies stopped coming: the drain counts them
                continue
            if later_due <= first_due:
                step = heapq.heappop(state.later)
            else:
                assert upcoming is not None
                t, cs = upcoming
                step = Next(due, -1, state.base + t * state.scale, cs, 0, state.key(), messages)
                upcoming = next(arrivals, None)
            # An operation's next message goes on its operation's connection while that
            # is open; once the server has closed it, the operation is over there and
            # the message opens a new one on any connection.
            link = step.link
            if link is not None and link.open and link.closing is None:
                usable: _Link | None = link
            else:
                usable = await _usable(self.links, self.turn, self.target, self.nursery, state)
            if usable is None:
                state.stopped_by_server = True
                return
            late = trio.current_time() - due
            if late > LATE_S:  # coordinated omission, made visible
                state.late += 1
                state.latest = max(state.latest, late)
            await self._one(usable, step)
            if state.cancelled is not None:
                return  # a signal came while the frame was written

    async def _one(self, link: _Link, step: Next) -> None:
        """Send one message on `link`, booked in the ledger first (the reply may be
        read while the send yields); a request refused unread goes again as itself."""
        state = self.state
        rid = next(self.ids)
        frame = Frame(Type.REQUEST, rid, step.key, step.cs, 0, b"counter step", left=step.left)
        again = step.again
        req = again if again is not None else state.ledger.open(step.cs, step.attempt, step.at)
        state.pending[rid] = req
        state.last_id = rid
        state.sending[rid] = (step.key, step.left)
        state.sent += again is None
        state.in_send = True
        try:
            await link.stream.send_all(frame.encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The connection broke under it: this request's error, not a loss.
            state.sending.pop(rid, None)
            if state.pending.pop(rid, None) is not None:
                state.errors += 1
                state.ledger.close(req, Outcome.ERROR, state.scenario_time(trio.current_time()))
                state.answered += 1
        finally:
            state.in_send = False


def _speed(info: dict[str, Any] | None) -> float:
    """The server's speed from its INFO answer (1: real time, or not said)."""
    try:
        speed = float((info or {}).get("speed", 1.0))
    except (TypeError, ValueError):
        return 1.0
    return speed if speed > 0 else 1.0


def _server_clock(info: dict[str, Any] | str | None) -> float:
    """The server's scenario clock from its INFO answer, seconds since the midnight
    of the scenario's first day (0: not said)."""
    value = info.get("scenario_clock_s") if isinstance(info, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) and value >= 0 else 0.0
    return 0.0


async def _ask(links: list[_Link], state: LoadRun, target: Target) -> dict[str, Any] | None:
    """The server's INFO answer (who it is, its own figures), on an open connection
    (the next one, if the server closes the one asked); None if none is open.
    LoadError if what answers is no relaysim server, or if the server refused every
    connection (its own words, with the reason)."""
    asked = len(state.infos)
    for link in links:
        if not link.open or link.closing is not None:
            continue
        state.info_came = trio.Event()
        sent = trio.current_time()
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            # Refused (closed under it): what the server said on it is read below.
            await link.stream.send_all(Frame(Type.INFO, 0).encode())
        with trio.move_on_after(INFO_TIMEOUT_S):
            while len(state.infos) == asked and link.open:
                await state.info_came.wait()
                state.info_came = trio.Event()
        if len(state.infos) > asked:
            now = trio.current_time()
            state.round_trips.append(now - sent)
            state.heard_at.append((sent + now) / 2)
            break
        if link.open:
            break  # a connection that stays silent: no other will do better
    if len(state.infos) == asked:
        if asked == 0:
            refused = state.refusal
            if refused is not None:
                raise LoadError(f"{target} refused the connection: {refused}")
            raise LoadError(f"{target} did not answer as a relaysim serve dispatcher")
        return None
    answer = state.infos[asked]
    if isinstance(answer, str):  # what was wrong with it
        if asked == 0:
            raise LoadError(f"{target} is not a relaysim serve dispatcher: its INFO {answer}")
        return None
    return answer


async def _usable(
    links: list[_Link],
    turn: Iterator[int],
    target: Target,
    nursery: trio.Nursery,
    state: LoadRun,
) -> _Link | None:
    """The next connection to send on, round robin: one the server closed for
    idleness is replaced; one shutting down is skipped; None once all are."""
    for _ in range(len(links)):
        i = next(turn)
        link = links[i]
        if link.closing is None and link.open:
            return link
        if link.closing is ErrorCode.IDLE:
            fresh = _Link(await target.connect())
            links[i] = fresh
            nursery.start_soon(_receive, fresh, links, state)
            return fresh
    return None


async def _receive(link: _Link, links: list[_Link], state: LoadRun) -> None:
    pending = state.pending
    decoder = Decoder()
    try:
        while True:
            try:
                data = await link.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                if link.closing is None:
                    state.errors += 1  # the server closed on us without a word
                return
            bad: ProtocolError | None = None
            try:
                frames = decoder.feed(data)
            except ProtocolError as exc:
                frames, bad = exc.frames, exc  # the frames before it still count
            now = state.scenario_time(trio.current_time())
            for frame in frames:
                if frame.type is Type.INFO:
                    info = _info(frame.body)
                    if isinstance(info, str):
                        state.violations["bad_info"] += 1
                    state.infos.append(info)
                    state.info_came.set()
                    continue
                if frame.type is Type.REQUEST:
                    state.violations["request_from_server"] += 1
                    continue
                if frame.type is Type.ERROR:
                    code = _code_name(frame.status)
                    if frame.id == 0:  # about the connection, not a request
                        state.notices[code] += 1
                        if frame.status in (ErrorCode.BUSY, ErrorCode.SHUTTING_DOWN):
                            text = frame.body.decode("utf-8", "replace")
                            state.refusal = f"{code}: {text}"
                        if frame.status in (ErrorCode.SHUTTING_DOWN, ErrorCode.IDLE):
                            link.closing = ErrorCode(frame.status)
                        else:
                            state.errors += 1
                        continue
                    if frame.status != ErrorCode.IDLE:  # IDLE: sent again, below
                        state.error_codes[code] += 1
                req = pending.pop(frame.id, None)
                if req is None:
                    # Ids are sent in order from 1: one not pending up to the last
                    # sent was answered already; any other was never sent.
                    seen = 0 < frame.id <= state.last_id
                    state.violations["duplicate_reply" if seen else "unknown_id"] += 1
                    continue
                if frame.type is Type.ERROR and frame.status == ErrorCode.IDLE:
                    # It crossed the connection's IDLE notice and was refused unread:
                    # the same request goes again now, on a fresh connection.
                    key, left = state.sending.pop(frame.id)
                    state.resend(req, key, left)
                    continue
                why: str | None = None
                key, left = state.sending.pop(frame.id)
                if frame.type is Type.REPLY and frame.key != key:
                    state.violations["wrong_key"] += 1  # booked all the same: it came
                if frame.type is Type.REPLY:
                    outcome = OUTCOME_OF[Status(frame.status)]
                    if outcome is Outcome.OVERFLOW:  # the server says why
                        reason = frame.body.decode("ascii", "replace")
                        why = reason if reason in REASONS else "unknown"
                else:  # an error frame about this request
                    state.errors += 1
                    outcome = Outcome.ERROR
                state.ledger.close(req, outcome, now, refusal=why)
                state.answered += 1
                state.after(req, outcome, now, key, left, link)
                if not pending:
                    state.wake.set()
                if outcome is Outcome.COMPLETED:
                    state.histogram.record_value(max(1, round((now - req.arrived) * 1e6)))
            if state.sending_done and not pending:
                state.all_answered.set()
            if bad is not None:
                # No frame boundary can be found after bytes that are no frame: the
                # connection is useless, and what it owed is lost (counted at the end).
                state.violations["not_a_frame"] += 1
                state.errors += 1
                return
    finally:
        link.open = False
        state.info_came.set()  # one asking on it stops waiting
        if not any(each.open for each in links):
            state.all_answered.set()  # nothing more can arrive
        with trio.CancelScope(shield=True):
            await link.stream.aclose()


def _info(body: bytes) -> dict[str, Any] | str:
    """An INFO answer's JSON object, or what is wrong with it: relaysim serve's has
    `protocol` 1, and where it gives them a positive `speed` and its own figures as
    numbers >= 0."""
    try:
        info = json.loads(body)
    except (ValueError, RecursionError):
        return "answer is not JSON"
    if not isinstance(info, dict):
        return f"answer is a JSON {type(info).__name__}, not an object"
    if info.get("protocol") != VERSION:
        return f"answer says protocol {info.get('protocol')!r}, not {VERSION}"
    for name in ("speed", "crashes", "hangs", "outage_minutes", "clock_resolution_ms"):
        value = info.get(name, 1)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        speed = name == "speed"
        if not number or not math.isfinite(value) or value < 0 or (speed and value == 0):
            least = "positive" if speed else ">= 0"
            return f"answer's {name} is {value!r}, not a finite number {least}"
    return figures.malformed(info) or info


def _code_name(status: int) -> str:
    try:
        return ErrorCode(status).name
    except ValueError:
        return f"code {status}"


async def _report(progress: Callable[[LoadRun, float], None], state: LoadRun, start: float) -> None:
    while True:
        await trio.sleep(0.5)
        progress(state, trio.current_time() - start)
