"""Reports: one self-contained HTML file from replay summaries and sweep results.

    relaysim report RESULT.json... --html report.html
    relaysim replay configs/2016-03-29.yaml --report report.html

For a replay (`relaysim.summary/3`): the summary table, requests and overflows per
5 minutes over the day, where connections were refused (overflows by municipality
size class, and each CS pool's peak occupancy against its cap), latency percentiles
over the day, per-node load, and the outage timeline. For a sweep
(`relaysim.sweep/1`): heat maps of the overflow events at the relays (the record's
count) and of the overflow rate over the two swept axes (a
grid of two keys), and the table of every point (the ablation table, for a list of
points): crashes, hangs, outage minutes, errors, overflows. Plots are matplotlib
figures rendered headless (Agg) to PNG and embedded as data URIs, and the styles are
inline, so the file opens offline, anywhere. The figures are made without pyplot,
so importing this module leaves matplotlib's backend alone (a notebook's inline
plots keep working).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Sequence
from typing import Any

import matplotlib.dates as mdates
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from relay.core import summary as summaries
from relay.plan import sweep as sweeps

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.88em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.45em; text-align: right; }
td:last-child { text-align: left; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 1em 0; }
.meta { color: #666; font-size: 0.9em; }
.fail { color: #b00; }
"""


class ReportError(Exception):
    """A result document this report cannot read (one line for the user)."""


def _figure(*grid: int, figsize: tuple[float, float]) -> tuple[Figure, Any]:
    """A figure and its axes, as pyplot.subplots gives them, without pyplot (no
    backend chosen, no global figure kept)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid)


def html_report(docs: Sequence[tuple[str, dict[str, Any]]], title: str = "relaysim report") -> str:
    """One HTML page for (name, document) pairs: replay summaries and sweep results."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    for name, doc in docs:
        if not isinstance(doc, dict):
            raise ReportError(f"{name}: not a relaysim result (a JSON {type(doc).__name__})")
        schema = doc.get("schema")
        section = {summaries.SCHEMA: _replay_section, sweeps.SCHEMA: _sweep_section}.get(
            str(schema)
        )
        if section is None:
            if schema == "relaysim.hunt/1":
                raise ReportError(f"{name}: a hunt's result is drawn on its own page")
            raise ReportError(f"{name}: not a relaysim result (schema {schema!r})")
        try:
            parts += section(name, doc)
        except KeyError as exc:
            raise ReportError(f"{name}: field {exc} is missing") from None
        except (TypeError, ValueError, AttributeError, IndexError):
            raise ReportError(f"{name}: a field is malformed ({schema} expected)") from None
    parts.append("</body></html>")
    return "\n".join(parts)


# -- replays ------------------------------------------------------------------------


