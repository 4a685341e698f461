"""Serve and load on the simulated network: the real `RelayServer` (with its
`/metrics` and admin endpoints) and the real `relaysim load` client in one trio
run, on `relay.net.sim.SimNetwork` under a virtual clock.

The server's host is 127.0.0.1, the load's 127.0.0.2; what differs from
`relaysim serve` plus `relaysim load` on loopback is the clock (a virtual one,
jumping over every wait: `VirtualClock`) and the transport. One seed decides the run:
it seeds the scenario, the network's draws and trio's scheduler (which task of
those ready at one instant runs first), so the same seed gives the same two
ledgers, byte for byte (`digest`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from relay.core import summary
from relay.core.ledger import Ledger
from relay.core.tier import LogSink, RelayTier
from relay.engines.trio import TrioDriver
from relay.net.sim import SimNetwork
from relay.net.toxics import Toxic
from relay.scenario.build import build
from relay.scenario.schema import Scenario
from relay.serve import load
from relay.serve.app import start
from relay.serve.clock import VirtualClock
from relay.serve.metrics import serving_ledger
from relay.serve.server import RelayServer

SERVER_HOST = "127.0.0.1"
CLIENT_HOST = "127.0.0.2"
ADMIN_TOKEN = "simulated-network"  # nobody else is on this network


@dataclass
class SimRun:
    """What one run over the simulated network left: the server (its tier and
    ledger, its stats), the load's summary and live record, the network, and when
    a stop came and how long the server took to drain (None: no stop was asked)."""

    server: RelayServer
    doc: summary.Summary
    record: load.LoadRun
    network: SimNetwork
    ports: dict[str, int]  # dispatcher, each relay, metrics, admin
    stopped_at: float | None = None
    drained_in: float | None = None
    admitted: list[tuple[float, int]] = field(default_factory=list)  # (at, CS), server side


#: What a run does to the network and the server at an instant: put on or take off
#: a toxic, hold, partition or repair a link, stop the server. `at` in seconds.
Action = Callable[["Situation"], None]

#: A client of its own beside the load (a hostile one): run until it is done.
Client = Callable[["Situation"], Awaitable[None]]


@dataclass
class Situation:
    """What actions and clients see: the network, the ports by name, the server."""

    net: SimNetwork
    ports: dict[str, int]
    server: RelayServer

    def address(self, name: str) -> tuple[str, int]:
        """The server's address `name` (dispatcher, relay1, ..., metrics, admin)."""
        return SERVER_HOST, self.ports[name]


def seed_scheduler(seed: int) -> None:
    """Make trio's scheduler choose from `seed`: which of the tasks ready at one
    instant runs first. trio draws that from a module-level `random.Random` (the one
    its hypothesis plugin registers, so that hypothesis can shrink interleavings);
    seeding it is what hypothesis does between examples."""
    from trio._core import _run  # private: trio offers no public way to seed it

    scheduler: random.Random = _run._r
    scheduler.seed(f"relaysim-scheduler:{seed}")


def run(
    scenario: Scenario,
    *,
    duration: float,
    rate: float | None = None,
    arrivals: Sequence[tuple[float, int]] | None = None,
    connections: int = 50,
    drain: float = 60.0,
    toxics: Sequence[tuple[str, Toxic]] = (),
    actions: Sequence[tuple[float, Action]] = (),
    clients: Sequence[Client] = (),
    tier: RelayTier | None = None,
    log: LogSink | None = None,
) -> SimRun:
    """Serve `scenario` (or the prebuilt `tier`) and run `relaysim load` against it
    for `duration` virtual seconds (the scenario's day from its opening, a Poisson
    `rate`, or the first attempts `arrivals`), on a simulated network seeded from
    the scenario's seed. `toxics`: (port name, toxic) put on before the load starts
    (names: dispatcher, relay1, ..., metrics, admin); `actions`: (instant, action)
    done at their instants; `clients`: hostile clients beside the load."""
    seed_scheduler(scenario.seed)
    return trio.run(
        functools.partial(
            _run,
            scenario,
            tier,
            log,
            toxics,
            actions,
            clients,
            functools.partial(
                load.run,
                scenario,
                SERVER_HOST,
                duration=duration,
                rate=rate,
                arrivals=arrivals,
                connections=connections,
                drain=drain,
            ),
        ),
        clock=VirtualClock(),
    )


