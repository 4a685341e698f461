"""Serve's edges against hostile clients, under trio's virtual clock: keys reused
while their operation runs, continuations that contradict their operation, bad
frames behind good ones in the same bytes, and clients that do not read their
replies (issue 23, classes 1-4). Clients are in-memory streams handed to the
server (`RelayServer.attach`); tests/test_serve.py has the real sockets."""

from __future__ import annotations

import os
import struct
from contextlib import AbstractAsyncContextManager, suppress

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.core import checkers
from relay.serve.metrics import registry_for
from relay.serve.protocol import Decoder, ErrorCode, Frame, Status, Type
from relay.serve.server import Limits, RelayServer
from tests.test_serve_limits import connect
from tests.test_serve_operations import serving as operations_server

# The backend answers in 10 s: a message runs long enough for others to cross it.
CAPS = [30] * 4


def serving(limits: Limits | None = None) -> AbstractAsyncContextManager[RelayServer]:
    """A server of 4 CSs of 30 connections each for the block, stopped after."""
    return operations_server(limits, CAPS)


def attach(server: RelayServer, node: int | None = None) -> trio.abc.Stream:
    """A client connection to the dispatcher (or to relay `node`'s own port)."""
    return connect(server, at=None if node is None else server.tier.nodes[node - 1])


def message(rid: int, key: bytes, left: int, muni: int = 0) -> bytes:
    """Request `rid`: a message of operation `key` with `left` messages to go."""
    return Frame(Type.REQUEST, rid, key, muni, 0, b"counter step", left=left).encode()


async def answers(stream: trio.abc.Stream, decoder: Decoder, n: int) -> list[Frame]:
    """The next `n` frames the server sends."""
    got: list[Frame] = []
    while len(got) < n:
        data = await stream.receive_some(65536)
        assert data, f"closed after {len(got)} of {n} frames"
        got += decoder.feed(data)
    return got


def held(server: RelayServer) -> dict[str, float]:
    """What /metrics says the server holds: operations between messages, the CS
    connections held, per municipality; and refusals by code."""
    out: dict[str, float] = {}
    for family in registry_for(server).collect():
        for sample in family.samples:
            label = ",".join(f"{v}" for v in sample.labels.values())
            out[f"{sample.name}{{{label}}}" if label else sample.name] = sample.value
    return out


async def test_a_key_reused_while_its_operation_runs_holds_no_second_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """30 first messages of three-message operations under one key, in one write:
    the first is admitted, the other 29 get KEY_IN_USE with their ids; the server
    holds one CS connection, not 30, and once the client hangs up none: the
    municipality then gets 30 of 30 requests through."""
    async with serving() as server:
        stream, decoder = attach(server), Decoder()
        key = os.urandom(16)
        await stream.send_all(b"".join(message(i, key, 3, muni=1) for i in range(1, 31)))
        got = await answers(stream, decoder, 30)
        refused = [f for f in got if f.type is Type.ERROR]
        assert [f.id for f in got if f.type is Type.REPLY] == [1]
        assert {f.status for f in refused} == {ErrorCode.KEY_IN_USE}
        assert sorted(f.id for f in refused) == list(range(2, 31))
        figures = held(server)
        assert figures["relaysim_cs_connections_held"] == 1
        assert figures["relaysim_municipality_operations_between_messages{1}"] == 1
        assert figures["relaysim_rejected_input_total{KEY_IN_USE}"] == 29
        info = server.info()
        assert (info["between_messages"], info["cs_connections_held"]) == (1, 1)
        assert info["between_by_municipality"] == {"1": 1}
        await stream.aclose()
        await trio.sleep(1.0)
        assert (server.connections_held, server.between_messages) == (0, 0)
        assert server.stats.abandoned == 1
        other, theirs = attach(server), Decoder()
        await other.send_all(b"".join(message(100 + i, os.urandom(16), 1, 1) for i in range(30)))
        after = await answers(other, theirs, 30)
    assert [f.status for f in after] == [Status.COMPLETED] * 30


