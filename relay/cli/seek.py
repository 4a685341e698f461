"""`relaysim seek`: the cheapest point of a sweep's grid that meets a goal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from relay.cli import render
from relay.cli.options import (
    EXIT_INVARIANT,
    BadInput,
    check_output,
    cli,
    executor,
    json_option,
    pool_options,
    quiet_option,
    set_option,
    write_json,
)
from relay.scenario.expect import ExpectError
from relay.scenario.expect import parse as parse_expectation
from relay.scenario.schema import ConfigError


@cli.command()
@click.argument("sweep_file", metavar="SWEEP", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--goal",
    required=True,
    metavar="EXPR",
    help="What a point must show on a seed, e.g. 'relay_overflows <= 1000' (docs/ci.md).",
)
@click.option(
    "--need",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="The share of the sweep's seeds that must meet the goal (0.9: 9 of 10).",
)
@pool_options
@set_option
@json_option("Write the relaysim.seek/1 document.")
@quiet_option
def seek(
    sweep_file: Path,
    goal: str,
    need: float,
    workers: int | None,
    dask_address: str | None,
    overrides: tuple[str, ...],
    json_path: Path | None,
    quiet: bool,
) -> None:
    """The cheapest point of SWEEP's grid that meets the goal: its axes in the order
    of their cost (the first dearest), each from cheapest to dearest. Searched by
    bisection, one axis at a time, assuming a dearer value never hurts; the answer's
    cheaper neighbours are run to check it (docs/capacity.md)."""
    from relay.plan import seek as seeking
    from relay.plan import sweep as sweeps

    check_output("--json", json_path, sweep_file)
    try:
        plan = sweeps.load_sweep(sweep_file, overrides)
        if plan.spec.grid is None:
            raise BadInput(f"{sweep_file}: seek needs grid: (its axes, cheapest value first)")
        parse_expectation(goal)
    except (ConfigError, ExpectError) as exc:
        raise BadInput(str(exc)) from None
    pool, _ = executor(workers, dask_address)
    err = Console(stderr=True)
    show = not quiet and err.is_terminal

    def progress(done: int, bound: int) -> None:
        if show:
            err.print(f"seek {plan.name}: {done} points evaluated (bisection: ~{bound})")

    with pool as running:
        doc = seeking.run(plan, goal, running, need=need, progress=progress)
    if json_path is not None:
        write_json(json_path, doc)
    if not quiet:
        seek_tables(doc, render.wide_console())
    failed = [e for t in doc["tested"] for e in t["errors"]]
    if failed:
        click.echo(f"relaysim: {len(failed)} runs failed: {failed[0]}", err=True)
        sys.exit(EXIT_INVARIANT)
    if doc["answer"] is None:
        sys.exit(EXIT_INVARIANT)


def seek_tables(doc: dict[str, Any], console: Console) -> None:
    """The answer, then the answer's and its cheaper neighbours' per-seed figures."""
    for line in seeking_lines(doc):
        console.print(line)
    if doc["answer"] is None:
        return
    table = Table(title="per seed: the answer and its cheaper neighbours")
    for axis in doc["axes"]:
        table.add_column(axis, justify="right")
    table.add_column("seed", justify="right")
    for title in ("relay overflows", "overflow %", "crashes", "hangs", "p99 ms", "goal"):
        table.add_column(title, justify="right")
    for point in [doc["answer"], *doc["neighbours"]]:
        for r in point["rows"]:
            cells = [str(point["values"][a]) for a in doc["axes"]]
            if r.get("error"):
                cells += [str(r["seed"]), "-", "-", "-", "-", "-", "error"]
            else:
                cells += [
                    str(r["seed"]),
                    f"{r['relay_overflows']:,}",
                    f"{100 * r['overflow_rate']:.3f}",
                    str(r["crashes"]),
                    str(r["hangs"]),
                    f"{r['p99_ms']:,.0f}" if r["p99_ms"] is not None else "-",
                    "met" if r["expectations_met"] else "missed",
                ]
            table.add_row(*cells)
        table.add_section()
    console.print(table)


def seeking_lines(doc: dict[str, Any]) -> list[str]:
    from relay.plan import seek as seeking

    lines = list(seeking.describe(doc))
    if doc["answer"] is not None and not doc["monotone"]:
        lines.append(
            "warning: a cheaper neighbour meets the goal too: a dearer value hurt somewhere, "
            "so the answer may not be the cheapest (run the grid: relaysim sweep)"
        )
    return lines
