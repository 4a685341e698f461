"""A simulated network for trio: hosts, listeners and connections in memory, on
the run's own clock (a `trio.testing.MockClock` in tests and hunts).

A connection is two pipes of bytes, `upstream` (client to server) and
`downstream`. Bytes written at instant t arrive at t, or later by the toxics on
the listening address (`relay.net.toxics`, Toxiproxy's vocabulary), in order, as
TCP delivers them; each direction holds at most `buffer_bytes` unread (the two
socket buffers), and a writer past that waits for the reader (backpressure).
Closing works as TCP's does: a close or `send_eof` arrives after the bytes before
it; a close with unread bytes resets the connection; writing to a peer that has
closed fails (`BrokenResourceError`).

Link controls between two hosts, after turmoil's:
- `hold(a, b)`: bytes between them stop moving, and connecting waits; `repair`
  delivers them in order, nothing lost (a stall);
- `partition(a, b)`: the connections between them are reset at once (both ends see
  `BrokenResourceError`), and connecting waits (then fails with TimeoutError after
  `connect_timeout`, as the SYNs of a real connect run out);
- `repair(a, b)`: undoes either.

Nothing here reads a wall clock or an unseeded random source: the only draws
(jitter, slice sizes, toxicity) come from the network's seed, in the order the
run makes them, so a run whose tasks are scheduled in a fixed order is repeated
exactly.
"""

from __future__ import annotations

import errno
import math
from collections import deque
from typing import Any, Literal

import trio

from relay.core.rng import Streams
from relay.net.toxics import KINDS, Direction, Segment, Toxic, ToxicError

BUFFER_BYTES = 256 * 1024  # unread bytes a direction holds (send + receive buffer)
CONNECT_TIMEOUT_S = 127.0  # Linux's connect gives up after 6 SYN retries: 127 s
EPHEMERAL = 40000  # the first port handed out for port 0

Control = Literal["hold", "partition"]
Address = tuple[str, int]


class _Pipe:
    """One direction of a connection: what its writer sent and its reader has
    not read, each piece with the instant it arrives."""

    __slots__ = ("buffered", "chunks", "direction", "dst", "fin_at", "last_at", "link",
                 "reader_gone", "readers", "src", "state", "writers")  # fmt: skip

    def __init__(self, link: _Link, direction: Direction, src: str, dst: str) -> None:
        self.link = link
        self.direction = direction
        self.src, self.dst = src, dst
        self.chunks: deque[Segment] = deque()
        self.buffered = 0  # bytes sent and not read
        self.last_at = 0.0  # the latest arrival so far: later bytes arrive after it
        self.fin_at = math.inf  # when the writer's close (FIN) arrives
        self.reader_gone = False  # the reading end has closed
        self.readers = trio.lowlevel.ParkingLot()
        self.writers = trio.lowlevel.ParkingLot()
        self.state: dict[str, Any] = {}  # the toxics' own state, by toxic name

    # `relay.net.toxics.Wire`: what a toxic can do to the connection
    @property
    def second(self) -> float:
        """The clock's units in a real second (`relay.net.toxics.Wire`)."""
        return self.link.net.second

    def close_at(self, at: float, by: str) -> None:
        """Close the connection at `at`, for toxic `by`."""
        self.link.timer("close", at, by)

    def reset_at(self, at: float, by: str) -> None:
        """Reset the connection at `at`, for toxic `by`."""
        self.link.timer("reset", at, by)

    def wake(self) -> None:
        """Let every task waiting on this direction look again."""
        self.readers.unpark_all()
        self.writers.unpark_all()


class _Link:
    """One connection between a client host and a listening address."""

    def __init__(self, net: SimNetwork, number: int, client: str, proxy: Address) -> None:
        self.net = net
        self.number = number
        self.proxy = proxy
        self.hosts = frozenset((client, proxy[0]))
        self.up = _Pipe(self, "upstream", client, proxy[0])
        self.down = _Pipe(self, "downstream", proxy[0], client)
        self.reset = math.inf  # from then on both ends see "connection reset"
        self.closed = math.inf  # from then on both ends see the connection closed
        # What set them, by who: a toxic's name ("" for the ends and the network,
        # which cannot be taken back); a toxic taken off in time takes its own back.
        self._timers: dict[str, dict[str, float]] = {"close": {}, "reset": {}}
        self.met: dict[str, bool] = {}  # toxics met: whether each acts here (toxicity)
        self.ends = 2  # ends not yet closed

    def pipe(self, direction: Direction) -> _Pipe:
        return self.up if direction == "upstream" else self.down

    def timer(self, what: Literal["close", "reset"], at: float, by: str = "") -> None:
        """Close or reset the connection at `at`, for `by`."""
        mine = self._timers[what]
        mine[by] = min(at, mine.get(by, math.inf))
        self._settle()

    def untimer(self, by: str, now: float) -> None:
        """Toxic `by` is taken off: what it had yet to do is not done."""
        for mine in self._timers.values():
            if mine.get(by, -math.inf) > now:
                del mine[by]
        self._settle()

    def _settle(self) -> None:
        self.closed = min(self._timers["close"].values(), default=math.inf)
        self.reset = min(self._timers["reset"].values(), default=math.inf)
        self.wake()

    def wake(self) -> None:
        self.up.wake()
        self.down.wake()

    def meet(self, toxic: Toxic, now: float) -> None:
        """`toxic` meets this connection: whether it acts here is drawn once (its
        toxicity), and a toxic that acts starts what it starts (a timer)."""
        acts = toxic.toxicity >= 1.0 or self.net.rng.random() < toxic.toxicity
        self.met[toxic.name] = acts
        if acts:
            KINDS[toxic.type].meets(toxic, self.pipe(toxic.stream), now)


