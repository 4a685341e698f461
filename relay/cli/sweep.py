"""`relaysim sweep`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from relay.cli import progress, render
from relay.cli.options import (
    EXIT_INVARIANT,
    EXIT_THRESHOLD,
    BadInput,
    check_output,
    cli,
    executor,
    exit_if_cancelled,
    expect_option,
    expectations_of,
    json_option,
    pool_options,
    quiet_option,
    write_json,
)
from relay.scenario.schema import ConfigError


@cli.command()
@click.argument("sweep_file", metavar="SWEEP", type=click.Path(path_type=Path, dir_okay=False))
@pool_options
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario key on every point, e.g. --set calendar.until=2016-01-20.",
)
@json_option("Write the rows.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write the rows as CSV.")
@expect_option
@quiet_option
@progress.interval_option
def sweep(
    sweep_file: Path,
    workers: int | None,
    dask_address: str | None,
    overrides: tuple[str, ...],
    json_path: Path | None,
    csv_path: Path | None,
    expectations: tuple[str, ...],
    quiet: bool,
    progress_interval: float,
) -> None:
    """Run what-if points of a scenario in parallel; one row of figures per point."""
    import csv

    from relay.plan import pools
    from relay.plan import sweep as sweeps

    pool, label = executor(workers, dask_address)
    check_output("--json", json_path, sweep_file)
    check_output("--csv", csv_path, sweep_file, *([json_path] if json_path else []))
    expectations_of(expectations)  # a bad one is a usage error, before anything runs
    try:
        plan = sweeps.load_sweep(sweep_file, overrides)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    for line in plan.warnings:
        click.echo(f"relaysim: warning: {sweep_file}: {line}", err=True)
    bar_of = progress.runs(
        f"sweep {plan.name}",
        len(plan.points),
        what="points",
        quiet=quiet,
        interval=progress_interval,
        console=Console(stderr=True),
    )
    try:
        with pools.cancellable(), pool as running, bar_of as bar:
            doc = sweeps.run(plan, running, progress=bar, label=label, expect=expectations)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    if json_path is not None:
        write_json(json_path, doc)
    if csv_path is not None:
        header, lines = sweeps.csv_rows(doc)
        try:
            with csv_path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(lines)
        except OSError as exc:
            raise BadInput(f"--csv {csv_path}: cannot write: {exc.strerror}") from None
    if not quiet:
        render.sweep_table(doc, render.wide_console())
        render.seeds_table(doc, render.wide_console())
    else:  # the table's last line alone: what a CI log needs
        click.echo(render.sweep_result(doc))
    exit_if_cancelled(doc, "points")
    if doc["failed"]:
        click.echo(f"relaysim: {doc['failed']} of {doc['points']} points failed", err=True)
        sys.exit(EXIT_INVARIANT)
    missed = [r for r in doc["rows"] if r.get("expectations_met") is False]
    if missed:
        click.echo(
            f"relaysim: {len(missed)} of {doc['points']} points failed a threshold", err=True
        )
        sys.exit(EXIT_THRESHOLD)
