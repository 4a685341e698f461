"""Serve mode's limits and its stop, under trio's virtual clock.

Clients are in-memory streams handed to the server (`RelayServer.attach`) with the
address they claim, so timeouts of minutes and a thousand connections cost no real
time; tests/test_serve.py covers the same server over real sockets.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from relay.core.node import Node
from relay.core.tier import RelayTier
from relay.engines.trio import TrioDriver
from relay.scenario.schema import ConfigError, scenario_from_data
from relay.serve.app import limits
from relay.serve.ports import PortError
from relay.serve.protocol import Decoder, ErrorCode, Frame, Status, Type
from relay.serve.server import Limits, RelayServer
from tests.conftest import tier_for

# A request takes 10 s (the backend), well inside the 19 s step timer.
SLOW: dict[str, Any] = {
    "relays": {"count": 2, "timeout_s": 19, "max_connections": 256},
    "hsm": {"service_ms": {"dist": "constant", "mean": 1}},
    "backend": {"service_ms": {"dist": "constant", "mean": 10_000}},
    "monitor": {"enabled": False},
    "load": {"retry": {"max_retries": 0}},
}


@asynccontextmanager
async def serving(limits: Limits | None = None) -> AsyncIterator[RelayServer]:
    """A server of the SLOW tier for the block (its listeners unused), stopped after."""
    tier: RelayTier = tier_for(**SLOW)
    server = RelayServer(tier, TrioDriver(tier), limits)
    # Virtual time: a server that never acts fails the test instead of hanging it.
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            yield server
            server.stop()


def connect(
    server: RelayServer, peer: str = "127.0.0.1", at: Node | None = None
) -> trio.abc.Stream:
    """A client connection from `peer`, attached to the server (at node `at`'s own
    port, or the dispatcher's)."""
    client, there = trio.testing.memory_stream_pair()
    server.attach(there, peer, at)
    return client


def request(rid: int, muni: int = 0) -> bytes:
    return Frame(Type.REQUEST, rid, os.urandom(16), muni, 0, b"card operation").encode()


async def until_close(stream: trio.abc.Stream) -> list[tuple[float, Frame]]:
    """Every frame the server sends until it closes, with the instant it arrived."""
    decoder, got = Decoder(), []
    while data := await stream.receive_some(65536):
        now = trio.current_time()
        got += [(now, f) for f in decoder.feed(data)]
    return got


async def test_a_frame_trickling_in_is_cut_off_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A frame whose bytes arrive one every 3 s, each well inside the 5 s limit, is
    cut off with TOO_SLOW once the frame as a whole has taken 5 s, and nothing of it
    reaches the model."""
    async with serving() as server:
        stream = connect(server)
        start = trio.current_time()
        wire = request(1)

        async def trickle() -> None:
            for i in range(len(wire)):
                await stream.send_all(wire[i : i + 1])
                await trio.sleep(3.0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            got = await until_close(stream)
            nursery.cancel_scope.cancel()
    [(at, error)] = got
    assert (error.type, error.status) == (Type.ERROR, ErrorCode.TOO_SLOW)
    assert 5.0 <= at - start <= 6.0  # within the watcher's tick of the limit
    assert server.tier.ledger.total.requests == 0
    assert server.stats.closed["TOO_SLOW"] == 1


async def test_an_idle_connection_is_told_and_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A connection that carries nothing for the idle timeout gets an IDLE notice
    (id 0) and is closed a frame timeout later; one waiting for a reply longer than
    that is not idle."""
    limits = Limits(idle_timeout=5.0, frame_timeout=2.0)
    async with serving(limits) as server:
        waiting, silent = connect(server), connect(server)
        start = trio.current_time()
        await waiting.send_all(request(1))  # its reply takes 10 s
        got: dict[str, list[tuple[float, Frame]]] = {"waiting": [], "silent": []}

        async def watch(name: str, stream: trio.abc.Stream) -> None:
            got[name] = await until_close(stream)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, "waiting", waiting)
            nursery.start_soon(watch, "silent", silent)
    (at, notice), *rest = got["silent"]
    assert rest == []
    assert (notice.id, notice.status) == (0, ErrorCode.IDLE)
    assert 5.0 <= at - start <= 5.6
    # The waiting one got its reply at 10 s, then idled out like the other.
    (replied, reply), (told, idle) = got["waiting"]
    assert (reply.id, reply.status) == (1, Status.COMPLETED)
    assert replied - start == pytest.approx(10.0, abs=0.01)
    assert idle.status == ErrorCode.IDLE
    assert told - replied >= 5.0
    assert server.stats.closed["IDLE"] == 2


async def busy(server: RelayServer, peer: str, n: int) -> list[trio.abc.Stream]:
    """`n` connections from `peer`, one after the other, each with a 10 s request
    running (not idle) as the next connects (one refused takes no request)."""
    streams = []
    for i in range(n):
        stream = connect(server, peer)
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(request(i + 1, muni=i % 4))  # within the CS caps
        await trio.testing.wait_all_tasks_blocked()
        streams.append(stream)
    return streams