def _replay_section(name: str, doc: dict[str, Any]) -> list[str]:
    start = dt.date.fromisoformat(doc["date"])
    lat = doc["latency_ms"]
    rows = [
        ("requests", f"{doc['requests']:,}"),
        ("completed", f"{doc['completed']:,}"),
        ("overflows", f"{doc['overflows']:,}"),
        ("overflows at the relays (the record's count)", f"{doc['relay_overflows']:,}"),
        *_predicted(doc),
        ("timeouts", f"{doc['timeouts']:,}"),
        ("errors", f"{doc['errors']:,}"),
        ("lost", f"{doc['lost']:,}"),
        ("crashes", _known(doc["crashes"], ",")),
        ("hangs", _known(doc["hangs"], ",")),
        ("outage minutes", _known(doc["outage_minutes"], ",.3f")),
        ("chip operations", f"{doc.get('chip_operations', 0):,}"),
        ("inconsistent (card reissued)", f"{doc.get('inconsistent', 0):,}"),
        ("duplicates applied", f"{doc.get('duplicates_applied', 0):,}"),
        (
            "latency p50 / p90 / p95 / p99 ms",
            " / ".join(_num(lat[k]) for k in ("p50", "p90", "p95", "p99")),
        ),
    ]
    client = doc.get("client")
    if client is None:
        rows.append(("checks", "passed" if not doc["violations"] else "; ".join(doc["violations"])))
    else:  # a load over TCP: the model's checkers ran in the server, not here
        whose = "the server's" if client["server_figures"] else "unknown (the server was silent)"
        rows[6:9] = [(label + f" ({whose})", value) for label, value in rows[6:9]]
        rows += [
            ("checks", "not run by a client: the server's log and /metrics have them"),
            ("server speed", f"{client['speed']:g}x real time"),
            ("late sends (> {:g} ms)".format(client["late_ms"]), f"{client['late_sends']:,}"),
            (
                "error frames",
                ", ".join(f"{k} {v:,}" for k, v in client["error_frames"].items()) or "none",
            ),
        ]
    out = [
        f"<h2>{_e(name)}: {_e(doc['scenario'])}</h2>",
        f'<p class="meta">{_e(doc["date"])}, design {_e(doc["design"])}, engine '
        f"{_e(doc['engine'])}, seed {doc['seed']}, {doc['sim_seconds']:,.0f} s simulated "
        f"in {doc['wall_seconds']:,.1f} s</p>",
        _table(["figure", "value"], rows),
    ]
    timeline = doc.get("timeline") or []
    if timeline:
        actions = doc.get("operators") or []
        out.append(_img(_traffic(timeline, start, actions), "requests and overflows per 5 minutes"))
    blocking = doc.get("blocking")
    if blocking:
        out.append(_img(_blocking(blocking), "where it overflows: by size class and by pool"))
        header = ["residents", "CSs", "cap", "attempts", "relay overflows", "at CS", "pools at cap"]
        rows_b = [
            [
                r["class"],
                f"{r['municipalities']:,}",
                f"{r['cap_min']}-{r['cap_max']}",
                f"{r['attempts']:,}",
                f"{r['relay_overflows']:,}",
                f"{r['refused_at_cs']:,}",
                f"{r['pools_at_cap']:,}",
            ]
            for r in blocking["by_size"]
            if r["municipalities"]
        ]
        out.append(_table(header, rows_b))
    if timeline:
        out.append(_img(_latency(timeline, start), "latency percentiles per 5 minutes"))
    if doc.get("nodes"):
        out.append(_img(_nodes(doc["nodes"]), "requests per relay node, by outcome"))
        header = ["node", "requests", "overflows", "timeouts", "errors", "crashes", "hangs"]
        per_node = [
            [n["name"], *(f"{n[k]:,}" for k in header[1:]), f"{n['outage_minutes']:,.1f}"]
            for n in doc["nodes"]
        ]
        out.append(_table([*header, "outage min"], per_node))
    events = doc.get("events")
    if events:
        out.append(_img(_outages(events, doc, start), "outage timeline: crashes and hangs"))
    elif events is None:  # a load whose server could not be asked at the end
        out.append("<p>Crashes and hangs unknown: the server did not say.</p>")
    else:
        out.append("<p>No crash or hang during the run.</p>")
    return out


def _hours(ts: np.ndarray[Any, np.dtype[np.float64]], start: dt.date) -> Any:
    """x values: datetimes, so multi-day runs get dates on the axis."""
    base = dt.datetime.combine(start, dt.time())
    return [base + dt.timedelta(seconds=float(t)) for t in ts]


MAX_ACTION_LABELS = 12  # past this many operator actions, lines without labels


