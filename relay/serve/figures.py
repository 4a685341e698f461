"""The server's own figures in a load's summary: what `relaysim load` cannot see
from its side (crashes, hangs, outage, each node's share), from the server's INFO
answers at the load's start and end.

One source: the server's outages that began between the two answers are the
summary's `events`, on the load's clock; its crashes, hangs and outage minutes, per
day, per node and in total, are those events counted and summed, so no figure can
disagree with another. The nodes' requests and outcomes are the differences of the
two answers' counts (the server's, so any other client's requests are in them). An
outage already under way when the load began is not the load's. When the server
could not be asked at the end (it stopped, closed every connection, or said
nothing), all of these are unknown: None (JSON null), printed "unknown".
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from relay.core import summary

#: A node row's counts that the load reports as the difference of the two answers.
COUNTS = ("requests", "completed", "overflows", "timeouts", "errors", "hsm_calls")
WINDOWS = ("same_tick_resets", "probe_collisions")


def malformed(info: Mapping[str, Any]) -> str | None:
    """What is wrong with an INFO answer's `uptime_s`, `events` or `nodes` (each may
    be absent), or None: serve gives a number, outage rows and node rows."""
    uptime = info.get("uptime_s", 0.0)
    if not _number(uptime) or uptime < 0:
        return f"answer's uptime_s is {uptime!r}, not a finite number >= 0"
    events, nodes = info.get("events", []), info.get("nodes", [])
    if not isinstance(events, list) or not isinstance(nodes, list):
        return "answer's events and nodes are not lists"
    for i, e in enumerate(events):
        ok = (
            isinstance(e, dict)
            and e.get("kind") in ("crash", "hang")
            and isinstance(e.get("node"), str)
            and isinstance(e.get("mechanism"), str)
            and _number(e.get("t"))
            and (e.get("end") is None or _number(e.get("end")))
            and _number(e.get("outage_minutes"))
        )
        if not ok:
            return f"answer's events[{i}] is {e!r}, not an outage (t, end, node, kind, ...)"
    for i, n in enumerate(nodes):
        windows = n.get("race_windows") if isinstance(n, dict) else None
        ok = (
            isinstance(n, dict)
            and isinstance(n.get("name"), str)
            and all(_count(n.get(k)) for k in (*COUNTS, "max_connections"))
            and isinstance(windows, dict)
            and all(_count(windows.get(k)) for k in WINDOWS)
        )
        if not ok:
            return f"answer's nodes[{i}] is {n!r}, not a node's figures"
    return None


def put(
    doc: summary.Summary,
    first: Mapping[str, Any] | None,
    last: Mapping[str, Any] | None,
    shift: float,
) -> bool:
    """Put the server's figures over the load into `doc` from `first` and `last`, its
    INFO answers at the load's start and end (checked by `malformed`); `shift` is
    the load's time (seconds since the scenario's midnight) when the server's uptime
    was `first`'s. Whether the server said: if not, each figure is None."""
    if (
        first is None
        or last is None
        or any(k not in info for info in (first, last) for k in ("uptime_s", "events", "nodes"))
    ):
        doc["crashes"] = doc["hangs"] = doc["outage_minutes"] = None
        doc["events"] = doc["nodes"] = None
        for day in doc["days"]:
            day["crashes"] = day["hangs"] = None
        return False
    since = float(first["uptime_s"])

    def ours(t: float) -> float:  # a server instant (its uptime) on the load's clock
        return round(t - since + shift, 3)

    events: list[summary.OutageRow] = [
        {
            "t": ours(e["t"]),
            "node": e["node"],
            "kind": e["kind"],
            "mechanism": e["mechanism"],
            "end": None if e["end"] is None else ours(e["end"]),
            "outage_minutes": round(float(e["outage_minutes"]), 3),
        }
        for e in last["events"]
        if e["t"] >= since
    ]
    doc["events"] = events
    doc["crashes"] = sum(e["kind"] == "crash" for e in events)
    doc["hangs"] = sum(e["kind"] == "hang" for e in events)
    doc["outage_minutes"] = round(sum(e["outage_minutes"] for e in events), 3)
    doc["days"] = summary.by_day(doc["timeline"], events, dt.date.fromisoformat(doc["date"]))
    before = {n["name"]: n for n in first["nodes"]}
    doc["nodes"] = [_node(n, before.get(n["name"], {}), events) for n in last["nodes"]]
    return True


def _node(
    now: Mapping[str, Any], then: Mapping[str, Any], events: list[summary.OutageRow]
) -> summary.NodeRow:
    """A node's row over the load: its counts at the end less those at the start
    (`then` empty: it joined during the load), and its outages among `events`."""

    def grew(key: str, windows: bool = False) -> int:
        end, start = (now["race_windows"], then.get("race_windows", {})) if windows else (now, then)
        return int(end[key]) - int(start.get(key, 0))

    mine = [e for e in events if e["node"] == now["name"]]
    return {
        "name": now["name"],
        "requests": grew("requests"),
        "completed": grew("completed"),
        "overflows": grew("overflows"),
        "timeouts": grew("timeouts"),
        "errors": grew("errors"),
        "crashes": sum(e["kind"] == "crash" for e in mine),
        "hangs": sum(e["kind"] == "hang" for e in mine),
        "outage_minutes": round(sum(e["outage_minutes"] for e in mine), 3),
        "max_connections": int(now["max_connections"]),
        "hsm_calls": grew("hsm_calls"),
        "race_windows": {
            "same_tick_resets": grew("same_tick_resets", windows=True),
            "probe_collisions": grew("probe_collisions", windows=True),
        },
    }


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
