"""What a person sees: the live progress bar and the summary table (rich)."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from loadgen import calendar
from relay.core.summary import SIZE_CLASSES
from relay.core.tier import RelayTier
from relay.engines.common import Progress as ProgressHook
from relay.plan.sweep import class_column
from relay.scenario.schema import Scenario


def clock(t: float) -> str:
    """Seconds since midnight as HH:MM."""
    m = int(t // 60)
    return f"{m // 60:02d}:{m % 60:02d}"


@contextlib.contextmanager
def progress(
    scenario: Scenario, *, enabled: bool, console: Console
) -> Iterator[ProgressHook | None]:
    """A progress bar over simulated time (the service hours of all days), or None."""
    if not enabled:
        yield None
        return
    days = calendar.days(scenario)
    open_s, close_s = days[0].opens, days[-1].closes
    stamp = clock if len(days) == 1 else lambda t: calendar.when(scenario.date, t)[:16]
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
            scenario.name, total=close_s - open_s, clock=stamp(open_s), done=0, rate=0.0
        )

        def hook(now: float, tier: RelayTier) -> None:
            done = tier.ledger.closed
            elapsed = max(time.perf_counter() - wall0, 1e-9)
            bar.update(
                task,
                completed=min(max(now - open_s, 0.0), close_s - open_s),
                clock=stamp(now),
                done=done,
                rate=done / elapsed,
            )

        yield hook


@contextlib.contextmanager
def load_progress(
    name: str, duration: float, *, enabled: bool, console: Console
) -> Iterator[Callable[[Any, float], None] | None]:
    """A live line for `relaysim load`: elapsed of duration, sent, answered, rate."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[sent]:>9,} sent"),
        TextColumn("{task.fields[answered]:>9,} answered"),
        TextColumn("{task.fields[rate]:>8,.0f} req/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(name, total=duration, sent=0, answered=0, rate=0.0)

        def hook(state: Any, elapsed: float) -> None:
            rate = state.answered / elapsed if elapsed > 0 else 0.0
            bar.update(
                task,
                completed=min(elapsed, duration),
                sent=state.sent,
                answered=state.answered,
                rate=rate,
            )

        yield hook


def summary_table(doc: Mapping[str, Any], console: Console) -> None:
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
    # The record counts overflow events at the relays: always shown, even when every
    # overflow was one of them.
    head.add_row("overflows at the relays", f"{doc['relay_overflows']:,}")
    predicted = doc.get("prediction")
    if predicted is not None:
        for name, f in predicted["figures"].items():
            head.add_row(
                f"  predicted {name.replace('_', ' ')} (median, 5-95%)",
                f"{f['median']:,.0f}  ({f['p5']:,.0f} - {f['p95']:,.0f})",
            )
        head.add_row(
            "  prediction",
            f"relaysim predict, {predicted['samples']} draws x {len(predicted['seeds'])} seeds",
        )
    head.add_row(
        "latency p50 / p90 / p95 / p99 / max (ms)",
        " / ".join(_num(lat[k]) for k in ("p50", "p90", "p95", "p99", "max")),
    )
    client = doc.get("client")
    whose = "" if client is None else " (the server's)"  # a load: unknown if it did not say
    head.add_row("crashes / hangs" + whose, f"{known(doc['crashes'])} / {known(doc['hangs'])}")
    head.add_row("outage minutes" + whose, known(doc["outage_minutes"], ",.3f"))
    if doc["chip_operations"]:
        head.add_row(
            "chip operations / inconsistent / duplicates applied",
            f"{doc['chip_operations']:,} / {doc['inconsistent']:,} / {doc['duplicates_applied']:,}",
        )
    if client is not None:
        head.add_row(
            "late sends (> {:g} ms)".format(client["late_ms"]),
            f"{client['late_sends']:,} (worst {client['latest_send_ms']:,.0f} ms)",
        )
    else:
        head.add_row(
            "simulated / wall",
            f"{doc['sim_seconds'] / 3600:.1f} h / {doc['wall_seconds']:.1f} s ({doc['engine']})",
        )
    console.print(head)
    if client is not None:
        console.print(clocks_table(doc))
    if doc.get("blocking"):
        console.print(blocking_table(doc["blocking"]))
    if doc["nodes"]:
        title = "relay nodes" if client is None else "relay nodes (the server's, over the load)"
        console.print(nodes_table(doc["nodes"], title))
    if len(doc["days"]) > 1:
        console.print(days_table(doc["days"]))
    if doc["events"]:
        console.print(events_table(doc["events"], dt.date.fromisoformat(doc["date"])))


def clocks_table(doc: Mapping[str, Any]) -> Table:
    """When a load ran, on its two clocks, each named: the scenario's date and time
    of day, and real time in UTC; its start, end and length on each."""
    client = doc["client"]
    table = Table(title="when the load ran")
    table.add_column("")
    table.add_column("scenario time", justify="right")
    table.add_column("real time (UTC)", justify="right")
    for row in ("start", "end"):
        table.add_row(row, client.get(f"scenario_{row}", "-"), client.get(f"utc_{row}", "-"))
    served = client.get("server_scenario_start")
    if served is not None and served != client.get("scenario_start"):
        # A day replay starts at the day's opening; serve's log counts from its start.
        table.add_row("serve's clock at start", served, client.get("utc_start", "-"))
    sim = doc["sim_seconds"]
    table.add_row("elapsed", f"{sim:,.1f} s", f"{sim / client['speed']:,.1f} s")
    wall = doc["wall_seconds"]
    table.caption = f"wall clock of the whole run, connecting included: {wall:,.1f} s"
    return table


def blocking_table(blocking: dict[str, Any]) -> Table:
    """Where connections were refused, by municipality size class: the caps, how
    many pools reached them, and the refusals at the relays and at the CS."""
    table = Table(title="where it overflows: CS pools by residents")
    table.add_column("residents", no_wrap=True)
    for title in ("CSs", "cap", "attempts", "overflow", "at CS", "at cap", "peak/cap"):
        table.add_column(title, justify="right", no_wrap=True)
    for r in blocking["by_size"]:
        if not r["municipalities"]:
            continue
        cap = (
            str(r["cap_min"]) if r["cap_min"] == r["cap_max"] else f"{r['cap_min']}-{r['cap_max']}"
        )
        table.add_row(
            r["class"],
            f"{r['municipalities']:,}",
            cap,
            f"{r['attempts']:,}",
            f"{r['relay_overflows']:,}",
            f"{r['refused_at_cs']:,}",
            f"{r['pools_at_cap']:,}",
            f"{r['peak_occupancy_max']:.2f}",
        )
    return table


def known(value: float | None, spec: str = "") -> str:
    """A figure as the JSON has it (`spec`: the digits it is rounded to), or
    "unknown" where it is null (a load whose server could not say)."""
    return "unknown" if value is None else format(value, spec)


def nodes_table(rows: list[dict[str, Any]], title: str = "relay nodes") -> Table:
    """One row per relay node: its requests, outcomes, crashes and hangs, and the
    most connections it held at once against its limit."""
    cols = ("requests", "completed", "overflows", "timeouts", "errors", "crashes", "hangs")
    titles = ("requests", "done", "overflow", "timeout", "error", "crash", "hang")
    nodes = Table(title=title)
    nodes.add_column("node")
    for title in titles:
        nodes.add_column(title, justify="right")
    nodes.add_column("peak/max", justify="right", no_wrap=True)
    for n in rows:
        peak = f"{n['peak_connections']}/{n['max_connections']}" if "peak_connections" in n else ""
        nodes.add_row(n["name"], *(f"{n[c]:,}" for c in cols), peak)
    return nodes


def fault_state(state: Mapping[str, Any], console: Console) -> None:
    """A serving tier's state as `relaysim fault` reports it: each relay, the
    backend, and the faults injected that are still in effect."""
    slowdown = state["backend_slowdown"]
    table = Table(
        title=f"design {state['design']}, backend "
        + ("at its speed" if slowdown == 1.0 else f"{slowdown:g}x slower")
    )
    for title in ("relay", "application", "distributor", "HSM lane", "pending timeouts"):
        table.add_column(title)
    table.add_column("outages", justify="right")
    for n in state["nodes"]:
        table.add_row(
            n["name"],
            "up" if n["up"] else "[red]down[/]",
            "attached" if n["attached"] else "[yellow]detached[/]",
            "[red]not answering[/]" if n["hsm_stuck"] else "answering",
            str(n["pending_timeouts"]),
            str(n["outages"]),
        )
    console.print(table)
    faults = state["faults"]
    if not faults:
        console.print("faults in effect: none")
    else:
        console.print("faults in effect (seconds after serve started):")
        for f in faults:
            what = f"relay{f['node']}" if "node" in f else f"factor {f['factor']:g}"
            console.print(f"  {f['kind']:<13} {what:<12} since {f['at_s']:,.1f} s")
    if "toxics" not in state:
        return  # serve runs without --toxics
    toxics = [(proxy, t) for proxy, chain in state["toxics"].items() for t in chain]
    if not toxics:
        console.print("toxics: none")
        return
    console.print("toxics (Toxiproxy's; times in real ms):")
    for proxy, t in toxics:
        attrs = ", ".join(f"{k}={v:g}" for k, v in t["attributes"].items())
        share = f", toxicity {t['toxicity']:g}" if t["toxicity"] < 1 else ""
        console.print(f"  {proxy:<11} {t['name']:<22} {t['type']} {t['stream']}{share} ({attrs})")


def days_table(days: list[dict[str, Any]]) -> Table:
    """One row per calendar day of a multi-day run."""
    table = Table(title="days")
    table.add_column("date")
    for title in ("requests", "overflow %", "timeouts", "errors", "crashes", "hangs"):
        table.add_column(title, justify="right")
    for d in days:
        share = 100.0 * d["overflows"] / d["requests"] if d["requests"] else 0.0
        weekday = dt.date.fromisoformat(d["date"]).strftime("%a")
        table.add_row(
            f"{d['date']} {weekday}",
            f"{d['requests']:,}",
            f"{share:.2f}",
            f"{d['timeouts']:,}",
            f"{d['errors']:,}",
            "unknown" if d["crashes"] is None else str(d["crashes"] or ""),
            "unknown" if d["hangs"] is None else str(d["hangs"] or ""),
        )
    return table


def events_table(events: list[dict[str, Any]], first: dt.date) -> Table:
    """The outage timeline: one row per crash or hang.

    Times are clock times when every event is on the run's first day, otherwise
    "MM-DD HH:MM" (the days table has the year), so the table fits 80 columns.
    """
    table = Table(title="outages")
    for title in ("from", "until", "node", "kind", "mechanism", "minutes"):
        table.add_column(title, justify="right" if title == "minutes" else "left")
    dated = any((e["end"] or e["t"]) >= 86_400 for e in events)

    def stamp(t: float) -> str:
        return calendar.when(first, t)[5:16] if dated else _clock(t)

    for e in events:
        until = "(still out)" if e["end"] is None else stamp(e["end"])
        table.add_row(
            stamp(e["t"]),
            until,
            e["node"],
            e["kind"],
            e["mechanism"],
            f"{e['outage_minutes']:,.3f}",
        )
    return table


def _where(row: dict[str, Any]) -> str:
    """The size class with the most overflows at the relays, and its share."""
    by_class = {
        label: row[class_column(label)]
        for label, _ in SIZE_CLASSES
        if row.get(class_column(label)) is not None
    }
    total = sum(by_class.values())
    if not total:
        return "-"
    label = max(by_class, key=lambda k: by_class[k])
    return f"{label} {100 * by_class[label] / total:.0f}%"


def _clock(t: float) -> str:
    """Seconds since the first midnight as HH:MM:SS (the first day's events only)."""
    h, rest = divmod(int(t), 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


@contextlib.contextmanager
def sweep_progress(
    name: str, total: int, *, enabled: bool, console: Console
) -> Iterator[Callable[[int, int, int], None] | None]:
    """A progress bar over a sweep's points: done, failed, time left."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("points, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(name, total=total, failed=0)

        def hook(done: int, failed: int, total: int) -> None:
            bar.update(task, completed=done, failed=failed)

        yield hook


def wide_console() -> Console:
    """stdout for tables: the terminal's width, or, when it is not a terminal (a pipe,
    a CI log), wide enough that no figure is cut (rich would assume 80 columns)."""
    console = Console()
    return console if console.is_terminal else Console(width=240)


def seeds_table(doc: dict[str, Any], console: Console) -> None:
    """Per point run on several seeds: the spread of its figures over them."""
    points = doc.get("over_seeds") or []
    if not points:
        return
    axes = doc.get("axes") or []
    table = Table(title="over the seeds: mean ± sd (min – max)")
    for axis in axes or ["point"]:
        table.add_column(axis, overflow="fold")
    table.add_column("seeds", justify="right")
    for title in ("relay overflows", "overflow %", "p99 ms"):
        table.add_column(title, justify="right", no_wrap=True)

    def spread(f: dict[str, Any], scale: float = 1.0, fmt: str = ",.0f") -> str:
        if f["mean"] is None:
            return "-"
        sd = "" if f["sd"] is None else f" ± {f['sd'] * scale:{fmt}}"
        return (f"{f['mean'] * scale:{fmt}}{sd} ({f['min'] * scale:{fmt}} – "
                f"{f['max'] * scale:{fmt}})")  # fmt: skip

    for p in points:
        named = [str(p["values"].get(a, "")) for a in axes] if axes else [p["label"]]
        table.add_row(
            *named,
            str(p["seeds"]),
            spread(p["relay_overflows"]),
            spread(p["overflow_rate"], 100.0, ".3f"),
            spread(p["p99_ms"]),
        )
    console.print(table)


def sweep_table(doc: dict[str, Any], console: Console) -> None:
    """Print one line per point and seed: its label, figures, goal and error."""
    table = Table(title=f"sweep {doc['name']}: {doc['points']} points, {doc['failed']} failed")
    goal = doc.get("goal") is not None
    axes = doc.get("axes") or []
    for axis in axes or ["point"]:  # a grid's points by their values, column by axis
        table.add_column(axis, overflow="fold")
    for col in ("seed", "requests", "overflows", "at relays", "rate %", "timeouts", "errors"):
        table.add_column(col, justify="right", no_wrap=True)
    for col in ("crashes", "hangs", "outage min", "p99 ms"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("most overflows in", no_wrap=True)
    if goal:
        table.add_column("goal", no_wrap=True)
    held = any(r.get("expectations") for r in doc["rows"])
    if held:
        table.add_column("expect", no_wrap=True)
    table.add_column("error", overflow="ellipsis", no_wrap=True, max_width=48)
    for r in doc["rows"]:
        named = [str(r["values"].get(a, "")) for a in axes] if axes else [r["label"]]
        cells = [*named, "-" if r.get("seed") is None else str(r["seed"])]
        if r.get("error") and "requests" not in r:
            cells += ["-"] * 11
        else:
            cells += [
                f"{r['requests']:,}",
                f"{r['overflows']:,}",
                f"{r['relay_overflows']:,}",
                f"{100 * r['overflow_rate']:.3f}",
                f"{r['timeouts']:,}",
                f"{r['errors']:,}",
                str(r["crashes"]),
                str(r["hangs"]),
                f"{r['outage_minutes']:,.3f}",
                _num(r["p99_ms"]),
                _where(r),
            ]
        if goal:
            met = r.get("goal_met")
            cells.append("-" if met is None else ("yes" if met else "no"))
        if held:
            verdicts = r.get("expectations") or []
            failed = [v["expect"] for v in verdicts if not v["passed"]]
            cells.append(("FAIL " + "; ".join(failed)) if failed else ("pass" if verdicts else "-"))
        cells.append(r.get("error") or "")
        table.add_row(*cells)
    console.print(table)
    console.print(sweep_result(doc))


def sweep_result(doc: dict[str, Any]) -> str:
    """A sweep's result in one line: its points, how many failed, how long it took."""
    failed = f", {doc['failed']} failed" if doc["failed"] else ""
    return (
        f"{doc['points']} points{failed} in {doc['wall_seconds']:.1f} s "
        f"({doc['points_per_minute']:.1f} per minute) on {doc['executor']}"
    )
