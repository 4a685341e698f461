"""relaysim's pytest plugin: fixtures for your own test suites (docs/ci.md).

Installing relaysim registers it (the `pytest11` entry point `relaysim`), so any
pytest run in that environment has these fixtures, with nothing to import:

- `relaysim_scenario(source, overrides=None)`: a validated `relay.Scenario`
  (`relay.load_scenario`);
- `relaysim_replay(source, overrides=None, seed=None, engine="fast")`: a replay's
  `relay.Result` (`relay.replay`), whose `command` replays it from the shell;
- `relaysim_server(source, overrides=None)`: an async context manager serving the
  scenario's tier, the real `RelayServer` with its admin endpoint and `/metrics`,
  on the simulated network (`relay.serve.simnet`: in memory, under the test's
  virtual clock, so a test needs pytest-trio and its `autojump_clock`); it gives a
  `Served` with an `admin` client and a `load` helper.

A relative `source` path is read from pytest's root folder (`rootdir`), wherever
pytest runs from. The assertions and strategies to use with them are in
`relay.testing.assertions` and `relay.testing.strategies`. Everything heavy is
imported when a fixture is first used, so the plugin costs other runs nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from relay.api import Engine, Overrides, Result, ScenarioLike
    from relay.core.summary import Summary
    from relay.net.sim import SimNetwork
    from relay.scenario.schema import Scenario
    from relay.serve.server import RelayServer

__all__ = ["AdminClient", "Served", "relaysim_replay", "relaysim_scenario", "relaysim_server"]


def _located(config: pytest.Config, source: ScenarioLike) -> ScenarioLike:
    """`source`, a relative path read from pytest's root folder, as a path from the
    current folder (so that a replay command printed runs from where pytest ran)."""
    if not isinstance(source, str | os.PathLike) or Path(source).is_absolute():
        return source
    return os.path.relpath(config.rootpath / source)


# The fixtures are factories that keep nothing between calls: one per session, so
# that hypothesis may call them from every example of a @given test.
@pytest.fixture(scope="session")
def relaysim_scenario(pytestconfig: pytest.Config) -> Callable[..., Scenario]:
    """A factory: `relaysim_scenario(source, overrides=None)` is the validated
    scenario of a YAML file (from the root folder), a mapping or a scenario, with
    `overrides` (`{"relays.count": 2}`) applied; bad input raises `relay.ConfigError`."""
    from relay import api

    def load(source: ScenarioLike, overrides: Overrides = None) -> Scenario:
        return api.load_scenario(_located(pytestconfig, source), overrides)

    return load


@pytest.fixture(scope="session")
def relaysim_replay(pytestconfig: pytest.Config) -> Callable[..., Result]:
    """A factory: `relaysim_replay(source, overrides=None, seed=None, engine="fast")`
    replays a scenario as `relay.replay` does and returns its `relay.Result` (with
    `command`, the `relaysim replay` line, when `source` is a file)."""
    from relay import api

    def run(
        source: ScenarioLike,
        overrides: Overrides = None,
        *,
        seed: int | None = None,
        engine: Engine = "fast",
    ) -> Result:
        located = _located(pytestconfig, source)
        return api.replay(located, seed=seed, engine=engine, overrides=overrides)

    return run


@dataclass(frozen=True)
class AdminClient:
    """A client of a served tier's admin endpoint, over the simulated network, as
    `relaysim fault` is over loopback (docs/serve.md): each call is one HTTP request
    with the run's token, and a refusal raises AssertionError with its status."""

    net: SimNetwork
    port: int

    async def _call(self, method: str, body: Mapping[str, Any] | None = None) -> Any:
        from relay.serve import simnet

        data = json.dumps(body).encode() if body is not None else b""
        status, answer = await simnet.http(
            self.net, self.port, method, "/faults", data, simnet.ADMIN_TOKEN
        )
        if status != 200:  # raised, not asserted: `python -O` would drop an assert
            raise AssertionError(f"{method} /faults: {status} {answer.decode(errors='replace')}")
        return json.loads(answer)

    async def inject(self, kind: str, node: int | None = None, factor: float | None = None) -> Any:
        """Inject fault `kind` (`relay.serve.admin.KINDS`) on relay `node`, or for
        the backend with `factor`: the endpoint's answer."""
        fault: dict[str, Any] = {"kind": kind}
        fault |= {"node": node} if node is not None else {}
        fault |= {"factor": factor} if factor is not None else {}
        return await self._call("POST", fault)

    async def clear(self) -> Any:
        """Clear every fault still in effect: the endpoint's answer."""
        return await self._call("DELETE")

    async def state(self) -> dict[str, Any]:
        """The tier's state: `faults` still in effect, nodes, and more (GET /faults)."""
        answer: dict[str, Any] = await self._call("GET")
        return answer


