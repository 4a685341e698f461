"""What the commands share: the `relaysim` group they register on, exit codes, the
one-line error, option decorators, and reading the scenario and writing results
with errors that name what is wrong."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from relay.scenario.schema import ConfigError, Scenario, load_scenario

EXIT_CRASH = 1
EXIT_BAD_INPUT = 2
EXIT_HANG = 3
EXIT_INVARIANT = 4
EXIT_INCONCLUSIVE = 5
EXIT_THRESHOLD = 6  # the run went through, but a threshold (--expect) failed
# load: the server stopped (or stopped answering) before the load finished, so its
# own figures over the load (crashes, hangs, outage) are unknown.
EXIT_SERVER_STOPPED = 7

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="relaysim")
def cli() -> None:
    """Simulate the 2016 My Number card relay tier: legacy and fixed designs."""


class BadInput(click.ClickException):
    """A user error reported as one line with exit code 2."""

    exit_code = EXIT_BAD_INPUT


#: CONFIG: a scenario file.
config_argument = click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
design_option = click.option(
    "--design", type=click.Choice(["fixed", "legacy"]), help="Design preset."
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario key, e.g. --set load.requests=5000 (repeatable).",
)
quiet_option = click.option("--quiet", is_flag=True, help="No progress bar, no table.")


def pool_options(command: F) -> F:
    """`--workers N` or `--dask ADDRESS`: where a command's many replays run
    (`executor` makes the pool)."""
    command = click.option(
        "--dask", "dask_address", metavar="ADDRESS", help="Run on a Dask cluster instead."
    )(command)
    return click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Local worker processes (default: one per core).",
    )(command)


expect_option = click.option(
    "--expect",
    "expectations",
    multiple=True,
    metavar="EXPR",
    help="A threshold the run must meet, e.g. 'overflow_rate < 0.1%' or "
    "'latency_ms.p99 <= 10000' (repeatable; with the scenario's expect: list). "
    f"A failed one exits {EXIT_THRESHOLD}.",
)


def executor(workers: int | None, dask_address: str | None) -> tuple[Any, str]:
    """The executor `--workers` or `--dask` asks for (a context manager, entered by
    the caller) and its label; BadInput for both at once."""
    import os

    from relay.plan import pools

    if workers is not None and dask_address is not None:
        raise BadInput("--workers and --dask: choose one (Dask decides its own workers)")
    if dask_address:
        return pools.dask_pool(dask_address), f"dask {dask_address}"
    n = workers or os.cpu_count() or 1
    return pools.local_pool(n), f"{n} local worker{'s' * (n > 1)}"


def expectations_of(
    texts: tuple[str, ...] | list[str], given: str = "--expect", kind: str = "replay"
) -> list[Any]:
    """The `Expectation`s of `texts` for a run of `kind`, or BadInput naming the one
    that does not parse or that such a run cannot measure, and where it came from
    (before anything runs)."""
    from relay.scenario.expect import ExpectError, for_kind

    try:
        return [for_kind(t, {kind}) for t in texts]
    except ExpectError as exc:
        raise BadInput(f"{given} {exc}") from None


def scenario_expectations(scenario: Any, kind: str) -> list[Any]:
    """The thresholds of the scenario's own `expect:` that a run of `kind` measures
    (a scenario's list serves its replays and its loads: a load's client figures
    are not a replay's)."""
    from relay.scenario.expect import measured_by

    return measured_by(scenario.expect, kind)


def exit_if_cancelled(doc: dict[str, Any], unit: str) -> None:
    """If a signal cut the run short (`doc["cancelled"]`, `relay.plan.pools`): say
    how many of its `unit` ended, and exit 128 + the signal."""
    name = doc.get("cancelled")
    if not name:
        return
    from relay.plan import pools

    rows = doc["rows"]
    cut = sum(1 for r in rows if r["error"] == pools.cut_short(name))
    click.echo(
        f"relaysim: {pools.cut_short(name)}: {len(rows) - cut} of {len(rows)} {unit} ended, "
        f"{cut} cut short (errors in what was written)",
        err=True,
    )
    sys.exit(pools.exit_code(name))


def judge(doc: Any, expectations: list[Any]) -> bool:
    """Hold `doc` (a result document) to `expectations`: one PASS or FAIL line each
    on stdout, the verdicts into `doc["expectations"]`; whether all held."""
    from relay.scenario.expect import judge as judged

    verdicts = judged(expectations, doc)
    doc["expectations"] = [v.document() for v in verdicts]
    for v in verdicts:
        click.echo(v.line())
    return all(v.passed for v in verdicts)


def json_option(help_text: str) -> Callable[[F], F]:
    """`--json PATH`: where to write the command's result document."""
    return click.option("--json", "json_path", type=click.Path(path_type=Path), help=help_text)


def check_output(option: str, path: Path | None, *inputs: Path) -> None:
    """Before any work: `path` (the value of `option`) can be written as a file and
    is none of the `inputs` (writing the result over the scenario would lose it)."""
    if path is None:
        return
    if not path.parent.is_dir():
        raise BadInput(f"{option} {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise BadInput(f"{option} {path}: is a directory")
    for given in inputs:
        if path.resolve() == given.resolve():
            raise BadInput(f"{option} {path}: is an input of this command; choose another file")


def load_config(config: Path, sets: list[str], json_path: Path | None) -> Scenario:
    """The scenario with its overrides, and a writable --json target, or BadInput."""
    from relay.scenario.bounds import clamped

    check_output("--json", json_path, config)
    try:
        scenario = load_scenario(config, sets)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    for line in clamped(scenario):
        click.echo(f"relaysim: warning: {config}: {line}", err=True)
    return scenario


def write_json(path: Path, doc: Mapping[str, Any], option: str = "--json") -> None:
    """Write `doc` as JSON to `path` (the value of `option`), or BadInput."""
    try:
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{option} {path}: cannot write: {exc.strerror}") from None


def write_report(option: str, path: Path, docs: list[tuple[str, Any]]) -> None:
    """Write the HTML report of `docs` to `path` (the value of `option`)."""
    from relay.plan.report import ReportError, html_report

    check_output(option, path)
    try:
        page = html_report(docs)
    except ReportError as exc:
        raise BadInput(f"report: {exc}") from None
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{option} {path}: cannot write: {exc.strerror}") from None
