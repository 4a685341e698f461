"""`relaysim check`: a suite of cases, for a CI pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from relay.cli import progress
from relay.cli.options import (
    EXIT_THRESHOLD,
    BadInput,
    check_output,
    cli,
    executor,
    exit_if_cancelled,
    expect_option,
    json_option,
    write_json,
)
from relay.scenario.schema import ConfigError


@cli.command()
@click.argument("suite_file", metavar="SUITE", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(path_type=Path),
    help="Write the verdicts as JUnit XML (one testcase per case and seed).",
)
@json_option("Write the verdicts as JSON (relaysim.check/1).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Local worker processes (default: one per core).",
)
@click.option("--dask", "dask_address", metavar="ADDRESS", help="Run on a Dask cluster instead.")
@expect_option
@click.option("--quiet", is_flag=True, help="No progress bar or lines.")
@progress.interval_option
def check(
    suite_file: Path,
    junit_path: Path | None,
    json_path: Path | None,
    workers: int | None,
    dask_address: str | None,
    expectations: tuple[str, ...],
    quiet: bool,
    progress_interval: float,
) -> None:
    """Run a suite of cases (replays and hunts held to thresholds) in parallel.

    One line per case and seed: PASS, FAIL with the values measured and the command
    that reproduces it, or ERROR. Exit 0 when every case held, 6 when any failed.
    """
    from relay.plan import check as checks
    from relay.plan import pools

    pool, label = executor(workers, dask_address)
    check_output("--junit", junit_path, suite_file)
    check_output("--json", json_path, suite_file, *([junit_path] if junit_path else []))
    try:
        suite = checks.load_suite(suite_file, expectations)
    except ConfigError as exc:
        # The pipeline's test report still shows why: one errored test case.
        doc = checks.unloadable(suite_file, str(exc))
        if junit_path is not None:
            _write(junit_path, checks.junit(doc))
        if json_path is not None:
            write_json(json_path, doc)
        raise BadInput(str(exc)) from None
    bar_of = progress.runs(
        f"check {suite.name}",
        len(suite.runs),
        what="runs",
        quiet=quiet,
        interval=progress_interval,
        console=Console(stderr=True),
    )
    try:
        with pools.cancellable(), pool as running, bar_of as bar:
            doc = checks.run(
                suite,
                running,
                progress=bar,
                on_row=lambda row: click.echo(checks.line(row)),
                # Said once the runs are out: a job cancelled from then on has
                # workers to stop (tests/test_cancel.py signals on this line).
                on_start=lambda: click.echo(
                    f"suite {suite.name}: {len(suite.runs)} runs on {label}"
                ),
                label=label,
            )
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    if junit_path is not None:
        _write(junit_path, checks.junit(doc))
    if json_path is not None:
        write_json(json_path, doc)
    exit_if_cancelled(doc, "runs")
    held = doc["runs"] - doc["failed"]
    click.echo(
        f"{held} of {doc['runs']} runs held ({doc['cases']} cases) in {doc['wall_seconds']:.1f} s"
        + (f"; {doc['failed']} failed" if doc["failed"] else "")
    )
    if doc["failed"]:
        sys.exit(EXIT_THRESHOLD)


def _write(junit_path: Path, xml: str) -> None:
    """Write the JUnit file, or BadInput saying why it cannot be."""
    try:
        junit_path.write_text(xml, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--junit {junit_path}: cannot write: {exc.strerror}") from None
