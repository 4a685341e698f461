"""The simulated network (`relay.net.sim`): TCP's behaviour in memory, each of
Toxiproxy's toxics per direction with its toxicity, turmoil's hold, partition and
repair, all on trio's virtual clock and repeatable from the seed."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from relay.net.sim import SimNetwork, SimStream
from relay.net.toxics import KINDS, ToxicError, toxic_from

SERVER, CLIENT = "127.0.0.1", "127.0.0.2"


async def pair(net: SimNetwork, port: int = 7000) -> tuple[SimStream, SimStream]:
    """A connection from CLIENT to SERVER:`port`: (client end, server end)."""
    server = net.host(SERVER)
    listener, _ = await server.listen(SERVER, port)
    client = await net.host(CLIENT).connect(SERVER, port)
    accepted = await listener.accept()
    assert server.peer(accepted) == CLIENT
    assert isinstance(client, SimStream)
    assert isinstance(accepted, SimStream)
    return client, accepted


async def arrivals(stream: trio.abc.Stream, n: int) -> list[tuple[float, bytes]]:
    """(when, bytes) of each read until `n` bytes have come."""
    got: list[tuple[float, bytes]] = []
    while sum(len(b) for _, b in got) < n:
        data = await stream.receive_some()
        assert data, "closed early"
        got.append((trio.current_time(), bytes(data)))
    return got


async def test_bytes_cross_at_once_in_order_and_close_as_tcp_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without toxics bytes arrive at the instant they are sent, in order; a
    half-close reads as b"" while replies still flow; a full close after it too."""
    net = SimNetwork(1)
    client, server = await pair(net)
    await client.send_all(b"hello ")
    await client.send_all(b"world")
    assert await arrivals(server, 11) == [(0.0, b"hello world")]
    await client.send_eof()
    assert await server.receive_some() == b""
    await server.send_all(b"reply")
    assert await client.receive_some() == b"reply"
    await server.aclose()
    assert await client.receive_some() == b""


async def test_nothing_listening_is_refused_and_a_used_port_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Connecting where nothing listens is ECONNREFUSED; listening twice on one
    address is EADDRINUSE; port 0 hands out a free port."""
    net = SimNetwork(1)
    with pytest.raises(ConnectionRefusedError):
        await net.host(CLIENT).connect(SERVER, 7000)
    host = net.host(SERVER)
    await host.listen(SERVER, 7000)
    with pytest.raises(OSError, match="address already in use") as exc:
        await host.listen(SERVER, 7000)
    assert exc.value.errno == errno.EADDRINUSE
    _, a = await host.listen(SERVER, 0)
    _, b = await host.listen(SERVER, 0)
    assert a != b


async def test_a_reader_that_does_not_read_holds_the_writer_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A direction holds `buffer_bytes` unread: a writer past it waits until the
    reader reads (backpressure), and then finishes."""
    net = SimNetwork(1, buffer_bytes=1000)
    client, server = await pair(net)
    done = trio.Event()

    async def write() -> None:
        await client.send_all(b"x" * 5000)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await trio.sleep(10)
        assert not done.is_set()
        got = await arrivals(server, 5000)
    assert done.is_set()
    assert sum(len(b) for _, b in got) == 5000


