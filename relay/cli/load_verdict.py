"""How `relaysim load` ends: its table, its one-line result, the `--json` summary,
what it warns of, and its exit code, for a load that ran its course, one the server
stopped, and one a signal cut short (the partial run's summary, then 128 + the
signal's number)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from relay.cli import render
from relay.cli.options import (
    EXIT_INVARIANT,
    EXIT_SERVER_STOPPED,
    EXIT_THRESHOLD,
    judge,
    write_json,
)
from relay.core.summary import Summary
from relay.plan import pools

if TYPE_CHECKING:  # the CLI imports trio (which load needs) only when it loads
    from relay.serve.load import LoadRun


def result_line(doc: Summary) -> str:
    """The load's result in one line (printed with `--quiet` too): its requests and
    outcomes, the p99, and the server's crashes, hangs and outage, or "unknown"."""
    requests = doc["requests"]
    share = 100 * doc["overflows"] / requests if requests else 0.0
    p99 = doc["latency_ms"]["p99"]
    cut = doc["client"]["cancelled"] if doc["client"] is not None else None
    return (
        f"load {doc['scenario']}: {requests:,} requests, {doc['completed']:,} completed, "
        f"{doc['overflows']:,} overflows ({share:.2f}%), {doc['timeouts']:,} timeouts, "
        f"{doc['errors']:,} errors, {doc['lost']:,} lost; p99 "
        + ("-" if p99 is None else f"{p99:,.1f} ms")
        + f"; the server's crashes {render.known(doc['crashes'])}, hangs "
        f"{render.known(doc['hangs'])}, outage {render.known(doc['outage_minutes'], ',.3f')} min"
        + (f" ({pools.cut_short(cut)})" if cut else "")
    )


def finish(
    doc: Summary,
    record: LoadRun,
    *,
    duration: float,
    quiet: bool,
    held_to: list[Any],
    json_path: Path | None,
) -> None:
    """Print and write what the load found (`record`: its `LoadRun`), then exit with
    its code: 128 + the signal's number if one cut it short, EXIT_INVARIANT for a
    request without a reply or a broken protocol, EXIT_SERVER_STOPPED when the
    server stopped (or stopped answering) before the load finished, EXIT_THRESHOLD
    for a failed threshold; else return (0)."""
    if not quiet:
        render.summary_table(doc, render.wide_console())
    held = judge(doc, held_to)
    if json_path is not None:
        write_json(json_path, doc)
    click.echo(result_line(doc))
    _warn(doc, record, duration)
    broken = record.violations
    if broken:
        what = ", ".join(f"{kind.replace('_', ' ')} {n:,}" for kind, n in sorted(broken.items()))
        click.echo(f"relaysim: the server broke the protocol: {what}", err=True)
    if doc["lost"]:
        click.echo(f"relaysim: {doc['lost']} requests had no reply", err=True)
    if record.cancelled is not None:
        click.echo(
            f"relaysim: {pools.cut_short(record.cancelled)}: {record.sent:,} requests sent, "
            "the rest of the schedule was not; the summary is the load's until then",
            err=True,
        )
        sys.exit(pools.exit_code(record.cancelled))
    if doc["lost"] or broken:
        sys.exit(EXIT_INVARIANT)
    if record.stopped_by_server or record.silent_at_end:
        sys.exit(EXIT_SERVER_STOPPED)
    if not held:
        click.echo("relaysim: a threshold (--expect) failed", err=True)
        sys.exit(EXIT_THRESHOLD)


def _warn(doc: Summary, record: LoadRun, duration: float) -> None:
    """What the summary alone does not say: the load fell behind, real time distorts
    the latencies, the server refused requests or stopped, nothing was due."""
    from relay.serve.load_summary import behind, unfaithful

    for warning in (behind(doc), unfaithful(doc)):
        if warning is not None:
            click.echo(f"relaysim: warning: {warning}", err=True)
    if record.error_codes:
        codes = ", ".join(f"{code} {n:,}" for code, n in sorted(record.error_codes.items()))
        click.echo(f"relaysim: error frames from the server: {codes}", err=True)
    if not doc["requests"] and not record.stopped_by_server and record.cancelled is None:
        click.echo(
            f"relaysim: warning: no request was due in {duration:g} s; at the server's "
            f"{record.scale:g}x the day's first requests come slowly: give --rate, a longer "
            "--duration, or start serve with --speed",
            err=True,
        )
    if record.stopped_by_server:
        click.echo(
            f"relaysim: the server stopped during the load: {record.sent:,} requests sent, "
            "the rest of the schedule was not; its crashes, hangs and outage are unknown",
            err=True,
        )
    elif record.silent_at_end:
        click.echo(
            "relaysim: the server did not answer at the end of the load: its crashes, "
            "hangs and outage are unknown",
            err=True,
        )
