"""Serve mode: the relay tier behind TCP ports on loopback, under the real clock.

The dispatcher's port takes protocol frames (`relay.serve.protocol`) from any number of
CS connections and places each request on the node the distributor chooses; each
relay node also has its own port, whose requests go to that node directly (as a CS
connection the distributor has already placed there, or an SRE testing one node).
Each request frame becomes one request of the core (`RelayTier`), performed by
the trio driver's `perform` under the real clock with real or
simulated services, and is answered with one reply frame carrying its outcome:
the same model, designs and checkers as the replays. Retrying is the client's
business here (the counter user presses "resend"); the reply says what happened.

Hostile input never reaches the model and never stalls other clients:
- bytes that are not a frame (garbage, an unknown version or type, an oversized or
  undersized length) get one error frame with the code and the connection closes;
- a frame that takes longer than `frame_timeout` to arrive (a client sending a
  byte a minute) gets `TOO_SLOW` and a close; an idle connection between frames is
  left alone;
- beyond `max_connections` open connections a new one gets `BUSY` and a close;
- a request from a municipality the tier does not serve gets an error frame with
  its id (`UNKNOWN_MUNICIPALITY`); the connection stays open;
- a client that disconnects mid-frame or mid-request costs only its own tasks: its
  requests still end with their outcome in the ledger (nothing accepted is lost),
  the reply is simply not delivered.
Every such event is counted in `ServerStats`.

Stopping (`RelayServer.stop`): the listener closes first, requests in flight get
`drain` seconds to end and be answered, then remaining connections are closed; a
request still running then goes on to its end (its deadlines bound it) and records
its outcome, undelivered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import trio

from relay.core.node import Node
from relay.core.request import Request
from relay.core.tier import Flow, RelayTier
from relay.engines.trio import (
    Ended,
    TrioDriver,
    Waiting,
)
from relay.serve.protocol import (
    MAX_FRAME,
    STATUS_OF,
    Decoder,
    ErrorCode,
    Frame,
    ProtocolError,
    Type,
    error_frame,
)


@dataclass
class ServerStats:
    """What the server has seen: connections, frames, and rejected input by code."""

    connections: int = 0
    open: int = 0
    requests: int = 0
    replies: int = 0
    undelivered: int = 0  # replies whose client had gone
    rejected: Counter[str] = field(default_factory=Counter)  # by ErrorCode name


class Outbox:
    """The replies going out on one connection.

    No lock: the task that finds nobody sending becomes the sender and takes along
    whatever other requests queued while it was sending, so replies that finish
    together leave in one write and a reply costs no lock round trip. A client that
    stops reading holds only its own connection's sender.
    """

    def __init__(self, stream: trio.SocketStream, stats: ServerStats) -> None:
        self._stream = stream
        self._stats = stats
        self._queue: list[tuple[bytes, bool]] = []  # (encoded frame, is a reply)
        self._sending = False
        self.owed = 0  # requests accepted on this connection and not yet answered
        self._settled: trio.Event | None = None

    def answered(self) -> None:
        """One request owed a reply has had it (or its attempt)."""
        self.owed -= 1
        if self.owed == 0 and self._settled is not None:
            self._settled.set()

    async def settled(self) -> None:
        """Return once every request accepted on this connection has been answered."""
        if self.owed:
            self._settled = trio.Event()
            await self._settled.wait()

    def put(self, frame: Frame, *, reply: bool = True) -> None:
        """Queue `frame` for the next `flush`."""
        self._queue.append((frame.encode(), reply))

    async def send(self, frame: Frame, *, reply: bool = True) -> None:
        """Queue `frame` and flush."""
        self.put(frame, reply=reply)
        await self.flush()

    async def flush(self) -> None:
        """Unless a sender is at work, send what is queued and whatever queues
        meanwhile. Replies are counted delivered once written, undelivered if the
        client has gone (or the send was cancelled) before."""
        if self._sending or not self._queue:
            return  # the sender takes it along
        self._sending = True
        batch: list[tuple[bytes, bool]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                data = batch[0][0] if len(batch) == 1 else b"".join(d for d, _ in batch)
                await self._stream.send_all(data)
                self._stats.replies += sum(r for _, r in batch)
                batch = []
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._sending = False
            unsent, self._queue = batch + self._queue, []
            self._stats.undelivered += sum(r for _, r in unsent)

    async def last(self, frame: Frame) -> None:
        """Send a final error frame within a second (a client that does not read
        cannot hold us); the caller closes the connection."""
        with trio.move_on_after(1.0):
            await self.send(frame, reply=False)


class RelayServer:
    """The dispatcher's TCP front of one relay tier (see the module doc)."""

    def __init__(
        self,
        tier: RelayTier,
        driver: TrioDriver,
        *,
        max_frame: int = MAX_FRAME,
        frame_timeout: float = 5.0,
        max_connections: int = 1024,
        drain: float = 10.0,
    ) -> None:
        self.tier = tier
        self.driver = driver
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout
        self.max_connections = max_connections
        self.drain = drain
        self.stats = ServerStats()
        self._in_flight = 0
        self._idle = trio.Event()
        self._idle.set()
        self._stop = trio.Event()
        self.stopped = trio.Event()  # set once stopped and drained
        self.node_ports: dict[str, int] = {}  # each relay node's own port, by name

    async def serve(
        self,
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on 127.0.0.1:`port` for the dispatcher and on one port per relay node
        (`port` + 1, + 2, ... when `port` is given; any free ones for 0, in
        `node_ports`) until `stop`, then drain and return. `started` reports the
        dispatcher's port."""
        front = await trio.open_tcp_listeners(port, host="127.0.0.1")
        listeners: list[tuple[trio.SocketListener, Node | None]] = [(front[0], None)]
        for i, node in enumerate(self.tier.nodes, 1):
            [own] = await trio.open_tcp_listeners(port + i if port else 0, host="127.0.0.1")
            listeners.append((own, node))
            self.node_ports[node.name] = own.socket.getsockname()[1]
        bound = front[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(self.driver.serve)
            # Requests run in their own nursery, which a stop never cancels: each
            # ends by its own deadlines and records its outcome, even once its
            # connection is gone (nothing accepted is lost).
            async with trio.open_nursery() as work, trio.open_nursery() as conns:
                for listener, at in listeners:
                    conns.start_soon(self._accept, listener, at, conns, work)
                task_status.started(bound)
                await self._stop.wait()
                for listener, _ in listeners:
                    await listener.aclose()
                with trio.move_on_after(self.drain):
                    await self._idle.wait()
                conns.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        self.stopped.set()

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to `drain`), and return."""
        self._stop.set()

    async def _accept(
        self,
        listener: trio.SocketListener,
        at: Node | None,
        conns: trio.Nursery,
        work: trio.Nursery,
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, OSError):
                return
            conns.start_soon(self._connection, stream, at, work)

    async def _connection(
        self, stream: trio.SocketStream, at: Node | None, work: trio.Nursery
    ) -> None:
        stats = self.stats
        stats.connections += 1
        outbox = Outbox(stream, stats)
        if stats.open >= self.max_connections:
            await self._reject(outbox, ErrorCode.BUSY, "connection limit reached")
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        stats.open += 1
        try:
            await self._read(stream, outbox, work, at)
            await outbox.settled()  # a client may half-close and still read replies
        finally:
            stats.open -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _read(
        self, stream: trio.SocketStream, outbox: Outbox, work: trio.Nursery, at: Node | None
    ) -> None:
        decoder = Decoder(self.max_frame)
        while True:
            try:
                if decoder.pending:
                    # Inside a frame the bytes must keep coming; between frames a
                    # connection may idle (and pays for no timer).
                    with trio.move_on_after(self.frame_timeout) as scope:
                        data = await stream.receive_some(65536)
                    if scope.cancelled_caught:
                        await self._reject(outbox, ErrorCode.TOO_SLOW, "frame took too long")
                        return
                else:
                    data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return  # the client closed; its requests still end in the ledger
            try:
                frames = decoder.feed(data)
            except ProtocolError as exc:
                await self._reject(outbox, exc.code, str(exc))
                return
            for frame in frames:
                if frame.type is not Type.REQUEST:
                    await self._reject(outbox, ErrorCode.UNKNOWN_TYPE, "clients send requests")
                    return
                if frame.muni >= self.tier.dispatcher.cs_count:
                    # A well-formed frame for a CS this tier does not serve: refuse
                    # that request only; the connection stays.
                    code = ErrorCode.UNKNOWN_MUNICIPALITY
                    self.stats.rejected[code.name] += 1
                    message = f"municipality {frame.muni} is not served here"
                    outbox.put(error_frame(code, message, frame.id), reply=False)
                    continue
                self.stats.requests += 1
                self._admit(outbox, frame, at, work)
            await outbox.flush()  # the replies of requests that needed no wait

    def _admit(self, outbox: Outbox, frame: Frame, at: Node | None, work: trio.Nursery) -> None:
        """Start `frame`'s request: answer it at once if it ends without waiting (the
        reader flushes), else hand it to a task of its own."""
        try:
            req, flow = self.tier.admit(frame.muni, 0, trio.current_time(), at)
            state = self.driver.advance(flow)
        except Exception as exc:
            outbox.put(self._failed(frame, exc))
            return
        if type(state) is Ended:
            outbox.put(self._reply(frame, req))
            return
        assert type(state) is Waiting
        outbox.owed += 1
        self._in_flight += 1
        if self._in_flight == 1:
            self._idle = trio.Event()
        work.start_soon(self._request, outbox, frame, req, flow, state)

    async def _request(
        self, outbox: Outbox, frame: Frame, req: Request, flow: Flow, state: Waiting
    ) -> None:
        try:
            try:
                await self.driver.perform(flow, state)
                reply = self._reply(frame, req)
            except Exception as exc:
                reply = self._failed(frame, exc)
            await outbox.send(reply)
        finally:
            outbox.answered()
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _reply(self, frame: Frame, req: Request) -> Frame:
        """The reply to `frame` carrying its request's outcome."""
        if req.outcome is None:
            return self._failed(frame, RuntimeError(f"request {req.id} ended without an outcome"))
        return Frame(Type.REPLY, frame.id, frame.key, frame.muni, STATUS_OF[req.outcome])

    def _failed(self, frame: Frame, exc: Exception) -> Frame:
        """An INTERNAL error for `frame`, whose request hit a bug: the request stays
        open in the ledger (the accounting checker and relaysim_in_flight show it);
        this client gets an error, the others go on being served."""
        self.stats.rejected[ErrorCode.INTERNAL.name] += 1
        self.tier.log.info("serve.request_failed", id=frame.id, error=repr(exc))
        return error_frame(ErrorCode.INTERNAL, "internal error", frame.id)

    async def _reject(self, outbox: Outbox, code: ErrorCode, message: str) -> None:
        """Count `code` and send it as the connection's last frame."""
        self.stats.rejected[code.name] += 1
        await outbox.last(error_frame(code, message))