async def test_one_peer_cannot_lock_the_others_out(autojump_clock: trio.testing.MockClock) -> None:
    """1,024 connections from one address, each with a request running: it gets
    only its per-peer share, every other one is refused BUSY, and another address
    is still served."""
    async with serving() as server:
        hog = await busy(server, "127.0.0.1", 1024)
        other = connect(server, "127.0.0.2")
        await other.send_all(request(7))
        [reply] = Decoder().feed(await other.receive_some(65536))
        refused = server.stats.refused_connections
        open_ = server.stats.open
        for stream in hog:
            await stream.aclose()
    assert (reply.id, reply.status) == (7, Status.COMPLETED)
    assert refused == {"per_peer": 1024 - 256}
    assert open_ == 256 + 1


async def test_an_idle_connection_makes_room_for_a_new_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """At its per-peer limit of 4, a peer's new connection is admitted by closing
    its connection idle longest: one that never sent anything first, then the one
    quiet longest; a connection with a request running is never closed for it.
    Each closing is an IDLE notice, counted by limit in /metrics."""
    async with serving(Limits(per_peer=4)) as server:
        working = await busy(server, "127.0.0.1", 1)
        spoke = [connect(server, "127.0.0.1") for _ in range(2)]
        for stream in spoke:
            await stream.send_all(request(9))
        await trio.sleep(11.0)  # their requests are answered: idle, having spoken
        silent = connect(server, "127.0.0.1")
        await trio.testing.wait_all_tasks_blocked()
        first = connect(server, "127.0.0.1")  # the 5th: the silent one gives way
        await trio.testing.wait_all_tasks_blocked()
        silent_got = await until_close(silent)
        second = connect(server, "127.0.0.1")  # then the one quiet longest
        await trio.testing.wait_all_tasks_blocked()
        evicted = dict(server.stats.evicted)
        held = server._peers["127.0.0.1"]
        for stream in (*working, *spoke, first, second):
            await stream.aclose()
    [(_, notice)] = silent_got
    assert (notice.id, notice.status) == (0, ErrorCode.IDLE)
    assert b"make room" in notice.body
    assert evicted == {"per_peer": 2}
    assert held == 4
    assert server.stats.refused_connections == {}
    assert held_metric(server, "relaysim_connections_evicted_total", "per_peer") == 2


def held_metric(server: RelayServer, name: str, label: str) -> float:
    """A sample of the server's /metrics."""
    from relay.serve.metrics import registry_for

    for family in registry_for(server).collect():
        for sample in family.samples:
            if sample.name == name and label in sample.labels.values():
                return sample.value
    raise AssertionError(f"{name}{{{label}}} not in /metrics")


async def test_the_last_slots_are_kept_for_light_peers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With 8 slots, 4 per address and 2 reserved, every connection working: a
    heavy address stops at its 4, a second heavy one at the reserve, and a
    newcomer still gets the last two."""
    async with serving(Limits(max_connections=8, per_peer=4, reserved=2)) as server:
        for peer, count in (("127.0.0.2", 6), ("127.0.0.3", 4), ("127.0.0.4", 3)):
            await busy(server, peer, count)
        refused = dict(server.stats.refused_connections)
        held = dict(server._peers)
    assert held == {"127.0.0.2": 4, "127.0.0.3": 2, "127.0.0.4": 2}
    assert refused == {"per_peer": 2, "reserved": 2, "max_connections": 1}


async def test_a_stop_answers_everything_admitted_and_refuses_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Stopped with 5 requests of 10 s in flight: the client is told SHUTTING_DOWN
    (id 0), frames it sends afterwards are refused with their ids, a new connection
    is refused, and all 5 are answered: the drain is the longest a request can live
    (19 s and a tick) plus a frame timeout, not a fixed 10 s."""
    async with serving() as server:
        stream = connect(server)
        await stream.send_all(b"".join(request(i) for i in range(1, 6)))
        await trio.testing.wait_all_tasks_blocked()
        assert server.in_flight == 5
        server.stop()
        await stream.send_all(request(6) + request(7))
        late = connect(server)
        [(_, busy)] = await until_close(late)
        decoder, got = Decoder(), list[Frame]()
        while len(got) < 8:
            got += decoder.feed(await stream.receive_some(65536))
        await stream.aclose()
    tier = server.tier
    assert server.drain == tier.longest_message_s + 5.0 == 19 + 0.015625 + 5
    notice, *rest = got
    assert (notice.id, notice.status) == (0, ErrorCode.SHUTTING_DOWN)
    by_id = {f.id: f for f in rest}
    assert {i: by_id[i].status for i in (6, 7)} == dict.fromkeys((6, 7), ErrorCode.SHUTTING_DOWN)
    assert {by_id[i].type for i in range(1, 6)} == {Type.REPLY}
    assert {by_id[i].status for i in range(1, 6)} == {Status.COMPLETED}
    assert busy.status == ErrorCode.SHUTTING_DOWN
    assert (server.stats.requests, server.stats.replies, server.stats.cut) == (5, 5, 0)
    assert server.stats.rejected["SHUTTING_DOWN"] == 3  # two frames, one connection
    assert (tier.ledger.total.requests, tier.ledger.closed) == (5, 5)


