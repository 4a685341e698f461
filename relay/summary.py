"""The run summary: one JSON document (schema relaysim.summary/2) and its table.

Everything a run reports is derived here from the ledger and the nodes, so every
driver and engine produces the same document for the same run.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from relay.ledger import BUCKET_S, Ledger, Tally
from relay.node import Node

#: /2 (from /1): adds chip_operations, inconsistent, duplicates_applied, deduplicated.
SCHEMA = "relaysim.summary/2"


def percentiles(
    values: npt.NDArray[np.float64], ps: Sequence[float], *, scratch: bool = False
) -> list[float]:
    """Nearest-rank percentiles `ps` (0..100) of unordered `values`; NaN if empty.

    A partial sort around the ranks wanted, not a full sort: a 67-day replay keeps
    tens of millions of latencies. With `scratch` the caller gives up `values`, which
    is reordered in place instead of copied.
    """
    n = len(values)
    if not n:
        return [math.nan] * len(ps)
    ranks = [max(1, math.ceil(p / 100.0 * n)) - 1 for p in ps]
    if scratch:
        values.partition(ranks)
        part = values
    else:
        part = np.partition(values, ranks)
    return [float(part[r]) for r in ranks]


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000.0, 3)


#: The summary's name for the request count, then for each outcome's, in the order
#: of a Tally's counts (relay.ledger.OUTCOMES).
_OUTCOME_KEYS = ("requests", "completed", "overflows", "timeouts", "errors")


def _outcomes(t: Tally) -> dict[str, int]:
    return dict(zip(_OUTCOME_KEYS, t.counts, strict=True))


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


def _days(
    timeline: list[dict[str, Any]], rows: list[dict[str, Any]], first: dt.date
) -> list[dict[str, Any]]:
    """Per calendar day: outcomes of the requests that arrived that day, and the
    crashes and hangs that began on it."""
    out: dict[int, dict[str, Any]] = {}

    def day(i: int) -> dict[str, Any]:
        if i not in out:
            date = (first + dt.timedelta(days=i)).isoformat()
            out[i] = {"date": date, **dict.fromkeys(_OUTCOME_KEYS, 0), "crashes": 0, "hangs": 0}
        return out[i]

    for b in timeline:
        d = day(int(b["t"] // 86_400))
        for k in _OUTCOME_KEYS:
            d[k] += b[k]
    for e in rows:
        day(int(e["t"] // 86_400))["crashes" if e["kind"] == "crash" else "hangs"] += 1
    return [out[i] for i in sorted(out)]


def build(
    *,
    scenario: str,
    date: dt.date,
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
    """The summary document of a finished run; times count from `date`'s midnight."""
    arrays = [np.frombuffer(b, dtype=np.float64) for b in ledger.latencies.values() if len(b)]
    all_lat = np.concatenate(arrays) if arrays else np.empty(0)
    timeline = []
    for b, tally in sorted(ledger.buckets.items()):
        p50, p99 = percentiles(np.frombuffer(ledger.latencies[b], dtype=np.float64), (50, 99))
        timeline.append(
            {"t": int(b * BUCKET_S), **_outcomes(tally), "p50_ms": _ms(p50), "p99_ms": _ms(p99)}
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
    p50, p90, p99, top = percentiles(all_lat, (50, 90, 99, 100), scratch=True)
    outages = events(nodes, sim_end)
    return {
        "schema": SCHEMA,
        "scenario": scenario,
        "date": date.isoformat(),
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
        "chip_operations": len(ledger.chip_operations),
        "inconsistent": ledger.inconsistent,
        "duplicates_applied": ledger.duplicates_applied,
        "deduplicated": ledger.deduplicated,
        "latency_ms": {"p50": _ms(p50), "p90": _ms(p90), "p99": _ms(p99), "max": _ms(top)},
        "sim_seconds": round(sim_end - sim_start, 3),
        "wall_seconds": round(wall_seconds, 3),
        "violations": list(violations),
        "events": outages,
        "nodes": node_rows,
        "days": _days(timeline, outages, date),
        "timeline": timeline,
    }
