"""`relaysim serve`'s composition root: the scenario's tier, its HSM (simulated or
the SoftHSM2 token), the server, `/metrics` and the admin endpoint, wired together
and run until a signal stops them. The parts know nothing of each other."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

import trio

from hsm_adapter.lane import Pkcs11Hsm, open_pkcs11, unwrap_group
from hsm_adapter.token import TokenConfig, default_state, usable_state
from relay.core.ledger import OUTCOMES
from relay.core.tier import LogSink
from relay.engines.trio import (
    REAL_CLOCK_RESOLUTION,
    DeviceServices,
    Services,
    SimulatedServices,
    TrioDriver,
)
from relay.net import REAL, Network
from relay.net.proxy import ToxicNetwork
from relay.net.sim import SimHost, SimNetwork
from relay.scenario.build import build
from relay.scenario.schema import Scenario
from relay.serve.admin import Admin, serve_admin
from relay.serve.clock import ScenarioClock
from relay.serve.metrics import registry_for, serve_metrics, serving_ledger
from relay.serve.ports import HOST
from relay.serve.protocol import ErrorCode
from relay.serve.server import Limits, RelayServer
from relay.serve.toxiproxy import Proxies

#: The signals that stop serve: the first drains, a second stops at once.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def limits(scenario: Scenario, drain: float | None = None, speed: float = 1.0) -> Limits:
    """The server's limits from the scenario's `serve` section (`drain` overrides),
    for a model running `speed` times faster than real time."""
    c = scenario.serve
    return Limits(
        max_frame=c.max_frame_bytes,
        frame_timeout=c.frame_timeout_s,
        idle_timeout=c.idle_timeout_s,
        write_timeout=c.write_timeout_s,
        max_connections=c.max_connections,
        per_peer=c.max_connections_per_peer,
        reserved=c.reserved_connections,
        drain=c.drain_s if drain is None else drain,
        scale=speed,
    )


def token_path(port: int) -> Path:
    """Where a serve run keeps the token of its admin endpoint on `port`."""
    return default_state() / f"admin-{port}.token"


def write_token(path: Path, token: str) -> None:
    """Write `token` readable by this user only (0600, whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(token + "\n")


async def run(
    scenario: Scenario,
    *,
    hsm: Literal["simulated", "softhsm"] = "simulated",
    port: int = 0,
    metrics_port: int = 0,
    admin_port: int = 0,
    drain: float | None = None,
    speed: float = 1.0,
    log: LogSink,
    announce: Callable[[str], None],
    token: TokenConfig | None = None,
    toxics: bool = False,
) -> RelayServer:
    """`relaysim serve`: the scenario's tier on loopback until SIGINT, SIGTERM or SIGHUP.

    `announce` gets one line per address (dispatcher, nodes, metrics, admin) and the
    admin token. The first signal stops admitting and drains; a second stops at
    once. Returns the server once it has stopped. With `speed` the model runs that
    many times faster than real time: trio's clock must be a `ScaledClock(speed)`.
    With `toxics`, every connection to the dispatcher and relay ports passes through
    the toxics the admin endpoint puts on them (`relay.net.proxy`).
    """
    try:
        return await _run(
            scenario,
            hsm,
            port,
            metrics_port,
            admin_port,
            drain,
            speed,
            log,
            announce,
            token,
            toxics,
        )
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None


async def _run(
    scenario: Scenario,
    hsm: Literal["simulated", "softhsm"],
    port: int,
    metrics_port: int,
    admin_port: int,
    drain: float | None,
    speed: float,
    log: LogSink,
    announce: Callable[[str], None],
    token: TokenConfig | None,
    toxics: bool,
) -> RelayServer:
    # The admin token goes there: a folder it cannot go to is said before any port
    # is bound (TokenError, one line naming it).
    usable_state(default_state())
    # Every line logged, the model's and serve's own, names its instant twice.
    clock = ScenarioClock.of(scenario, speed)
    log = clock.named(log)
    # Latencies into a bounded histogram: a server may answer requests for weeks.
    tier = build(scenario, log, serving_ledger(speed)).tier
    async with contextlib.AsyncExitStack() as stack:
        lane: Pkcs11Hsm | None = None
        services: Services
        if hsm == "softhsm":
            deadline = scenario.hsm.deadline_ms / 1000.0
            lane = await stack.enter_async_context(
                open_pkcs11(token or TokenConfig(), deadline=deadline)
            )
            services = DeviceServices(tier, lane)
        else:
            services = SimulatedServices(tier)
        # The real clock's resolution, in the model's seconds.
        resolution = REAL_CLOCK_RESOLUTION * speed
        driver = TrioDriver(tier, services=services, resolution=resolution)
        secret = secrets.token_urlsafe(24)
        # SIGHUP too: serve has no configuration to reload, and a server whose
        # terminal went away should drain, not die with its replies.
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                server, admin, ports = await start(
                    nursery,
                    scenario,
                    driver,
                    secret,
                    speed=speed,
                    drain=drain,
                    lane=lane,
                    ports=(port, metrics_port, admin_port),
                    toxics=toxics,
                    clock=clock,
                )
                bound, scrape = ports["dispatcher"], ports["metrics"]
                saved = token_path(admin.port)
                write_token(saved, secret)
                stack.callback(saved.unlink, missing_ok=True)
                pace = f", {speed:g}x real time" if speed != 1.0 else ""
                announce(
                    f"dispatcher 127.0.0.1:{bound} (design {tier.design.name}, hsm {hsm}{pace})"
                )
                for name, node_port in server.node_ports.items():
                    announce(f"{name:<10} 127.0.0.1:{node_port}")
                announce(f"metrics    http://127.0.0.1:{scrape}/metrics")
                announce(f"token      {secret} (in {saved}, for relaysim fault)")
                announce(f"admin      http://127.0.0.1:{admin.port}/faults")
                if toxics:
                    announce(f"toxics     http://127.0.0.1:{admin.port}/proxies")
                log.info(
                    "serve.started",
                    port=bound,
                    metrics_port=scrape,
                    admin_port=admin.port,
                    drain_s=server.drain / speed,
                    speed=speed,
                )
                nursery.start_soon(_signals, signals, server, log)
                await server.stopped.wait()
                nursery.cancel_scope.cancel()
        stats = server.stats
        log.info(
            "serve.stopped",
            requests=stats.requests,
            replies=stats.replies,
            undelivered=stats.undelivered,
            refused_stopping=stats.rejected[ErrorCode.SHUTTING_DOWN.name],
            cut=stats.cut,
            aborted=stats.aborted,
            in_flight=len(tier.ledger.still_open),
            outcomes={o.value: tier.ledger.total.count(o) for o in OUTCOMES},
        )
    return server


async def start(
    nursery: trio.Nursery,
    scenario: Scenario,
    driver: TrioDriver,
    secret: str,
    *,
    speed: float = 1.0,
    drain: float | None = None,
    lane: Pkcs11Hsm | None = None,
    ports: tuple[int, int, int] = (0, 0, 0),
    network: Network = REAL,
    toxics: bool = False,
    clock: ScenarioClock | None = None,
) -> tuple[RelayServer, Admin, dict[str, int]]:
    """Serve `driver`'s tier for `scenario` in `nursery` on `network`: the server
    (dispatcher and relay ports), `/metrics` and the admin endpoint (token
    `secret`), on `ports` (dispatcher, metrics, admin; 0: any). The server, the
    admin, and every port by name (dispatcher, relay1..., metrics, admin). The one
    wiring of `relaysim serve` and of the simulated network's runs.

    The admin endpoint's Toxiproxy routes hold the toxics on the dispatcher and
    relay ports: on a simulated network, its own; on real sockets with `toxics`,
    those of the in-process proxy every connection then passes through. `clock`
    names the server's instants (default: the scenario's day from its opening)."""
    about = {"scenario": scenario.name, "seed": scenario.seed, "speed": speed}
    table: SimNetwork | None = None
    serving = network
    if toxics:
        proxy = ToxicNetwork(nursery, scenario.seed, second=speed, real=network)
        serving, table = proxy, proxy.sim
    elif isinstance(network, SimHost):
        table = network.net
    clock = clock or ScenarioClock.of(scenario, speed)
    server = RelayServer(driver.tier, driver, limits(scenario, drain, speed), about, serving, clock)
    admin = Admin(driver, secret, scale=speed)
    dispatcher, metrics_port, admin_port = ports
    bound = await nursery.start(server.serve, dispatcher)
    scrape = await nursery.start(
        functools.partial(serve_metrics, scale=speed, network=network),
        registry_for(server, lane),
        metrics_port,
    )
    await nursery.start(
        functools.partial(serve_admin, scale=speed, network=network), admin, admin_port
    )
    named = {"dispatcher": bound, **server.node_ports, "metrics": scrape, "admin": admin.port}
    if table is not None:
        proxied = {"dispatcher": bound, **server.node_ports}
        admin.proxies = Proxies(table, {name: (HOST, p) for name, p in proxied.items()})
    return server, admin, named


async def _signals(signals: AsyncIterator[int], server: RelayServer, log: LogSink) -> None:
    """The first signal stops the server gracefully; a second stops it at once."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if not server.stopping:
            drain = server.drain / server.limits.scale  # real seconds
            log.info("serve.stopping", signal=name, in_flight=server.in_flight, drain_s=drain)
            server.stop()
        else:
            log.info("serve.cut", signal=name, cut=server.in_flight)
            server.abort()
            return