class SimStream(trio.abc.HalfCloseableStream):
    """One end of a simulated connection."""

    def __init__(self, link: _Link, out: _Pipe, inp: _Pipe, peer: str) -> None:
        self._link = link
        self._out = out
        self._in = inp
        self.peer = peer  # the address of the host at the other end
        self._closed = False
        self._eof = False
        self._sending = False
        self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send `data`, waiting while the direction holds `buffer_bytes` unread."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            self._check_open()
            link, out, net = self._link, self._out, self._link.net
            view = memoryview(data)
            while True:
                now = trio.current_time()
                if now >= link.reset:
                    raise trio.BrokenResourceError("connection reset by peer")
                if not view:
                    return  # all written (a toxic may close the connection after)
                if now >= link.closed or out.reader_gone:
                    raise trio.BrokenResourceError("broken pipe: the peer has closed")
                room = net.buffer_bytes - out.buffered
                if room > 0:
                    net.carry(link, out, bytes(view[:room]), now)
                    view = view[room:]
                    continue
                with trio.move_on_at(min(link.reset, link.closed)):
                    await out.writers.park()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Return once the direction has room (or the connection is over)."""
        await trio.lowlevel.checkpoint()
        self._check_open()
        link, out = self._link, self._out
        while out.buffered >= link.net.buffer_bytes and trio.current_time() < link.reset:
            with trio.move_on_at(min(link.reset, link.closed)):
                await out.writers.park()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The bytes that have arrived (up to `max_bytes`), waiting for some; b""
        once the peer's close has arrived; BrokenResourceError after a reset."""
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            # A checkpoint, as trio's streams are, but one schedule point a call, not
            # two: a read that must wait yields while it waits (as a socket's does).
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._closed:
                raise trio.ClosedResourceError("this end is closed")
            link, inp, net = self._link, self._in, self._link.net
            limit = max_bytes if max_bytes is not None else 65536
            waited = False
            while True:
                now = trio.current_time()
                if now >= link.reset:
                    raise trio.BrokenResourceError("connection reset by peer")
                chunks = inp.chunks
                held = net.control(inp.src, inp.dst) == "hold"
                first = chunks[0][0] if chunks and not held else math.inf
                got: bytes | None = None
                if first <= now and first <= link.closed:
                    got = self._take(limit, min(now, link.closed))
                elif now >= link.closed or (not chunks and now >= inp.fin_at):
                    got = b""
                if got is not None:
                    if not waited:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return got
                wake = min(link.reset, link.closed, first, inp.fin_at if not chunks else math.inf)
                waited = True
                if wake == math.inf:
                    await inp.readers.park()  # no cancel scope when nothing is timed
                else:
                    with trio.move_on_at(wake):
                        await inp.readers.park()
        finally:
            self._receiving = False

    def _take(self, limit: int, until: float) -> bytes:
        inp, chunks, got, size = self._in, self._in.chunks, [], 0
        while chunks and chunks[0][0] <= until and size < limit:
            at, chunk = chunks[0]
            if size + len(chunk) > limit:
                cut = limit - size
                chunks[0] = (at, chunk[cut:])
                chunk = chunk[:cut]
            else:
                chunks.popleft()
            got.append(chunk)
            size += len(chunk)
        inp.buffered -= size
        inp.writers.unpark_all()
        return b"".join(got)

    async def send_eof(self) -> None:
        """Half-close: the peer reads b"" after what was sent; replies still come."""
        await trio.lowlevel.checkpoint()
        self._check_open()
        if not self._eof:
            self._eof = True
            self._finish(trio.current_time())

    async def aclose(self) -> None:
        """Close this end: the peer reads what was sent, then b""; unread bytes
        here reset the connection, as TCP does."""
        if not self._closed:
            self._closed = True
            now, link = trio.current_time(), self._link
            if not self._eof:
                self._finish(now)
            if self._in.chunks and now < link.closed:
                link.timer("reset", now)  # unread data: the peer gets a reset
            self._in.reader_gone = True
            link.wake()
            link.ends -= 1
            if link.ends == 0:
                link.net.forget(link)
        await trio.lowlevel.checkpoint()

    async def wait_unread(self) -> None:
        """Return once nothing this end sends will be read: the peer has closed its
        end, or the connection is closed or reset."""
        out, link = self._out, self._link
        while not out.reader_gone:
            over = min(link.reset, link.closed)
            if trio.current_time() >= over:
                return
            with trio.move_on_at(over):
                await out.writers.park()

    def reset(self) -> None:
        """Reset the connection now: both ends see "connection reset" (a peer's RST)."""
        self._link.timer("reset", trio.current_time())

    def _finish(self, now: float) -> None:
        out = self._out
        delay = self._link.net.close_delay(self._link, out.direction)
        out.fin_at = max(now, out.last_at) + delay
        out.readers.unpark_all()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this end is closed")
        if self._eof:
            raise trio.ClosedResourceError("this end has sent EOF")