async def test_closing_with_unread_bytes_resets_the_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An end that closes with bytes unread resets the connection: the peer's
    next read fails, not b"" (what TCP does, and why httpd lingers)."""
    net = SimNetwork(1)
    client, server = await pair(net)
    await client.send_all(b"unread")
    await server.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await client.receive_some()


def add(net: SimNetwork, doc: dict[str, object], port: int = 7000) -> None:
    net.add_toxic((SERVER, port), toxic_from(doc))


async def test_latency_with_jitter_delays_each_write_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """latency 100 ms ± 20 ms downstream: each write arrives 80-120 ms after it
    was sent, in the order sent; upstream is untouched."""
    net = SimNetwork(7)
    client, server = await pair(net)
    add(net, {"type": "latency", "attributes": {"latency": 100, "jitter": 20}})
    got: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            got.extend(await arrivals(client, 20))

        nursery.start_soon(read)
        for i in range(20):
            await server.send_all(bytes([i]))
            await trio.sleep(0.05)
    delays = [when - 0.05 * data[0] for when, data in got if len(data) == 1]
    assert len(delays) >= 10
    assert all(0.08 - 1e-9 <= d <= 0.12 + 1e-9 for d in delays)
    assert b"".join(data for _, data in got) == bytes(range(20))
    await client.send_all(b"up")
    assert (await arrivals(server, 2))[0][0] == trio.current_time()


async def test_bandwidth_limits_the_rate(autojump_clock: trio.testing.MockClock) -> None:
    """bandwidth 10 KB/s upstream: 5,000 bytes take half a second."""
    net = SimNetwork(1)
    client, server = await pair(net)
    add(net, {"type": "bandwidth", "stream": "upstream", "attributes": {"rate": 10}})
    await client.send_all(b"y" * 5000)
    got = await arrivals(server, 5000)
    assert got[-1][0] == pytest.approx(0.5)


async def test_slicer_cuts_writes_into_delayed_slices(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """slicer 100 ± 20 bytes, 1 ms apart: 1,000 bytes come in several reads of
    80-120 bytes (the last may be less), spread over milliseconds."""
    net = SimNetwork(3)
    client, server = await pair(net)
    add(net, {"type": "slicer", "attributes": {"average_size": 100, "size_variation": 20,
                                               "delay": 1000}})  # fmt: skip
    await server.send_all(b"z" * 1000)
    got = await arrivals(client, 1000)
    sizes = [len(data) for _, data in got]
    assert len(got) >= 8
    assert all(80 <= size <= 120 for size in sizes[:-1])
    assert got[-1][0] >= 0.007


async def test_timeout_drops_everything_and_closes_after_its_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """timeout 2,000 ms downstream: replies never arrive, and the connection
    closes two seconds after the toxic met it; taken off sooner, it closes nothing."""
    net = SimNetwork(1)
    client, server = await pair(net)
    add(net, {"type": "timeout", "attributes": {"timeout": 2000}})
    await server.send_all(b"lost")
    assert await client.receive_some() == b""
    assert trio.current_time() == pytest.approx(2.0)
    with pytest.raises(trio.BrokenResourceError):
        await server.send_all(b"more")
    # taken off before its time: nothing closes
    client2, server2 = await pair(net, 7001)
    add(net, {"type": "timeout", "attributes": {"timeout": 2000}}, 7001)
    await trio.sleep(1)
    net.remove_toxic((SERVER, 7001), "timeout_downstream")
    await trio.sleep(5)
    await server2.send_all(b"fine")
    assert await client2.receive_some() == b"fine"


async def test_reset_peer_resets_after_its_time(autojump_clock: trio.testing.MockClock) -> None:
    """reset_peer 500 ms: bytes pass until then; then both ends see a reset."""
    net = SimNetwork(1)
    client, server = await pair(net)
    add(net, {"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 500}})
    await client.send_all(b"early")
    assert await server.receive_some() == b"early"
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()
    assert trio.current_time() == pytest.approx(0.5)
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"late")


async def test_slow_close_delays_the_close(autojump_clock: trio.testing.MockClock) -> None:
    """slow_close 3,000 ms downstream: the server's close reaches the client three
    seconds later."""
    net = SimNetwork(1)
    client, server = await pair(net)
    add(net, {"type": "slow_close", "attributes": {"delay": 3000}})
    await server.send_all(b"bye")
    await server.send_eof()
    assert await client.receive_some() == b"bye"
    assert await client.receive_some() == b""
    assert trio.current_time() == pytest.approx(3.0)


async def test_limit_data_closes_after_so_many_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """limit_data 10 bytes downstream: the first ten arrive, then the connection
    is closed."""
    net = SimNetwork(1)
    client, server = await pair(net)
    add(net, {"type": "limit_data", "attributes": {"bytes": 10}})
    await server.send_all(b"0123456789abcdef")
    assert await client.receive_some() == b"0123456789"
    assert await client.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError):
        await server.send_all(b"more")


async def test_toxicity_picks_connections_by_the_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """toxicity 0.5: about half of 200 connections are slowed, and the same seed
    slows the same ones."""

    async def slowed(seed: int) -> list[bool]:
        net = SimNetwork(seed)
        host = net.host(SERVER)
        listener, port = await host.listen(SERVER, 0)
        add(net, {"type": "latency", "toxicity": 0.5, "attributes": {"latency": 1000}}, port)
        out = []
        for _ in range(200):
            client = await net.host(CLIENT).connect(SERVER, port)
            server = await listener.accept()
            start = trio.current_time()
            await server.send_all(b".")
            await client.receive_some()
            out.append(trio.current_time() > start)
        return out

    first = await slowed(11)
    assert 70 < sum(first) < 130
    assert await slowed(11) == first
    assert await slowed(12) != first


async def test_hold_stalls_and_repair_delivers_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """hold: bytes sent meanwhile arrive, in order, only once repaired; connecting
    waits as well."""
    net = SimNetwork(1)
    client, server = await pair(net)
    net.hold(CLIENT, SERVER)
    await client.send_all(b"a")
    await client.send_all(b"b")
    async with trio.open_nursery() as nursery:

        async def repair() -> None:
            await trio.sleep(30)
            net.repair(CLIENT, SERVER)

        nursery.start_soon(repair)
        got = await arrivals(server, 2)
    assert got == [(30.0, b"ab")]


async def test_a_partition_resets_connections_and_connecting_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """partition: open connections between the hosts are reset, a connect waits
    for the connect timeout then fails; after repair connecting works again."""
    net = SimNetwork(1, connect_timeout=127.0)
    client, _ = await pair(net)
    net.partition(SERVER, CLIENT)
    with pytest.raises(trio.BrokenResourceError):
        await client.receive_some()
    with pytest.raises(TimeoutError):
        await net.host(CLIENT).connect(SERVER, 7000)
    assert trio.current_time() == pytest.approx(127.0)
    net.repair(CLIENT, SERVER)
    await net.host(CLIENT).connect(SERVER, 7000)


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"type": "laggy"}, "toxic.type: 'laggy' is not a toxic"),
        ({"type": "latency", "stream": "sideways"}, "toxic.stream: 'sideways'"),
        ({"type": "latency", "toxicity": 2}, "toxic.toxicity: 2.0: expected a number from 0"),
        ({"type": "latency", "attributes": {"rate": 1}}, "attributes.rate: not an attribute"),
        ({"type": "latency", "attributes": {"latency": float("nan")}}, "expected a finite"),
        ({"type": "latency", "attributes": {"latency": -5}}, "latency: -5: expected a number"),
        ({"type": "latency", "colour": "red"}, "toxic.colour: unknown field"),
    ],
)
def test_a_toxic_that_cannot_be_is_named(doc: dict[str, object], says: str) -> None:
    """Each wrong field of a toxic gets one line naming it and its value."""
    with pytest.raises(ToxicError) as exc:
        toxic_from(doc)
    assert says in str(exc.value)


def test_every_kind_round_trips_through_toxiproxys_json() -> None:
    """Each registered kind, made from Toxiproxy's JSON, gives that JSON back, with
    every attribute of its kind and the default name TYPE_STREAM."""
    for kind in KINDS:
        made = toxic_from({"type": kind, "stream": "upstream"})
        doc = made.to_json()
        assert doc["name"] == f"{kind}_upstream"
        assert set(doc["attributes"]) == set(KINDS[kind].attributes)
        assert toxic_from(doc) == made
