"""`relaysim predict`: a scenario's figures with their uncertainty."""

from __future__ import annotations

import json
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
    cli,
    executor,
    json_option,
    load_config,
    pool_options,
    quiet_option,
    set_option,
    write_json,
)
from relay.scenario.schema import ConfigError


@cli.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--samples",
    type=click.IntRange(min=2),
    default=20,
    show_default=True,
    help="Draws of the scenario's priors (Latin hypercube).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Seeds each draw runs on (1..N).",
)
@pool_options
@set_option
@json_option("Write the relaysim.predict/1 document.")
@quiet_option
def predict(
    config: Path,
    samples: int,
    seeds: int,
    workers: int | None,
    dask_address: str | None,
    overrides: tuple[str, ...],
    json_path: Path | None,
    quiet: bool,
) -> None:
    """Predict the scenario's figures with their uncertainty: its priors (the readings
    the record leaves open) drawn by Latin hypercube, crossed with seeds; each
    figure's median and 5-95% interval, the share of its variance from the readings
    and from the seeds, and which reading matters most (docs/calibration.md)."""
    from relay.plan import predict as predictions

    scenario = load_config(config, list(overrides), json_path)
    if not scenario.priors:
        raise BadInput(f"{config}: no priors: give the open readings under priors: to predict")
    pool, label = executor(workers, dask_address)
    err = Console(stderr=True)
    show = not quiet and err.is_terminal
    total = samples * seeds
    try:
        with (
            pool as running,
            render.sweep_progress(
                f"predict {scenario.name}", total, enabled=show, console=err
            ) as bar,
        ):
            doc = predictions.run(
                scenario, running, samples=samples, seeds=range(1, seeds + 1), progress=bar
            )
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    doc["executor"] = label
    if json_path is not None:
        write_json(json_path, doc)
    if not quiet:
        prediction_table(doc, render.wide_console())
    if doc["failed"]:
        click.echo(f"relaysim: {doc['failed']} of {total} runs failed", err=True)
        sys.exit(EXIT_INVARIANT)


def prediction_table(doc: dict[str, Any], console: Console) -> None:
    """The readings drawn, then one row per figure: median, interval, variance split,
    the reading that matters most."""
    readings = Table(title=f"{doc['scenario']}: readings drawn ({doc['samples']} draws)")
    for title in ("reading", "prior", "point reading"):
        readings.add_column(title)
    for key, prior in doc["priors"].items():
        shape = prior["dist"] + (f", mode {prior['mode']:g}" if "mode" in prior else "")
        span = f"{shape}, {prior['low']:g} - {prior['high']:g}"
        readings.add_row(key, span, json.dumps(doc["point"][key]))
    console.print(readings)
    seeds = len(doc["seeds"])
    table = Table(
        title=f"prediction: {doc['samples']} draws x {seeds} seeds = "
        f"{doc['samples'] * seeds} runs in {doc['wall_seconds']:,.0f} s"
    )
    for title in ("figure", "median", "5%", "95%", "from readings", "from seeds"):
        table.add_column(title, justify="left" if title == "figure" else "right")
    # Which reading matters, where the readings move the figure at all (a tenth of
    # its variance or more); below that a rank correlation is the seeds' noise.
    table.add_column("matters most (rank correlation)")
    for name, f in doc["figures"].items():
        table.add_row(
            name,
            _num(f["median"]),
            _num(f["p5"]),
            _num(f["p95"]),
            _share(f["variance_from_readings"]),
            _share(f["variance_from_seeds"]),
            _most(f["rank_correlation"]) if (f["variance_from_readings"] or 0) >= 0.1 else "-",
        )
    console.print(table)


def _num(x: float) -> str:
    return f"{x:,.4f}" if abs(x) < 1 and x != 0 else f"{x:,.1f}"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _most(ranks: dict[str, float | None]) -> str:
    known = {k: v for k, v in ranks.items() if v is not None}
    if not known:
        return "-"
    key = max(known, key=lambda k: abs(known[k]))
    return f"{key} ({known[key]:+.2f})"