class SimListener(trio.abc.Listener[trio.abc.Stream]):
    """A listening address: connections made to it wait here to be accepted."""

    def __init__(self, net: SimNetwork, address: Address) -> None:
        self._net = net
        self.address = address
        self._in, self._out = trio.open_memory_channel[SimStream](math.inf)

    def offer(self, stream: SimStream) -> None:
        self._in.send_nowait(stream)

    async def accept(self) -> trio.abc.Stream:
        """The next connection made to this address."""
        try:
            return await self._out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener closed") from None

    async def aclose(self) -> None:
        """Stop listening: connections not yet accepted are reset."""
        if self._net.listeners.get(self.address) is self:
            del self._net.listeners[self.address]
        self._in.close()
        while True:
            try:
                waiting = self._out.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            waiting._link.timer("reset", trio.current_time())
        self._out.close()
        await trio.lowlevel.checkpoint()


class SimNetwork:
    """Hosts, listeners, connections, toxics and link controls (see the module doc).

    `host(address)` is the `relay.net.Network` of one host: what it listens on and
    connects from. Toxics sit on a listening address (`add_toxic`); link controls
    between two hosts (`hold`, `partition`, `repair`)."""

    def __init__(
        self,
        seed: int = 0,
        *,
        buffer_bytes: int = BUFFER_BYTES,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        second: float = 1.0,
    ) -> None:
        self.rng = Streams(seed).stream("network")
        self.second = second  # clock units a real second: toxics' times are real ones
        self.buffer_bytes = buffer_bytes
        self.connect_timeout = connect_timeout
        self.listeners: dict[Address, SimListener] = {}
        self._toxics: dict[Address, dict[str, Toxic]] = {}
        self._links: dict[Address, dict[int, _Link]] = {}
        self._controls: dict[frozenset[str], Control] = {}
        self._repaired = trio.lowlevel.ParkingLot()
        self._numbers = 0
        self.connections = 0  # made so far

    def host(self, address: str) -> SimHost:
        """The network as host `address` sees it."""
        return SimHost(self, address)

    # -- toxics, on a listening address -------------------------------------------

    def toxics(self, address: Address) -> list[Toxic]:
        """The toxics on `address`, in the order they act."""
        return list(self._toxics.get(address, {}).values())

    def add_toxic(self, address: Address, toxic: Toxic) -> None:
        """Put `toxic` on every connection to `address`, open ones included;
        ToxicError if one of that name is there."""
        chain = self._toxics.setdefault(address, {})
        if toxic.name in chain:
            raise ToxicError(f"toxic {toxic.name!r} already exists on {address[0]}:{address[1]}")
        chain[toxic.name] = toxic
        now = trio.current_time()
        for link in self._links.get(address, {}).values():
            link.meet(toxic, now)

    def remove_toxic(self, address: Address, name: str) -> None:
        """Take toxic `name` off `address`; KeyError if it is not there."""
        del self._toxics[address][name]
        now = trio.current_time()
        for link in self._links.get(address, {}).values():
            link.untimer(name, now)
            link.met.pop(name, None)
            link.up.state.pop(name, None)
            link.down.state.pop(name, None)
            link.wake()

    def reset(self) -> None:
        """Every toxic off and every link repaired (Toxiproxy's POST /reset)."""
        for address, chain in list(self._toxics.items()):
            for name in list(chain):
                self.remove_toxic(address, name)
        for pair in list(self._controls):
            a, b = sorted(pair)
            self.repair(a, b)

    # -- link controls, between two hosts ------------------------------------------

    def control(self, a: str, b: str) -> Control | None:
        """Whether the link between `a` and `b` is held or partitioned."""
        return self._controls.get(frozenset((a, b))) if self._controls else None

    def hold(self, a: str, b: str) -> None:
        """Bytes between `a` and `b` wait, connecting waits, until `repair`."""
        self._controls[self._pair(a, b)] = "hold"

    def partition(self, a: str, b: str) -> None:
        """Reset the connections between `a` and `b`; connecting waits until `repair`."""
        pair = self._pair(a, b)
        self._controls[pair] = "partition"
        now = trio.current_time()
        for links in self._links.values():
            for link in list(links.values()):
                if link.hosts == pair:
                    link.timer("reset", now)

    def repair(self, a: str, b: str) -> None:
        """Undo `hold` or `partition` between `a` and `b`: held bytes arrive."""
        pair = self._pair(a, b)
        if self._controls.pop(pair, None) is None:
            return
        for links in self._links.values():
            for link in links.values():
                if link.hosts == pair:
                    link.wake()
        self._repaired.unpark_all()

    @staticmethod
    def _pair(a: str, b: str) -> frozenset[str]:
        if a == b:
            raise ValueError(f"a link joins two hosts: {a} and {b} are one")
        return frozenset((a, b))

    # -- what the streams and hosts call -------------------------------------------

    def carry(self, link: _Link, pipe: _Pipe, data: bytes, now: float) -> None:
        """Put `data`, written at `now`, on its way through the toxics."""
        segments: list[Segment] = [(now, data)]
        chain = self._toxics.get(link.proxy)
        if chain:
            for toxic in chain.values():
                if toxic.stream == pipe.direction and link.met.get(toxic.name):
                    segments = KINDS[toxic.type].passes(toxic, pipe, segments, self.rng)
        last = pipe.last_at
        for at, chunk in segments:
            if chunk:
                last = max(at, last)
                pipe.chunks.append((last, chunk))
                pipe.buffered += len(chunk)
        pipe.last_at = last
        pipe.readers.unpark_all()

    def close_delay(self, link: _Link, direction: Direction) -> float:
        """How much later a close in `direction` arrives (slow_close)."""
        delay = 0.0
        for toxic in self._toxics.get(link.proxy, {}).values():
            if toxic.stream == direction and link.met.get(toxic.name):
                delay += KINDS[toxic.type].close_delay(toxic)
        return delay * self.second

    def forget(self, link: _Link) -> None:
        """Both ends have closed: the link is no more."""
        self._links.get(link.proxy, {}).pop(link.number, None)

    async def connect(self, client: str, address: Address) -> SimStream:
        """Connect from host `client` to `address` (see `SimHost.connect`)."""
        await trio.lowlevel.checkpoint()
        give_up = trio.current_time() + self.connect_timeout
        while self.control(client, address[0]) is not None:
            if trio.current_time() >= give_up:
                raise TimeoutError(errno.ETIMEDOUT, f"connect to {address[0]}: timed out")
            with trio.move_on_at(give_up):
                await self._repaired.park()
        listener = self.listeners.get(address)
        if listener is None:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"connect to {address[0]}:{address[1]}: connection refused"
            )
        self._numbers += 1
        self.connections += 1
        link = _Link(self, self._numbers, client, address)
        self._links.setdefault(address, {})[link.number] = link
        now = trio.current_time()
        link.up.last_at = link.down.last_at = now
        for toxic in self._toxics.get(address, {}).values():
            link.meet(toxic, now)
        # The server's end writes downstream and reads upstream; the client's the reverse.
        listener.offer(SimStream(link, link.down, link.up, client))
        return SimStream(link, link.up, link.down, address[0])


class SimHost:
    """One host of a `SimNetwork`: a `relay.net.Network`."""

    def __init__(self, net: SimNetwork, address: str) -> None:
        self.net = net
        self.address = address

    async def listen(self, host: str, port: int) -> tuple[trio.abc.Listener[trio.abc.Stream], int]:
        """Listen on this host's `port` (0: the next free one from 40000)."""
        await trio.lowlevel.checkpoint()
        if host != self.address:
            raise OSError(errno.EADDRNOTAVAIL, f"{host} is not this host ({self.address})")
        listeners = self.net.listeners
        if port == 0:
            port = EPHEMERAL
            while (host, port) in listeners:
                port += 1
        elif (host, port) in listeners:
            raise OSError(errno.EADDRINUSE, f"{host}:{port}: address already in use")
        listener = listeners[(host, port)] = SimListener(self.net, (host, port))
        return listener, port

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """Connect to `host`:`port`: refused when nothing listens there; waits
        while the link is held or partitioned, up to the connect timeout."""
        return await self.net.connect(self.address, (host, port))

    def peer(self, stream: trio.abc.Stream) -> str:
        """The other end's host."""
        assert isinstance(stream, SimStream)
        return stream.peer
