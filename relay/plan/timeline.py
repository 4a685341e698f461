"""A picture of the race a hunt found: the shrunk world's timeline, per node and core.

`record` runs a world (`relay.testing.worlds.Case`) on the fast engine with a
recorder around each flow, which sees every effect a request waits for and how it
ended, and changes nothing (the run is the hunt's own, step for step). From it and
the tier's state the timeline has, per relay node:

- each core's monitor probes (a pure function of the node's salt and the probe
  number, `relay.core.monitor`), and an HSM reply lost under one (cause 1);
- each request: its relay-step timer armed at its start and its expiry with the
  OS tick it falls in, the work area allocated and freed, the HSM call and its
  reply interrupt, the wait for a reply that was lost, the backend, and how it
  ended; a reset in the expiry's own tick (dropped on legacy: the notification
  stays pending) and the request that meets the stale notification (cause 2);
- the crashes and hangs.

`html` draws it for the failing design and for the other one beside it (the same
world); `chrome_trace` writes it in the Trace Event Format that Perfetto and
chrome://tracing open.
"""

from __future__ import annotations

import base64
import html as htmlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relay.core.request import Request
from relay.core.tier import Flow, RelayTier, Wait
from relay.scenario.schema import Scenario
from relay.testing.worlds import Case, run_case

MAX_PROBES = 4000  # per node drawn: past this the window is too long to read anyway


@dataclass
class Step:
    """One request's life: where, when, what it waited for, how it ended."""

    id: int
    cs: int
    attempt: int
    arrived: float
    node: int = -1  # its relay's number, once placed
    ended: float | None = None
    outcome: str | None = None
    waits: list[tuple[str, float, float, str]] = field(
        default_factory=list
    )  # kind, from, to, result


@dataclass
class NodeView:
    """One relay node's part of the picture."""

    number: int
    name: str
    cores: int
    timeout: float
    tick: float
    probes: list[tuple[float, float, int]]  # start, end, core
    outages: list[tuple[float, float | None, str, str]]  # start, end, kind, mechanism


@dataclass
class Timeline:
    """A world's run on one design, ready to draw."""

    design: str
    steps: list[Step]
    nodes: list[NodeView]
    start: float
    end: float

    def notes(self) -> list[str]:
        """What the picture shows, in words: each outage and the race behind it."""
        out = []
        for node in self.nodes:
            for start, _, kind, mechanism in node.outages:
                out.append(f"{node.name} {kind} at {start:.6f} s: {mechanism}")
            for s in (s for s in self.steps if s.node == node.number):
                expiry = s.arrived + node.timeout
                in_tick = s.ended is not None and s.ended // node.tick == expiry // node.tick
                if s.outcome == "completed" and in_tick:
                    out.append(
                        f"request {s.id} on {node.name} ended at {s.ended:.6f} s, in its "
                        f"timer's expiry tick [{_tick(expiry, node.tick):.6f}, "
                        f"{_tick(expiry, node.tick) + node.tick:.6f}): its timer's reset "
                        "and timeout notification fall in one OS tick; "
                        + (
                            "the timer is the request's own, so nothing stays pending"
                            if self.design == "fixed"
                            else "the reset may be dropped, leaving the notification pending"
                        )
                    )
                if any(kind == "LostReply" for kind, *_ in s.waits):
                    out.append(
                        f"request {s.id} on {node.name}: its HSM reply landed on a core "
                        "a monitor probe held; the reply was lost"
                    )
                if s.outcome in ("error", "timeout") and s.ended == s.arrived and not s.waits:
                    out.append(
                        f"request {s.id} on {node.name} met a pending timeout notification "
                        f"at {s.arrived:.6f} s, before allocating its work area"
                    )
        return out


def _tick(t: float, tick: float) -> float:
    return math.floor(t / tick) * tick