def _traffic(
    timeline: list[dict[str, Any]], start: dt.date, actions: list[dict[str, Any]]
) -> Figure:
    t = np.array([b["t"] for b in timeline], dtype=float)
    x = _hours(t, start)
    fig, ax = _figure(figsize=(11, 3.6))
    # The operators' actions (a relay detached over lunch, a relay added): where the
    # traffic's shape has a cause outside the load.
    marks = _hours(np.array([a["t"] for a in actions], dtype=float), start)
    for a, at in zip(actions, marks, strict=True):
        ax.axvline(at, color="#7f7f7f", ls="--", lw=0.8)
        if len(actions) <= MAX_ACTION_LABELS:
            label = a["action"] + (f" relay{a['node']}" if a["node"] is not None else "")
            ax.annotate(
                label,
                (mdates.date2num(at), 1.0),  # type: ignore[no-untyped-call]
                xycoords=("data", "axes fraction"),
                xytext=(2, -2),
                textcoords="offset points",
                rotation=90,
                va="top",
                fontsize="x-small",
                color="#4d4d4d",
            )
    ax.plot(x, [b["requests"] for b in timeline], label="requests", color="#1f77b4", lw=1)
    ax.set_ylabel("requests per 5 min")
    ax2 = ax.twinx()
    ax2.plot(x, [b["overflows"] for b in timeline], label="overflows", color="#d62728", lw=1)
    ax2.set_ylabel("overflows per 5 min", color="#d62728")
    ax.set_title("Requests and overflows per 5 minutes")
    # One legend for both axes, inside the plot where it covers neither axis.
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize="small", framealpha=0.9)
    _time_axis(fig, ax, x)
    return fig


def _time_axis(fig: Figure, ax: Any, x: list[dt.datetime]) -> None:
    """Label a time axis: the time of day, and the dates when the run spans several."""
    days = sorted({t.date() for t in x})
    if len(days) <= 1:
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
        when = days[0].strftime("%d %b %Y") if days else ""
        ax.set_xlabel(f"time of day, {when} (5-minute buckets)")
    else:
        ax.set_xlabel(f"date, {days[0]:%d %b} to {days[-1]:%d %b %Y} (5-minute buckets)")
    fig.autofmt_xdate()
    fig.tight_layout()


def _blocking(blocking: dict[str, Any]) -> Figure:
    """Left: refusals by municipality size class; right: each CS pool's peak
    occupancy against its cap, by population (the pools that block sit at 1)."""
    fig, (left, right) = _figure(1, 2, figsize=(11, 3.8))
    rows = [r for r in blocking["by_size"] if r["municipalities"]]
    labels = [r["class"] for r in rows]
    relay = np.array([r["relay_overflows"] for r in rows], dtype=float)
    at_cs = np.array([r["refused_at_cs"] for r in rows], dtype=float)
    left.bar(labels, relay, color="#d62728", label="at the relays (overflow events)")
    left.bar(labels, at_cs, bottom=relay, color="#ff7f0e", label="at the CS (terminal limit)")
    left.set_xlabel("municipality residents")
    left.set_ylabel("refused connections")
    left.set_title("Refusals by municipality size")
    left.legend(loc="upper left", fontsize="small")
    pools = blocking["pools"]
    pop = np.array(pools["population"], dtype=float)
    caps = np.array(
        [
            c if t is None else min(c, t)
            for c, t in zip(pools["cap"], pools["terminal_cap"], strict=True)
        ],
        dtype=float,
    )
    ratio = np.array(pools["peak"], dtype=float) / caps
    refused = np.array(pools["relay_overflows"], dtype=float) + np.array(pools["refused_at_cs"])
    quiet = refused == 0
    right.scatter(pop[quiet], ratio[quiet], s=6, color="#1f77b4", label="no refusal")
    right.scatter(pop[~quiet], ratio[~quiet], s=14, color="#d62728", label="refused some")
    right.set_xscale("log")
    right.set_ylim(0, 1.08)
    right.set_xlabel("municipality residents (log)")
    right.set_ylabel("peak connections / cap")
    right.set_title("Each CS pool's peak occupancy")
    right.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def _latency(timeline: list[dict[str, Any]], start: dt.date) -> Figure:
    t = np.array([b["t"] for b in timeline], dtype=float)
    x = _hours(t, start)
    fig, ax = _figure(figsize=(11, 3.6))
    for key, color in (("p50_ms", "#2ca02c"), ("p99_ms", "#9467bd")):
        y = [np.nan if b[key] is None else b[key] / 1000.0 for b in timeline]
        ax.plot(x, y, label=key.removesuffix("_ms"), color=color, lw=1)
    ax.set_ylabel("latency (s)")
    ax.set_title("Latency percentiles per 5 minutes (requests that completed)")
    ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
    _time_axis(fig, ax, x)
    return fig


