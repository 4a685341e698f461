"""The run summary: one JSON document (schema relaysim.summary/3) and its table.

Everything a run reports is derived here from the ledger and the nodes, so every
driver and engine produces the same document for the same run.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import NotRequired, TypedDict

import numpy as np
import numpy.typing as npt

from relay.core.backend import Backend
from relay.core.dispatcher import RELAY_REASONS, Dispatcher
from relay.core.events import OperatorEvent
from relay.core.ledger import BUCKET_S, Ledger, Tally
from relay.core.node import Node
from relay.core.sketch import Sketch, merged

#: /2 (from /1): adds chip_operations, inconsistent, duplicates_applied, deduplicated.
#: /3: adds relay_overflows, `blocking` (overflows by municipality size class and each
#: CS pool's cap, peak occupancy, attempts and refusals) and each node's peak; later,
#: without breaking a reader of /3, `backend` (calls, memory waits, mean wait) and
#: `latency_ms.mean`.
SCHEMA = "relaysim.summary/3"

#: Municipality size classes for "where it overflows": (label, smallest population).
SIZE_CLASSES: tuple[tuple[str, int], ...] = (
    ("<50k", 0),
    ("50k-100k", 50_000),
    ("100k-300k", 100_000),
    ("300k-1M", 300_000),
    (">=1M", 1_000_000),
)


# -- the document's shape -------------------------------------------------------------
# TypedDicts: the summary is plain JSON (dicts, lists, numbers), and these say which
# keys it has and what each holds, for mypy and for a reader of this module.


class Outcomes(TypedDict):
    requests: int
    completed: int
    overflows: int
    timeouts: int
    errors: int


class Bucket(Outcomes):
    """Five minutes of arrivals: their outcomes and the latency of the completed."""

    t: int  # the bucket's start, seconds since the first midnight
    p50_ms: float | None
    p99_ms: float | None
    # A load's (engine tcp) buckets also name their start, as the scenario's date and
    # time of day (`scenario_time`) and as the real time in UTC when the load was
    # there (`utc`): `relay.serve.load`. Not declared here: mypy will not let a
    # literal with `**` build a TypedDict that has keys it may leave out.


class RaceWindows(TypedDict):
    """How often a node reached each race window (harmless on fixed)."""

    same_tick_resets: int
    probe_collisions: int


class NodeRow(Outcomes):
    """One relay node's figures."""

    name: str
    crashes: int
    hangs: int
    outage_minutes: float
    # The most connections held at once: a load's node rows, the server's figures over
    # the load, have none (the server knows its peak since it started, not the load's).
    peak_connections: NotRequired[int]
    max_connections: int
    hsm_calls: int
    race_windows: RaceWindows


class OutageRow(TypedDict):
    """One crash or hang, from start to recovery."""

    t: float
    node: str
    kind: str
    mechanism: str
    end: float | None
    outage_minutes: float


class DayRow(Outcomes):
    """One calendar day of a multi-day run."""

    date: str
    crashes: int | None  # None: a load whose server could not say (as the run's own)
    hangs: int | None


SizeRow = TypedDict(
    "SizeRow",
    {
        "class": str,
        "municipalities": int,
        "residents": int,
        "cap_min": int | None,
        "cap_max": int | None,
        "attempts": int,
        "relay_overflows": int,
        "refused_at_cs": int,
        "pools_at_cap": int,
        "peak_occupancy_max": float | None,
    },
)


class Pools(TypedDict):
    """Every CS pool, as columns (one entry per CS, in CS id order)."""

    name: list[str]
    population: list[int]
    cap: list[int]
    terminal_cap: list[int | None]
    peak: list[int]
    attempts: list[int]
    relay_overflows: list[int]
    refused_at_cs: list[int]


class Blocking(TypedDict):
    """Where connections were refused: by size class, and per pool."""

    by_size: list[SizeRow]
    pools: Pools


class BackendFigures(TypedDict):
    """How requests queued for the backend's memory."""

    calls: int
    capacity: int | None
    waits: int
    mean_wait_ms: float | None


