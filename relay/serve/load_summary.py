"""The summary of a `relaysim load` run (`relay.serve.load`), and what it warns of.

The summary is the replay's document (`relaysim.summary/3`, engine `tcp`) built from
the client's ledger in the scenario's time, with the server's own figures from its
INFO answers (`relay.serve.figures`), what only the client knows (`client`: error
frames, notices, late sends, the transport's round trip), the latency percentiles
from the client's HDR histogram, and both clocks named on the run and on each
bucket of its timeline (`ScenarioClock`). `behind` and `unfaithful` say, in one
line each, when the load did not send what was asked, and when real time adds
enough to every latency to distort it.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Protocol, cast

from hdrh.histogram import HdrHistogram

from loadgen import calendar
from relay.core import summary
from relay.core.ledger import Ledger
from relay.scenario.schema import Scenario
from relay.serve import figures
from relay.serve.clock import ScenarioClock

LATE_S = 0.010  # a send this late after its schedule counts as late
FAITHFUL_SHARE = 0.05  # past this share of the p50, the round trip distorts it: say so
LATE_SHARE = 0.01  # past this share of late sends, the load fell behind: say so


class RunRecord(Protocol):
    """What the summary reads of a load's run (`relay.serve.load.LoadRun`, which
    imports this module)."""

    ledger: Ledger
    histogram: HdrHistogram
    base: float  # the scenario's time at the start
    scale: float  # the server's speed
    origin: float  # trio's clock at the start
    utc0: float  # the wall clock then
    served: float  # the server's scenario clock then (0: not said)
    heard_at: list[float]
    round_trips: list[float]
    error_codes: Counter[str]
    notices: Counter[str]
    violations: Counter[str]
    late: int
    latest: float
    stopped_by_server: bool
    cancelled: str | None

    def scenario_time(self, real: float) -> float:
        """The scenario's time at trio's `real` instant."""
        ...


def document(
    scenario: Scenario,
    state: RunRecord,
    first: dict[str, Any] | None,
    last: dict[str, Any] | None,
    end: float,
    wall: float,
) -> summary.Summary:
    """The load's summary: the replay's document from the client's ledger, with the
    server's own figures (INFO, at the start and the end) and the client's."""
    about = first or {}
    doc = summary.build(
        scenario=scenario.name,
        date=scenario.date,
        design=str(about.get("design", "unknown (the server did not say)")),
        switches=dict(about.get("switches", {})),
        engine="tcp",
        seed=scenario.seed,
        ledger=state.ledger,
        nodes=[],
        sim_start=state.base,
        sim_end=end,
        wall_seconds=wall,
    )
    # The server's own figures over the load (the client cannot know them), its
    # clock put on the load's where the first INFO exchange met it.
    shift = state.scenario_time(state.heard_at[0]) if state.heard_at else state.base
    known = figures.put(doc, first, last, shift)
    quickest = min(state.round_trips) if state.round_trips else None
    doc["client"] = {
        "error_frames": dict(sorted(state.error_codes.items())),
        "notices": dict(sorted(state.notices.items())),
        "late_sends": state.late,
        "late_ms": LATE_S * 1000,
        "latest_send_ms": round(state.latest * 1000, 3),
        "stopped_by_server": state.stopped_by_server,
        "cancelled": state.cancelled,
        "server_figures": known,
        "protocol_violations": dict(sorted(state.violations.items())),
        "speed": state.scale,
        "round_trip_ms": None if quickest is None else round(quickest * 1000, 3),
        "round_trip_scenario_ms": (
            None if quickest is None else round(quickest * state.scale * 1000, 3)
        ),
        "clock_resolution_ms": _resolution(first),
    }
    h = state.histogram
    if h.get_total_count():
        doc["latency_ms"] = {
            "p50": h.get_value_at_percentile(50) / 1000.0,
            "p90": h.get_value_at_percentile(90) / 1000.0,
            "p95": h.get_value_at_percentile(95) / 1000.0,
            "p99": h.get_value_at_percentile(99) / 1000.0,
            "max": h.get_max_value() / 1000.0,
            "mean": round(h.get_mean_value() / 1000.0, 3),
        }
    _name_clocks(doc, scenario, state, end)
    return doc


def behind(doc: summary.Summary) -> str | None:
    """A warning when the load fell behind its schedule (more than LATE_SHARE of
    sends later than LATE_S): then it did not send the load asked for, and the
    server's latencies are not all it would have shown (latencies still count from
    each request's scheduled instant)."""
    client = doc["client"]
    if client is None or not doc["requests"]:
        return None
    late = client["late_sends"]
    if late <= LATE_SHARE * doc["requests"]:
        return None
    return (
        f"the load fell behind its schedule: {late:,} of {doc['requests']:,} requests "
        f"({100 * late / doc['requests']:.1f}%) went out more than {client['late_ms']:g} ms "
        f"late (at worst {client['latest_send_ms']:,.0f} ms); use fewer requests a second "
        "or a faster machine"
    )


