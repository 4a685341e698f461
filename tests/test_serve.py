"""Serve mode: requests answered with their outcomes, hostile input refused.

The real server on the simulated network (`relay.net.sim`: TCP's order, half-close
and resets in memory) under trio's virtual clock: nothing sleeps or polls in real
time, and a test waits for the server by `wait_all_tasks_blocked`, not by looking
again. tests/test_serve_cli.py runs serve as a process on loopback's real sockets.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.core import checkers
from relay.core.tier import RelayTier
from relay.engines.trio import TrioDriver
from relay.net.sim import SimHost, SimNetwork, SimStream
from relay.serve.protocol import Decoder, ErrorCode, Frame, Status, Type
from relay.serve.server import Limits, RelayServer
from tests.conftest import tier_for

FAST = {
    "relays": {"count": 2, "timeout_s": 5, "max_connections": 256},
    "hsm": {"service_ms": {"dist": "constant", "mean": 1}},
    "backend": {"service_ms": {"dist": "constant", "mean": 2}},
    "monitor": {"enabled": False},
    "load": {"retry": {"max_retries": 0}},
}


SERVER, CLIENT = "127.0.0.1", "127.0.0.2"


@asynccontextmanager
async def running(limits: Limits | None = None) -> AsyncIterator[tuple[RelayServer, int]]:
    """A server on a free port of a simulated network for the block; stopped and
    drained after it."""
    tier: RelayTier = tier_for(**FAST)
    server = RelayServer(tier, TrioDriver(tier), limits, network=SimNetwork(1).host(SERVER))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        yield server, port
        server.stop()


async def dial(server: RelayServer, port: int) -> SimStream:
    """A client connection from another host to `port` of the server's network."""
    here = server.network
    assert isinstance(here, SimHost)
    return await here.net.connect(CLIENT, (SERVER, port))


def request(rid: int, muni: int = 0) -> Frame:
    return Frame(Type.REQUEST, rid, os.urandom(16), muni, 0, b"card operation")


async def frames(stream: trio.abc.Stream, n: int) -> list[Frame]:
    """The next `n` frames the server sends on `stream`."""
    decoder, got = Decoder(), list[Frame]()
    while len(got) < n:
        got += decoder.feed(await stream.receive_some(65536))
    return got


async def frames_until_close(stream: trio.abc.Stream) -> list[Frame]:
    """Every frame the server sends until it closes the connection (then ours too)."""
    decoder, out = Decoder(), []
    async with stream:
        while data := await stream.receive_some(65536):
            out += decoder.feed(data)
    return out


async def test_every_request_gets_one_reply_with_its_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """200 pipelined requests over 4 connections each get exactly one reply, with
    their ids; the model's ledger balances and its checkers pass."""
    async with running() as (server, port):
        replies: dict[int, Frame] = {}

        async def client(c: int) -> None:
            stream = await dial(server, port)
            ids = range(c * 50, c * 50 + 50)
            await stream.send_all(b"".join(request(i, muni=c).encode() for i in ids))
            decoder, got = Decoder(), 0
            while got < 50:
                for frame in decoder.feed(await stream.receive_some(65536)):
                    replies[frame.id] = frame
                    got += 1
            await stream.aclose()

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for c in range(4):
                    nursery.start_soon(client, c)
    assert sorted(replies) == list(range(200))
    assert {f.type for f in replies.values()} == {Type.REPLY}
    assert all(f.status == Status.COMPLETED for f in replies.values())
    ledger = server.tier.ledger
    assert (ledger.total.requests, ledger.closed) == (200, 200)
    assert checkers.check_run(ledger, server.tier.nodes) == []
    assert server.stats.replies == 200


@pytest.mark.parametrize(
    ("junk", "code"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", ErrorCode.TOO_LARGE),  # "GET " read as a length
        (b"\xff\xff\xff\xff", ErrorCode.TOO_LARGE),
        (b"\x00\x00\x00\x05hello", ErrorCode.MALFORMED),
        (Frame(Type.REPLY, 1).encode(), ErrorCode.UNKNOWN_TYPE),  # clients send requests
        (b"\x00\x00\x00\x24\x09" + b"\x00" * 35, ErrorCode.UNSUPPORTED_VERSION),
    ],
)
async def test_hostile_bytes_get_an_error_frame_and_a_close(
    junk: bytes, code: ErrorCode, autojump_clock: trio.testing.MockClock
) -> None:
    """Garbage, oversized prefixes, malformed frames, unknown versions and types each
    get one error frame naming the problem, then the server closes; a well-behaved
    client on another connection is served all the while."""
    async with running() as (server, port):
        with trio.fail_after(10):
            good = await dial(server, port)
            bad = await dial(server, port)
            await bad.send_all(junk)
            [error] = await frames_until_close(bad)
            await good.send_all(request(1).encode())
            [reply] = Decoder().feed(await good.receive_some(65536))
            await good.aclose()
    assert (error.type, error.status) == (Type.ERROR, code)
    assert error.body  # a message saying what was wrong
    assert reply.status == Status.COMPLETED
    assert server.stats.rejected[code.name] == 1