class VerdictRow(TypedDict):
    """A threshold the run was held to (`--expect`, a scenario's `expect:`)."""

    expect: str
    measured: float | None
    passed: bool


class ActionRow(TypedDict):
    """An operator's action of the scenario (detach, attach, restart, add, ...)."""

    t: float  # seconds since the first midnight
    action: str
    node: int | None


class ClientFigures(TypedDict):
    """What `relaysim load` saw from the client's side (engine tcp only)."""

    error_frames: dict[str, int]  # requests refused with an error frame, by code
    notices: dict[str, int]  # connection notices (id 0), by code
    late_sends: int  # requests sent later than their schedule by more than late_ms
    late_ms: float  # the threshold
    latest_send_ms: float  # the worst lateness
    stopped_by_server: bool  # the server stopped during the load (SHUTTING_DOWN)
    cancelled: str | None  # the signal that cut the load short (SIGINT, SIGTERM), if one did
    server_figures: bool  # crashes, hangs and outage are the server's own (INFO)
    # What the server sent that breaks the protocol, by kind: replies to ids never
    # sent or answered already, bytes that are no frame, an INFO that is no object.
    protocol_violations: dict[str, int]
    speed: float  # the server's: scenario seconds per real second
    # The transport's round trip (the quickest INFO exchange), in real milliseconds
    # and in the scenario's at the server's speed: time the model never sees, yet
    # every latency the client measures carries (None: never measured).
    round_trip_ms: float | None
    round_trip_scenario_ms: float | None
    # How finely the server's clock wakes a wait (real ms, from INFO; 0: virtual).
    clock_resolution_ms: float | None
    # When the load ran, on its two clocks: the scenario's date and time of day (the
    # sim_start and sim_end of its ledger) and real time in UTC (ISO 8601, Z).
    scenario_start: NotRequired[str]
    scenario_end: NotRequired[str]
    utc_start: NotRequired[str]
    utc_end: NotRequired[str]
    # The server's scenario clock as the load started (INFO; None: not said): a day
    # replay starts at the day's opening, so it differs when serve started earlier.
    server_scenario_start: NotRequired[str | None]


class Latency(TypedDict):
    """Latency of completed requests, ms (None: nothing completed)."""

    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None


class Summary(Outcomes):
    """The whole document, `relaysim.summary/3`."""

    schema: str
    scenario: str
    date: str
    design: str
    switches: dict[str, bool]
    engine: str
    seed: int
    lost: int
    relay_overflows: int
    refusals: dict[str, int]
    # A load's are the server's, or None when it could not say (it stopped first).
    crashes: int | None
    hangs: int | None
    outage_minutes: float | None
    chip_operations: int
    inconsistent: int
    duplicates_applied: int
    deduplicated: int
    latency_ms: Latency
    sim_seconds: float
    wall_seconds: float
    violations: list[str]
    events: list[OutageRow] | None  # None: a load whose server could not say
    blocking: Blocking | None
    backend: BackendFigures | None
    nodes: list[NodeRow] | None  # None: a load whose server could not say
    days: list[DayRow]
    timeline: list[Bucket]
    client: ClientFigures | None  # engine tcp (`relaysim load`); None for a replay
    operators: list[ActionRow]  # the scenario's operator actions, in time order
    expectations: list[VerdictRow]  # filled by the command that judged the run


def size_class(population: int) -> str:
    """The label of the size class `population` residents fall in."""
    label = SIZE_CLASSES[0][0]
    for name, lowest in SIZE_CLASSES:
        if population >= lowest:
            label = name
    return label


def blocking(dispatcher: Dispatcher, towns: Sequence[tuple[str, int]]) -> Blocking:
    """Where connections were refused: per size class, and per CS pool (columns).

    `towns` are the municipalities `(name, population)` in CS id order. A pool is
    one CS's connections to the relay tier; it reached its cap when its peak
    occupancy met the smaller of its two limits.
    """
    d = dispatcher
    unlimited = 1 << 62
    pools: Pools = {
        "name": [name for name, _ in towns],
        "population": [pop for _, pop in towns],
        "cap": list(d.caps),
        "terminal_cap": [None if t >= unlimited else t for t in d.terminal_caps],
        "peak": list(d.peak),
        "attempts": list(d.attempts),
        "relay_overflows": list(d.refused),
        "refused_at_cs": list(d.refused_at_cs),
    }
    return {"by_size": by_size(pools), "pools": pools}