def _nodes(nodes: list[dict[str, Any]]) -> Figure:
    names = [n["name"] for n in nodes]
    fig, ax = _figure(figsize=(max(5.0, 1.2 * len(names) + 2), 3.6))
    bottom = np.zeros(len(nodes))
    for key, color in (
        ("completed", "#1f77b4"),
        ("overflows", "#ff7f0e"),
        ("timeouts", "#9467bd"),
        ("errors", "#d62728"),
    ):
        values = np.array([n[key] for n in nodes], dtype=float)
        ax.bar(names, values, bottom=bottom, label=key, color=color)
        bottom += values
    ax.set_ylabel("requests")
    ax.set_title("Per-node load, by outcome")
    ax.legend(loc="upper right")
    return fig


def _outages(events: list[dict[str, Any]], doc: dict[str, Any], start: dt.date) -> Figure:
    names = [n["name"] for n in doc["nodes"]] or sorted({e["node"] for e in events})
    row = {name: i for i, name in enumerate(names)}
    base = dt.datetime.combine(start, dt.time())
    fig, ax = _figure(figsize=(11, 1.0 + 0.5 * len(names)))
    for e in events:
        begin = mdates.date2num(base + dt.timedelta(seconds=e["t"]))  # type: ignore[no-untyped-call]
        width = max(e["outage_minutes"], 0.5) / 1440.0  # in days; visible if short
        color = "#d62728" if e["kind"] == "crash" else "#ff7f0e"
        ax.barh(row.get(e["node"], 0), width, left=begin, height=0.6, color=color)
    ax.xaxis_date()
    ax.set_yticks(range(len(names)), names)
    ax.set_title("Outages: crashes (red) and hangs (orange), from start to recovery")
    fig.autofmt_xdate()
    return fig


# -- sweeps -------------------------------------------------------------------------


