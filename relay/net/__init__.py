"""The transport seam: how serve mode and `relaysim load` reach each other.

Everything that opens a connection or a listener goes through a `Network`, as
httpcore's network backends do: `REAL` is trio's sockets on loopback;
`relay.net.sim.SimNetwork` is an in-memory network of hosts and links on the run's
own clock, with Toxiproxy's toxics and turmoil's link controls, deterministic from
its seed. The server, its HTTP endpoints and the load client are the same code on
either: they differ only in the network (and the clock) they are handed.

Errors are the sockets' own: `OSError` (ConnectionRefusedError, TimeoutError) from
`connect` and `listen`, `trio.BrokenResourceError` and `trio.ClosedResourceError`
from a stream.
"""

from __future__ import annotations

import os
from typing import Protocol

import trio


class Network(Protocol):
    """Listeners and connections for one host of a network."""

    async def listen(self, host: str, port: int) -> tuple[trio.abc.Listener[trio.abc.Stream], int]:
        """A listener on `host`:`port` (0: a free port) and the port it got;
        OSError when the address cannot be had."""
        ...

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """A connection to `host`:`port`; OSError when nothing answers there."""
        ...

    def peer(self, stream: trio.abc.Stream) -> str:
        """The address of the host at the other end of `stream` (an accepted
        connection); OSError if the connection has gone."""
        ...


class TrioNetwork:
    """The machine's own network: trio's TCP sockets."""

    async def listen(self, host: str, port: int) -> tuple[trio.abc.Listener[trio.abc.Stream], int]:
        """One TCP listener on `host`:`port` and its port."""
        [listener] = await trio.open_tcp_listeners(port, host=host)
        return listener, int(listener.socket.getsockname()[1])

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """A TCP connection (Nagle off, as trio sets it)."""
        return await trio.open_tcp_stream(host, port)

    def peer(self, stream: trio.abc.Stream) -> str:
        """The peer's IP address, from the socket."""
        assert isinstance(stream, trio.SocketStream)
        return str(stream.socket.getpeername()[0])


#: The real network, the default everywhere.
REAL: Network = TrioNetwork()

LINGER_BYTES = 4 * 1024 * 1024


def _descriptor(stream: trio.abc.Stream) -> int | None:
    """The descriptor of a TCP `stream` still open; None for a closed one (its
    socket says -1, never a descriptor reused since) and for any other stream."""
    if type(stream) is not trio.SocketStream:
        return None
    fd = stream.socket.fileno()
    return fd if fd >= 0 else None


def received(stream: trio.abc.Stream, max_bytes: int = 65536) -> bytes | None:
    """What a TCP `stream` has received already, read without a pass through trio's
    scheduler: its bytes (up to `max_bytes`; b"" once the peer has closed), or None
    when nothing is there yet, when reading fails, and for any other stream: then
    `await stream.receive_some(...)` waits for it and raises trio's errors.

    `receive_some` yields to the scheduler even when its bytes are there (trio's
    rule: every await is a checkpoint); a server that reads this way first goes
    through the scheduler once a request (its reply's write) instead of twice, and
    must checkpoint itself in a round that writes nothing."""
    fd = _descriptor(stream)
    if fd is None:
        return None
    try:
        return os.read(fd, max_bytes)
    except OSError:  # BlockingIOError: nothing yet; a reset: receive_some says so
        return None


def sent(stream: trio.abc.Stream, data: bytes) -> int | None:
    """How much of `data` a TCP `stream` took at once, written without a pass
    through trio's scheduler and without waiting (0: its send buffer is full); None
    when writing fails, and for any other stream: then `await stream.send_all(...)`
    sends the rest and raises trio's errors. The caller must be the stream's only
    writer at the time (no `send_all` under way)."""
    fd = _descriptor(stream)
    if fd is None:
        return None
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError:  # the peer has gone (EPIPE, a reset): send_all says so
        return None


async def linger(stream: trio.abc.Stream, seconds: float, most: int = LINGER_BYTES) -> None:
    """Before closing `stream`: half-close it, then read and drop what the peer
    still sends (up to `most` bytes, for up to `seconds`). Closing a TCP socket with
    bytes unread resets the connection, and the peer would read the reset, not the
    last thing said to it."""
    try:
        if isinstance(stream, trio.abc.HalfCloseableStream):  # TCP's, the simulated
            await stream.send_eof()
        left = most
        with trio.move_on_after(seconds):
            while left > 0 and (data := await stream.receive_some(65536)):
                left -= len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return