def by_size(pools: Pools) -> list[SizeRow]:
    """The pools' figures by municipality size class (a run's, or runs' merged)."""
    limit = [c if t is None else min(c, t) for c, t in zip(pools["cap"], pools["terminal_cap"],
                                                           strict=True)]  # fmt: skip
    classes = [size_class(pop) for pop in pools["population"]]
    peak, people = pools["peak"], pools["population"]
    rows: list[SizeRow] = []
    for label, _ in SIZE_CLASSES:
        ids = [i for i, c in enumerate(classes) if c == label]
        caps = [limit[i] for i in ids]
        rows.append(
            {
                "class": label,
                "municipalities": len(ids),
                "residents": sum(people[i] for i in ids),
                "cap_min": min(caps) if caps else None,
                "cap_max": max(caps) if caps else None,
                "attempts": sum(pools["attempts"][i] for i in ids),
                "relay_overflows": sum(pools["relay_overflows"][i] for i in ids),
                "refused_at_cs": sum(pools["refused_at_cs"][i] for i in ids),
                "pools_at_cap": sum(1 for i in ids if peak[i] >= limit[i]),
                "peak_occupancy_max": max(
                    (round(peak[i] / limit[i], 3) for i in ids), default=None
                ),
            }
        )
    return rows


def backend_figures(backend: Backend) -> BackendFigures:
    """How requests queued for the backend's memory: calls, its capacity (requests
    held at once; None: no bound), how many waited and the mean wait over all calls
    (queueing theory's W_q, in ms; None without calls)."""
    calls = backend.calls
    return {
        "calls": calls,
        "capacity": backend.capacity,
        "waits": backend.memory_waits,
        "mean_wait_ms": round(backend.wait_total / calls * 1000.0, 3) if calls else None,
    }


def percentiles(values: npt.NDArray[np.float64], ps: Sequence[float]) -> list[float]:
    """Nearest-rank percentiles `ps` (0..100) of unordered `values`; NaN if empty.

    numpy's "inverted_cdf" method is the nearest-rank definition (the smallest value
    with at least p% of the values at or below it), found by a partial sort: a
    67-day replay keeps tens of millions of latencies.
    """
    if not len(values):
        return [math.nan] * len(ps)
    return [float(v) for v in np.percentile(values, ps, method="inverted_cdf")]


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000.0, 3)


def latency(whole: Sketch) -> Latency:
    """A run's latency figures (ms) from the sketch of all its completed requests."""
    p50, p90, p95, p99, top = whole.quantiles((0.5, 0.9, 0.95, 0.99, 1.0))
    return {"p50": _ms(p50), "p90": _ms(p90), "p95": _ms(p95), "p99": _ms(p99),
            "max": _ms(top), "mean": _ms(whole.mean)}  # fmt: skip


#: The summary's name for the request count, then for each outcome's, in the order
#: of a Tally's counts (relay.core.ledger.OUTCOMES).


def _outcomes(t: Tally) -> Outcomes:
    c = t.counts  # requests, then the outcomes in relay.core.ledger.OUTCOMES order
    return {
        "requests": c[0],
        "completed": c[1],
        "overflows": c[2],
        "timeouts": c[3],
        "errors": c[4],
    }