async def test_a_short_drain_counts_what_it_cut(autojump_clock: trio.testing.MockClock) -> None:
    """A drain shorter than the requests: the server stops after it, counts the 3
    still running as cut, and they still end with their outcomes in the ledger."""
    async with serving(Limits(drain=1.0)) as server:
        stream = connect(server)
        await stream.send_all(b"".join(request(i) for i in range(1, 4)))
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        server.stop()
        await server.stopped.wait()
        took = trio.current_time() - start
    ledger = server.tier.ledger
    assert server.stats.cut == 3
    assert (ledger.total.requests, ledger.closed) == (3, 3)
    assert server.stats.replies + server.stats.undelivered == 3
    assert took == pytest.approx(10.0, abs=0.01)  # the requests ran on to their end


async def test_a_client_that_ignores_the_notice_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After the drain, a client that neither sends nor hangs up is closed a frame
    timeout later: a stop cannot be held open by a client."""
    async with serving(Limits(frame_timeout=2.0)) as server:
        stream = connect(server)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        server.stop()
        await server.stopped.wait()
        took = trio.current_time() - start
        await stream.aclose()
    assert took == pytest.approx(2.0, abs=0.01)


async def test_abort_stops_at_once_and_counts_what_it_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A second signal (abort) during the drain ends the server at once; the
    requests it cancelled are counted."""
    async with serving() as server:
        stream = connect(server)
        await stream.send_all(b"".join(request(i) for i in range(1, 5)))
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        server.stop()
        await trio.sleep(1.0)
        server.abort()
        await server.stopped.wait()
        took = trio.current_time() - start
        await stream.aclose()
    assert server.stats.aborted == 4
    assert took == pytest.approx(1.0, abs=0.01)


async def test_a_base_port_whose_nodes_would_wrap_is_refused() -> None:
    """Port 65534 with two relay nodes would put them on 65535 and 65536 (which the
    old server wrapped round to port 0 and 1): refused, naming the ports."""
    tier: RelayTier = tier_for(**SLOW)
    server = RelayServer(tier, TrioDriver(tier))
    with pytest.raises(PortError, match=r"--port 65534: the relay nodes need ports 65535\.\.65536"):
        await server.serve(65534)


async def test_a_port_clash_names_the_port_that_clashed() -> None:
    """When a relay node's port is taken, the error names that node and its port,
    not the dispatcher's; nothing stays listening."""
    taken = trio.socket.socket()
    await taken.bind(("127.0.0.1", 0))
    taken.listen()
    base = taken.getsockname()[1] - 2  # relay2 would take it
    tier: RelayTier = tier_for(**SLOW)
    server = RelayServer(tier, TrioDriver(tier))
    try:
        with pytest.raises(PortError) as exc:
            await server.serve(base)
    finally:
        taken.close()
    assert str(exc.value).startswith(f"cannot listen on 127.0.0.1:{base + 2} (relay2 port):")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("serve.idle_timeout_s=.inf", "serve.idle_timeout_s: expected a finite number"),
        ("serve.frame_timeout_s=0", "serve.frame_timeout_s: expected a number that is greater"),
        ("serve.drain_s=.nan", "serve.drain_s: expected a finite number"),
        ("serve.max_connections=0", "serve.max_connections: expected a number that is greater"),
        (
            "serve.reserved_connections=1024",
            "serve: reserved_connections (1024) must be below max_connections",
        ),
        ("serve.max_conections=5", "serve.max_conections: unknown key"),
    ],
)
def test_serve_limits_are_checked_in_one_line(override: str, message: str) -> None:
    """The scenario's serve section refuses infinite or absent timeouts, empty
    limits, a reserve as large as the whole, and misspelt keys, naming the key."""
    with pytest.raises(ConfigError) as exc:
        scenario_from_data({}, [override], "s.yaml")
    assert str(exc.value).startswith(f"s.yaml (with --set): {message}")


def test_the_scenarios_serve_section_sets_the_servers_limits() -> None:
    """Each key of the serve section reaches the server's limits; --drain wins."""
    keys = {
        "max_frame_bytes": 4096,
        "frame_timeout_s": 2.5,
        "idle_timeout_s": 60,
        "max_connections": 100,
        "max_connections_per_peer": 10,
        "reserved_connections": 5,
        "drain_s": 7,
    }
    s = scenario_from_data({"serve": keys})
    assert limits(s) == Limits(4096, 2.5, 60, 100, 10, 5, 7)
    assert limits(s, drain=1.5).drain == 1.5