def _predicted(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for the interval `relaysim predict` recorded, beside the point."""
    predicted = doc.get("prediction")
    if predicted is None:
        return []
    rows = [
        (
            f"predicted {name.replace('_', ' ')}: median (5-95%)",
            f"{f['median']:,.0f} ({f['p5']:,.0f} - {f['p95']:,.0f})",
        )
        for name, f in predicted["figures"].items()
    ]
    rows.append(
        ("prediction", f"relaysim predict: {predicted['samples']} draws x "
         f"{len(predicted['seeds'])} seeds of the scenario's priors")
    )  # fmt: skip
    return rows


def _sweep_section(name: str, doc: dict[str, Any]) -> list[str]:
    out = [
        f"<h2>{_e(name)}: sweep {_e(doc['name'])}</h2>",
        f'<p class="meta">base {_e(doc["base"])}, {doc["points"]} points '
        f"({doc['failed']} failed) in {doc['wall_seconds']:,.1f} s on "
        f"{_e(doc['executor'])}</p>",
    ]
    axes = doc.get("axes") or []
    ok = [r for r in doc["rows"] if not r.get("error")]
    if len(axes) == 2 and ok:
        for column in HEATMAPS:
            alt = f"{column.replace('_', ' ')} over the two swept axes"
            out.append(_img(_heatmap(doc, axes, column), alt))
    goal = doc.get("goal")
    # A grid's points by their values, one column per axis (the labels repeat the
    # keys and would widen the table past the page); other sweeps by their labels.
    first = axes or ["point"]
    header = [*first, "seed", "requests", "overflows", "at relays", "overflow %", "timeouts",
              "errors", "crashes", "hangs", "outage min", "p99 ms"]  # fmt: skip
    if goal:
        header.append("goal met")
    header.append("error")
    rows = []
    for r in doc["rows"]:
        named = [r["values"].get(a, "") for a in axes] if axes else [r["label"]]
        cells: list[Any] = [*named, "-" if r.get("seed") is None else r["seed"]]
        if "requests" in r:
            cells += [
                f"{r['requests']:,}", f"{r['overflows']:,}", f"{r['relay_overflows']:,}",
                f"{100 * r['overflow_rate']:.3f}",
                f"{r['timeouts']:,}", f"{r['errors']:,}", r["crashes"], r["hangs"],
                f"{r['outage_minutes']:,.1f}", _num(r["p99_ms"]),
            ]  # fmt: skip
        else:
            cells += ["-"] * 10
        if goal:
            met = r.get("goal_met")
            cells.append("-" if met is None else ("yes" if met else "no"))
        cells.append(r.get("error") or "")
        rows.append(cells)
    title = "Every point" if axes else "Ablation: what each point shows"
    out += [f"<h3>{title}</h3>", _table(header, rows)]
    return out


#: What a sweep's heat maps show: (row key, scale to the shown unit, floor of the log
#: scale, cell format, colour bar label, title, goal keys meaning "below" and "at most").
HEATMAPS = {
    "relay_overflows": (
        1.0, 1.0, "{:,.0f}", "overflow events at the relays (log scale)",
        "Overflow events at the relays, the record's count (mean over seeds)",
        "relay_overflows_below", "relay_overflows_at_most",
    ),
    "overflow_rate": (
        100.0, 0.01, "{:.2f}%", "overflowing requests (%, log scale)",
        "Overflow rate (mean over seeds)", "overflow_rate_below", None,
    ),
}  # fmt: skip


def _heatmap(doc: dict[str, Any], axes: list[str], column: str) -> Figure:
    scale, floor, cell, label, title, below, at_most = HEATMAPS[column]
    ys, xs = _levels(doc, axes[0]), _levels(doc, axes[1])
    grid = np.full((len(ys), len(xs)), np.nan)
    sums: dict[tuple[int, int], list[float]] = {}
    for r in doc["rows"]:
        if r.get("error"):
            continue
        key = (ys.index(r["values"][axes[0]]), xs.index(r["values"][axes[1]]))
        sums.setdefault(key, []).append(scale * r[column])
    for (i, j), values in sums.items():
        grid[i, j] = sum(values) / len(values)  # mean over seeds
    fig, ax = _figure(figsize=(1.7 * len(xs) + 3.5, 1.0 * len(ys) + 2.2))
    # A log scale: the figures that matter (around the goal) and the collapse of a
    # tier short of relays (orders of magnitude more) are both told apart.
    shown = np.where(np.isnan(grid), np.nan, np.maximum(grid, floor))
    top = max(float(np.nanmax(shown)), floor * 10)
    norm = LogNorm(vmin=floor, vmax=top)
    image = ax.imshow(shown, cmap="RdYlGn_r", norm=norm, aspect="auto", origin="lower")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(axes[1])
    ax.set_ylabel(axes[0])
    goals = doc.get("goal") or {}
    bound, strict = goals.get(below), True
    if bound is None and at_most is not None and goals.get(at_most) is not None:
        bound, strict = goals[at_most], False
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isnan(grid[i, j]):
                continue
            r, g, b, _ = image.cmap(norm(shown[i, j]))
            ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.55 else "black"
            text = cell.format(grid[i, j])
            ax.text(j, i, text, ha="center", va="center", fontsize=11, color=ink)
            value, limit = grid[i, j], None if bound is None else scale * bound
            if limit is not None and (value < limit if strict else value <= limit):
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=2.5, zorder=3)
                )
    fig.colorbar(image, ax=ax, label=label)
    if bound is not None:
        title += f": outlined, {'under' if strict else 'at most'} the goal of "
        title += cell.format(scale * bound)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _levels(doc: dict[str, Any], key: str) -> list[Any]:
    seen: list[Any] = []
    for r in doc["rows"]:
        value = r["values"].get(key)
        if value not in seen:
            seen.append(value)
    return seen


# -- HTML pieces --------------------------------------------------------------------


def _img(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    # Long keys may break after their dots (`load.cs_connections.base`), words never.
    head = "".join(f"<th>{_e(h).replace('.', '.<wbr>')}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def _known(x: float | None, spec: str) -> str:
    """A figure as the summary has it, or "unknown" where it is null (a load whose
    server could not say)."""
    return "unknown" if x is None else format(x, spec)
