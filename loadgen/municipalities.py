"""The ~1,741 municipalities and their community servers (CS).

Sizes are heavy-tailed (incident-2016.md, load model: 127 million residents, mean
about 73,000, median near 25,000): the named large cities at their real sizes, and a
body of municipalities at evenly spaced quantiles of a lognormal whose median and
mean are the scenario's, clipped to the smallest island and kept below the named
cities. Quantiles, not random draws: the country is the same every day, so a run's
seed varies the day (arrivals, service times), not the country; random draws made
the overflow count of 29 March swing by 12% from seed to seed through the few
largest municipalities alone (docs/calibration.md).

Each CS gets a simultaneous-connection cap on each hop the record names: towards
the relay tier (CS-to-relay) and, where the scenario sets one, from its terminals
(terminal-to-CS). A cap grows with the municipality's size up to a maximum, unless
the scenario overrides it by name (the raised limits of February and March 2016).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol


class PopulationSpec(Protocol):
    """Municipality sizes as the scenario states them (`load.population`)."""

    @property
    def count(self) -> int: ...
    @property
    def median(self) -> float: ...
    @property
    def mean(self) -> float: ...
    @property
    def minimum(self) -> float: ...
    @property
    def maximum(self) -> float: ...
    @property
    def named(self) -> Mapping[str, int]: ...


class RaiseSpec(Protocol):
    """Limits raised from a size on (`load.cs_connections.raise`)."""

    @property
    def from_residents(self) -> int: ...
    @property
    def factor(self) -> float: ...


class CapRule(Protocol):
    """The CS-to-relay limit formula (`load.cs_connections`)."""

    @property
    def base(self) -> int: ...
    @property
    def per_100k(self) -> float: ...
    @property
    def maximum(self) -> int: ...
    @property
    def overrides(self) -> Mapping[str, int]: ...
    @property
    def raise_(self) -> RaiseSpec | None: ...


class TerminalLimits(Protocol):
    """Terminal-to-CS limits by name (`load.terminal_connections`)."""

    @property
    def overrides(self) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class Municipality:
    """One municipality and its CS."""

    id: int
    name: str
    population: int
    cs_cap: int  # CS-to-relay simultaneous connections
    terminal_cap: int | None = None  # terminal-to-CS; None: no limit on that hop


def cs_cap(population: int, cfg: CapRule, name: str = "") -> int:
    """The CS's CS-to-relay limit: base plus a share per 100k residents, at most
    `maximum`, raised for the large municipalities; an override by name wins."""
    if name in cfg.overrides:
        return cfg.overrides[name]
    cap = min(cfg.maximum, cfg.base + math.floor(cfg.per_100k * population / 100_000))
    up = cfg.raise_
    if up is not None and population >= up.from_residents:
        cap = math.floor(cap * up.factor)
    return cap


def build(
    pop: PopulationSpec,
    caps: CapRule,
    terminal: TerminalLimits | None = None,
) -> list[Municipality]:
    """All municipalities: the named cities first, then the body, smallest first.

    `caps` gives each CS's CS-to-relay limit, `terminal` its terminal-to-CS limit
    (by name; None where not set)."""
    sigma = math.sqrt(2.0 * math.log(pop.mean / pop.median))
    mu = math.log(pop.median)
    sizes = list(pop.named.items())
    body = pop.count - len(sizes)
    top = min([pop.maximum, *pop.named.values()])  # the named cities are the largest
    normal = NormalDist()
    for k in range(body):
        z = normal.inv_cdf((k + 0.5) / body)
        size = round(min(top, max(pop.minimum, math.exp(mu + sigma * z))))
        sizes.append((f"m{len(sizes):04d}", size))
    named = pop.named
    limits = terminal.overrides if terminal is not None else {}
    return [
        Municipality(
            i,
            name,
            size,
            cs_cap(size, caps, name if name in named else ""),
            limits.get(name) if name in named else None,
        )
        for i, (name, size) in enumerate(sizes)
    ]