class Recorder:
    """Wraps each flow of a tier's run (`fast.run(observe=...)`) to see it."""

    def __init__(self, tier: RelayTier) -> None:
        self.tier = tier
        self.steps: list[Step] = []

    def __call__(self, req: Request, flow: Flow) -> Flow:
        """`flow`, whose first message is `req`, seen."""
        return self._traced(flow, req)

    def _traced(self, flow: Flow, req: Request) -> Flow:
        step = Step(req.id, req.cs, req.attempt, req.arrived)
        self.steps.append(step)
        t = req.arrived
        effect = next(flow)
        while isinstance(effect, Wait):
            step.node = req.node
            start = t
            result, t = yield effect
            step.waits.append((type(effect).__name__, start, t, result.value))
            effect = flow.send((result, t))
        step.node, step.ended = req.node, t
        step.outcome = None if req.outcome is None else req.outcome.value
        yield effect  # the flow's end


def record(
    case: Case, design: str, base: Scenario | None = None, pins: dict[str, Any] | None = None
) -> Timeline:
    """Run `case` on `design` (on top of `base`, with `pins`) and record its timeline."""
    recorders: list[Recorder] = []

    def observe(tier: RelayTier) -> Callable[[Request, Flow], Flow]:
        recorders.append(Recorder(tier))
        return recorders[-1]

    tier = run_case(case, design, base, engine="fast", pins=pins, observe=observe)
    steps = recorders[0].steps
    first = min((s.arrived for s in steps), default=0.0)
    last = max((s.ended or s.arrived for s in steps), default=first)
    outages = [o.start for n in tier.nodes for o in n.outages]
    start = min([first, *outages]) - 0.05
    end = max([last, *outages]) + 0.05
    nodes = []
    for n in tier.nodes:
        m = n.monitor
        probes: list[tuple[float, float, int]] = []
        if m.enabled:
            k = max(0, math.ceil((start - m.phase - m.handling) / m.period))
            while len(probes) < MAX_PROBES and m.phase + k * m.period <= end:
                at = m.phase + k * m.period
                probes.append((at, at + m.handling, m.probe_core(k)))
                k += 1
        nodes.append(
            NodeView(
                n.number,
                n.name,
                n.cores,
                n.timer.timeout,
                n.timer.resolution,
                probes,
                [(o.start, o.end, o.kind, o.mechanism) for o in n.outages],
            )
        )
    return Timeline(design, steps, nodes, start, end)


# -- pictures ------------------------------------------------------------------------

COLOURS = {
    "completed": "#2ca02c",
    "overflow": "#ff7f0e",
    "timeout": "#9467bd",
    "error": "#d62728",
    None: "#7f7f7f",
}
WAIT_COLOURS = {
    "CallHsm": "#1f77b4",
    "LostReply": "#d62728",
    "CallBackend": "#17becf",
    "Think": "#bcbd22",
}


