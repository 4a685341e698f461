"""`relay.net.received` and `relay.net.sent`: what a TCP stream holds already,
read, and what its send buffer takes, written, without a pass through trio's
scheduler (serve's reader, and its replies from the conductor); everything else
left to trio's `receive_some` and `send_all`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from relay.net import received, sent


@pytest.fixture
async def tcp() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """A loopback TCP connection: (client end, server end)."""
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    await listener.aclose()
    assert isinstance(server, trio.SocketStream)
    yield client, server
    await client.aclose()
    await server.aclose()


async def test_bytes_already_there_are_read_and_nothing_yet_is_none(
    tcp: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """Bytes the socket holds come back whole; with nothing there, None (the
    caller then waits in receive_some)."""
    client, server = tcp
    assert received(server) is None
    await client.send_all(b"first frame")
    await trio.lowlevel.wait_readable(server.socket)
    assert received(server) == b"first frame"
    assert received(server) is None


async def test_at_most_max_bytes_are_taken_and_the_rest_stays(
    tcp: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """A read takes at most `max_bytes`; the rest is there for the next."""
    client, server = tcp
    await client.send_all(b"abcdef")
    await trio.lowlevel.wait_readable(server.socket)
    assert received(server, 4) == b"abcd"
    assert received(server) == b"ef"


async def test_the_peers_close_reads_empty_and_a_closed_stream_is_left_to_trio(
    tcp: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """The peer's close reads as b""; once our end is closed the answer is None,
    never a read of a descriptor that may since belong to another connection,
    and receive_some raises trio's error."""
    client, server = tcp
    await client.aclose()
    await trio.lowlevel.wait_readable(server.socket)
    assert received(server) == b""
    await server.aclose()
    assert received(server) is None
    with pytest.raises(trio.ClosedResourceError):
        await server.receive_some()


async def test_any_other_stream_is_left_to_receive_some() -> None:
    """A stream that is not a TCP socket's (the simulated network's, a proxy's)
    is always read through receive_some, even with bytes waiting."""
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(b"frame")
    assert received(ours) is None
    assert await ours.receive_some() == b"frame"


async def test_a_write_the_buffer_takes_goes_at_once(
    tcp: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """What fits in the send buffer is written whole and arrives as sent."""
    client, server = tcp
    assert sent(server, b"a reply") == len(b"a reply")
    assert await client.receive_some() == b"a reply"


async def test_a_full_buffer_takes_part_then_nothing_and_the_rest_is_for_send_all(
    tcp: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """A peer that reads nothing fills the buffer: a write then takes part of its
    bytes, then none (0, never a wait); send_all sends the rest once the peer
    reads, and every byte arrives once, in order."""
    client, server = tcp
    chunk = bytes(range(256)) * 256  # 64 KiB
    written = bytearray()
    for _ in range(10_000):  # bounded: loopback's buffers hold a few MiB at most
        n = sent(server, chunk)
        assert n is not None
        written += chunk[:n]
        if n < len(chunk):
            rest = chunk[n:]
            break
    else:
        pytest.fail("the send buffer never filled")
    assert sent(server, rest) == 0
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, rest)
        while len(got) < len(written) + len(rest):
            got += await client.receive_some()
    assert got == written + rest


async def test_a_closed_stream_and_any_other_stream_are_left_to_send_all(
    tcp: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """Once our end is closed, or for a stream that is not a TCP socket's, nothing
    is written: None, and send_all does it (or raises trio's error)."""
    _, server = tcp
    await server.aclose()
    assert sent(server, b"late") is None
    with pytest.raises(trio.ClosedResourceError):
        await server.send_all(b"late")
    ours, _theirs = trio.testing.memory_stream_pair()
    assert sent(ours, b"reply") is None
