"""Counter operations of several messages over TCP: one connection held from the
first message to the last, as in the replays, under trio's virtual clock."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from relay.engines.trio import TrioDriver
from relay.scenario.build import new_tier
from relay.serve.metrics import registry_for
from relay.serve.protocol import Decoder, Frame, Status, Type
from relay.serve.server import Limits, RelayServer
from relay.testing import scenario
from tests.test_serve_limits import SLOW, connect

# Each CS may hold one connection: a second operation from it while the first is
# open overflows, as on the day.
ONE_EACH = [1] * 4


@asynccontextmanager
async def serving(
    limits: Limits | None = None, caps: list[int] = ONE_EACH
) -> AsyncIterator[RelayServer]:
    """A server of 4 CSs holding `caps` connections each (one), for the block;
    stopped after."""
    tier = new_tier(scenario(**SLOW), cs_caps=caps)
    server = RelayServer(tier, TrioDriver(tier), limits)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            yield server
            server.stop()


def message(rid: int, key: bytes, left: int, muni: int = 0) -> bytes:
    """A request frame: message `rid` of operation `key`, `left` messages to go."""
    return Frame(Type.REQUEST, rid, key, muni, 0, b"counter step", left=left).encode()


async def answer(stream: trio.abc.Stream, decoder: Decoder) -> Frame:
    """The next frame the server sends."""
    while True:
        frames = decoder.feed(await stream.receive_some(65536))
        if frames:
            [frame] = frames
            return frame


async def test_an_operation_holds_its_connection_from_first_message_to_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Three messages with one key: each is answered; between them the CS's one
    connection stays taken (another operation from it overflows, cs_limit); after
    the last it is free again; the ledger has the three messages."""
    async with serving() as server:
        stream, other = connect(server), connect(server)
        seen, theirs = Decoder(), Decoder()
        key = os.urandom(16)
        replies = []
        for rid, left in ((1, 3), (2, 2), (3, 1)):
            await stream.send_all(message(rid, key, left))
            replies.append(await answer(stream, seen))
            if left > 1:  # between two messages: the counter's own steps
                await trio.sleep(100.0)
                await other.send_all(message(10 + rid, os.urandom(16), 1))
                refused = await answer(other, theirs)
                assert (refused.status, refused.body) == (Status.OVERFLOW, b"cs_limit")
        await other.send_all(message(20, os.urandom(16), 1))
        after = await answer(other, theirs)
    assert [(r.id, r.status) for r in replies] == [(i, Status.COMPLETED) for i in (1, 2, 3)]
    assert after.status == Status.COMPLETED  # the connection was released
    ledger = server.tier.ledger
    assert ledger.total.requests == 3 + 2 + 1
    assert ledger.refusals == {"cs_limit": 2}


async def test_an_operation_whose_next_message_never_comes_is_abandoned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that sends the first of three messages and goes quiet holds its CS's
    connection for the idle timeout, not forever: then the operation is abandoned
    and the CS can connect again."""
    async with serving(Limits(idle_timeout=60.0)) as server:
        stream = connect(server)
        decoder = Decoder()
        await stream.send_all(message(1, os.urandom(16), 3))
        first = await answer(stream, decoder)
        await trio.sleep(30.0)
        await stream.send_all(message(2, os.urandom(16), 1))
        held = await answer(stream, decoder)
        await trio.sleep(31.0)  # past the idle timeout since the first message ended
        await stream.send_all(message(3, os.urandom(16), 1))
        freed = await answer(stream, decoder)
    assert first.status == Status.COMPLETED
    assert held.status == Status.OVERFLOW
    assert freed.status == Status.COMPLETED
    assert server.stats.abandoned == 1
    families = {f.name: f for f in registry_for(server).collect()}
    assert families["relaysim_operations_abandoned"].samples[0].value == 1
    assert families["relaysim_operations_between_messages"].samples[0].value == 0


async def test_a_stop_ends_operations_between_their_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Stopping, the server admits no next message: operations waiting for one end
    at once (abandoned), so nothing waits out the idle timeout and the drain ends."""
    async with serving() as server:
        stream = connect(server)
        decoder = Decoder()
        await stream.send_all(message(1, os.urandom(16), 3))
        await answer(stream, decoder)
        start = trio.current_time()
        server.stop()
        await server.stopped.wait()
        took = trio.current_time() - start
        await stream.aclose()
    assert server.stats.abandoned == 1
    assert took <= 5.0  # the clients' frame timeout at most, not 300 s