def unfaithful(doc: summary.Summary) -> str | None:
    """A warning when what real time adds to every latency (the transport's round
    trip and the server's clock resolution, real ms times the server's speed) is
    more than FAITHFUL_SHARE of the p50: then the latencies (and what the counters
    do about them) are the machine's as much as the model's; it names the highest
    speed at which they would not be."""
    client, latency = doc["client"], doc.get("latency_ms")
    if client is None or latency is None:
        return None
    trip, p50 = client["round_trip_ms"], latency["p50"]
    if trip is None or not p50:
        return None
    tick = client.get("clock_resolution_ms") or 0.0
    speed = client["speed"]
    real = trip + tick  # real ms each latency carries
    added = real * speed  # ... in the scenario's ms
    if added <= FAITHFUL_SHARE * p50:
        return None
    # At speed s it adds real * s: under 5% of the model's own p50 (less what it added).
    model_p50 = max(p50 - added, 0.0)
    best = FAITHFUL_SHARE * model_p50 / real if real else math.inf
    return (
        f"real time adds {real:.3f} ms to each latency (round trip {trip:.3f} ms, clock "
        f"tick {tick:g} ms), {added:,.1f} ms of the scenario at {speed:g}x: "
        f"{100 * added / p50:.0f}% of the p50 ({p50:,.1f} ms); latencies are the "
        f"machine's as much as the model's; at {best:.3g}x or slower it would be under "
        f"{100 * FAITHFUL_SHARE:g}%"
    )


def _resolution(info: dict[str, Any] | None) -> float | None:
    """The server's clock resolution from its INFO answer, real ms (None: not said)."""
    value = (info or {}).get("clock_resolution_ms")
    return float(value) if isinstance(value, (int, float)) else None


def _name_clocks(doc: summary.Summary, scenario: Scenario, state: RunRecord, end: float) -> None:
    """Name when the load ran on its two clocks (`ScenarioClock`), in `doc`'s client
    figures and in each bucket of its timeline: the scenario's date and time of day
    (its ledger's time, from `state.base` at the start), and real time in UTC."""
    clock = ScenarioClock(scenario.date, state.base, state.scale)
    clock.start(state.origin, state.utc0)
    client = doc["client"]
    assert client is not None
    client["scenario_start"] = clock.scenario_time(state.origin)
    client["scenario_end"] = clock.scenario_time(clock.at(end))
    client["utc_start"] = clock.utc(state.origin)
    client["utc_end"] = clock.utc(clock.at(end))
    # A day replay starts at the day's opening whenever it starts; serve's clock (its
    # log's scenario_time) then reads later if serve started before the load.
    client["server_scenario_start"] = (
        calendar.when(scenario.date, state.served) if state.served else None
    )
    for bucket in doc["timeline"]:
        at = clock.at(bucket["t"])
        named = cast("dict[str, Any]", bucket)  # keys of the load's (`summary.Bucket`)
        named["scenario_time"] = clock.scenario_time(at)
        named["utc"] = clock.utc(at)
