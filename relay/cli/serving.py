"""`relaysim serve`, `relaysim load` and `relaysim fault`: serve mode."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Literal

import click
from rich.console import Console

from relay.cli import load_verdict, logs, progress, render
from relay.cli.options import (
    BadInput,
    cli,
    config_argument,
    design_option,
    expect_option,
    expectations_of,
    json_option,
    load_config,
    scenario_expectations,
    set_option,
)


def _address(option: str, text: str) -> tuple[str, int]:
    """HOST:PORT from an option's value, or BadInput naming it."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadInput(f"{option} {text!r}: expected HOST:PORT, for example 127.0.0.1:7000")
    return host, int(port_text)


@cli.command()
@config_argument
@design_option
@set_option
@click.option(
    "--hsm",
    "hsm_kind",
    type=click.Choice(["simulated", "softhsm"]),
    default="simulated",
    show_default=True,
    help="simulated: drawn service times; softhsm: the project's SoftHSM2 token.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Dispatcher port; relay nodes take the next ones. Default 0: any free ports.",
)
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=0, help="/metrics port (0: any)."
)
@click.option(
    "--admin-port", type=click.IntRange(0, 65535), default=0, help="/faults port (0: any)."
)
@click.option(
    "--drain",
    type=click.FloatRange(min=0, max=86400),
    default=None,
    metavar="SECONDS",
    help="On stop, time to answer admitted requests. Default: the longest a request "
    "can live (relays.timeout_s) plus serve.frame_timeout_s.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001, max=100_000),
    default=1.0,
    show_default=True,
    help="Run the model X times faster than real time (service, think and check times); "
    "`load` learns it from the server. Simulated HSM only.",
)
@click.option(
    "--toxics",
    is_flag=True,
    help="Pass every connection to the dispatcher and relay ports through toxics "
    "(Toxiproxy's, put on with `relaysim fault toxic` or the admin endpoint's /proxies). "
    "Costs a copy per message.",
)
@click.option("--log-format", type=click.Choice(["console", "json"]), default="json")
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    default="info",
    show_default=True,
    help="info: starts, stops, faults, outages, health checks and failed requests.",
)
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
    drain: float | None,
    speed: float,
    toxics: bool,
    log_format: logs.LogFormat,
    log_level: str,
    log_file: Path | None,
) -> None:
    """Serve the scenario's relay tier on 127.0.0.1 until SIGINT, SIGTERM or SIGHUP."""
    import trio

    from hsm_adapter.errors import HsmSetupError
    from hsm_adapter.token import TokenError
    from relay.serve import app as serving
    from relay.serve.clock import ScaledClock
    from relay.serve.ports import PortError

    if speed != 1.0 and hsm_kind == "softhsm":
        raise BadInput(
            f"--speed {speed:g}: a real token signs in real time; --speed needs --hsm simulated"
        )
    sets = [*overrides, *([f"design={design}"] if design else [])]
    scenario = load_config(config, sets, None)
    try:
        stream = log_file.open("a", encoding="utf-8") if log_file else sys.stdout
    except OSError as exc:
        raise BadInput(f"--log-file {log_file}: cannot open: {exc.strerror}") from None
    log = logs.configure(log_format, log_level, stream)

    def announce(line: str) -> None:
        click.echo(line, err=True)

    try:
        server = trio.run(
            functools.partial(
                serving.run,
                scenario,
                hsm=hsm_kind,
                port=port,
                metrics_port=metrics_port,
                admin_port=admin_port,
                drain=drain,
                speed=speed,
                log=log,
                announce=announce,
                toxics=toxics,
            ),
            clock=ScaledClock(speed) if speed != 1.0 else None,
        )
    except (HsmSetupError, PortError, TokenError) as exc:
        raise BadInput(str(exc)) from None
    stats = server.stats
    click.echo(
        f"stopped: {stats.requests} requests, {stats.replies} replies, "
        f"{stats.undelivered} undelivered, {stats.cut} cut by the drain, "
        f"{stats.aborted} cancelled",
        err=True,
    )