def events(nodes: Sequence[Node], end: float) -> list[OutageRow]:
    """Every crash and hang of the run in time order: the outage timeline."""
    rows: list[OutageRow] = [
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


def by_day(timeline: list[Bucket], rows: list[OutageRow], first: dt.date) -> list[DayRow]:
    """Per calendar day: outcomes of the requests that arrived that day, and the
    crashes and hangs that began on it."""
    out: dict[int, DayRow] = {}

    def day(i: int) -> DayRow:
        if i not in out:
            date = (first + dt.timedelta(days=i)).isoformat()
            out[i] = {
                "date": date,
                "requests": 0,
                "completed": 0,
                "overflows": 0,
                "timeouts": 0,
                "errors": 0,
                "crashes": 0,
                "hangs": 0,
            }
        return out[i]

    for b in timeline:
        d = day(int(b["t"] // 86_400))
        d["requests"] += b["requests"]
        d["completed"] += b["completed"]
        d["overflows"] += b["overflows"]
        d["timeouts"] += b["timeouts"]
        d["errors"] += b["errors"]
    for e in rows:
        d = day(int(e["t"] // 86_400))
        if e["kind"] == "crash":
            d["crashes"] = (d["crashes"] or 0) + 1
        else:
            d["hangs"] = (d["hangs"] or 0) + 1
    return [out[i] for i in sorted(out)]


def node_row(n: Node, ledger: Ledger, end: float) -> NodeRow:
    """Node `n`'s figures at `end`: its requests and outcomes in `ledger`, its
    outages, its peak of connections and its race windows (a summary's row, and
    what serve's INFO answer says of each node)."""
    return {
        "name": n.name,
        **_outcomes(ledger.nodes.get(n.number, Tally())),
        "crashes": sum(1 for o in n.outages if o.kind == "crash"),
        "hangs": sum(1 for o in n.outages if o.kind == "hang"),
        "outage_minutes": round(sum(o.minutes(end) for o in n.outages), 3),
        "peak_connections": n.peak,
        "max_connections": n.max_connections,
        "hsm_calls": n.hsm.calls,
        "race_windows": {
            "same_tick_resets": n.timer.same_tick_resets,
            "probe_collisions": n.probe_collisions,
        },
    }


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
    dispatcher: Dispatcher | None = None,
    towns: Sequence[tuple[str, int]] = (),
    backend: Backend | None = None,
    actions: Sequence[OperatorEvent] = (),
) -> Summary:
    """The summary document of a finished run; times count from `date`'s midnight.

    With the run's `dispatcher` and its `towns` (name, population per CS), the
    document says where connections were refused (`blocking`), and with its
    `backend`, how requests queued for the backend's memory (`backend`); a
    client-side summary (`relaysim load`) has none of them.
    """
    whole = merged(ledger.latencies.values())
    timeline: list[Bucket] = []
    for b, tally in sorted(ledger.buckets.items()):
        bucket = ledger.latencies.get(b)
        p50, p99 = bucket.quantiles((0.5, 0.99)) if bucket is not None else (math.nan,) * 2
        timeline.append(
            {"t": int(b * BUCKET_S), **_outcomes(tally), "p50_ms": _ms(p50), "p99_ms": _ms(p99)}
        )
    node_rows = [node_row(n, ledger, sim_end) for n in nodes]
    crashes_total = sum(r["crashes"] for r in node_rows)
    hangs_total = sum(r["hangs"] for r in node_rows)
    outage_total = sum(o.minutes(sim_end) for n in nodes for o in n.outages)
    lost = len(ledger.still_open)
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
        "relay_overflows": sum(v for k, v in ledger.refusals.items() if k in RELAY_REASONS),
        "refusals": dict(sorted(ledger.refusals.items())),
        "crashes": crashes_total,
        "hangs": hangs_total,
        "outage_minutes": round(outage_total, 3),
        "chip_operations": len(ledger.chip_operations),
        "inconsistent": ledger.inconsistent,
        "duplicates_applied": ledger.duplicates_applied,
        "deduplicated": ledger.deduplicated,
        "latency_ms": latency(whole),
        "sim_seconds": round(sim_end - sim_start, 3),
        "wall_seconds": round(wall_seconds, 3),
        "violations": list(violations),
        "events": outages,
        "blocking": blocking(dispatcher, towns) if dispatcher is not None else None,
        "backend": backend_figures(backend) if backend is not None else None,
        "client": None,
        "operators": [{"t": a.at, "action": a.action, "node": a.node} for a in actions],
        "expectations": [],
        "nodes": node_rows,
        "days": by_day(timeline, outages, date),
        "timeline": timeline,
    }
