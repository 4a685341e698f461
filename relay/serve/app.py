"""`relaysim serve`'s composition root: the scenario's tier, its HSM (simulated or
the SoftHSM2 token), the server, `/metrics` and the admin endpoint, wired together
and run until a signal stops them. The parts know nothing of each other."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from typing import Literal

import trio

from hsm_adapter.lane import Pkcs11Hsm, open_pkcs11, unwrap_group
from hsm_adapter.token import TokenConfig
from relay.core.ledger import Ledger
from relay.core.tier import LogSink
from relay.engines.trio import (
    REAL_CLOCK_RESOLUTION,
    DeviceServices,
    Services,
    SimulatedServices,
    TrioDriver,
)
from relay.scenario.build import build
from relay.scenario.schema import Scenario
from relay.serve.admin import Admin, serve_admin
from relay.serve.metrics import BUCKETS, registry_for, serve_metrics
from relay.serve.server import RelayServer, ServerStats


async def run(
    scenario: Scenario,
    *,
    hsm: Literal["simulated", "softhsm"] = "simulated",
    port: int = 0,
    metrics_port: int = 0,
    admin_port: int = 0,
    drain: float = 10.0,
    log: LogSink,
    announce: Callable[[str], None],
    token: TokenConfig | None = None,
) -> ServerStats:
    """`relaysim serve`: the scenario's tier on loopback until SIGINT or SIGTERM.

    `announce` gets one line per address (dispatcher, metrics, admin). Returns the server's
    statistics once it has stopped accepting and drained.
    """
    try:
        return await _run(
            scenario, hsm, port, metrics_port, admin_port, drain, log, announce, token
        )
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None


async def _run(
    scenario: Scenario,
    hsm: Literal["simulated", "softhsm"],
    port: int,
    metrics_port: int,
    admin_port: int,
    drain: float,
    log: LogSink,
    announce: Callable[[str], None],
    token: TokenConfig | None,
) -> ServerStats:
    # Latencies into a bounded histogram: a server may answer requests for weeks.
    tier = build(scenario, log, Ledger(latency_bounds=BUCKETS)).tier
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
        driver = TrioDriver(tier, services=services, resolution=REAL_CLOCK_RESOLUTION)
        server = RelayServer(tier, driver, drain=drain)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(server.serve, port)
                scrape = await nursery.start(
                    serve_metrics, registry_for(server, lane), metrics_port
                )
                admin = await nursery.start(serve_admin, Admin(driver), admin_port)
                announce(f"dispatcher 127.0.0.1:{bound} (design {tier.design.name}, hsm {hsm})")
                for name, node_port in server.node_ports.items():
                    announce(f"{name:<10} 127.0.0.1:{node_port}")
                announce(f"metrics    http://127.0.0.1:{scrape}/metrics")
                announce(f"admin      http://127.0.0.1:{admin}/faults")
                log.info("serve.started", port=bound, metrics_port=scrape, admin_port=admin)
                async for signum in signals:
                    log.info("serve.stopping", signal=signal.Signals(signum).name)
                    server.stop()
                    break
                await server.stopped.wait()
                nursery.cancel_scope.cancel()
        log.info(
            "serve.stopped",
            requests=server.stats.requests,
            replies=server.stats.replies,
            in_flight=len(tier.ledger.still_open),
        )
    return server.stats
