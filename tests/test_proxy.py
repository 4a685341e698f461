"""Toxics on real sockets (`relay.net.proxy`): a real TCP connection joined to its
server through a link of the simulated network, as `serve --toxics` does. Real
loopback sockets, so trio's real clock; no test waits on time."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from relay.net.proxy import ToxicNetwork
from relay.net.toxics import toxic_from

# Closing a socket with this SO_LINGER sends an RST.
RST = (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@asynccontextmanager
async def proxied() -> AsyncIterator[tuple[ToxicNetwork, int, trio.abc.Listener[trio.abc.Stream]]]:
    """A ToxicNetwork listening on loopback: (the network, its real port, the listener
    the server accepts from)."""
    async with trio.open_nursery() as nursery:
        net = ToxicNetwork(nursery, seed=1)
        listener, port = await net.listen("127.0.0.1", 0)
        yield net, port, listener
        await listener.aclose()
        nursery.cancel_scope.cancel()


async def test_bytes_and_half_closes_cross_the_proxy_as_over_tcp() -> None:
    """With no toxic, what the client sends reaches the server and back in order; the
    client's half-close reaches the server as EOF while replies still flow; the
    server's close reaches the client as EOF after its last bytes; the server sees
    the client's real address."""
    with trio.fail_after(30):
        async with proxied() as (net, port, listener):
            client = await trio.open_tcp_stream("127.0.0.1", port)
            server = await listener.accept()
            assert net.peer(server) == "127.0.0.1"
            await client.send_all(b"ping " * 1000)
            await client.send_eof()
            got = b""
            while data := await server.receive_some():
                got += data
            assert got == b"ping " * 1000
            await server.send_all(b"pong")
            await server.aclose()
            echoed = b""
            while data := await client.receive_some():
                echoed += data
            assert echoed == b"pong"
            await client.aclose()


async def test_limit_data_on_real_sockets_closes_after_so_many_bytes() -> None:
    """limit_data downstream: the real client gets exactly its bytes, then the close."""
    with trio.fail_after(30):
        async with proxied() as (net, port, listener):
            toxic = toxic_from({"type": "limit_data", "attributes": {"bytes": 10}})
            net.sim.add_toxic(("127.0.0.1", port), toxic)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            server = await listener.accept()
            await server.send_all(b"0123456789abcdef")
            got = b""
            while data := await client.receive_some():
                got += data
            assert got == b"0123456789"
            await client.aclose()
            await server.aclose()


async def test_a_toxic_reset_reaches_the_real_peer_as_a_reset_and_back() -> None:
    """reset_peer resets the real connection (the client's read fails, not ends);
    a client that resets its socket reaches the server as a reset."""
    with trio.fail_after(30):
        async with proxied() as (net, port, listener):
            client = await trio.open_tcp_stream("127.0.0.1", port)
            server = await listener.accept()
            net.sim.add_toxic(("127.0.0.1", port), toxic_from({"type": "reset_peer"}))
            with pytest.raises(trio.BrokenResourceError):
                await client.receive_some()
            await client.aclose()
            await server.aclose()
            net.sim.reset()

            client = await trio.open_tcp_stream("127.0.0.1", port)
            server = await listener.accept()
            await client.send_all(b"x")
            assert await server.receive_some() == b"x"
            client.socket.setsockopt(*RST)
            await client.aclose()
            with pytest.raises(trio.BrokenResourceError):
                await server.receive_some()
            await server.aclose()
