"""What a person sees: the live progress bar and the summary table (rich)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from relay.config import Scenario
from relay.driver_trio import Progress as ProgressHook
from relay.tier import RelayTier


def clock(t: float) -> str:
    """Seconds since midnight as HH:MM."""
    m = int(t // 60)
    return f"{m // 60:02d}:{m % 60:02d}"


@contextlib.contextmanager
def progress(
    scenario: Scenario, *, enabled: bool, console: Console
) -> Iterator[ProgressHook | None]:
    """A progress bar over simulated time of day, or None when disabled."""
    if not enabled:
        yield None
        return
    open_s, close_s = scenario.load.service_hours
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[clock]} sim"),
        TextColumn("{task.fields[done]:>9,} done"),
        TextColumn("{task.fields[rate]:>8,.0f} req/s"),
        TimeElapsedColumn(),
    )
    wall0 = time.perf_counter()
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(
            scenario.name, total=close_s - open_s, clock=clock(open_s), done=0, rate=0.0
        )

        def hook(now: float, tier: RelayTier) -> None:
            done = tier.ledger.closed
            elapsed = max(time.perf_counter() - wall0, 1e-9)
            bar.update(
                task,
                completed=min(max(now - open_s, 0.0), close_s - open_s),
                clock=clock(now),
                done=done,
                rate=done / elapsed,
            )

        yield hook


def summary_table(doc: dict[str, Any], console: Console) -> None:
    """Print the run's summary (one row per figure) and the per-node table."""
    lat = doc["latency_ms"]
    head = Table(title=f"{doc['scenario']} · design {doc['design']} · seed {doc['seed']}")
    head.add_column("figure")
    head.add_column("value", justify="right")
    requests = max(doc["requests"], 1)
    for key in ("requests", "completed", "overflows", "timeouts", "errors", "lost"):
        share = "" if key == "requests" else f"  ({100 * doc[key] / requests:.2f}%)"
        head.add_row(key, f"{doc[key]:,}{share}")
    refusals = ", ".join(f"{k} {v:,}" for k, v in doc["refusals"].items()) or "none"
    head.add_row("overflow reasons", refusals)
    head.add_row(
        "latency p50 / p90 / p99 / max (ms)",
        " / ".join(_num(lat[k]) for k in ("p50", "p90", "p99", "max")),
    )
    head.add_row("crashes / hangs", f"{doc['crashes']} / {doc['hangs']}")
    head.add_row("outage minutes", f"{doc['outage_minutes']:,.1f}")
    head.add_row(
        "simulated / wall",
        f"{doc['sim_seconds'] / 3600:.1f} h / {doc['wall_seconds']:.1f} s ({doc['engine']})",
    )
    console.print(head)
    cols = ("requests", "completed", "overflows", "timeouts", "errors", "crashes", "hangs")
    titles = ("requests", "done", "overflow", "timeout", "error", "crash", "hang")
    nodes = Table(title="relay nodes")
    nodes.add_column("node")
    for title in titles:
        nodes.add_column(title, justify="right")
    for n in doc["nodes"]:
        nodes.add_row(n["name"], *(f"{n[c]:,}" for c in cols))
    console.print(nodes)
    if doc["events"]:
        console.print(events_table(doc["events"]))


def events_table(events: list[dict[str, Any]]) -> Table:
    """The outage timeline: one row per crash or hang."""
    table = Table(title="outages")
    for title in ("from", "until", "node", "kind", "mechanism", "minutes"):
        table.add_column(title, justify="right" if title == "minutes" else "left")
    for e in events:
        until = "(still out)" if e["end"] is None else _clock(e["end"])
        table.add_row(
            _clock(e["t"]),
            until,
            e["node"],
            e["kind"],
            e["mechanism"],
            f"{e['outage_minutes']:.1f}",
        )
    return table


def _clock(t: float) -> str:
    """Seconds since midnight as HH:MM:SS (days beyond the first as +Nd)."""
    days, rest = divmod(int(t), 86_400)
    h, rest = divmod(rest, 3600)
    clock = f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return clock if not days else f"{clock} +{days}d"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"
