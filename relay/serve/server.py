"""Serve mode: the relay tier behind TCP ports on loopback, under the real clock.

The dispatcher's port takes protocol frames (`relay.serve.protocol`) from any number of
CS connections and places each request on the node the distributor chooses; each
relay node also has its own port, whose requests go to that node directly (as a CS
connection the distributor has already placed there, or an SRE testing one node).
Each request frame becomes one request of the core (`RelayTier`), carried out by
the trio driver (`advance`, then its conductor: `follow`) under the real clock
with real or simulated services, and is answered with one reply frame carrying
its outcome:
the same model, designs and checkers as the replays. Retrying is the client's
business here (the counter user presses "resend"); the reply says what happened.

Hostile input never reaches the model and never stalls other clients (`Limits`):
- bytes that are not a frame (garbage, an unknown version or type, an oversized or
  undersized length) get one error frame with the code and the connection closes;
- a frame that takes longer than `frame_timeout` to arrive whole, however its bytes
  trickle in, gets `TOO_SLOW` and a close (only time the server spends reading
  counts: while it is blocked writing replies to a client that does not read them,
  the frame's clock stops);
- a client that reads none of its replies for `write_timeout` (the server blocked
  writing to it) is closed, `NOT_READING`; while its replies pile up past
  `OUTBOX_HIGH_WATER` bytes, its connection is not read (backpressure, not memory);
- a connection that carries nothing for `idle_timeout` (no frame, no reply owed)
  gets an `IDLE` notice and is closed;
- beyond `max_connections` open connections, beyond `per_peer` from one address,
  or into the last `reserved` slots from an address already holding that many, a
  new connection gets `BUSY` and a close: one peer cannot lock the others out;
- a request from a municipality the tier does not serve gets an error frame with
  its id (`UNKNOWN_MUNICIPALITY`); the connection stays open;
- a key belongs to one operation of several messages from its first message to its
  end (`Operation`): another message with that key while one of the operation's
  messages runs gets `KEY_IN_USE`, and a next message that contradicts the
  operation (another connection, municipality or count of messages left) gets
  `WRONG_CONTINUATION`, each with its id; the operation is untouched, so one key can
  never hold more than its one CS connection;
- every request read whole before a bad frame in the same bytes is served and
  answered before the error frame and the close;
- a client that disconnects mid-frame or mid-request costs only its own tasks: its
  requests still end with their outcome in the ledger (nothing accepted is lost),
  the reply is simply not delivered.
Every such event is counted in `ServerStats`. One watcher task, not a timer per
read, enforces the time limits: it sleeps until the next one passes.

Stopping (`RelayServer.stop`) loses nothing: the listeners close, every connection
gets a `SHUTTING_DOWN` notice (id 0: send nothing more here), and a request frame
that still arrives is refused with `SHUTTING_DOWN` and its id (the client books it
as that request's error; it was never admitted). Every admitted request is answered:
the drain allows the longest a request can live (`RelayTier.longest_message_s`)
plus a frame timeout for its reply; clients hang up once answered, and after a
further frame timeout the rest are closed. Whatever a shorter drain cut short is
counted (`cut`): those requests still end and record their outcome, undelivered.
`abort` (a second signal) stops at once; what it cancels is counted (`aborted`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import trio

from relay.core import summary
from relay.core.ledger import OUTCOMES
from relay.core.node import Node
from relay.core.request import Outcome
from relay.core.tier import RelayTier
from relay.engines.trio import TrioDriver
from relay.net import REAL, Network, linger, received
from relay.scenario.schema import Scenario
from relay.serve.clock import ScenarioClock
from relay.serve.connection import Connection, Outbox, ServerStats
from relay.serve.failures import FailureLog
from relay.serve.operations import Operations
from relay.serve.ports import PortError, check_range, listen
from relay.serve.protocol import (
    MAX_FRAME,
    STATUS_OF,
    VERSION,
    Decoder,
    ErrorCode,
    Frame,
    ProtocolError,
    Type,
    error_frame,
)

REFUSAL_LINGER_S = 0.25

# Read on every request: module constants, not lookups on enum classes.
_REQUEST = Type.REQUEST
_REPLY = Type.REPLY
_COMPLETED = Outcome.COMPLETED
_COMPLETED_STATUS = STATUS_OF[_COMPLETED]  # real seconds a refused connection lingers (`linger`)

_SHUTTING_DOWN = ErrorCode.SHUTTING_DOWN
_IDLE = ErrorCode.IDLE
#: What a request refused unread on a closing connection is told, by why it closes.
_REFUSED = {
    _SHUTTING_DOWN: "server stopping: request not admitted, re-send it elsewhere",
    _IDLE: "connection closing (idle): request not admitted, re-send it on a new connection",
}


@dataclass(frozen=True)
class Limits:
    """What serve mode allows its clients: the scenario's `serve` section."""

    max_frame: int = MAX_FRAME
    frame_timeout: float = 5.0  # a whole frame must arrive within this
    idle_timeout: float = 300.0  # a connection carrying nothing this long is closed
    max_connections: int = 1024
    per_peer: int = 256  # connections one address may hold
    reserved: int = 64  # the last slots, for addresses holding fewer than this many
    drain: float | None = None  # None: derived from the longest a request can live
    write_timeout: float = 30.0  # a client reading none of its replies this long is closed
    # The times above are real seconds; the model's clock runs `scale` of its seconds
    # per real second (`serve --speed`, `relay.serve.clock`).
    scale: float = 1.0