@cli.command()
@config_argument
@click.option("--target", required=True, metavar="HOST:PORT", help="A relaysim serve dispatcher.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to send, in real seconds.",
)
@click.option(
    "--rate", type=click.FloatRange(min=0.001), help="Requests per real second (Poisson)."
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001),
    help="Replay the scenario's day from its opening at X times real time. Default: "
    "the server's own speed (serve --speed), which a different X is refused against.",
)
@click.option(
    "--connections",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="TCP connections the requests are spread over (round robin).",
)
@set_option
@json_option("Write the summary.")
@expect_option
@click.option("--quiet", is_flag=True, help="No progress, no table: the one-line result.")
@progress.interval_option
def load(
    config: Path,
    target: str,
    duration: float,
    rate: float | None,
    speed: float | None,
    connections: int,
    overrides: tuple[str, ...],
    json_path: Path | None,
    expectations: tuple[str, ...],
    quiet: bool,
    progress_interval: float,
) -> None:
    """Send an open-model load to a serving tier; print the replay's summary (engine tcp).

    SIGINT (Ctrl-C) or SIGTERM stops it: the summary so far is printed and written,
    and it exits 130 or 143.
    """
    import trio

    from relay.plan import pools
    from relay.serve import load as loading

    if rate is not None and speed is not None:
        raise BadInput("--rate and --speed: choose one")
    host, port = _address("--target", target)
    scenario = load_config(config, list(overrides), json_path)
    held_to = scenario_expectations(scenario, "load") + expectations_of(expectations, kind="load")
    shown = progress.load(
        scenario.name, duration, quiet=quiet, interval=progress_interval, console=Console()
    )
    with shown as hook:
        try:
            doc, record = trio.run(
                functools.partial(
                    loading.run,
                    scenario,
                    host,
                    port,
                    duration=duration,
                    rate=rate,
                    speed=speed if rate is None else None,
                    connections=connections,
                    progress=hook,
                    signals=pools.signalled,
                )
            )
        except loading.LoadError as exc:
            raise BadInput(str(exc)) from None
    doc["scenario"] = config.stem
    load_verdict.finish(
        doc, record, duration=duration, quiet=quiet, held_to=held_to, json_path=json_path
    )


@cli.command()
@click.option("--admin", required=True, metavar="HOST:PORT", help="A serve's admin endpoint.")
@click.argument("action", type=click.Choice(["inject", "clear", "show", "toxic", "untoxic"]))
@click.argument("kind", required=False)
@click.option("--node", type=int, help="inject: relay number (1-based).")
@click.option("--factor", type=float, help="inject slow_backend: how many times slower.")
@click.option(
    "--proxy",
    default="dispatcher",
    show_default=True,
    help="toxic, untoxic: the port it acts on (dispatcher, relay1, ...).",
)
@click.option(
    "--stream",
    type=click.Choice(["upstream", "downstream"]),
    default="downstream",
    show_default=True,
    help="toxic: upstream is client to server.",
)
@click.option(
    "--toxicity",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="toxic: the share of connections it acts on.",
)
@click.option(
    "--attr",
    "attrs",
    multiple=True,
    metavar="NAME=NUMBER",
    help="toxic: one of its attributes, in Toxiproxy's names and units (repeatable).",
)
@click.option("--name", help="toxic: its name. Default: TYPE_STREAM.")
@click.option(
    "--token",
    envvar="RELAYSIM_ADMIN_TOKEN",
    help="The serve run's admin token. Default: read from admin-PORT.token in the state "
    "folder, which serve writes there (RELAYSIM_STATE moves it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the tier's state as JSON.")
