"""The run summary: one JSON document (schema relaysim.summary/1) and its table.

Everything a run reports is derived here from the ledger and the nodes, so every
driver and engine produces the same document for the same run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from relay.ledger import BUCKET_S, Ledger, Tally
from relay.node import Node
from relay.request import Outcome

SCHEMA = "relaysim.summary/1"


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile `p` (0..100) of an ascending sequence; NaN if empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000.0, 3)


def _outcomes(t: Tally) -> dict[str, int]:
    return {
        "requests": t.requests,
        "completed": t.count(Outcome.COMPLETED),
        "overflows": t.count(Outcome.OVERFLOW),
        "timeouts": t.count(Outcome.TIMEOUT),
        "errors": t.count(Outcome.ERROR),
    }


def events(nodes: Sequence[Node], end: float) -> list[dict[str, Any]]:
    """Every crash and hang of the run in time order: the outage timeline."""
    rows = [
        {
            "t": round(o.start, 3),
            "node": n.name,
            "kind": o.kind,
            "mechanism": o.mechanism,
            "end": None if o.end is None else round(o.end, 3),
            "outage_minutes": round(o.minutes(end), 3),
        }
        for n in nodes
        for o in n.outages
    ]
    return sorted(rows, key=lambda r: (r["t"], r["node"]))


def build(
    *,
    scenario: str,
    design: str,
    switches: dict[str, bool],
    engine: str,
    seed: int,
    ledger: Ledger,
    nodes: Sequence[Node],
    sim_start: float,
    sim_end: float,
    wall_seconds: float,
    violations: Sequence[str] = (),
) -> dict[str, Any]:
    """The summary document of a finished run."""
    all_lat = sorted(x for b in ledger.latencies.values() for x in b)
    timeline = []
    for b, tally in sorted(ledger.buckets.items()):
        lat = sorted(ledger.latencies[b])
        timeline.append(
            {
                "t": int(b * BUCKET_S),
                **_outcomes(tally),
                "p50_ms": _ms(percentile(lat, 50)),
                "p99_ms": _ms(percentile(lat, 99)),
            }
        )
    node_rows = []
    crashes_total = hangs_total = 0
    outage_total = 0.0
    for n in nodes:
        tally = ledger.nodes.get(n.number, Tally())
        crashes = sum(1 for o in n.outages if o.kind == "crash")
        hangs = sum(1 for o in n.outages if o.kind == "hang")
        outage = sum(o.minutes(sim_end) for o in n.outages)
        crashes_total += crashes
        hangs_total += hangs
        outage_total += outage
        node_rows.append(
            {
                "name": n.name,
                **_outcomes(tally),
                "crashes": crashes,
                "hangs": hangs,
                "outage_minutes": round(outage, 3),
                "hsm_calls": n.hsm.calls,
                "race_windows": {
                    "same_tick_resets": n.timer.same_tick_resets,
                    "probe_collisions": n.probe_collisions,
                },
            }
        )
    lost = len(ledger.still_open)
    return {
        "schema": SCHEMA,
        "scenario": scenario,
        "design": design,
        "switches": switches,
        "engine": engine,
        "seed": seed,
        **_outcomes(ledger.total),
        "lost": lost,
        "refusals": dict(sorted(ledger.refusals.items())),
        "crashes": crashes_total,
        "hangs": hangs_total,
        "outage_minutes": round(outage_total, 3),
        "latency_ms": {
            "p50": _ms(percentile(all_lat, 50)),
            "p90": _ms(percentile(all_lat, 90)),
            "p99": _ms(percentile(all_lat, 99)),
            "max": _ms(all_lat[-1] if all_lat else math.nan),
        },
        "sim_seconds": round(sim_end - sim_start, 3),
        "wall_seconds": round(wall_seconds, 3),
        "violations": list(violations),
        "events": events(nodes, sim_end),
        "nodes": node_rows,
        "timeline": timeline,
    }
