"""The builder: a validated scenario into the core's own parameters, and a tier.

The one place that knows both the scenario schema and the core: the core
(`relay.core`) takes `TierParams`, plain frozen values in its own units, and never
sees a pydantic model, a YAML file or a command-line option.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from loadgen import arrivals, calendar, municipalities
from relay.core import events as core
from relay.core.ledger import Ledger
from relay.core.params import (
    BackendParams,
    CountersParams,
    HsmParams,
    MonitorParams,
    RecoveryParams,
    RelaysParams,
    TierParams,
)
from relay.core.rng import Streams
from relay.core.tier import LogSink, RelayTier
from relay.scenario.schema import FaultEvent, OperatorEvent, Scenario


def event(entry: OperatorEvent | FaultEvent) -> core.Event:
    """One scheduled entry of a scenario as the core's event."""
    if isinstance(entry, OperatorEvent):
        return core.OperatorEvent(entry.at, entry.action, entry.node)
    return core.FaultEvent(entry.at, entry.kind, entry.node, entry.factor)


def tier_params(s: Scenario) -> TierParams:
    """The core's parameters for scenario `s` (units converted: ms to s where the
    core wants seconds)."""
    r, b, names, load = s.relays, s.backend, s.backend.thread_names, s.load
    return TierParams(
        seed=s.seed,
        design=s.resolved_design(),
        relays=RelaysParams(
            count=r.count,
            max_connections=r.max_connections,
            cores=r.cores,
            timeout_s=r.timeout_s,
            timer_resolution_s=r.timer_resolution_ms / 1000.0,
        ),
        policy=s.dispatcher.policy,
        health_check_s=s.dispatcher.health_check_s,
        hsm=HsmParams(
            service_ms=s.hsm.service_ms.duration(),
            interrupt_s=s.hsm.interrupt_ms / 1000.0,
            deadline_s=s.hsm.deadline_ms / 1000.0,
        ),
        backend=BackendParams(
            service_ms=b.service_ms.duration(),
            base_chars=names.base_chars,
            growth_chars=names.growth_chars,
            reset_pause_s=names.reset_pause_s,
            log_s_per_char=names.log_us_per_char * 1e-6,
            memory_mb=b.memory_mb,
            memory_mb_raised=b.memory_mb_raised,
            request_mb=b.request_mb,
        ),
        monitor=MonitorParams(
            enabled=s.monitor.enabled,
            period_s=s.monitor.period_s,
            handling_s=s.monitor.handling_ms / 1000.0,
        ),
        counters=CountersParams(
            messages=load.operation.messages,
            step_think_s=load.operation.think_s.duration(),
            max_retries=load.retry.max_retries,
            max_resends=load.retry.max_resends,
            retry_think_s=load.retry.think_s.duration(),
            retry_on=frozenset(load.retry.outcomes),
            chip_write_share=load.chip_write_share,
        ),
        recovery=RecoveryParams(
            operators=s.recovery.operators,
            detection_min=s.recovery.detection_min.duration(),
            restart_min=s.recovery.restart_min,
            standby_from=s.recovery.standby_from,
            standby_detection_min=s.recovery.standby_detection_min.duration(),
        ),
        drain_s=s.run.drain_s,
        events=tuple(event(e) for e in s.scheduled()),
    )


def new_tier(
    s: Scenario,
    cs_caps: Sequence[int],
    streams: Streams | None = None,
    log: LogSink | None = None,
    terminal_caps: Sequence[int | None] | None = None,
    ledger: Ledger | None = None,
) -> RelayTier:
    """A tier for scenario `s` with the given per-CS limits (tests and the hunt give
    their own; `build` takes them from the scenario's municipalities)."""
    return RelayTier(
        tier_params(s),
        cs_caps,
        streams or Streams(s.seed),
        log,
        terminal_caps=terminal_caps,
        ledger=ledger,
    )


@dataclass(frozen=True, slots=True)
class Built:
    """A scenario made runnable: the tier, its first attempts, its municipalities."""

    tier: RelayTier
    arrivals: Iterator[tuple[float, int]]
    municipalities: list[municipalities.Municipality]


def build(s: Scenario, log: LogSink | None = None, ledger: Ledger | None = None) -> Built:
    """The tier for scenario `s` (recording into `ledger`, if given), its
    municipalities and the stream of its first attempts (counter operations, in
    time order)."""
    streams = Streams(s.seed)
    load = s.load
    munis = municipalities.build(load.population, load.cs_connections, load.terminal_connections)
    tier = new_tier(
        s,
        [m.cs_cap for m in munis],
        streams,
        log,
        terminal_caps=[m.terminal_cap for m in munis],
        ledger=ledger,
    )
    stream = arrivals.over_days(
        calendar.days(s), munis, streams.stream("arrivals"), load.operation.messages
    )
    return Built(tier, stream, munis)