def fault(
    admin: str,
    action: str,
    kind: str | None,
    node: int | None,
    factor: float | None,
    proxy: str,
    stream: str,
    toxicity: float,
    attrs: tuple[str, ...],
    name: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Inject a fault into a running `relaysim serve`, put a toxic on its ports, clear
    them, or show the tier.

    inject KIND: crash, hsm_stall, timer_race, slow_backend, detach, attach (the live
    kinds of relay.core.faults, which say what each does). toxic TYPE: latency,
    bandwidth, slicer, timeout, reset_peer, slow_close, limit_data (Toxiproxy's,
    relay.net.toxics; serve needs --toxics); untoxic NAME takes one off; clear
    takes every fault and toxic off. Prints the tier's state after the change:
    each relay, the faults still in effect and the toxics.
    """
    host, port = _address("--admin", admin)
    given = {"KIND": kind, "--node": node, "--factor": factor}
    if action == "inject":
        if not kind:
            raise BadInput("inject: name the fault KIND, for example `inject crash --node 1`")
        payload: dict[str, Any] = {"kind": kind}
        if node is not None:
            payload["node"] = node
        if factor is not None:
            payload["factor"] = factor
        _admin(host, port, action, "POST", "/faults", payload, token)
    elif action in ("toxic", "untoxic"):
        extra = [k for k, v in given.items() if v is not None and k != "KIND"]
        if extra:
            raise BadInput(f"{action} takes no {', '.join(extra)}: those are for inject")
        if not kind:
            example = "toxic latency --attr latency=200" if action == "toxic" else "untoxic NAME"
            raise BadInput(f"{action}: name the toxic, for example `{example}`")
        where = f"/proxies/{proxy}/toxics"
        if action == "toxic":
            toxic = {"type": kind, "stream": stream, "toxicity": toxicity}
            toxic["attributes"] = dict(_attribute(a) for a in attrs)
            if name:
                toxic["name"] = name
            _admin(host, port, action, "POST", where, toxic, token)
        else:
            _admin(host, port, action, "DELETE", f"{where}/{kind}", None, token)
    else:
        extra = [k for k, v in given.items() if v is not None]
        if extra:
            raise BadInput(f"{action} takes no {', '.join(extra)}: it acts on the whole tier")
        if action == "clear":
            _admin(host, port, action, "DELETE", "/faults", None, token)
    state = _admin(host, port, action, "GET", "/faults", None, token)
    if not isinstance(state, dict) or "nodes" not in state:
        raise BadInput(f"fault {action}: {host}:{port} is not a relaysim admin endpoint")
    if as_json:
        click.echo(json.dumps(state))
    else:
        render.fault_state(state, render.wide_console())


def _attribute(text: str) -> tuple[str, float]:
    """NAME=NUMBER of --attr."""
    key, sep, value = text.partition("=")
    try:
        if not sep or not key:
            raise ValueError(text)
        return key.strip(), float(value)
    except ValueError:
        raise BadInput(f"--attr {text!r}: expected NAME=NUMBER, for example latency=200") from None


def _admin(
    host: str, port: int, action: str, method: str, path: str, body: Any, token: str | None
) -> Any:
    """One request to serve's admin endpoint: its JSON answer (None when it has no
    content); BadInput with the endpoint's own one line when it refuses."""
    import http.client
    import urllib.error
    import urllib.request

    from relay.serve.app import token_path

    url = f"http://{host}:{port}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if method != "GET":
        if token is None:
            saved = token_path(port)
            try:
                token = saved.read_text(encoding="ascii").strip()
            except OSError:
                raise BadInput(
                    f"fault {action}: no admin token: {saved} cannot be read (run this where "
                    "serve runs, or pass --token)"
                ) from None
        request.add_header("authorization", f"Bearer {token}")
    not_admin = f"{host}:{port} is not a relaysim admin endpoint (serve prints it as `admin`)"
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode("utf-8", "replace")
            return json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        try:  # the admin endpoint's refusals are one JSON line
            detail = json.loads(exc.read() or b"{}")["error"]
        except (ValueError, KeyError, TypeError):
            detail = None
        if detail is None or (exc.code == 404 and path == "/faults"):
            raise BadInput(f"fault {action}: {not_admin}") from None
        raise BadInput(f"fault {action}: {detail}") from None
    except (ValueError, http.client.HTTPException):
        raise BadInput(f"fault {action}: {not_admin}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise BadInput(f"cannot reach the admin endpoint {url}: {reason}") from None
