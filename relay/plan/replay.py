"""A replay: scenario in, summary out, under virtual time on either engine.

This is where the parts meet: the load generator's municipalities and arrivals, the
relay tier, a driver, the checkers and the summary. The CLI and the tests both call
`replay`; `command` is the one spelling of the `relaysim replay` command that runs
a replay again (printed by `replay`, `check` and the library's `Result`). Engines:
`fast` (the discrete-event loop of `relay.engines.fast`, the default) and `trio`
(one trio task per request under a MockClock, as the property tests and the server
run the core).
"""

from __future__ import annotations

import gc
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from loadgen import calendar
from relay.core import checkers, summary
from relay.core.events import OperatorEvent
from relay.core.tier import LogSink, RelayTier
from relay.engines import fast as driver_fast
from relay.engines import trio as driver_trio
from relay.engines.common import Engine, Progress
from relay.scenario.build import build
from relay.scenario.schema import Scenario

#: The cyclic collector's thresholds during a run: a request's objects (its flow, its
#: effects) die young and without cycles, so the default first threshold (700)
#: would collect every few hundred requests for nothing: 4.5% of a day's run (py-spy).
RUN_GC_THRESHOLDS = (50_000, 50, 100)


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Collect less often for the block, and never walk what exists before it (the
    country, the modules: `gc.freeze`); as before afterwards."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*RUN_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The summary document and the invariant violations found (empty on success)."""

    summary: summary.Summary
    violations: list[checkers.Violation]
    tier: RelayTier


def replay(
    scenario: Scenario,
    *,
    name: str | None = None,
    engine: Engine = "fast",
    log: LogSink | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """Run `scenario` on `engine` and check it; never raises for a failed check.

    `wall_seconds` covers building the load, the run and the checks.
    """
    wall0 = time.perf_counter()
    built = build(scenario, log)
    tier, stream, munis = built.tier, built.arrivals, built.municipalities
    events = tier.params.events
    with quiet_collector():
        if engine == "fast":
            end = driver_fast.run(tier, stream, events, progress=progress)
        else:
            end = driver_trio.run(tier, stream, events, progress=progress)
    violations = checkers.check_run(tier.ledger, tier.nodes)
    wall = time.perf_counter() - wall0
    doc = summary.build(
        scenario=name or scenario.name,
        date=scenario.date,
        design=tier.design.name,
        switches=tier.design.switches(),
        engine=engine,
        seed=scenario.seed,
        ledger=tier.ledger,
        nodes=tier.nodes,
        sim_start=calendar.days(scenario)[0].opens,
        sim_end=end.end,
        wall_seconds=wall,
        violations=[str(v) for v in violations],
        dispatcher=tier.dispatcher,
        towns=[(m.name, m.population) for m in munis],
        backend=tier.backend,
        actions=[e for e in events if isinstance(e, OperatorEvent)],
    )
    return ReplayResult(doc, violations, tier)


def set_text(value: Any) -> str:
    """A `--set` value as the command line writes it (YAML, one line)."""
    text = str(yaml.safe_dump(value, default_flow_style=True, width=10_000)).strip()
    return text.removesuffix("...").strip()  # a plain scalar's document end marker


def command(
    config: str | os.PathLike[str],
    *,
    design: str | None,
    seed: int,
    engine: str,
    sets: Sequence[str] = (),
    expect: Sequence[str] = (),
    json_path: str | os.PathLike[str] | None = None,
) -> str:
    """The `relaysim replay` command (shell-quoted) that runs scenario file `config`
    again: with `sets` (`KEY=VALUE` texts), on `design` (None: the file's), `seed`
    and `engine`, held to the thresholds `expect`, writing `json_path`."""
    parts = ["relaysim", "replay", os.fspath(config)]
    if design is not None:
        parts += ["--design", design]
    parts += ["--seed", str(seed)]
    for text in sets:
        parts += ["--set", text]
    parts += ["--engine", engine]
    for text in expect:
        parts += ["--expect", text]
    if json_path is not None:
        parts += ["--json", os.fspath(json_path)]
    return shlex.join(parts)
