"""The worlds hypothesis draws: near the January races (`Case`, `cases`), and under
congestion for the lost card updates (`World`, `worlds`). Each runs through the
one harness, `relay.testing.run_world`, on either engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import strategies as st

from relay.core.request import Request
from relay.core.tier import Flow, RelayTier
from relay.engines.common import Engine
from relay.net.toxics import DIRECTIONS
from relay.scenario.schema import Scenario
from relay.testing import merge, run_world

# The liveness bound: after the last arrival every request has its outcome within
# its deadline (the step timer) plus this, or the run is cut and the request lost.
DRAIN_S = 120.0
MIN_SHARE = 0.25  # of examples that must reach each window


@dataclass(frozen=True)
class Case:
    """One drawn world: load, timings, probes and the run's seed."""

    arrivals: list[tuple[float, int]]
    timeout_s: float
    hsm_ms: float
    backend_ms: float
    cores: int
    period_s: float
    handling_ms: float
    phase_s: float
    seed: int
    monitor: bool = True

    def overrides(self) -> dict[str, Any]:
        """The scenario keys this world sets."""
        return {
            "seed": self.seed,
            "relays": {"count": 2, "cores": self.cores, "timeout_s": self.timeout_s},
            "dispatcher": {"policy": "round_robin"},
            "hsm": {"service_ms": {"dist": "constant", "mean": self.hsm_ms}},
            "backend": {"service_ms": {"dist": "constant", "mean": self.backend_ms}},
            "monitor": {
                "enabled": self.monitor,
                "period_s": self.period_s,
                "handling_ms": self.handling_ms,
            },
            "load": {"retry": {"max_retries": 1, "think_s": {"dist": "constant", "mean": 1}}},
            "recovery": {"detection_min": {"dist": "constant", "mean": 1}, "restart_min": 0},
            "run": {"drain_s": DRAIN_S},
        }


@st.composite
def cases(draw: st.DrawFn, focus: str = "both", monitor: bool = True) -> Case:
    """Worlds near both windows; focus "timer" or "probe" keeps only that one open."""
    timeout_s = draw(st.sampled_from([0.5, 1.0, 2.0]))
    hsm_ms = draw(st.sampled_from([1.0, 5.0, 10.0]))
    # End the step `slack` before the timer: within one 15.625 ms tick often, and
    # exactly on the tick boundary sometimes (slack 0: reset and expiry coincide).
    slack_ms = 200.0 if focus == "probe" else draw(st.floats(min_value=0.0, max_value=40.0))
    backend_ms = max(0.1, timeout_s * 1000 - hsm_ms - slack_ms)
    period_s = draw(st.sampled_from([0.005, 0.05, 0.5]))
    handling_ms = draw(st.floats(min_value=0.5, max_value=period_s * 1000))
    # Arrival grids that are not multiples of the tick, with a drawn offset, so
    # expiries fall anywhere inside their tick (a tick-aligned expiry can never
    # share its tick with an earlier reset).
    grid = draw(st.sampled_from([0.005, 0.013, 0.37]))
    offset = draw(st.floats(min_value=0.0, max_value=0.015625))
    steps = draw(st.lists(st.integers(0, 40), min_size=1, max_size=25))
    arrivals = sorted((10.0 + offset + grid * k, i % 4) for i, k in enumerate(steps))
    return Case(
        arrivals=arrivals,
        timeout_s=timeout_s,
        hsm_ms=hsm_ms,
        backend_ms=backend_ms,
        cores=draw(st.integers(1, 2)),
        period_s=period_s,
        handling_ms=handling_ms,
        phase_s=draw(st.floats(min_value=0.0, max_value=period_s)),
        seed=draw(st.integers(0, 2**32 - 1)),
        monitor=monitor and focus != "timer",
    )


#: The scenario keys a race world draws (`Case.overrides`); the rest come from the
#: scenario it runs on top of (switches, the OS tick, node limits, the HSM call's
#: deadline, the backend's timeout and memory, the distributor's checks).
DRAWN = (
    "seed",
    "relays.count",
    "relays.cores",
    "relays.timeout_s",
    "dispatcher.policy",
    "hsm.service_ms",
    "backend.service_ms",
    "monitor",
    "load.retry",
    "recovery.detection_min",
    "recovery.restart_min",
    "run.drain_s",
)


def world_document(
    case: Case, design: str, base: Scenario | None = None, pins: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The scenario of race world `case` on `design`: `base`'s settings (its own
    operators and faults left out), what the world drew, then `pins` over both."""
    doc: dict[str, Any] = {"name": "hunt", "load": {"requests": len(case.arrivals)}}
    if base is not None:
        doc = base.model_dump(mode="json", exclude={"operators", "faults"})
    return merge(merge(doc, {**case.overrides(), "design": design}), pins or {})


def run_case(
    case: Case,
    design: str,
    base: Scenario | None = None,
    engine: Engine = "trio",
    pins: dict[str, Any] | None = None,
    observe: Callable[[RelayTier], Callable[[Request, Flow], Flow]] | None = None,
) -> RelayTier:
    """Run one race world on `engine`, on top of `base` (its other settings), with
    `pins` (nested keys the user fixed: `hunt --set`) laid over what it drew;
    `observe` records its flows (the fast engine: `relay.plan.timeline`)."""
    doc = world_document(case, design, base, pins)
    return run_world(
        doc,
        case.arrivals,
        cs_caps=[100] * 4,
        engine=engine,
        tweak=lambda p: replace(p, monitor=replace(p.monitor, phase_s=case.phase_s)),
        observe=observe,
    )


@dataclass(frozen=True)
class ServerWorld:
    """A race world (`Case`) served by the real server to the real load client over
    the simulated network, with what the network and other clients do meanwhile:
    toxics on the dispatcher's port (Toxiproxy's JSON), link controls between the
    load's host and the server's (instant, hold or partition, seconds until the
    repair), a stop signal's instant, and hostile clients by name
    (`relay.serve.rogues`)."""

    case: Case
    toxics: list[dict[str, Any]] = field(default_factory=list)
    controls: list[tuple[float, str, float]] = field(default_factory=list)
    stop_at: float | None = None
    rogues: list[str] = field(default_factory=list)

    @property
    def perturbed(self) -> bool:
        """Whether the network or a stop may cost the load's requests their replies."""
        return bool(self.toxics or self.controls) or self.stop_at is not None


