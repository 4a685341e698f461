"""Toxics on real sockets: an in-process Toxiproxy in front of serve's ports.

`ToxicNetwork` is the `relay.net.Network` that `relaysim serve --toxics` hands its
server. Each listener it opens is a real TCP listener; each connection accepted on
it is joined to the server through one link of an in-process
`relay.net.sim.SimNetwork` on the run's clock: two pumps copy bytes between the
real socket and the link's client end, and the server reads and writes the link's
server end. Toxics sit on the link's listening address, so the same registry
(`relay.net.toxics`) and the same code that carry bytes over the simulated network
carry them here: latency, bandwidth, slicer, timeout, reset_peer, slow_close and
limit_data act on open connections and new ones, per direction, each on its
`toxicity` share of connections. The toxics' times are real time (Toxiproxy's);
on `serve --speed X`, `second` = X turns them into the clock's units.

What the link does reaches the real peer as TCP would show it: the link's close is
a FIN, its reset an RST (SO_LINGER 0); the peer's FIN, RST or vanishing reach the
server as the simulated network's close or reset. The pumps add one copy and two
task wake-ups a message, which is why this is opt-in (docs/serve.md has the cost).
"""

from __future__ import annotations

import socket
import struct

import trio

from relay.net import REAL, Network
from relay.net.sim import SimNetwork, SimStream

_READ = 65536
FLUSH_S = 1.0  # real seconds a closed server end's last bytes have to reach the peer


class ToxicNetwork:
    """Real listeners whose connections pass through toxics (see the module doc).

    `nursery` holds the accept loops and each connection's pumps; `seed` decides the
    toxicity draws and jitter, as on the simulated network."""

    def __init__(
        self, nursery: trio.Nursery, seed: int = 0, *, second: float = 1.0, real: Network = REAL
    ) -> None:
        self.sim = SimNetwork(seed, second=second)
        self._nursery = nursery
        self._real = real

    async def listen(self, host: str, port: int) -> tuple[trio.abc.Listener[trio.abc.Stream], int]:
        """A real listener on `host`:`port` whose connections come out of the
        returned listener through toxics, and the port it got."""
        outer, port = await self._real.listen(host, port)
        inner, _ = await self.sim.host(host).listen(host, port)
        scope = trio.CancelScope()
        self._nursery.start_soon(self._accept, outer, (host, port), scope)
        return _Listener(inner, outer, scope), port

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """An outgoing connection: a real one (toxics act on what is accepted)."""
        return await self._real.connect(host, port)

    def peer(self, stream: trio.abc.Stream) -> str:
        """The real peer's address."""
        assert isinstance(stream, SimStream)
        return stream.peer

    async def _accept(
        self,
        outer: trio.abc.Listener[trio.abc.Stream],
        address: tuple[str, int],
        scope: trio.CancelScope,
    ) -> None:
        with scope:
            while True:
                try:
                    sock = await outer.accept()
                except (trio.ClosedResourceError, OSError):
                    return  # closed, or out of descriptors: the server's own limits say
                self._nursery.start_soon(self._join, sock, address)

    async def _join(self, sock: trio.abc.Stream, address: tuple[str, int]) -> None:
        """Join one accepted socket to the server through a link until both ends
        are done (or the network's nursery is cancelled): both are closed after."""
        end: SimStream | None = None
        try:
            try:
                end = await self.sim.connect(self._real.peer(sock), address)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the peer went, or nothing listens any more
            async with trio.open_nursery() as pumps:
                said = trio.Event()
                pumps.start_soon(_upstream, sock, end, pumps.cancel_scope)
                pumps.start_soon(_downstream, sock, end, pumps.cancel_scope, said)
                # The server has closed its end (or the link is over): what it wrote
                # before reaches the peer, then the peer's side goes, whether or not
                # the peer ever closes (a peer that neither reads nor closes gets
                # FLUSH_S).
                await end.wait_unread()
                with trio.move_on_after(FLUSH_S * self.sim.second):
                    await said.wait()
                pumps.cancel_scope.cancel()
        finally:
            # Each closes before its checkpoint, which re-raises an outer cancel.
            try:
                if end is not None:
                    await trio.aclose_forcefully(end)
            finally:
                await trio.aclose_forcefully(sock)


async def _upstream(sock: trio.abc.Stream, end: SimStream, both: trio.CancelScope) -> None:
    """The peer's bytes onto the link, its FIN as the link's EOF; a peer that
    resets or vanishes resets the link (the server sees "connection reset")."""
    try:
        while data := await sock.receive_some(_READ):
            await end.send_all(data)
        await end.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        if _from(exc):
            end.reset()
        else:  # the link is closed or reset: the downstream pump says which to the peer
            return
        both.cancel()


async def _downstream(
    sock: trio.abc.Stream, end: SimStream, both: trio.CancelScope, said: trio.Event
) -> None:
    """The link's bytes to the peer, its close as a FIN, its reset as an RST."""
    try:
        while data := await end.receive_some(_READ):
            await sock.send_all(data)
        if isinstance(sock, trio.abc.HalfCloseableStream):
            await sock.send_eof()
    except trio.BrokenResourceError as exc:
        if not _from(exc):
            _rst(sock)  # the link was reset: so is the real connection
        else:
            end.reset()
        both.cancel()
    except trio.ClosedResourceError:
        both.cancel()
    finally:
        said.set()


def _from(exc: BaseException) -> bool:
    """Whether `exc` came from the real socket (its cause is an OSError), not the link."""
    return isinstance(exc.__cause__, OSError)


def _rst(sock: trio.abc.Stream) -> None:
    """Have closing `sock` send an RST, not a FIN."""
    if isinstance(sock, trio.SocketStream):
        sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Listener(trio.abc.Listener[trio.abc.Stream]):
    """What the server accepts from: the link ends; closing it closes the real one."""

    def __init__(
        self,
        inner: trio.abc.Listener[trio.abc.Stream],
        outer: trio.abc.Listener[trio.abc.Stream],
        scope: trio.CancelScope,
    ) -> None:
        self._inner, self._outer, self._scope = inner, outer, scope

    async def accept(self) -> trio.abc.Stream:
        """The next connection, through its link."""
        return await self._inner.accept()

    async def aclose(self) -> None:
        """Stop listening, on the real port too."""
        self._scope.cancel()
        await self._outer.aclose()
        await self._inner.aclose()
