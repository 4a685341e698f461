"""`relaysim hunt`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from relay.cli.options import (
    EXIT_CRASH,
    EXIT_HANG,
    EXIT_INCONCLUSIVE,
    EXIT_INVARIANT,
    EXIT_THRESHOLD,
    BadInput,
    check_output,
    cli,
    config_argument,
    design_option,
    expect_option,
    expectations_of,
    json_option,
    judge,
    load_config,
    scenario_expectations,
    set_option,
    write_json,
)
from relay.scenario.schema import Scenario, apply_override, parse_override


@cli.command()
@config_argument
@design_option
@set_option
@click.option("--examples", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--server",
    is_flag=True,
    help="Hunt over the real server and load client on the simulated network: each "
    "world's requests go through RelayServer over TCP's model, with drawn toxics, a "
    "held or partitioned link, a stop signal and hostile clients beside them.",
)
@json_option("Write the result.")
@expect_option
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    help="Write an HTML page: the shrunk failing world's timeline per node and core, "
    "and the same world on the other design beside it.",
)
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(path_type=Path),
    help="Write the shrunk world's run as Chrome trace-event JSON (Perfetto, chrome://tracing).",
)
def hunt(
    config: Path,
    design: str | None,
    overrides: tuple[str, ...],
    examples: int,
    seed: int,
    server: bool,
    json_path: Path | None,
    expectations: tuple[str, ...],
    report_path: Path | None,
    trace_path: Path | None,
) -> None:
    """Search schedules and interleavings for a crash, a hang or a broken invariant
    (with --server: through the real server and client on a simulated network).

    Exit 0: none found and every race window reached; 5: none found but a window was
    never reached (inconclusive); 1 crash, 3 hang, 4 invariant violation; 6: none of
    those, but a threshold (--expect, of a hunt's figures) failed.
    """
    from relay.plan import pools
    from relay.plan.hunt import hunt as run_hunt  # deferred: hypothesis loads slowly

    sets = [*overrides, *([f"design={design}"] if design else [])]
    scenario = load_config(config, sets, json_path)
    held_to = scenario_expectations(scenario, "hunt") + expectations_of(expectations, kind="hunt")
    for option, output in (("--report", report_path), ("--trace", trace_path)):
        check_output(option, output, config, *([json_path] if json_path else []))
    parts = ["relaysim", "hunt", str(config), "--design", scenario.design]
    for o in overrides:
        parts += ["--set", o]
    parts += ["--server"] if server else []
    parts += ["--examples", str(examples), "--seed", str(seed)]
    command = shlex.join([*parts, *(a for t in expectations for a in ("--expect", t))])
    # What the user set with --set is pinned: the worlds draw everything else of
    # theirs (`relay.testing.worlds.DRAWN`) and keep it.
    pins: dict[str, Any] = {}
    for text in overrides:
        path, value = parse_override(text)
        apply_override(pins, path, value, text)
    with pools.cancellable():
        if server:
            from relay.plan.hunt_server import hunt_over_server

            result = hunt_over_server(scenario, scenario.design, examples, seed, pins)
        else:
            result = run_hunt(scenario, scenario.design, examples=examples, seed=seed, pins=pins)
    missed = result.missed()
    doc = result.result(config.stem, scenario.design, seed, command)
    doc["scenario_file"] = str(config)  # to draw it again: `relaysim report`
    doc["sets"] = list(overrides)
    doc["pins"] = pins
    held = judge(doc, held_to)
    if json_path is not None:
        write_json(json_path, doc)
    if report_path is not None or trace_path is not None:
        write_pictures(doc, scenario, pins, report_path, trace_path)
    reached = ", ".join(f"{k} in {v}" for k, v in sorted(result.reached.items()))
    shrinking = f" (then {result.shrink_runs} runs shrinking the failure)" * bool(result.failure)
    over = " over the server" if server else ""
    click.echo(
        f"{result.examples} worlds searched{over} on {scenario.design}{shrinking}; "
        f"windows: {reached}"
    )
    if result.cancelled is not None:
        click.echo(f"cancelled by {result.cancelled}: the search stopped there")
        sys.exit(pools.exit_code(result.cancelled))
    if result.failure is not None:
        f = result.failure
        click.echo(f"FOUND {f.kind}: {f.mechanism} ({f.detail})")
        click.echo(f"shrunk world: {result.world or result.case}")
        click.echo(f"replay with: {command}")
        sys.exit({"crash": EXIT_CRASH, "hang": EXIT_HANG}.get(f.kind, EXIT_INVARIANT))
    if missed:
        click.echo(f"inconclusive: never reached {', '.join(missed)}")
        sys.exit(EXIT_INCONCLUSIVE)
    click.echo("nothing found, every race window reached")
    if not held:
        click.echo(f"replay with: {command}")
        sys.exit(EXIT_THRESHOLD)


def write_pictures(
    doc: dict[str, Any],
    scenario: Scenario,
    pins: dict[str, Any],
    report_path: Path | None,
    trace_path: Path | None,
) -> None:
    """The hunt's shrunk world as a page (`--report`) and a trace (`--trace`), on its
    design and on the other beside it; without a failure, a page saying so."""
    from relay.plan import timeline

    timelines = (
        timeline.both(timeline.case_of(doc), doc["design"], scenario, pins)
        if doc.get("case") is not None
        else []
    )
    if report_path is not None:
        try:
            report_path.write_text(timeline.html(doc, timelines), encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"--report {report_path}: cannot write: {exc.strerror}") from None
    if trace_path is not None:
        write_json(trace_path, timeline.chrome_trace(timelines), option="--trace")