#: Each toxic kind's attributes as a hunt draws them: around what hurts a relay.
TOXIC_DRAWS: dict[str, dict[str, st.SearchStrategy[int]]] = {
    "latency": {"latency": st.integers(0, 50), "jitter": st.integers(0, 20)},
    "bandwidth": {"rate": st.integers(1, 1000)},
    "slicer": {
        "average_size": st.integers(1, 64),
        "size_variation": st.integers(0, 32),
        "delay": st.integers(0, 2000),
    },
    "timeout": {"timeout": st.integers(0, 3000)},
    "reset_peer": {"timeout": st.integers(0, 3000)},
    "slow_close": {"delay": st.integers(0, 3000)},
    "limit_data": {"bytes": st.integers(0, 4000)},
}


@st.composite
def toxics(draw: st.DrawFn) -> dict[str, Any]:
    """One toxic in Toxiproxy's JSON: a kind, a direction, a toxicity, attributes."""
    kind = draw(st.sampled_from(sorted(TOXIC_DRAWS)))
    attributes = {name: draw(values) for name, values in TOXIC_DRAWS[kind].items()}
    return {
        "type": kind,
        "stream": draw(st.sampled_from(DIRECTIONS)),
        "toxicity": draw(st.sampled_from([1.0, 0.5, 0.1])),
        "attributes": attributes,
    }


@st.composite
def server_worlds(
    draw: st.DrawFn, focus: str = "both", monitor: bool = True, rogues: Sequence[str] = ()
) -> ServerWorld:
    """A race world (`cases`) with, sometimes, toxics, a held or partitioned link and
    its repair, a stop at a drawn instant, and hostile clients from `rogues`."""
    case = draw(cases(focus=focus, monitor=monitor))
    first, last = case.arrivals[0][0], case.arrivals[-1][0]
    window = st.floats(min_value=first, max_value=last + 1.0)
    controls = draw(
        st.lists(
            st.tuples(window, st.sampled_from(["hold", "partition"]), st.floats(0.01, 5.0)),
            max_size=1,
        )
    )
    drawn_toxics = draw(st.lists(toxics(), max_size=2))
    names = [f"{t['type']}_{t['stream']}_{i}" for i, t in enumerate(drawn_toxics)]
    return ServerWorld(
        case=case,
        toxics=[{**t, "name": n} for t, n in zip(drawn_toxics, names, strict=True)],
        controls=controls,
        stop_at=draw(st.one_of(st.none(), window)),
        rogues=draw(st.lists(st.sampled_from(list(rogues)), max_size=2, unique=True))
        if rogues
        else [],
    )


@dataclass(frozen=True)
class World:
    """One drawn world of chip-writing operations under congestion."""

    arrivals: list[tuple[float, int]]
    cs_cap: int
    node_limit: int
    backend_s: float
    timeout_s: float
    crashes: list[tuple[float, int]]
    seed: int


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """Congested worlds: caps and node limits of a few, backend times around the
    relay's timer (some answers after the relay gave up), crashes."""
    timeout_s = draw(st.sampled_from([1.0, 2.0]))
    n = draw(st.integers(1, 30))
    times = sorted(draw(st.lists(st.floats(0.0, 20.0), min_size=n, max_size=n)))
    return World(
        arrivals=[(10.0 + t, draw(st.integers(0, 3))) for t in times],
        cs_cap=draw(st.integers(1, 3)),
        node_limit=draw(st.integers(1, 4)),
        # Around the timer: some answers come in time, some after the relay gave up
        # (the backend applied them all the same).
        backend_s=draw(st.floats(0.1, 2.0 * timeout_s)),
        timeout_s=timeout_s,
        crashes=draw(st.lists(st.tuples(st.floats(10.0, 40.0), st.integers(1, 2)), max_size=3)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def run_updates(
    world: World, design: str, engine: Engine, switches: dict[str, bool] | None = None
) -> RelayTier:
    """Run update world `world` on `design` (with `switches` overridden) on `engine`."""
    doc: dict[str, Any] = {
        "name": "updates",
        "design": design,
        "switches": switches or {},
        "seed": world.seed,
        "relays": {"count": 2, "timeout_s": world.timeout_s, "max_connections": world.node_limit},
        "hsm": {"service_ms": {"dist": "constant", "mean": 5}},
        "backend": {"service_ms": {"dist": "constant", "mean": world.backend_s * 1000}},
        "monitor": {"enabled": False},  # the January races are tested elsewhere
        "load": {
            "requests": len(world.arrivals),
            "chip_write_share": 1.0,
            "retry": {"think_s": {"dist": "constant", "mean": 5}, "max_resends": 50},
        },
        "recovery": {"detection_min": {"dist": "constant", "mean": 1}, "restart_min": 0},
        "faults": [{"at": at, "kind": "crash", "node": node} for at, node in world.crashes],
        "run": {"drain_s": 3600},
    }
    return run_world(doc, world.arrivals, cs_caps=[world.cs_cap] * 4, engine=engine)