async def test_a_continuation_that_contradicts_its_operation_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The next message of municipality 1's operation sent as municipality 2, from
    another connection, through a node's port, or with the wrong count of messages
    left (flags 0 or 5 where 2 are left) each get WRONG_CONTINUATION with its id;
    the operation is untouched, and its true next messages complete it."""
    async with serving() as server:
        stream, decoder = attach(server), Decoder()
        key = os.urandom(16)
        await stream.send_all(message(1, key, 3, muni=1))
        [first] = await answers(stream, decoder, 1)
        other, at_node = attach(server), attach(server, node=2)
        await stream.send_all(message(2, key, 2, muni=2))
        await stream.send_all(message(3, key, 0, muni=1))
        await stream.send_all(message(4, key, 5, muni=1))
        wrong = await answers(stream, decoder, 3)
        await other.send_all(message(5, key, 2, muni=1))
        [elsewhere] = await answers(other, Decoder(), 1)
        await at_node.send_all(message(6, key, 2, muni=1))
        [via_node] = await answers(at_node, Decoder(), 1)
        assert server.between_messages == 1
        await stream.send_all(message(7, key, 2, muni=1))
        [second] = await answers(stream, decoder, 1)
        await stream.send_all(message(8, key, 0, muni=1))  # the last: 0 or 1
        [third] = await answers(stream, decoder, 1)
    refusals = [*wrong, elsewhere, via_node]
    wrong_continuation = (Type.ERROR, ErrorCode.WRONG_CONTINUATION)
    assert [(f.type, f.status) for f in refusals] == [wrong_continuation] * 5
    assert [f.id for f in refusals] == [2, 3, 4, 5, 6]
    assert b"municipality 1's, not 2's" in wrong[0].body
    assert b"connection it began on" in elsewhere.body
    assert [(f.id, f.status) for f in (first, second, third)] == [
        (1, Status.COMPLETED),
        (7, Status.COMPLETED),
        (8, Status.COMPLETED),
    ]
    assert server.tier.ledger.total.requests == 3
    assert server.connections_held == 0


async def test_a_request_before_a_bad_frame_in_the_same_bytes_is_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A valid request (id 13) and a frame of version 9 in one write: 13 is admitted
    and answered, then the error frame, then the close."""
    async with serving() as server:
        stream = attach(server)
        bad = bytearray(message(14, os.urandom(16), 1))
        bad[4] = 9  # the version byte
        await stream.send_all(message(13, os.urandom(16), 1) + bytes(bad))
        got, decoder = [], Decoder()
        while data := await stream.receive_some(65536):
            got += decoder.feed(data)
    assert sorted((f.type, f.id) for f in got) == [(Type.REPLY, 13), (Type.ERROR, 0)]
    [error] = [f for f in got if f.type is Type.ERROR]
    assert error.status == ErrorCode.UNSUPPORTED_VERSION
    assert server.tier.ledger.total.requests == 1


async def test_a_client_that_reads_late_gets_every_reply_and_no_too_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that pipelines 3,000 requests and reads nothing for 10 s (writes
    block: no buffer between the two ends) is not told it was too slow to send:
    the frames had come, the server was blocked writing. Once it reads, every
    request it sent has its answer."""
    async with serving() as server:
        client, there = trio.testing.lockstep_stream_pair()
        server.attach(there, "127.0.0.1")
        wire = b"".join(message(i, os.urandom(16), 1, muni=i % 4) for i in range(1, 3001))
        got: list[Frame] = []

        async def send() -> None:
            await client.send_all(wire)

        async def read_late() -> None:
            await trio.sleep(10.0)
            decoder = Decoder()
            while len(got) < 3000:
                got.extend(decoder.feed(await client.receive_some(65536)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(read_late)
    assert sorted(f.id for f in got) == list(range(1, 3001))
    assert ErrorCode.TOO_SLOW.name not in server.stats.rejected
    assert set(server.stats.closed) <= {ErrorCode.SHUTTING_DOWN.name}  # the stop's notice


async def test_a_client_that_never_reads_is_closed_for_not_reading(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that sends requests and reads no reply for the write timeout is
    closed with its own reason, NOT_READING, counted; its requests still end in the
    ledger (nothing accepted is lost) and other clients are served meanwhile."""
    async with serving(Limits(write_timeout=30.0)) as server:
        client, there = trio.testing.lockstep_stream_pair()
        server.attach(there, "127.0.0.1")
        wire = b"".join(message(i, os.urandom(16), 1, muni=i % 4) for i in range(1, 3001))
        start = trio.current_time()
        with trio.move_on_after(120.0):
            with suppress(trio.BrokenResourceError):  # closed under it: the point
                await client.send_all(wire)
        took = trio.current_time() - start
        other, decoder = attach(server), Decoder()
        await other.send_all(message(9000, os.urandom(16), 1))
        [served] = await answers(other, decoder, 1)
        await trio.sleep(60.0)
    assert 30.0 <= took <= 35.0
    assert server.stats.closed[ErrorCode.NOT_READING.name] == 1
    assert held(server)["relaysim_connections_closed_total{NOT_READING}"] == 1
    assert server.stats.undelivered > 0
    assert served.status == Status.COMPLETED
    assert not server.tier.ledger.still_open
    assert checkers.accounting(server.tier.ledger) == []


