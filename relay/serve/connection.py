"""One client connection of serve mode, as the server keeps it: its outbox of
replies, its state for the watcher, the counter operations held on it between
messages, and the counts the server keeps of all of them (`ServerStats`).

`relay.serve.server.RelayServer` reads and writes these; nothing here does I/O
but the outbox's writes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from relay.net import sent
from relay.serve.protocol import ErrorCode, Frame

#: Bytes of replies a connection may leave unread behind the write under way before
#: the server stops reading from it: a client that pipelines without reading is
#: held by TCP's backpressure, not by the server's memory.
OUTBOX_HIGH_WATER = 256 * 1024


@dataclass
class ServerStats:
    """What the server has seen: connections, frames, and rejected input by code."""

    connections: int = 0
    open: int = 0
    requests: int = 0
    replies: int = 0
    undelivered: int = 0  # replies whose client had gone
    rejected: Counter[str] = field(default_factory=Counter)  # by ErrorCode name
    refused_connections: Counter[str] = field(default_factory=Counter)  # by limit
    # idle connections closed to admit a new one at a limit (`_make_room`), by limit
    evicted: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)  # closed by the server, by why
    cut: int = 0  # requests still running when the drain ended: replies undelivered
    abandoned: int = 0  # operations whose next message never came (or came too late)
    aborted: int = 0  # requests cancelled by `abort`: no outcome


class Outbox:
    """The replies going out on one connection.

    No lock: the task that finds nobody sending becomes the sender and takes along
    whatever other requests queued while it was sending, so replies that finish
    together leave in one write and a reply costs no lock round trip. A client that
    stops reading holds only its own connection's sender.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        stats: ServerStats,
        grace: float = 1.0,
        now: Callable[[], float] = trio.current_time,
    ) -> None:
        self._stream = stream
        self._stats = stats
        self._grace = grace  # trio seconds a final frame may take to go out
        self._now = now  # the run's clock (`TrioDriver.now`)
        self._queue: list[bytes] = []  # encoded frames
        self._replies = 0  # how many of them are replies (the rest: errors, INFO)
        self._queued = 0  # bytes in the queue
        self.sending = False  # a sender is at work
        self._kicked = False  # a task is on its way to send (`kick`)
        self._quiet: trio.Event | None = None  # set when a sender is done
        self._room: trio.Event | None = None  # set when the queue empties into a write
        self.sent_at = -math.inf  # when the last write ended: the connection was active
        self.writing_since: float | None = None  # when the write under way began
        self.owed = 0  # requests accepted on this connection and not yet answered
        self._settled: trio.Event | None = None

    def answered(self) -> None:
        """One request owed a reply has had it (or its attempt)."""
        self.owed -= 1
        if self.owed == 0 and self._settled is not None:
            self._settled.set()

    async def settled(self) -> None:
        """Return once every request accepted on this connection has been answered
        and every reply queued has been written (or could not be)."""
        if self.owed:
            self._settled = trio.Event()
            await self._settled.wait()
        await self.flush()  # what nobody is sending yet
        while self.sending:  # a sender at work: until it is done
            self._quiet = trio.Event()
            await self._quiet.wait()

    def put(self, frame: Frame, *, reply: bool = True) -> None:
        """Queue `frame` for the next `flush`."""
        self.queue(frame.encode(), reply=reply)

    def queue(self, data: bytes, *, reply: bool = True) -> None:
        """Queue an encoded frame for the next `flush`."""
        self._queue.append(data)
        self._queued += len(data)
        self._replies += reply

    async def room(self) -> None:
        """Return once the replies waiting behind the write under way are below
        OUTBOX_HIGH_WATER bytes: the reader admits no more until then (only while
        a sender is at work can there be any)."""
        while self.sending and self._queued > OUTBOX_HIGH_WATER:
            self._room = trio.Event()
            await self._room.wait()

    def kick(self, nursery: trio.Nursery) -> None:
        """Have what is queued sent: unless a sender is at work or one is on its way
        already (it takes this along), written at once if the socket takes it all
        (`relay.net.sent`), else by a task in `nursery`. Replies a request's wait
        ended (a device's answer) go out this way, and a task each would cost more
        than its write."""
        if self.sending or self._kicked or not self._queue:
            return
        data = _joined(self._queue)
        n = sent(self._stream, data)
        if n == len(data):
            self._queue, self._queued = [], 0
            self._stats.replies += self._replies
            self._replies = 0
            self.sent_at = self._now()
            return
        if n:  # the rest waits for room, the replies among it still counted as queued
            self._queue, self._queued = [data[n:]], len(data) - n
            self.sent_at = self._now()
        self._kicked = True
        nursery.start_soon(self.flush)

    async def send(self, frame: Frame, *, reply: bool = True) -> None:
        """Queue `frame` and flush."""
        self.put(frame, reply=reply)
        await self.flush()

    async def flush(self, since: float | None = None) -> bool:
        """Unless a sender is at work, send what is queued and whatever queues
        meanwhile; whether it wrote (a write is a checkpoint). `since`: the clock
        now, if the caller has just read it. Replies are counted delivered once
        written, undelivered if the client has gone (or the send was cancelled)
        before."""
        self._kicked = False
        if self.sending or not self._queue:
            return False  # the sender takes it along
        self.sending = True
        replies, now, stats = 0, self._now, self._stats
        try:
            while self._queue:
                batch, self._queue, self._queued = self._queue, [], 0
                replies, self._replies = self._replies, 0
                if self._room is not None:
                    self._room.set()
                data = _joined(batch)
                # The watcher sees a write that takes too long (`RelayServer._limit`).
                self.writing_since = now() if since is None else since
                since = None
                await self._stream.send_all(data)
                self.sent_at = now()
                stats.replies += replies
                replies = 0
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.sending = False
            self.writing_since = None
            stats.undelivered += replies + self._replies
            self._queue, self._queued, self._replies = [], 0, 0
            if self._room is not None:
                self._room.set()
            if self._quiet is not None:
                self._quiet.set()
        return True

    async def last(self, frame: Frame) -> None:
        """Send a final error frame within a second of real time (a client that does
        not read cannot hold us); the caller closes the connection."""
        with trio.move_on_after(self._grace):
            await self.send(frame, reply=False)


def _joined(frames: list[bytes]) -> bytes:
    """Encoded frames as one write (the commonest, one frame, without a copy)."""
    return frames[0] if len(frames) == 1 else b"".join(frames)


class Connection:
    """One client connection's state, as the reader and the watcher share it."""

    __slots__ = (
        "active_at",
        "closing",
        "closing_at",
        "frame_started",
        "gone",
        "ops",
        "outbox",
        "paused_at",
        "peer",
        "spoke",
        "stream",
    )

    def __init__(self, stream: trio.abc.Stream, outbox: Outbox, peer: str, now: float) -> None:
        self.stream = stream
        self.outbox = outbox
        self.peer = peer
        self.active_at = now  # when bytes last arrived (the outbox knows when they left)
        self.spoke = False  # it has sent something
        self.frame_started: float | None = None  # when the partial frame began
        self.closing: ErrorCode | None = None  # SHUTTING_DOWN or IDLE once told
        self.closing_at = 0.0
        self.paused_at: float | None = None  # since when the reader is not reading
        self.ops: set[bytes] = set()  # keys of the operations begun here and not ended
        self.gone = False  # the connection has closed