def figure(t: Timeline) -> Any:
    """The timeline as a matplotlib figure: per node, a row per core (probes) and a
    row per request (its waits and marks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shown = [n for n in t.nodes if n.outages or any(s.node == n.number for s in t.steps)]
    rows: list[tuple[NodeView, list[Step]]] = [
        (n, sorted((s for s in t.steps if s.node == n.number), key=lambda s: s.arrived))
        for n in shown
    ]
    heights = [n.cores + len(steps) + 1 for n, steps in rows] or [1]
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(12, 1.2 + 0.32 * sum(heights)),
        gridspec_kw={"height_ratios": heights}, squeeze=False, sharex=True,
    )  # fmt: skip
    for ax, (node, steps) in zip(axes[:, 0], rows, strict=True):
        labels: list[str] = []
        y = 0
        for core in range(node.cores):
            for start, end, c in node.probes:
                if c == core:
                    ax.broken_barh([(start, end - start)], (y - 0.35, 0.7), color="#b0b0b0")
            labels.append(f"core {core}")
            y += 1
        for s in steps:
            ended = s.ended if s.ended is not None else t.end
            ax.broken_barh([(s.arrived, max(ended - s.arrived, 1e-6))], (y - 0.08, 0.16),
                           color=COLOURS.get(s.outcome, "#7f7f7f"))  # fmt: skip
            for kind, a, b, _ in s.waits:
                ax.broken_barh([(a, max(b - a, 1e-6))], (y - 0.3, 0.6),
                               color=WAIT_COLOURS.get(kind, "#7f7f7f"), alpha=0.85)  # fmt: skip
                if kind == "LostReply":  # the reply lost under a probe: mark its core
                    hit = [c for p0, p1, c in node.probes if p0 <= a < p1 + 0.001]
                    for c in hit[:1]:
                        ax.plot([a], [c], marker="x", color="#d62728", ms=9, mew=2)
            expiry = s.arrived + node.timeout
            tick = _tick(expiry, node.tick)
            ax.axvspan(tick, tick + node.tick, ymin=0, ymax=1, color="#ffbf00", alpha=0.08)
            ax.plot([s.arrived], [y], marker="|", color="black", ms=12)  # timer armed, alloc
            ax.plot([expiry], [y], marker="v", color="#ff7f0e", ms=7)  # expiry
            if s.ended is not None:
                ax.plot([s.ended], [y], marker="|", color=COLOURS.get(s.outcome), ms=12, mew=2)
            labels.append(f"#{s.id} CS {s.cs}: {s.outcome or 'open'}")
            y += 1
        row = {s.id: node.cores + i for i, s in enumerate(steps)}
        met = [s for s in steps if s.outcome in ("error", "timeout") and s.ended == s.arrived
               and not s.waits]  # fmt: skip
        for s in met:  # the stale notification, from the reset that left it pending
            before = [r for r, n, _ in races(t) if n is node and r.ended is not None
                      and r.ended <= s.arrived]  # fmt: skip
            if before:
                r = before[-1]
                ax.annotate(
                    "", xy=(s.arrived, row[s.id]), xytext=(r.ended, row[r.id]),
                    arrowprops={"arrowstyle": "->", "color": "#d62728", "lw": 1.2, "ls": "--"},
                )  # fmt: skip
                ax.annotate("pending timeout notification", (s.arrived, row[s.id]),
                            xytext=(-6, 6), textcoords="offset points", ha="right",
                            fontsize="x-small", color="#d62728")  # fmt: skip
        for start, _, kind, mechanism in node.outages:
            ax.axvline(start, color="#d62728", lw=1.5)
            ax.annotate(f"{kind}: {mechanism}", (start, y - 0.5), xytext=(4, 0),
                        textcoords="offset points", color="#d62728", fontsize="small",
                        va="center")  # fmt: skip
        ax.set_yticks(range(len(labels)), labels, fontsize="small")
        ax.set_ylim(-0.7, max(y - 0.3, 0.7))
        ax.invert_yaxis()
        ax.set_ylabel(node.name, rotation=0, ha="right", va="center", fontweight="bold")
        ax.grid(axis="x", color="#eeeeee")
    last = axes[-1, 0]
    last.set_xlim(t.start, t.end)
    last.set_xlabel("time since midnight of the world's day (s)")
    handles = [
        Patch(color="#b0b0b0", label="monitor probe (on its core)"),
        Patch(color=WAIT_COLOURS["CallHsm"], label="HSM call, to its reply"),
        Patch(color=WAIT_COLOURS["LostReply"], label="waiting for a lost reply"),
        Patch(color=WAIT_COLOURS["CallBackend"], label="backend"),
        Patch(color="#ffbf00", alpha=0.3, label="timer's expiry tick"),
        Line2D([], [], marker="|", color="black", ls="", ms=10, label="timer armed, work area"),
        Line2D([], [], marker="v", color="#ff7f0e", ls="", label="timer expiry"),
        Line2D([], [], marker="x", color="#d62728", ls="", label="reply lost under a probe"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def races(t: Timeline) -> list[tuple[Step, NodeView, float]]:
    """The requests whose reset fell in their timer's expiry tick: (request, node,
    expiry)."""
    found = []
    for node in t.nodes:
        for s in t.steps:
            if s.node != node.number or s.outcome != "completed" or s.ended is None:
                continue
            expiry = s.arrived + node.timeout
            if s.ended // node.tick == expiry // node.tick:
                found.append((s, node, expiry))
    return found


def zoom(t: Timeline) -> Any | None:
    """The race at the OS tick's resolution: around the first request whose reset
    fell in its timer's expiry tick (cause 2), or the first reply lost under a
    probe (cause 1): the tick boundaries, the expiry, the reset, the probes."""
    import matplotlib.pyplot as plt

    # The node that failed first: its race is the one the hunt found.
    failed = {n.number for n in t.nodes if n.outages}
    racing = sorted(races(t), key=lambda r: (r[1].number not in failed, r[2]))
    lost = [(s, a) for s in t.steps for kind, a, _, _ in s.waits if kind == "LostReply"]
    if racing:
        s, node, expiry = racing[0]
        centre = expiry
    elif lost:
        s, centre = lost[0]
        node = next(n for n in t.nodes if n.number == s.node)
    else:
        return None
    tick = node.tick
    lo, hi = _tick(centre, tick) - 3 * tick, _tick(centre, tick) + 4 * tick
    fig, ax = plt.subplots(figsize=(12, 2.4))
    k = lo
    while k <= hi + 1e-12:
        ax.axvline(k, color="#999999", lw=0.8, ls=":")
        k += tick
    ax.axvspan(_tick(centre, tick), _tick(centre, tick) + tick, color="#ffbf00", alpha=0.25)
    for start, end, core in node.probes:
        if end >= lo and start <= hi:
            ax.broken_barh([(start, end - start)], (core - 0.3, 0.6), color="#b0b0b0")
    y = node.cores
    labels = [f"core {c}" for c in range(node.cores)]
    for other in sorted((x for x in t.steps if x.node == node.number), key=lambda x: x.arrived):
        expiry = other.arrived + node.timeout
        marks = [(other.arrived, "|", "black"), (expiry, "v", "#ff7f0e")]
        if other.ended is not None:
            marks.append((other.ended, "|", COLOURS.get(other.outcome, "#7f7f7f")))
        if not any(lo <= m <= hi for m, _, _ in marks):
            continue
        for kind, a, b, _ in other.waits:
            ax.broken_barh([(a, b - a)], (y - 0.25, 0.5), color=WAIT_COLOURS.get(kind), alpha=0.6)
        for m, marker, colour in marks:
            ax.plot([m], [y], marker=marker, color=colour, ms=12, mew=2)
        labels.append(f"#{other.id}: {other.outcome}")
        y += 1
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylim(-0.7, y - 0.3)
    ax.invert_yaxis()
    ax.set_xlim(lo, hi)
    ax.set_xlabel(
        f"{node.name}, time (s); dotted: the OS ticks of {tick * 1000:g} ms, shaded: the tick "
        "of the expiry"
    )
    ax.set_title(f"At the OS tick's resolution, around {centre:.6f} s", fontsize="medium")
    fig.tight_layout()
    return fig


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def html(doc: dict[str, Any], timelines: list[Timeline]) -> str:
    """A self-contained page: the hunt's finding, then each design's timeline of the
    shrunk world (the failing design first) with its requests and what they show."""
    e = htmlib.escape
    failure = doc.get("failure") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>relaysim hunt</title>',
        "<style>body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;"
        "color:#222}table{border-collapse:collapse;font-size:.88em}td,th{border:1px solid"
        " #ccc;padding:.2em .5em;text-align:right}img{max-width:100%}.meta{color:#666}"
        "</style></head><body>",
        f"<h1>The race a hunt found: {e(str(failure.get('kind', 'nothing')))} "
        f"({e(str(failure.get('mechanism', '')))})</h1>",
        f'<p class="meta">scenario {e(str(doc.get("scenario")))}, design '
        f"{e(str(doc.get('design')))}, seed {doc.get('seed')}, {doc.get('examples')} worlds "
        f"searched; replay with <code>{e(str(doc.get('replay')))}</code></p>",
        f"<p>{e(str(failure.get('detail', '')))}</p>",
        f"<p>The shrunk world: <code>{e(json.dumps(doc.get('case')))}</code></p>",
    ]
    for t in timelines:
        parts += [
            f"<h2>design {e(t.design)}</h2>",
            "<ul>" + "".join(f"<li>{e(n)}</li>" for n in t.notes()) + "</ul>"
            if t.notes()
            else "<p>No crash, no hang, no stale notification: every request ended.</p>",
            f'<img alt="timeline on {e(t.design)}" src="data:image/png;base64,{_png(figure(t))}">',
            _zoom_img(t),
            "<table><tr><th>request</th><th>CS</th><th>node</th><th>arrived (s)</th>"
            "<th>ended (s)</th><th>outcome</th><th>waits</th></tr>"
            + "".join(_row(s) for s in t.steps)
            + "</table>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def _zoom_img(t: Timeline) -> str:
    """The race at the OS tick's resolution, as an image, if there is one to show."""
    fig = zoom(t)
    if fig is None:
        return ""
    alt = f"the race at the OS tick's resolution on {htmlib.escape(t.design)}"
    return f'<img alt="{alt}" src="data:image/png;base64,{_png(fig)}">'


