"""The core's own parameters: plain frozen values, built from a validated scenario
by `relay.scenario.build` (or by hand, in tests). The core reads nothing else: not
the scenario schema, not YAML, not the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from relay.core.design import Design, preset
from relay.core.events import Event
from relay.core.rng import Duration

Policy = Literal["round_robin", "least_connections"]


@dataclass(frozen=True, slots=True)
class RelaysParams:
    """The relay servers: how many at the start, their limits and timers."""

    count: int = 4
    max_connections: int = 64
    cores: int = 8
    timeout_s: float = 30.0
    timer_resolution_s: float = 0.015625


@dataclass(frozen=True, slots=True)
class HsmParams:
    """Each node's HSM: service time (ms), reply interrupt and per-call deadline (s)."""

    service_ms: Duration = Duration("lognormal", 8.0, 0.3)
    interrupt_s: float = 0.0002
    deadline_s: float = 2.0


@dataclass(frozen=True, slots=True)
class BackendParams:
    """The backend: service time (ms), thread names and their log, memory (docs/backend.md)."""

    service_ms: Duration = Duration("lognormal", 1500.0, 1.0)
    base_chars: int = 24
    growth_chars: float = 0.0
    reset_pause_s: float = 300.0
    log_s_per_char: float = 0.0
    memory_mb: float = 512.0
    memory_mb_raised: float = 2048.0
    request_mb: float = 0.0


@dataclass(frozen=True, slots=True)
class MonitorParams:
    """The hardware-monitoring agent on each node."""

    enabled: bool = True
    period_s: float = 10.0
    handling_s: float = 0.002
    phase_s: float | None = None  # the first probe's offset; None: drawn per node


@dataclass(frozen=True, slots=True)
class CountersParams:
    """The municipal counters: their operations, retries and chip-writing share."""

    messages: int = 1  # upstream messages per counter operation
    step_think_s: Duration = Duration("exponential", 60.0)  # between two of its messages
    max_retries: int = 3
    max_resends: int = 20
    retry_think_s: Duration = Duration("exponential", 60.0)
    retry_on: frozenset[str] = frozenset({"overflow", "timeout", "error"})
    chip_write_share: float = 0.0

    def retries(self, outcome: str, attempt: int) -> bool:
        """Whether a counter user tries an operation (one that wrote no chip) again
        after it ended with `outcome` on try `attempt` (0: the first): the rule of
        the replays' counters (`RelayTier`) and of `relaysim load`'s alike."""
        return outcome in self.retry_on and attempt < self.max_retries


@dataclass(frozen=True, slots=True)
class RecoveryParams:
    """How operators bring a failed node back when no supervisor does (legacy)."""

    operators: bool = True
    detection_min: Duration = Duration("uniform", 50.0, spread=0.8)
    restart_min: float = 5.0
    standby_from: float | None = None
    standby_detection_min: Duration = Duration("uniform", 3.0, spread=0.6)


@dataclass(frozen=True, slots=True)
class TierParams:
    """Everything the core needs for one run."""

    seed: int = 1
    design: Design = field(default_factory=lambda: preset("fixed"))
    relays: RelaysParams = RelaysParams()
    policy: Policy = "least_connections"
    health_check_s: float = 5.0
    hsm: HsmParams = HsmParams()
    backend: BackendParams = BackendParams()
    monitor: MonitorParams = MonitorParams()
    counters: CountersParams = CountersParams()
    recovery: RecoveryParams = RecoveryParams()
    drain_s: float = 900.0
    events: tuple[Event, ...] = ()  # scheduled operator actions and faults, in order
