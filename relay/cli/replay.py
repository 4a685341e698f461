"""`relaysim replay` and `relaysim report`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click
from rich.console import Console

from relay.cli import logs, render
from relay.cli.options import (
    EXIT_INVARIANT,
    EXIT_THRESHOLD,
    BadInput,
    check_output,
    cli,
    config_argument,
    design_option,
    executor,
    expect_option,
    expectations_of,
    json_option,
    judge,
    load_config,
    pool_options,
    quiet_option,
    scenario_expectations,
    set_option,
    write_json,
    write_report,
)
from relay.plan import predict as predictions
from relay.scenario.schema import ConfigError

if TYPE_CHECKING:
    from relay.core.summary import Summary
    from relay.engines.common import Engine
    from relay.scenario.schema import Scenario


@cli.command()
@config_argument
@design_option
@set_option
@click.option("--seed", type=click.IntRange(min=0), help="Seed (overrides the scenario's).")
@click.option(
    "--engine",
    type=click.Choice(["fast", "trio"]),
    default="fast",
    show_default=True,
    help="fast: discrete-event loop; trio: one trio task per request (same core).",
)
@pool_options
@json_option("Write the summary.")
@expect_option
@click.option(
    "--report", "report_path", type=click.Path(path_type=Path), help="Write an HTML report."
)
@quiet_option
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console")
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    default="warning",
    show_default=True,
    help="info: the run's start and end, operator actions, outages and health checks; "
    "warning and error: only problems.",
)
def replay(
    config: Path,
    design: str | None,
    overrides: tuple[str, ...],
    seed: int | None,
    engine: Engine,
    workers: int | None,
    dask_address: str | None,
    json_path: Path | None,
    expectations: tuple[str, ...],
    report_path: Path | None,
    quiet: bool,
    log_format: logs.LogFormat,
    log_level: str,
) -> None:
    """Replay a whole scenario under virtual time and print its summary.

    With --workers or --dask, a calendar's days are replayed in stretches at once
    and merged (relay.plan.split: a run without operator actions or faults)."""
    from relay.plan.replay import command as replay_command  # deferred: keeps --help fast
    from relay.plan.replay import replay as run_replay

    sets = list(overrides)
    if design:
        sets.append(f"design={design}")
    if seed is not None:
        sets.append(f"seed={seed}")
    scenario = load_config(config, sets, json_path)
    check_output("--report", report_path, config, *([json_path] if json_path else []))
    held_to = scenario_expectations(scenario, "replay") + expectations_of(expectations)
    command = replay_command(
        config,
        design=scenario.design,
        seed=scenario.seed,
        engine=engine,
        sets=overrides,
        expect=expectations,
        json_path=json_path,
    )
    log = logs.configure(log_format, log_level)
    log.info("replay.start", scenario=str(config), seed=scenario.seed, replay=command)
    err = Console(stderr=True)
    if workers is not None or dask_address is not None:
        doc, violations = _split(scenario, config, engine, workers, dask_address, quiet, err)
    else:
        with render.progress(scenario, enabled=not quiet and err.is_terminal, console=err) as bar:
            result = run_replay(scenario, name=config.stem, engine=engine, log=log, progress=bar)
        doc, violations = result.summary, [str(v) for v in result.violations]
    if scenario.prediction is not None and not overrides and not design:
        # The interval recorded for the scenario as shipped (a design or a key
        # changed: it is not this run's). The seed is one of those it crossed.
        try:
            recorded = predictions.interval(config.parent / scenario.prediction, scenario.name)
        except ConfigError as exc:
            raise BadInput(f"{config}: {exc}") from None
        cast(dict[str, Any], doc)["prediction"] = recorded
    if not quiet:
        render.summary_table(doc, render.wide_console())
    held = judge(doc, held_to)
    if json_path is not None:
        write_json(json_path, doc)
    if report_path is not None:
        write_report("--report", report_path, [(config.name, doc)])
    log.info("replay.end", seed=scenario.seed, violations=len(violations))
    if violations:
        click.echo(f"relaysim: run failed its checks (seed {scenario.seed}):", err=True)
        for v in violations:
            click.echo(f"  {v}", err=True)
        click.echo(f"replay with: {command}", err=True)
        sys.exit(EXIT_INVARIANT)
    if not held:
        failed = sum(not v["passed"] for v in doc["expectations"])
        click.echo(f"relaysim: {failed} threshold(s) failed; replay with: {command}", err=True)
        sys.exit(EXIT_THRESHOLD)


def _split(
    scenario: Scenario,
    config: Path,
    engine: str,
    workers: int | None,
    dask_address: str | None,
    quiet: bool,
    err: Console,
) -> tuple[Summary, list[str]]:
    """The calendar in stretches over the pool, merged: the summary and its findings."""
    from relay.plan import split

    pool, label = executor(workers, dask_address)
    n = workers or 2 * (os.cpu_count() or 1)  # Dask: a few stretches a core
    try:
        parts = split.stretches(scenario, n)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    if not quiet:
        err.print(f"replaying {len(parts)} stretches of days on {label}")
    with pool as running:
        doc = split.run(scenario, running, len(parts), engine)
    doc["scenario"] = config.stem
    return doc, list(doc["violations"])


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--html", "html_path", type=click.Path(path_type=Path), required=True, help="Write here."
)
def report(results: tuple[Path, ...], html_path: Path) -> None:
    """Write one self-contained HTML report of replay summaries and sweep results."""
    check_output("--html", html_path, *results)
    docs = []
    for path in results:
        try:
            docs.append((path.name, json.loads(path.read_text(encoding="utf-8"))))
        except FileNotFoundError:
            raise BadInput(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: cannot read: {type(exc).__name__}") from None
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}: not JSON: line {exc.lineno}: {exc.msg}") from None
    hunts = [(name, doc) for name, doc in docs if isinstance(doc, dict) and
             doc.get("schema") == "relaysim.hunt/1"]  # fmt: skip
    if hunts:
        if len(docs) > 1:
            raise BadInput("report: a hunt's result is drawn on its own page: give it alone")
        _hunt_page(hunts[0][0], hunts[0][1], html_path)
    else:
        write_report("--html", html_path, docs)
    click.echo(f"wrote {html_path}")


def _hunt_page(name: str, doc: dict[str, Any], html_path: Path) -> None:
    """`report` on a hunt's result: its shrunk world run again on both designs, from
    the scenario file the result names."""
    from relay.cli.hunt import write_pictures
    from relay.scenario.schema import ConfigError, load_scenario

    try:
        where = Path(doc["scenario_file"])
        scenario = load_scenario(where, [*doc.get("sets", []), f"design={doc['design']}"])
    except KeyError as exc:
        raise BadInput(f"report: {name}: field {exc} is missing (a hunt result)") from None
    except ConfigError as exc:
        raise BadInput(f"report: {name}: its scenario: {exc}") from None
    write_pictures(doc, scenario, doc.get("pins") or {}, html_path, None)
