"""A calendar run split into stretches of days over workers, and merged.

A fiscal year is 365 days and a hundred million requests: one process replays it
in minutes; the sweep's executors (a local pool, a Dask cluster) can replay its
stretches at once. `stretches` cuts the calendar into contiguous runs of days at
midnights, each its own scenario: the same file with `date`, `calendar.until` and
the two ends of the volume ramp moved, so every day keeps its kind and volume (the
ramp is linear by calendar day). `merge` puts the stretches' summaries back into
one `relaysim.summary/3`: counts add, days and the timeline follow each other,
pools keep their highest peak, and the latency percentiles come from the
stretches' sketches merged (exactly: bin counts add; `relay.core.sketch`).

What a split cannot carry is the tier's state across a cut: a run with operator
actions or faults (a node added, a crash not yet restarted) is refused. Each
stretch draws from the scenario's seed afresh, so a split run is a replay of the
same calendar with other draws, not the one-process run's draws cut apart: its
figures agree within the seeds' spread, and it is repeatable for a given number
of stretches.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import time
from collections.abc import Sequence
from typing import Any, cast

from loadgen import calendar
from relay.core import summary as summaries
from relay.core.sketch import Sketch
from relay.scenario.schema import ConfigError, Scenario, scenario_from_data

Part = tuple[dict[str, Any], bytes]  # a stretch's summary, and its latencies' sketch


def stretches(scenario: Scenario, n: int) -> list[Scenario]:
    """`scenario`'s calendar cut into `n` stretches of whole days (fewer when it has
    fewer days), each a scenario of its own; ConfigError in one line when it cannot
    be split."""
    days = calendar.days(scenario)
    if scenario.calendar.until is None or n <= 1 or len(days) < 2:
        return [scenario]  # one stretch: nothing to carry across
    if scenario.operators or scenario.faults:
        raise ConfigError(
            f"{scenario.name}: operator actions or faults carry the tier's state across "
            "days: such a run is replayed in one process (no --workers)"
        )
    n = min(n, len(days))
    data = scenario.model_dump(mode="json", by_alias=True)
    first, last = scenario.date, scenario.calendar.until
    top, bottom = scenario.load.requests, scenario.calendar.last_requests
    span = (last - first).days

    def volume(day: dt.date) -> int:  # the weekday volume of `day` on the year's ramp
        end = top if bottom is None else bottom
        return round(top + (end - top) * ((day - first).days / span)) if span else top

    out = []
    for k in range(n):
        a, b = days[k * len(days) // n].date, days[(k + 1) * len(days) // n - 1].date
        part = {**data, "date": a.isoformat(), "name": scenario.name}
        part["calendar"] = {**data["calendar"], "until": b.isoformat(),
                            "last_requests": volume(b)}  # fmt: skip
        part["load"] = {**data["load"], "requests": volume(a)}
        out.append(scenario_from_data(part, [], f"{scenario.name} (days {a} to {b})"))
    return out


def run_stretch(data: dict[str, Any], source: str, engine: str) -> Part:
    """Replay one stretch in a worker: its summary and its latencies' sketch."""
    from relay.core.sketch import merged
    from relay.plan.replay import replay

    scenario = scenario_from_data(data, [], source)
    result = replay(scenario, engine="trio" if engine == "trio" else "fast")
    whole = merged(result.tier.ledger.latencies.values())
    return dict(result.summary), whole.state()


def run(
    scenario: Scenario, executor: cf.Executor, n: int, engine: str = "fast"
) -> summaries.Summary:
    """Replay `scenario` in `n` stretches on `executor`; the merged summary."""
    t0 = time.perf_counter()
    parts = stretches(scenario, n)
    futures = [
        executor.submit(
            run_stretch, p.model_dump(mode="json", by_alias=True), f"{p.name} {p.date}", engine
        )
        for p in parts
    ]
    done = [f.result() for f in futures]
    doc = merge(parts, done)
    doc["wall_seconds"] = round(time.perf_counter() - t0, 3)
    return doc