async def test_connections_beyond_the_limit_take_the_idle_ones_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With room for 3 connections, all idle, the 4th and 5th are admitted: the two
    idle longest are told IDLE and closed to make room; the newcomers and the one
    left are served."""
    async with running(Limits(max_connections=3, reserved=0)) as (server, port):
        with trio.fail_after(10):
            kept = []
            for _ in range(3):
                kept.append(await dial(server, port))
                await trio.testing.wait_all_tasks_blocked()  # accepted, in its own task
            newcomers = []
            for _ in range(2):
                newcomers.append(await dial(server, port))
                await trio.testing.wait_all_tasks_blocked()  # an idle one made room
            told = [await frames_until_close(s) for s in kept[:2]]
            for s in [kept[2], *newcomers]:
                await s.send_all(request(1).encode())
                [reply] = Decoder().feed(await s.receive_some(65536))
                assert reply.status == Status.COMPLETED
                await s.aclose()
    assert [[e.status for e in notices] for notices in told] == [[ErrorCode.IDLE]] * 2
    assert server.stats.evicted == {"max_connections": 2}
    assert server.stats.refused_connections == {}


async def test_a_client_gone_mid_request_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that sends requests and hangs up at once: the requests still end
    with their outcomes in the ledger; the replies are counted as undelivered."""
    async with running() as (server, port):
        with trio.fail_after(10):
            stream = await dial(server, port)
            await stream.send_all(b"".join(request(i).encode() for i in range(5)))
            await stream.aclose()
            await trio.sleep(6.0)  # virtual: longer than any request lives (its 5 s timer)
    ledger = server.tier.ledger
    assert (ledger.total.requests, ledger.closed) == (5, 5)
    assert server.stats.replies + server.stats.undelivered == 5


async def test_a_client_that_half_closes_still_gets_every_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that sends its requests and shuts its sending side gets all replies
    before the server closes the connection."""
    async with running() as (server, port):
        with trio.fail_after(10):
            stream = await dial(server, port)
            await stream.send_all(b"".join(request(i).encode() for i in range(20)))
            await stream.send_eof()
            got = await frames_until_close(stream)
    assert sorted(f.id for f in got) == list(range(20))
    assert server.stats.undelivered == 0


async def test_an_unknown_municipality_is_refused_per_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A request from a CS the tier does not serve gets an error frame with its id; the
    same connection goes on to be served."""
    async with running() as (server, port):
        with trio.fail_after(10):
            stream = await dial(server, port)
            await stream.send_all(request(1, muni=10_000).encode() + request(2).encode())
            got = await frames(stream, 2)
            await stream.aclose()
    by_id = {f.id: f for f in got}
    assert (by_id[1].type, by_id[1].status) == (Type.ERROR, ErrorCode.UNKNOWN_MUNICIPALITY)
    assert (by_id[2].type, by_id[2].status) == (Type.REPLY, Status.COMPLETED)
    assert server.tier.ledger.total.requests == 1


async def test_a_failing_request_does_not_take_the_server_down(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """If the model fails on one request (a bug), that client gets an INTERNAL error
    frame for it and everyone, that client included, goes on being served."""
    async with running() as (server, port):

        class FlakyTier:
            """The server's tier, with a bug on municipality 3's requests (a proxy:
            the tier itself may be a compiled class, which cannot be patched)."""

            def __init__(self, tier: RelayTier) -> None:
                self._tier = tier

            def __getattr__(self, name: str) -> Any:
                return getattr(self._tier, name)

            def admit(self, cs: int, attempt: int, now: float, *args: Any) -> Any:
                if cs == 3:
                    raise ZeroDivisionError("a bug in the model")
                return self._tier.admit(cs, attempt, now, *args)

        monkeypatch.setattr(server.operations, "tier", FlakyTier(server.tier))
        with trio.fail_after(10):
            stream = await dial(server, port)
            await stream.send_all(request(1, muni=3).encode() + request(2, muni=1).encode())
            got = await frames(stream, 2)
            await stream.aclose()
    by_id = {f.id: f for f in got}
    assert (by_id[1].type, by_id[1].status) == (Type.ERROR, ErrorCode.INTERNAL)
    assert by_id[2].status == Status.COMPLETED
    assert server.stats.rejected["INTERNAL"] == 1


junk_streams = st.one_of(
    st.binary(max_size=400),
    # Valid frames with garbage spliced in: the decoder must stay in step or refuse.
    st.tuples(
        st.lists(st.integers(0, 2**32), max_size=3), st.binary(max_size=80), st.binary(max_size=80)
    ).map(lambda t: b"".join(request(i % 4).encode() for i in t[0]) + t[1] + t[2]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk_streams)
def test_any_byte_stream_leaves_the_server_serving(junk: bytes) -> None:
    """Whatever bytes a client sends, then hangs up: the server answers only with well-
    formed frames, never crashes, and a well-behaved client is served right after."""

    async def exchange() -> None:
        with trio.fail_after(10):
            async with running() as (server, port):
                bad = await dial(server, port)
                await bad.send_all(junk)
                await bad.send_eof()
                answers = await frames_until_close(bad)  # decodes: so all well-formed
                assert all(f.type in (Type.REPLY, Type.ERROR) for f in answers)
                good = await dial(server, port)
                await good.send_all(request(99).encode())
                [reply] = Decoder().feed(await good.receive_some(65536))
                await good.aclose()
                assert (reply.id, reply.status) == (99, Status.COMPLETED)

    trio.run(exchange, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_each_relay_node_has_its_own_port(autojump_clock: trio.testing.MockClock) -> None:
    """A request on a node's own port is served by that node, bypassing the
    distributor's choice (even while the distributor has it detached)."""
    async with running() as (server, port):
        node2 = server.node_ports["relay2"]
        server.tier.dispatcher.detach(server.tier.nodes[1])
        with trio.fail_after(10):
            direct = await dial(server, node2)
            await direct.send_all(b"".join(request(i).encode() for i in range(3)))
            got = await frames(direct, 3)
            await direct.aclose()
    assert {f.status for f in got} == {Status.COMPLETED}
    assert server.tier.ledger.nodes[2].requests == 3
    assert 1 not in server.tier.ledger.nodes  # relay1 saw none of them
    assert sorted(server.node_ports) == ["relay1", "relay2"]
    assert port not in server.node_ports.values()
