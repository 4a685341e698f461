"""Hostile clients for the hunt over the server: one registry entry per behaviour.

Each connects to the dispatcher from its own host (127.0.0.3) of the simulated
network, does the one thing it is named for, and stops by itself (every wait is
bounded): what a municipal terminal gone wrong, or an attacker, does to serve
mode. None of them may cost a request of the load its outcome, leak a CS slot,
or stall the server (`relay.plan.hunt` judges it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import trio

from relay.serve.protocol import Frame, Type
from relay.serve.simnet import Situation

ROGUE_HOST = "127.0.0.3"
LINGER_S = 120.0  # the longest any of them stays


def _message(rid: int, key: bytes, left: int = 1, muni: int = 0) -> bytes:
    return Frame(Type.REQUEST, rid, key, muni, 0, b"rogue", left=left).encode()


async def _connect(here: Situation) -> trio.abc.Stream | None:
    host, port = here.address("dispatcher")
    try:
        return await here.net.host(ROGUE_HOST).connect(host, port)
    except OSError:  # partitioned, or the server has stopped listening
        return None


async def _read_until_closed(stream: trio.abc.Stream, seconds: float = LINGER_S) -> None:
    with trio.move_on_after(seconds), contextlib.suppress(trio.BrokenResourceError):
        while await stream.receive_some():
            pass


async def _session(here: Situation, act: Callable[[trio.abc.Stream], Awaitable[None]]) -> None:
    stream = await _connect(here)
    if stream is None:
        return
    try:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await act(stream)
    finally:
        await stream.aclose()


async def idle(here: Situation) -> None:
    """Connects and sends nothing: the idle timeout must close it."""

    async def act(stream: trio.abc.Stream) -> None:
        await _read_until_closed(stream)

    await _session(here, act)


async def pipelined_unread(here: Situation) -> None:
    """Sends 300 requests in one write and reads none of the replies for a while."""

    async def act(stream: trio.abc.Stream) -> None:
        await stream.send_all(b"".join(_message(i, bytes([1, i % 256]) * 8) for i in range(1, 301)))
        await trio.sleep(60.0)
        await _read_until_closed(stream, 10.0)

    await _session(here, act)


async def half_close(here: Situation) -> None:
    """Sends one request, half-closes, and reads its reply."""

    async def act(stream: trio.abc.Stream) -> None:
        await stream.send_all(_message(1, b"\x02" * 16))
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        await _read_until_closed(stream)

    await _session(here, act)


async def reset_mid_reply(here: Situation) -> None:
    """Sends five requests and goes at once, replies unread: a reset, mid-reply."""

    async def act(stream: trio.abc.Stream) -> None:
        await stream.send_all(b"".join(_message(i, bytes([3, i]) * 8) for i in range(1, 6)))
        await trio.sleep(0.001)

    await _session(here, act)


async def next_on_another_connection(here: Situation) -> None:
    """Begins an operation of three messages on one connection and sends its next
    message on another."""
    first, second = await _connect(here), await _connect(here)
    try:
        if first is None or second is None:
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            key = b"\x04" * 16
            await first.send_all(_message(1, key, left=3))
            with trio.move_on_after(30.0):
                await first.receive_some()
            await second.send_all(_message(2, key, left=2))
            with trio.move_on_after(30.0):
                await second.receive_some()
    finally:
        for stream in (first, second):
            if stream is not None:
                await stream.aclose()


async def key_reused_in_flight(here: Situation) -> None:
    """Sends ten first messages of three-message operations under one key, in one
    write, and reads what comes back."""

    async def act(stream: trio.abc.Stream) -> None:
        await stream.send_all(b"".join(_message(i, b"\x05" * 16, left=3) for i in range(1, 11)))
        await _read_until_closed(stream, 30.0)

    await _session(here, act)


async def bad_frame_after_good(here: Situation) -> None:
    """Sends a valid request and a frame of version 9 in one write."""

    async def act(stream: trio.abc.Stream) -> None:
        bad = bytearray(_message(2, b"\x06" * 16))
        bad[4] = 9
        await stream.send_all(_message(1, b"\x07" * 16) + bytes(bad))
        await _read_until_closed(stream, 30.0)

    await _session(here, act)


#: The registry: every hostile behaviour, once.
ROGUES: dict[str, Callable[[Situation], Awaitable[None]]] = {
    "idle": idle,
    "pipelined_unread": pipelined_unread,
    "half_close": half_close,
    "reset_mid_reply": reset_mid_reply,
    "next_on_another_connection": next_on_another_connection,
    "key_reused_in_flight": key_reused_in_flight,
    "bad_frame_after_good": bad_frame_after_good,
}