def _row(s: Step) -> str:
    """One request as a table row."""
    e = htmlib.escape
    ended = "" if s.ended is None else f"{s.ended:.6f}"
    waits = ", ".join(f"{k} {a:.4f}-{b:.4f} {r}" for k, a, b, r in s.waits)
    return (
        f"<tr><td>{s.id}</td><td>{s.cs}</td><td>{s.node}</td><td>{s.arrived:.6f}</td>"
        f"<td>{ended}</td><td>{e(str(s.outcome))}</td><td>{e(waits)}</td></tr>"
    )


def chrome_trace(timelines: list[Timeline]) -> dict[str, Any]:
    """The timelines in the Trace Event Format (the JSON object form): a process per
    design and node, a thread per core and per request; complete events ("X") for
    probes and waits, instant events ("i") for timer marks and outages; times in µs."""
    events: list[dict[str, Any]] = []
    for d, t in enumerate(timelines):
        for node in t.nodes:
            pid = d * 1000 + node.number
            events.append(_meta("process_name", pid, 0, f"{t.design} {node.name}"))
            for core in range(node.cores):
                events.append(_meta("thread_name", pid, core, f"core {core}"))
            for start, end, core in node.probes:
                events.append(_span("monitor probe", "probe", pid, core, start, end))
            for start, _, kind, mechanism in node.outages:
                events.append(_instant(f"{kind}: {mechanism}", "outage", pid, 0, start, "p"))
        for s in t.steps:
            if s.node < 0:
                continue
            pid, tid = d * 1000 + s.node, 100 + s.id
            node = next(n for n in t.nodes if n.number == s.node)
            events.append(_meta("thread_name", pid, tid, f"request {s.id} (CS {s.cs})"))
            end = s.ended if s.ended is not None else t.end
            events.append(
                _span(f"request {s.id}: {s.outcome}", "request", pid, tid, s.arrived, end)
            )
            for kind, a, b, result in s.waits:
                events.append(_span(kind, "wait", pid, tid, a, b, {"result": result}))
            events.append(_instant("timer armed", "timer", pid, tid, s.arrived))
            events.append(_instant("timer expiry", "timer", pid, tid, s.arrived + node.timeout))
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"tool": "relaysim"}}