@dataclass(frozen=True)
class Served:
    """A scenario's tier being served: the `server` (its tier and ledger: server.tier),
    its `ports` by name (dispatcher, relay1..., metrics, admin), the simulated
    network `net`, the `admin` client, and `load`."""

    scenario: Scenario
    server: RelayServer
    ports: dict[str, int]
    net: SimNetwork
    admin: AdminClient

    async def load(
        self,
        duration: float,
        *,
        rate: float | None = None,
        arrivals: Sequence[tuple[float, int]] | None = None,
        connections: int = 8,
        drain: float = 60.0,
    ) -> Summary:
        """Run `relaysim load` against the dispatcher for `duration` virtual seconds
        (the scenario's day from its opening, a Poisson `rate` per second, or the
        first attempts `arrivals`), over `connections`, waiting up to `drain` for the
        last replies: its `relaysim.summary/3` document (`relaysim load --json`)."""
        from relay.serve import load as loading
        from relay.serve import simnet

        doc, _ = await loading.run(
            self.scenario,
            simnet.SERVER_HOST,
            self.ports["dispatcher"],
            duration=duration,
            rate=rate,
            arrivals=arrivals,
            connections=connections,
            drain=drain,
            network=self.net.host(simnet.CLIENT_HOST),
        )
        return doc


@asynccontextmanager
async def _serving(scenario: Scenario) -> AsyncIterator[Served]:
    """`scenario` served on a simulated network seeded by it, for the block."""
    import trio
    import trio.testing

    from relay.net.sim import SimNetwork
    from relay.serve import simnet
    from relay.serve.clock import VirtualClock

    clock = trio.lowlevel.current_clock()
    virtual = isinstance(clock, VirtualClock) or (
        isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold == 0
    )
    if not virtual:
        # On the real clock every virtual second of the load would take a second.
        pytest.fail(
            f"relaysim_server runs under virtual time: give the test pytest-trio's "
            f"autojump_clock fixture (trio's clock here: {clock!r})",
            pytrace=False,
        )
    simnet.seed_scheduler(scenario.seed)  # one seed decides the run, as in simnet.run
    net = SimNetwork(scenario.seed)
    async with simnet.serving(scenario, net) as (server, ports):
        yield Served(scenario, server, ports, net, AdminClient(net, ports["admin"]))


@pytest.fixture(scope="session")
def relaysim_server(
    relaysim_scenario: Callable[..., Scenario],
) -> Callable[..., AbstractAsyncContextManager[Served]]:
    """A factory: `async with relaysim_server(source, overrides=None) as served:`
    serves the scenario's tier on the simulated network for the block (stopped and
    drained after it); `served.admin.inject("hsm_stall", node=1)`,
    `await served.load(600, rate=5)`. The test needs `autojump_clock`."""

    def serve(
        source: ScenarioLike, overrides: Overrides = None
    ) -> AbstractAsyncContextManager[Served]:
        return _serving(relaysim_scenario(source, overrides))

    return serve