class RelayServer:
    """The dispatcher's TCP front of one relay tier (see the module doc)."""

    def __init__(
        self,
        tier: RelayTier,
        driver: TrioDriver,
        limits: Limits | None = None,
        about: dict[str, Any] | None = None,
        network: Network = REAL,
        clock: ScenarioClock | None = None,
    ) -> None:
        self.tier = tier
        self.network = network  # where it listens: loopback's sockets, or a simulated one
        self.about = about or {}  # what `info` says the server runs: scenario, seed, speed
        self.driver = driver
        self.limits = limits = limits or Limits()
        # Model seconds (trio's clock here) for the limits given in real seconds.
        scale = limits.scale
        self._frame_timeout = limits.frame_timeout * scale
        self._idle_timeout = limits.idle_timeout * scale
        self._write_timeout = limits.write_timeout * scale
        # The drain lets every admitted request end and its reply be written.
        self.drain = (
            limits.drain * scale
            if limits.drain is not None
            else tier.longest_message_s + self._frame_timeout
        )
        self.stats = ServerStats()
        self.started_at = 0.0  # when serve began (trio's clock)
        # Its instants named as the scenario's time of day and real UTC, in every line
        # of the tier's log (a server given no clock counts the default scenario's day).
        self.clock = clock or ScenarioClock.of(Scenario(), scale)
        tier.log = self.clock.named(tier.log)
        # The requests admitted and the operations they make up (`relay.serve.operations`).
        self.operations = Operations(
            tier, driver, self.stats, FailureLog(tier.log, scale), self._idle_timeout
        )
        self.stopping = False
        self._stop = trio.Event()
        self._top: trio.CancelScope | None = None
        self._watching: trio.CancelScope | None = None  # the watcher's sleep
        self._wake = -math.inf  # its deadline while it sleeps
        # Open connections, in the order they opened (a dict: a set of objects
        # iterates in memory order, and a run must repeat from its seed).
        self._conns: dict[Connection, None] = {}
        self._peers: Counter[str] = Counter()
        self._no_conns = trio.Event()
        self._nursery: trio.Nursery | None = None  # connections' and the watcher's
        self.stopped = trio.Event()  # set once stopped and drained
        self.stopped_at: float | None = None  # when
        self.port = 0  # the dispatcher's, once listening
        self.node_ports: dict[str, int] = {}  # each relay node's own port, by name

    @property
    def between_messages(self) -> int:
        """Operations waiting for their client's next message."""
        return self.operations.between_messages

    @property
    def connections_held(self) -> int:
        """CS connections the model holds open on the relays (the CS caps' slots in
        use): one for each request running and each operation between messages."""
        return sum(node.active for node in self.tier.nodes)

    @property
    def peers(self) -> int:
        """Client addresses holding a connection."""
        return len(self._peers)

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet ended."""
        return self.operations.in_flight

    async def serve(
        self,
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on 127.0.0.1:`port` for the dispatcher and on one port per relay node
        (`port` + 1, + 2, ... when `port` is given; any free ones for 0, in
        `node_ports`) until `stop`, then drain and return. `started` reports the
        dispatcher's port. PortError names a port that cannot be had."""
        listeners = await self._listen(port)
        self.started_at = trio.current_time()
        self.clock.start(self.started_at)
        async with trio.open_nursery() as top:
            self._top = top.cancel_scope
            await top.start(self.driver.serve)
            top.start_soon(self.operations.failures.run)
            # Requests are carried on by the driver's conductor, which a stop never
            # cancels: each ends by its own deadlines and records its outcome, even
            # once its connection is gone (nothing accepted is lost); their replies
            # go out from tasks in `work`.
            async with trio.open_nursery() as work:
                self.operations.work = work
                async with trio.open_nursery() as conns:
                    self._nursery = conns
                    for listener, at in listeners:
                        conns.start_soon(self._accept, listener, at)
                    conns.start_soon(self._watch)
                    task_status.started(self.port)
                    await self._stop.wait()
                    for listener, _ in listeners:
                        await listener.aclose()
                    with trio.move_on_after(self.drain):
                        await self.operations.idle.wait()
                    self.stats.cut = self.operations.in_flight
                    # Answered clients hang up; the others get a frame timeout to.
                    if self._conns:
                        with trio.move_on_after(self._frame_timeout):
                            await self._no_conns.wait()
                    conns.cancel_scope.cancel()
                await self.operations.idle.wait()  # what the drain cut short runs to its end
            top.cancel_scope.cancel()
        self.stopped_at = trio.current_time()
        self.stopped.set()

    def stop(self) -> None:
        """Stop admitting, answer what was admitted (up to `drain`), and return."""
        if self.stopping:
            return
        self.stopping = True
        for conn in list(self._conns):
            self._notify(conn, _SHUTTING_DOWN, "server stopping: send no more requests")
        self.operations.close(trio.current_time())
        self._stop.set()

    def abort(self) -> None:
        """Stop at once: requests still running are cancelled (counted in `aborted`)."""
        self.stopping = True
        self.stats.aborted = self.operations.in_flight
        self._stop.set()
        if self._top is not None:
            self._top.cancel()

    async def _listen(
        self, port: int
    ) -> list[tuple[trio.abc.Listener[trio.abc.Stream], Node | None]]:
        """The dispatcher's listener, then each node's; PortError names the one that
        cannot be had (and nothing stays open)."""
        nodes, network = self.tier.nodes, self.network
        check_range(port, len(nodes))
        listeners: list[tuple[trio.abc.Listener[trio.abc.Stream], Node | None]] = []
        try:
            dispatcher, self.port = await listen(port, "dispatcher port", network)
            listeners.append((dispatcher, None))
            for i, node in enumerate(nodes, 1):
                own, self.node_ports[node.name] = await listen(
                    port + i if port else 0, f"{node.name} port", network
                )
                listeners.append((own, node))
        except PortError:
            for listener, _ in listeners:
                await listener.aclose()
            raise
        return listeners

    async def _accept(self, listener: trio.abc.Listener[trio.abc.Stream], at: Node | None) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, OSError):
                return
            try:
                peer = self.network.peer(stream)
            except OSError:  # gone already
                await stream.aclose()
                continue
            self.attach(stream, peer, at)

    def attach(self, stream: trio.abc.Stream, peer: str, at: Node | None = None) -> None:
        """Serve a client connection from address `peer` (at node `at`'s port, or the
        dispatcher's), or refuse it, saying why, at a limit no idle connection gives
        way at (`_make_room`) or once stopping; only while `serve` runs."""
        nursery = self._nursery
        assert nursery is not None, "attach() needs serve() running"
        stats = self.stats
        stats.connections += 1
        outbox = Outbox(stream, stats, self.limits.scale, self.driver.now)
        refusal = self._refusal(peer)
        if refusal is not None and not self.stopping and self._make_room(peer, refusal[0]):
            refusal = None  # an idle connection gives way to the new one
        if refusal is not None or self.stopping:
            limit, message = refusal or ("stopping", "server stopping")
            stats.refused_connections[limit] += 1
            code = ErrorCode.BUSY if refusal else _SHUTTING_DOWN
            stats.rejected[code.name] += 1
            nursery.start_soon(self._refuse, stream, outbox, error_frame(code, message))
            return
        conn = Connection(stream, outbox, peer, trio.current_time())
        stats.open += 1
        self._peers[peer] += 1
        self._conns[conn] = None
        nursery.start_soon(self._connection, conn, at)

    async def _refuse(self, stream: trio.abc.Stream, outbox: Outbox, frame: Frame) -> None:
        await outbox.last(frame)
        # A moment for the client to read why, not a reset (bounded: a flood of
        # refused connections costs a quarter of a second each at most).
        await linger(stream, REFUSAL_LINGER_S * self.limits.scale)
        with trio.CancelScope(shield=True):
            await stream.aclose()

    def _refusal(self, peer: str) -> tuple[str, str] | None:
        """Why a new connection from `peer` is refused, if it is: (limit, message)."""
        lim, open_, held = self.limits, self.stats.open, self._peers[peer]
        if open_ >= lim.max_connections:
            return "max_connections", f"connection limit reached ({lim.max_connections})"
        if held >= lim.per_peer:
            return "per_peer", f"limit of {lim.per_peer} connections from {peer} reached"
        if open_ >= lim.max_connections - lim.reserved and held >= lim.reserved:
            return "reserved", (
                f"only reserved connections left, for addresses holding fewer than {lim.reserved}"
            )
        return None

    def _make_room(self, peer: str, limit: str) -> bool:
        """At `limit`, close the connection idle longest that holds the room the new
        one from `peer` needs (one of `peer`'s for the per-peer limit, of the heavy
        peers' for the reserve, any for the total): one that never sent anything
        first, then the one whose bytes moved least recently. Idle: no reply owed,
        no operation held between messages, not closing already. Whether one was."""
        lim = self.limits
        if limit == "per_peer":
            pool = [c for c in self._conns if c.peer == peer]
        elif limit == "reserved":
            pool = [c for c in self._conns if self._peers[c.peer] >= lim.reserved]
        else:
            pool = list(self._conns)
        idle = [
            c
            for c in pool
            if not c.outbox.owed
            and not c.ops
            and c.closing is None
            and c.outbox.writing_since is None
        ]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c.spoke, max(c.active_at, c.outbox.sent_at)))
        self.stats.evicted[limit] += 1
        message = f"closed to make room for a new connection ({limit} limit): reconnect"
        self._close(victim, _IDLE, message, count=False)
        return True

    async def _connection(self, conn: Connection, at: Node | None) -> None:
        """Serve `conn` until its client closes it (or the server does): read its
        frames and answer them, then let its replies go out, then forget it."""
        stream, outbox = conn.stream, conn.outbox
        decoder = Decoder(self.limits.max_frame)
        clock = self.driver.now
        try:
            while True:
                # What is there already is read without a pass through the
                # scheduler (the reply's write is one); else trio waits for it.
                data: bytes | bytearray | None = received(stream)
                waited = data is None
                if data is None:
                    try:
                        data = await stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                if not data:
                    break  # the client closed; its requests still end in the ledger
                now = conn.active_at = clock()
                refused = self._take(conn, decoder, data, at, now)
                # The replies of requests that needed no wait; then, while the client
                # leaves too much unread, no more reading (the frame's clock stops;
                # the clock is read again only for it).
                paused = conn.paused_at = now if conn.frame_started is None else clock()
                wrote = await outbox.flush(now)
                if outbox.sending:
                    await outbox.room()
                elif not (wrote or waited):
                    await trio.lowlevel.checkpoint()  # a round must let the others in
                conn.paused_at = None
                if conn.frame_started is not None:
                    conn.frame_started += clock() - paused
                    self._due(conn.frame_started + self._frame_timeout)
                if refused is not None:
                    await self._reject(outbox, *refused)
                    break
            conn.frame_started = None  # no longer read: what is left of a frame is moot
            await outbox.settled()  # a client may half-close and still read replies
        finally:
            stats, peer = self.stats, conn.peer
            stats.open -= 1
            self._peers[peer] -= 1
            if not self._peers[peer]:
                del self._peers[peer]
            self._conns.pop(conn, None)
            conn.gone = True
            self.operations.orphan(conn)
            if self.stopping and not self._conns:
                self._no_conns.set()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _take(
        self,
        conn: Connection,
        decoder: Decoder,
        data: bytes | bytearray,
        at: Node | None,
        now: float,
    ) -> tuple[ErrorCode, str] | None:
        """Take in `data`, read from `conn` at `now`: admit the requests it completes
        (their replies queue, `_admit`) and answer the INFO frames; what to close
        the connection with after their replies, if anything in it was bad (not a
        frame, or not a frame a client sends)."""
        outbox, stats, operations = conn.outbox, self.stats, self.operations
        conn.spoke = True
        bad: tuple[ErrorCode, str] | None = None
        try:
            frames = decoder.feed(data)
        except ProtocolError as exc:
            # The frames read whole before it are served and answered first.
            frames, bad = exc.frames, (exc.code, str(exc))
        if decoder.pending:  # a frame has begun: the whole of it is timed
            if frames or conn.frame_started is None:
                conn.frame_started = now
                self._due(now + self._frame_timeout)
        else:
            conn.frame_started = None
        served = self.tier.dispatcher.cs_count
        for frame in frames:
            if frame.type is not _REQUEST:
                if frame.type is Type.INFO:
                    body = json.dumps(self.info(), allow_nan=False).encode()
                    outbox.put(Frame(Type.INFO, frame.id, body=body), reply=False)
                    continue
                return ErrorCode.UNKNOWN_TYPE, "clients send requests"
            closing = conn.closing
            if closing is not None:
                # Refused unread: the client books this request's error and may
                # re-send it elsewhere; it never reached the model.
                stats.rejected[closing.name] += 1
                refused = _REFUSED.get(closing, "connection closing: request not admitted")
                outbox.put(error_frame(closing, refused, frame.id), reply=False)
                continue
            if frame.muni >= served:
                # A well-formed frame for a CS this tier does not serve: refuse
                # that request only; the connection stays.
                code = ErrorCode.UNKNOWN_MUNICIPALITY
                stats.rejected[code.name] += 1
                message = f"municipality {frame.muni} is not served here"
                outbox.put(error_frame(code, message, frame.id), reply=False)
                continue
            stats.requests += 1
            operations.admit(conn, frame, at, now)
        return bad

    async def _watch(self) -> None:
        """Enforce the time limits, each at the instant it passes: a frame that has
        taken too long, a client reading none of its replies, a connection idle too
        long, a closing one whose client did not hang up, an operation whose next
        message did not come. It sleeps until the earliest of those instants; what
        sets an earlier one (a frame begun, a notice) brings its wake-up forward
        (`_due`); while connections are open it wakes at least every write timeout
        (a write begun since is timed from then on), else every idle timeout."""
        while True:
            now = trio.current_time()
            # While connections are open, a write under way is seen within the write
            # timeout of its start (`_limit` then wakes at its end): writes need not
            # say they began.
            longest = self._idle_timeout
            if self._conns:
                longest = min(longest, self._write_timeout)
            wake = now + longest
            if self.operations.ops:
                wake = min(wake, self.operations.expire(now))
            for conn in list(self._conns):
                wake = min(wake, self._limit(conn, now))
            self._wake = wake
            with trio.CancelScope(deadline=wake) as self._watching:
                await trio.sleep_forever()
            self._watching = None
            self._wake = -math.inf

    def _due(self, at: float) -> None:
        """A limit passes at `at`: wake the watcher then, if it would sleep past it."""
        # Against a copy of the deadline: a cancel scope's is a property, and every
        # write asks (`_writing`).
        if at < self._wake:
            assert self._watching is not None
            self._watching.deadline = self._wake = at

    def _limit(self, conn: Connection, now: float) -> float:
        """Act on `conn`'s time limits that have passed by `now`; the instant its next
        one passes (math.inf: none)."""
        real = self.limits
        writing = conn.outbox.writing_since
        if writing is not None:  # blocked writing to it: the write timeout is what counts
            if now < writing + self._write_timeout:
                return writing + self._write_timeout
            if conn.closing is not ErrorCode.NOT_READING:
                message = f"read no replies for {real.write_timeout:g} s: closing"
                self._close(conn, ErrorCode.NOT_READING, message)
            return math.inf
        if conn.closing is not None:  # told: its client has a frame timeout to hang up
            if conn.closing is not _IDLE:
                return math.inf
            if now < conn.closing_at + self._frame_timeout:
                return conn.closing_at + self._frame_timeout
            self._close(conn)
            return math.inf
        frame = math.inf
        if conn.frame_started is not None and conn.paused_at is None:
            frame = conn.frame_started + self._frame_timeout
            if now >= frame:
                message = f"a frame took longer than {real.frame_timeout:g} s to arrive"
                self._close(conn, ErrorCode.TOO_SLOW, message)
                return math.inf
        if conn.outbox.owed:  # replies owed: not idle
            return frame
        idle = max(conn.active_at, conn.outbox.sent_at) + self._idle_timeout
        if now < idle:
            return min(frame, idle)
        message = f"idle for {real.idle_timeout:g} s: closing, send no more requests"
        self._notify(conn, _IDLE, message)
        return conn.closing_at + self._frame_timeout

    def _notify(self, conn: Connection, code: ErrorCode, message: str) -> None:
        """Tell `conn`'s client the server is closing it (id 0: send nothing more);
        frames still arriving are refused with `code`; replies owed still go out."""
        if conn.closing is not None:
            return
        conn.closing, conn.closing_at = code, trio.current_time()
        if code is _IDLE:
            self._due(conn.closing_at + self._frame_timeout)
        self.stats.closed[code.name] += 1
        self.operations.orphan(conn)
        conn.outbox.put(error_frame(code, message), reply=False)
        assert self._nursery is not None
        self._nursery.start_soon(conn.outbox.flush)

    def _close(
        self, conn: Connection, code: ErrorCode | None = None, message: str = "", count: bool = True
    ) -> None:
        """Close `conn` now (its reader ends), after a last error frame `code`
        (counted as a closing for `code` unless `count` is false: the caller counts)."""
        if code is not None and count:
            self.stats.closed[code.name] += 1
            self.stats.rejected[code.name] += 1
        conn.closing, conn.closing_at = code or conn.closing, trio.current_time()
        self.operations.orphan(conn)

        async def close() -> None:
            if code is not None:
                await conn.outbox.last(error_frame(code, message))
            with trio.CancelScope(shield=True):
                await conn.stream.aclose()

        assert self._nursery is not None
        self._nursery.start_soon(close)

    def info(self) -> dict[str, Any]:
        """What the server says of itself to an INFO frame (`relaysim load` asks at
        its start and end): who it is (`about`: scenario, seed, time scale), its
        design and switches, and its own figures so far, which a client cannot
        know: outcomes, why overflows were refused, crashes, hangs and outage (`t`,
        `end`: seconds since the server started; `scenario_time`, `scenario_end`:
        the scenario's time of day), each node's figures (a summary's node rows);
        its clock now, named (`ScenarioClock`); and what it holds: operations
        between messages (by municipality), the CS connections held, input refused
        by code."""
        tier, now, clock = self.tier, trio.current_time(), self.clock
        ledger = tier.ledger
        rows: list[dict[str, Any]] = []
        for row in summary.events(tier.nodes, now):
            start, end = row["t"], row["end"]
            rows.append({
                **row,
                "t": round(start - self.started_at, 3),
                "end": None if end is None else round(end - self.started_at, 3),
                "scenario_time": clock.scenario_time(start),
                "scenario_end": None if end is None else clock.scenario_time(end),
            })  # fmt: skip
        return {
            "protocol": VERSION,
            "speed": self.limits.scale,
            # How finely its clock wakes a wait, in real ms (0: a virtual clock).
            "clock_resolution_ms": self.driver.resolution / self.limits.scale * 1000,
            **self.about,
            "design": tier.design.name,
            "switches": tier.design.switches(),
            "uptime_s": round(now - self.started_at, 3),
            "scenario_clock_s": round(clock.seconds(now), 3),
            "scenario_time": clock.scenario_time(now),
            "utc": clock.utc(now),
            "requests": ledger.total.requests,
            "outcomes": {o.value: ledger.total.count(o) for o in OUTCOMES},
            "refusals": dict(sorted(ledger.refusals.items())),
            "in_flight": len(ledger.still_open),
            "between_messages": self.between_messages,
            "between_by_municipality": {
                str(muni): n for muni, n in self.operations.between_by_municipality().items()
            },
            "cs_connections_held": self.connections_held,
            "rejected": dict(sorted(self.stats.rejected.items())),
            "crashes": sum(r["kind"] == "crash" for r in rows),
            "hangs": sum(r["kind"] == "hang" for r in rows),
            "outage_minutes": round(sum(r["outage_minutes"] for r in rows), 3),
            "events": rows,
            "nodes": [summary.node_row(n, ledger, now) for n in tier.nodes],
        }

    async def _reject(self, outbox: Outbox, code: ErrorCode, message: str) -> None:
        """Count `code` and send it as the connection's last frame."""
        self.stats.rejected[code.name] += 1
        await outbox.last(error_frame(code, message))
