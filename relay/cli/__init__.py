"""The `relaysim` command line.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr, never a
traceback); 4 an invariant checker failed the run (the seed and the command that
replays it are printed).
"""

from __future__ import annotations

import sys

import click

from relay.cli.options import EXIT_BAD_INPUT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="relaysim")
def cli() -> None:
    """Simulate the 2016 My Number card relay tier: legacy and fixed designs."""


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


# The commands register themselves on `cli` when their modules load.
from relay.cli import hsm, hunt, replay, serving, sweep  # noqa: E402, F401