# -- the property: whatever a client sends, nothing read is lost and nothing leaks --

KEYS = [bytes([k]) * 16 for k in range(1, 4)]  # few keys: reuse is the point


@st.composite
def sessions(draw: st.DrawFn) -> list[list[tuple[bytes, int | None, float]]]:
    """For each of 1-3 connections, its writes: (bytes, the id of the request they
    end with or None, the pause after). Frames are requests of drawn keys (a few,
    so reused), municipalities and flags (0-4: continuations right and wrong), and
    on a connection at most one bad frame at a drawn place, after which nothing more
    is sent; the bytes are cut at drawn offsets inside frames (no pause there)."""
    rid = 0
    conns = []
    for _ in range(draw(st.integers(1, 3))):
        frames: list[tuple[bytes, int | None]] = []
        for _ in range(draw(st.integers(1, 12))):
            rid += 1
            key = draw(st.sampled_from(KEYS))
            wire = message(rid, key, draw(st.integers(0, 4)), draw(st.integers(0, 3)))
            frames.append((wire, rid))
        if draw(st.booleans()):
            where = draw(st.integers(0, len(frames)))
            kind = draw(st.sampled_from(["version", "type", "length", "garbage"]))
            frames.insert(where, (_bad(kind), None))
            frames = frames[: where + 1]
        writes: list[tuple[bytes, int | None, float]] = []
        for wire, ends in frames:
            cut = draw(st.integers(0, len(wire) - 1))
            if cut:
                writes.append((wire[:cut], None, 0.0))
            pause = draw(st.sampled_from([0.0, 0.0, 1.0, 12.0, 30.0]))
            writes.append((wire[cut:], ends, pause))
        conns.append(writes)
    return conns


def _bad(kind: str) -> bytes:
    """A frame that is not valid: of another version, an unknown type, a length
    below the header, or bytes that are no frame at all."""
    wire = bytearray(message(0, os.urandom(16), 1))
    if kind == "version":
        wire[4] = 9
    elif kind == "type":
        wire[5] = 77
    elif kind == "length":
        wire[:4] = struct.pack(">I", 3)
    else:
        wire[:] = b"\xff" * 8
    return bytes(wire)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=sessions())
def test_no_request_read_is_lost_and_no_slot_leaks(
    plan: list[list[tuple[bytes, int | None, float]]],
) -> None:
    """Whatever frames clients send (reused keys, contradictory continuations, bad
    frames at any place, split anywhere): every request read whole gets exactly one
    answer with its id, a reply for each message admitted and an error frame with
    its code and reason for each refused; once the clients hang up the CS
    connections held and the operations between messages are back to zero, and the
    ledger balances."""

    async def main() -> None:
        async with serving() as server:
            answered: dict[int, list[Frame]] = {}
            expected: set[int] = set()

            async def client(writes: list[tuple[bytes, int | None, float]]) -> None:
                stream = attach(server)
                mine = {ends for _, ends, _ in writes if ends is not None}
                expected.update(mine)
                decoder, got = Decoder(), 0

                async def read() -> None:
                    nonlocal got
                    while got < len(mine) and (data := await stream.receive_some(65536)):
                        for frame in decoder.feed(data):
                            if frame.id:  # a notice (id 0) is about the connection
                                answered.setdefault(frame.id, []).append(frame)
                                got += 1

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read)
                    for wire, _, pause in writes:
                        await stream.send_all(wire)
                        await trio.sleep(pause)
                await stream.aclose()

            async with trio.open_nursery() as nursery:
                for writes in plan:
                    nursery.start_soon(client, writes)
            await trio.sleep(60.0)  # every message's deadline has passed
            slots = sum(node.active for node in server.tier.nodes)  # the model's own
            assert (slots, server.between_messages) == (0, 0)
            assert sorted(answered) == sorted(expected)
            assert all(len(frames) == 1 for frames in answered.values())
            replies = [f for [f] in answered.values() if f.type is Type.REPLY]
            errors = [f for [f] in answered.values() if f.type is Type.ERROR]
            assert len(replies) + len(errors) == len(expected)
            assert all(f.status in set(ErrorCode) and f.body for f in errors)
            ledger = server.tier.ledger
            assert ledger.total.requests == len(replies)
            assert not ledger.still_open
            assert checkers.check_run(ledger, server.tier.nodes) == []

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
