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