def _us(t: float) -> float:
    return round(t * 1e6, 3)


def _meta(name: str, pid: int, tid: int, value: str) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "ts": 0, "args": {"name": value}}


def _span(
    name: str, cat: str, pid: int, tid: int, start: float, end: float,
    args: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name, "cat": cat, "ph": "X", "pid": pid, "tid": tid,
        "ts": _us(start), "dur": max(_us(end) - _us(start), 0.0), "args": args or {},
    }  # fmt: skip


def _instant(
    name: str, cat: str, pid: int, tid: int, at: float, scope: str = "t"
) -> dict[str, Any]:
    return {"name": name, "cat": cat, "ph": "i", "s": scope, "pid": pid, "tid": tid, "ts": _us(at)}


def case_of(doc: dict[str, Any]) -> Case:
    """The shrunk world of a hunt's result document."""
    raw = dict(doc["case"])
    raw["arrivals"] = [tuple(a) for a in raw["arrivals"]]
    return Case(**raw)


def both(
    case: Case, design: str, base: Scenario | None, pins: dict[str, Any] | None
) -> list[Timeline]:
    """The world on `design`, then on the other design beside it."""
    other = "fixed" if design != "fixed" else "legacy"
    return [record(case, design, base, pins), record(case, other, base, pins)]