@asynccontextmanager
async def serving(
    scenario: Scenario,
    net: SimNetwork,
    log: LogSink | None = None,
    tier: RelayTier | None = None,
) -> AsyncIterator[tuple[RelayServer, dict[str, int]]]:
    """`relaysim serve`'s server, `/metrics` and admin endpoint for `scenario` (or
    the prebuilt `tier`) on host 127.0.0.1 of `net`, for the block; their ports by
    name (dispatcher, relay1..., metrics, admin). Stopped and drained on leaving."""
    if tier is None:
        tier = build(scenario, log, serving_ledger()).tier
    async with trio.open_nursery() as nursery:
        driver = TrioDriver(tier)
        server, _, ports = await start(
            nursery, scenario, driver, ADMIN_TOKEN, network=net.host(SERVER_HOST)
        )
        yield server, ports
        server.stop()
        await server.stopped.wait()
        nursery.cancel_scope.cancel()


async def _run(
    scenario: Scenario,
    tier: RelayTier | None,
    log: LogSink | None,
    toxics: Sequence[tuple[str, Toxic]],
    actions: Sequence[tuple[float, Action]],
    clients: Sequence[Client],
    loading: Callable[..., Awaitable[tuple[summary.Summary, load.LoadRun]]],
) -> SimRun:
    net = SimNetwork(scenario.seed)
    async with serving(scenario, net, log, tier) as (server, ports):
        here = Situation(net, ports, server)
        admitted: list[tuple[float, int]] = []
        server.operations.admitted = admitted
        for name, toxic in toxics:
            net.add_toxic(here.address(name), toxic)
        stop: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_act, here, sorted(actions, key=lambda a: a[0]), stop)
            for client in clients:
                nursery.start_soon(client, here)
            doc, record = await loading(ports["dispatcher"], network=net.host(CLIENT_HOST))
            nursery.cancel_scope.cancel()  # actions still to come, clients still on
        if server.stopping and not stop:
            stop.append(trio.current_time())
    drained = server.stopped_at - stop[0] if stop and server.stopped_at is not None else None
    return SimRun(server, doc, record, net, ports, stop[0] if stop else None, drained, admitted)


async def _act(here: Situation, actions: list[tuple[float, Action]], stop: list[float]) -> None:
    for at, action in actions:
        await trio.sleep_until(at)
        stopping = here.server.stopping
        action(here)
        if here.server.stopping and not stopping:
            stop.append(trio.current_time())


async def exchange(net: SimNetwork, port: int, request: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 exchange from the client host with the server's `port` over
    `net`: `request`'s bytes as they are, then everything until the server closes
    (it does after one answer); the status and the body."""
    stream = await net.host(CLIENT_HOST).connect(SERVER_HOST, port)
    await stream.send_all(request)
    raw = b""
    while chunk := await stream.receive_some():
        raw += chunk
    await stream.aclose()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def http(
    net: SimNetwork,
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    token: str | None = None,
) -> tuple[int, bytes]:
    """`exchange` of a request as `relaysim fault` or a scrape sends it: the
    endpoint's own Host, a body as JSON, `token` as a bearer."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {SERVER_HOST}:{port}"]
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    if body:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return await exchange(net, port, "\r\n".join([*head, "", ""]).encode() + body)


def digest(ledger: Ledger) -> str:
    """A fingerprint of everything `ledger` recorded: its counts by outcome, by
    arrival bucket and by node, the latencies (each bucket's sketch: its bins, exact
    sum, minimum and maximum), refusals, violations and registrations. Equal
    fingerprints: the same ledger, byte for byte."""
    h = hashlib.sha256()
    h.update(json.dumps(ledger.total.counts).encode())
    for number in sorted(ledger.buckets):
        h.update(json.dumps([number, ledger.buckets[number].counts]).encode())
        h.update(ledger.latencies[number].state())
    for number in sorted(ledger.nodes):
        h.update(json.dumps([number, ledger.nodes[number].counts]).encode())
    if ledger.histogram is not None:
        h.update(json.dumps(ledger.histogram.cumulative()).encode())
    h.update(json.dumps(sorted(ledger.refusals.items())).encode())
    h.update(json.dumps(ledger.violations).encode())
    h.update(json.dumps(sorted(ledger.registrations.items())).encode())
    h.update(json.dumps([ledger.closed, ledger.last_outcome_at]).encode())
    return h.hexdigest()
