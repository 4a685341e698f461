"""The `relaysim` command line.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr, never a
traceback); 4 an invariant checker failed the run (the seed and the command that
replays it are printed).
"""

from __future__ import annotations

import functools
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
from rich.console import Console

from relay.cli import logs, render
from relay.scenario.schema import ConfigError, Scenario, load_scenario

if TYPE_CHECKING:
    from relay.engines.common import Engine

EXIT_CRASH = 1
EXIT_BAD_INPUT = 2
EXIT_HANG = 3
EXIT_INVARIANT = 4
EXIT_INCONCLUSIVE = 5


class BadInput(click.ClickException):
    """A user error reported as one line with exit code 2."""

    exit_code = EXIT_BAD_INPUT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="relaysim")
def cli() -> None:
    """Simulate the 2016 My Number card relay tier: legacy and fixed designs."""


@cli.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--design", type=click.Choice(["fixed", "legacy"]), help="Design preset.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario key, e.g. --set load.requests=5000 (repeatable).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed (overrides the scenario's).")
@click.option(
    "--engine",
    type=click.Choice(["fast", "trio"]),
    default="fast",
    show_default=True,
    help="fast: discrete-event loop; trio: one trio task per request (same core).",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the summary.")
@click.option(
    "--report", "report_path", type=click.Path(path_type=Path), help="Write an HTML report."
)
@click.option("--quiet", is_flag=True, help="No progress bar, no table.")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning"
)
def replay(
    config: Path,
    design: str | None,
    overrides: tuple[str, ...],
    seed: int | None,
    engine: Engine,
    json_path: Path | None,
    report_path: Path | None,
    quiet: bool,
    log_format: logs.LogFormat,
    log_level: str,
) -> None:
    """Replay a whole scenario under virtual time and print its summary."""
    from relay.plan.replay import replay as run_replay  # deferred: keeps --help fast

    sets = list(overrides)
    if design:
        sets.append(f"design={design}")
    if seed is not None:
        sets.append(f"seed={seed}")
    scenario = _load(config, sets, json_path)
    command = _replay_command(config, overrides, scenario.design, scenario.seed, engine, json_path)
    log = logs.configure(log_format, log_level)
    log.info("replay.start", scenario=str(config), seed=scenario.seed, replay=command)
    err = Console(stderr=True)
    with render.progress(scenario, enabled=not quiet and err.is_terminal, console=err) as bar:
        result = run_replay(scenario, name=config.stem, engine=engine, log=log, progress=bar)
    doc = result.summary
    if json_path is not None:
        _write_json(json_path, doc)
    if report_path is not None:
        _write_report(report_path, [(config.name, doc)])
    if not quiet:
        render.summary_table(doc, Console())
    log.info("replay.end", seed=scenario.seed, violations=len(result.violations))
    if result.violations:
        click.echo(f"relaysim: run failed its checks (seed {scenario.seed}):", err=True)
        for v in result.violations:
            click.echo(f"  {v}", err=True)
        click.echo(f"replay with: {command}", err=True)
        sys.exit(EXIT_INVARIANT)


@cli.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--design", type=click.Choice(["fixed", "legacy"]), help="Design preset.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@click.option("--examples", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the result.")
def hunt(
    config: Path,
    design: str | None,
    overrides: tuple[str, ...],
    examples: int,
    seed: int,
    json_path: Path | None,
) -> None:
    """Search schedules and interleavings for a crash, a hang or a broken invariant.

    Exit 0: none found and every race window reached; 5: none found but a window was
    never reached (inconclusive); 1 crash, 3 hang, 4 invariant violation.
    """
    from relay.plan.hunt import hunt as run_hunt  # deferred: hypothesis loads slowly

    sets = [*overrides, *([f"design={design}"] if design else [])]
    scenario = _load(config, sets, json_path)
    parts = ["relaysim", "hunt", str(config), "--design", scenario.design]
    for o in overrides:
        parts += ["--set", o]
    command = shlex.join([*parts, "--examples", str(examples), "--seed", str(seed)])
    result = run_hunt(scenario, scenario.design, examples=examples, seed=seed)
    missed = result.missed()
    doc = {
        "schema": "relaysim.hunt/1",
        "scenario": config.stem,
        "design": scenario.design,
        "seed": seed,
        **result.document(),
        "windows_missed": missed,
        "replay": command,
    }
    if json_path is not None:
        _write_json(json_path, doc)
    reached = ", ".join(f"{k} in {v}" for k, v in sorted(result.reached.items()))
    click.echo(f"{result.examples} worlds searched on {scenario.design}; windows: {reached}")
    if result.failure is not None:
        f = result.failure
        click.echo(f"FOUND {f.kind}: {f.mechanism} ({f.detail})")
        click.echo(f"shrunk world: {result.case}")
        click.echo(f"replay with: {command}")
        sys.exit({"crash": EXIT_CRASH, "hang": EXIT_HANG}.get(f.kind, EXIT_INVARIANT))
    if missed:
        click.echo(f"inconclusive: never reached {', '.join(missed)}")
        sys.exit(EXIT_INCONCLUSIVE)
    click.echo("nothing found, every race window reached")


@cli.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--design", type=click.Choice(["fixed", "legacy"]), help="Design preset.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@click.option(
    "--hsm",
    "hsm_kind",
    type=click.Choice(["simulated", "softhsm"]),
    default="simulated",
    show_default=True,
    help="simulated: drawn service times; softhsm: the project's SoftHSM2 token.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Dispatcher port (0: any).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=0, help="/metrics port.")
@click.option("--admin-port", type=click.IntRange(0, 65535), default=0, help="/faults port.")
@click.option("--drain", type=click.FloatRange(min=0), default=10.0, show_default=True)
@click.option("--log-format", type=click.Choice(["console", "json"]), default="json")
@click.option(
    "--log-file", type=click.Path(path_type=Path, dir_okay=False), help="Default: stdout."
)
def serve(
    config: Path,
    design: str | None,
    overrides: tuple[str, ...],
    hsm_kind: Literal["simulated", "softhsm"],
    port: int,
    metrics_port: int,
    admin_port: int,
    drain: float,
    log_format: logs.LogFormat,
    log_file: Path | None,
) -> None:
    """Serve the scenario's relay tier on 127.0.0.1 until SIGINT or SIGTERM."""
    import trio

    from hsm_adapter.errors import HsmSetupError
    from relay.serve import app as serving

    sets = [*overrides, *([f"design={design}"] if design else [])]
    scenario = _load(config, sets, None)
    try:
        stream = log_file.open("a", encoding="utf-8") if log_file else sys.stdout
    except OSError as exc:
        raise BadInput(f"--log-file {log_file}: cannot open: {exc.strerror}") from None
    log = logs.configure(log_format, "info", stream)

    def announce(line: str) -> None:
        click.echo(line, err=True)

    try:
        stats = trio.run(
            functools.partial(
                serving.run,
                scenario,
                hsm=hsm_kind,
                port=port,
                metrics_port=metrics_port,
                admin_port=admin_port,
                drain=drain,
                log=log,
                announce=announce,
            )
        )
    except HsmSetupError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    click.echo(f"stopped: {stats.requests} requests, {stats.replies} replies", err=True)


@cli.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--target", required=True, metavar="HOST:PORT", help="A relaysim serve dispatcher.")
@click.option("--duration", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.001), help="Requests per second (Poisson).")
@click.option(
    "--speed", type=click.FloatRange(min=0.001), help="The scenario's day, X times faster."
)
@click.option("--connections", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the summary.")
@click.option("--quiet", is_flag=True, help="No progress line, no table.")
def load(
    config: Path,
    target: str,
    duration: float,
    rate: float | None,
    speed: float | None,
    connections: int,
    overrides: tuple[str, ...],
    json_path: Path | None,
    quiet: bool,
) -> None:
    """Send an open-model load to a serving tier; print the replay's summary (engine tcp)."""
    import trio

    from relay.serve import load as loading

    if rate is not None and speed is not None:
        raise BadInput("--rate and --speed: choose one")
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadInput(f"--target {target!r}: expected HOST:PORT, for example 127.0.0.1:7000")
    scenario = _load(config, list(overrides), json_path)
    console = Console()
    with render.load_progress(
        scenario.name, duration, enabled=not quiet and console.is_terminal, console=console
    ) as hook:
        try:
            doc, _ = trio.run(
                functools.partial(
                    loading.run,
                    scenario,
                    host,
                    int(port_text),
                    duration=duration,
                    rate=rate,
                    speed=speed if rate is None else None,
                    connections=connections,
                    progress=hook,
                )
            )
        except loading.LoadError as exc:
            raise BadInput(str(exc)) from None
    doc["scenario"] = config.stem
    if json_path is not None:
        _write_json(json_path, doc)
    if not quiet:
        render.summary_table(doc, console)
    if doc["lost"]:
        click.echo(f"relaysim: {doc['lost']} requests had no reply", err=True)
        sys.exit(EXIT_INVARIANT)


@cli.command()
@click.option("--admin", required=True, metavar="HOST:PORT", help="A serve's admin endpoint.")
@click.argument("action", type=click.Choice(["inject", "clear", "show"]))
@click.argument("kind", required=False)
@click.option("--node", type=int, help="Relay number (1-based).")
@click.option("--factor", type=float, help="slow_backend: how many times slower.")
def fault(
    admin: str, action: str, kind: str | None, node: int | None, factor: float | None
) -> None:
    """Inject a fault into a running `relaysim serve`, clear them, or show the tier.

    KIND: hsm_stall, crash, timer_race, slow_backend, detach, attach.
    """
    import urllib.error
    import urllib.request

    method = {"inject": "POST", "clear": "DELETE", "show": "GET"}[action]
    body = None
    if action == "inject":
        if not kind:
            raise BadInput("inject: name the fault KIND, for example `inject crash --node 1`")
        payload: dict[str, Any] = {"kind": kind}
        if node is not None:
            payload["node"] = node
        if factor is not None:
            payload["factor"] = factor
        body = json.dumps(payload).encode()
    url = f"http://{admin}/faults"
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            click.echo(response.read().decode().strip())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
        raise BadInput(f"fault {action}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BadInput(f"cannot reach the admin endpoint {url}: {reason}") from None


@cli.group()
def hsm() -> None:
    """The real HSM: a SoftHSM2 token under the project's state folder.

    The PIN comes from RELAYSIM_HSM_PIN, or the file RELAYSIM_HSM_PIN_FILE names, or
    state/softhsm/user.pin (created by `init`); never from the command line.
    """


_TOKEN_OPTIONS = [
    click.option("--label", default="relaysim", show_default=True, help="Token label."),
    click.option("--module", help="PKCS#11 library (default: Debian's SoftHSM2)."),
    click.option(
        "--state",
        type=click.Path(path_type=Path, file_okay=False),
        help="State folder (default: $RELAYSIM_STATE or ./state).",
    ),
    click.option(
        "--mechanism", default="ECDSA", show_default=True, help="Signing mechanism (PKCS#11 name)."
    ),
]


def _token_options(fn: Any) -> Any:
    for option in reversed(_TOKEN_OPTIONS):
        fn = option(fn)
    return fn


def _token_config(label: str, module: str | None, state: Path | None, mechanism: str) -> Any:
    from hsm_adapter.token import TokenConfig

    extra: dict[str, Any] = {"mechanism": mechanism}
    if module:
        extra["module"] = module
    if state is not None:
        extra["state"] = state
    return TokenConfig(label=label, **extra)


def _print_token(doc: dict[str, Any]) -> None:
    click.echo(f"token {doc['token']!r} ({doc['manufacturer'].strip()} {doc['model'].strip()})")
    for obj in doc["objects"]:
        click.echo(f"  {obj}")
    live = "ok" if doc["sign_verify"] and doc["encrypt_decrypt"] else "FAILED"
    click.echo(f"live sign/verify and encrypt/decrypt: {live} ({doc['sign_verify_ms']} ms)")


@hsm.command("init")
@_token_options
def hsm_init(label: str, module: str | None, state: Path | None, mechanism: str) -> None:
    """Create the token and its keys if missing (idempotent), then check them live."""
    from hsm_adapter.token import TokenError, ensure

    cfg = _token_config(label, module, state, mechanism)
    try:
        doc = ensure(cfg)
    except TokenError as exc:
        raise BadInput(str(exc)) from None
    for what in doc["created"]:
        click.echo(f"created {what}")
    if not doc["created"]:
        click.echo("token and keys already present")
    _print_token(doc)


@hsm.command("status")
@_token_options
def hsm_status(label: str, module: str | None, state: Path | None, mechanism: str) -> None:
    """Report the token, its keys and a live sign/verify check."""
    from hsm_adapter.token import TokenError, status

    try:
        doc = status(_token_config(label, module, state, mechanism))
    except TokenError as exc:
        raise BadInput(str(exc)) from None
    _print_token(doc)
    if not (doc["sign_verify"] and doc["encrypt_decrypt"]):
        sys.exit(1)


@cli.command()
@click.argument("sweep_file", metavar="SWEEP", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Local worker processes (default: one per core).",
)
@click.option("--dask", "dask_address", metavar="ADDRESS", help="Run on a Dask cluster instead.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario key on every point, e.g. --set calendar.until=2016-01-20.",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the rows.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write the rows as CSV.")
@click.option("--quiet", is_flag=True, help="No progress bar, no table.")
def sweep(
    sweep_file: Path,
    workers: int | None,
    dask_address: str | None,
    overrides: tuple[str, ...],
    json_path: Path | None,
    csv_path: Path | None,
    quiet: bool,
) -> None:
    """Run what-if points of a scenario in parallel; one row of figures per point."""
    import csv
    import os

    from relay.plan import sweep as sweeps

    if workers is not None and dask_address is not None:
        raise BadInput("--workers and --dask: choose one (Dask decides its own workers)")
    for opt, path in (("--json", json_path), ("--csv", csv_path)):
        if path is not None and not path.parent.is_dir():
            raise BadInput(f"{opt} {path}: directory {path.parent} does not exist")
    try:
        plan = sweeps.load_sweep(sweep_file, overrides)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    err = Console(stderr=True)
    n = workers or os.cpu_count() or 1
    label = f"dask {dask_address}" if dask_address else f"{n} local worker{'s' * (n > 1)}"
    pool = sweeps.dask_pool(dask_address) if dask_address else sweeps.local_pool(n)
    show = not quiet and err.is_terminal
    try:
        with (
            pool as executor,
            render.sweep_progress(plan.name, len(plan.points), enabled=show, console=err) as bar,
        ):
            doc = sweeps.run(plan, executor, progress=bar, label=label)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    if json_path is not None:
        _write_json(json_path, doc)
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
        render.sweep_table(doc, Console())
    if doc["failed"]:
        click.echo(f"relaysim: {doc['failed']} of {doc['points']} points failed", err=True)
        sys.exit(EXIT_INVARIANT)


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--html", "html_path", type=click.Path(path_type=Path), required=True, help="Write here."
)
def report(results: tuple[Path, ...], html_path: Path) -> None:
    """Write one self-contained HTML report of replay summaries and sweep results."""
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
    _write_report(html_path, docs)
    click.echo(f"wrote {html_path}")


def _write_report(path: Path, docs: list[tuple[str, Any]]) -> None:
    from relay.plan.report import ReportError, html_report

    if not path.parent.is_dir():
        raise BadInput(f"--html {path}: directory {path.parent} does not exist")
    try:
        page = html_report(docs)
    except (ReportError, KeyError, TypeError, AttributeError) as exc:
        what = str(exc) if isinstance(exc, ReportError) else f"missing or wrong field {exc}"
        raise BadInput(f"report: {what}") from None
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--html {path}: cannot write: {exc.strerror}") from None


def _load(config: Path, sets: list[str], json_path: Path | None) -> Scenario:
    """The scenario with its overrides, and a writable --json target, or BadInput."""
    try:
        scenario = load_scenario(config, sets)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    if json_path is not None and not json_path.parent.is_dir():
        raise BadInput(f"--json {json_path}: directory {json_path.parent} does not exist")
    return scenario


def _replay_command(
    config: Path,
    overrides: tuple[str, ...],
    design: str,
    seed: int,
    engine: str,
    json_path: Path | None,
) -> str:
    parts = ["relaysim", "replay", str(config), "--design", design, "--seed", str(seed)]
    parts += ["--engine", engine]
    for o in overrides:
        parts += ["--set", o]
    if json_path is not None:
        parts += ["--json", str(json_path)]
    return shlex.join(parts)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    try:
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--json {path}: cannot write: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click, with every usage error reduced to one line."""
    try:
        cli.main(args=argv, prog_name="relaysim", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("relaysim: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"relaysim: {exc.format_message()}", err=True)
        sys.exit(EXIT_BAD_INPUT if exc.exit_code == 1 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