def merge(parts: Sequence[Scenario], done: Sequence[Part]) -> summaries.Summary:
    """One summary of the stretches `parts` (in calendar order) from their
    summaries and sketches (see the module doc)."""
    docs = [d for d, _ in done]
    first = docs[0]
    start = parts[0].date
    latencies = Sketch()
    for _, state in done:
        latencies.merge(Sketch.from_state(state))
    out: dict[str, Any] = dict(first)
    for key in ("requests", "completed", "overflows", "timeouts", "errors", "lost",
                "relay_overflows", "crashes", "hangs", "chip_operations", "inconsistent",
                "duplicates_applied", "deduplicated"):  # fmt: skip
        out[key] = sum(d[key] for d in docs)
    out["outage_minutes"] = round(sum(d["outage_minutes"] for d in docs), 3)
    refusals: dict[str, int] = {}
    for d in docs:
        for k, v in d["refusals"].items():
            refusals[k] = refusals.get(k, 0) + v
    out["refusals"] = dict(sorted(refusals.items()))
    out["latency_ms"] = summaries.latency(latencies)
    offsets = [(p.date - start).days * 86_400 for p in parts]
    opens = calendar.days(parts[0])[0].opens
    last_opens = calendar.days(parts[-1])[0].opens + offsets[-1]
    out["sim_seconds"] = round(last_opens + docs[-1]["sim_seconds"] - opens, 3)
    out["violations"] = [f"{p.date}: {v}" for p, d in zip(parts, docs, strict=True)
                         for v in d["violations"]]  # fmt: skip
    out["events"] = [_shifted(e, off) for d, off in zip(docs, offsets, strict=True)
                     for e in d["events"]]  # fmt: skip
    out["timeline"] = [{**b, "t": b["t"] + off} for d, off in zip(docs, offsets, strict=True)
                       for b in d["timeline"]]  # fmt: skip
    out["days"] = [row for d in docs for row in d["days"]]
    out["nodes"] = _nodes([d["nodes"] for d in docs])
    out["blocking"] = _blocking([d["blocking"] for d in docs])
    out["backend"] = _backend([d["backend"] for d in docs])
    out["operators"] = [{**a, "t": a["t"] + off} for d, off in zip(docs, offsets, strict=True)
                        for a in d["operators"]]  # fmt: skip
    out["expectations"] = []
    return cast(summaries.Summary, out)


def _shifted(event: dict[str, Any], offset: float) -> dict[str, Any]:
    end = event["end"]
    return {**event, "t": event["t"] + offset, "end": None if end is None else end + offset}


def _nodes(per_part: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for rows in zip(*per_part, strict=True):
        row = dict(rows[0])
        for key in ("requests", "completed", "overflows", "timeouts", "errors", "crashes",
                    "hangs", "hsm_calls"):  # fmt: skip
            row[key] = sum(r[key] for r in rows)
        row["outage_minutes"] = round(sum(r["outage_minutes"] for r in rows), 3)
        row["peak_connections"] = max(r["peak_connections"] for r in rows)
        row["race_windows"] = {
            k: sum(r["race_windows"][k] for r in rows) for k in rows[0]["race_windows"]
        }
        out.append(row)
    return out


def _blocking(per_part: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    if any(b is None for b in per_part):
        return None
    parts = cast(list[dict[str, Any]], per_part)
    pools = dict(parts[0]["pools"])
    for key in ("attempts", "relay_overflows", "refused_at_cs"):
        pools[key] = [sum(col) for col in zip(*(p["pools"][key] for p in parts), strict=True)]
    pools["peak"] = [max(col) for col in zip(*(p["pools"]["peak"] for p in parts), strict=True)]
    return {"by_size": summaries.by_size(cast(summaries.Pools, pools)), "pools": pools}


def _backend(per_part: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    if any(b is None for b in per_part):
        return None
    parts = cast(list[dict[str, Any]], per_part)
    calls = sum(b["calls"] for b in parts)
    waited = sum((b["mean_wait_ms"] or 0.0) * b["calls"] for b in parts)
    return {
        "calls": calls,
        "capacity": parts[0]["capacity"],
        "waits": sum(b["waits"] for b in parts),
        "mean_wait_ms": round(waited / calls, 3) if calls else None,
    }
