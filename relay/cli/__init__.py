"""The `relaysim` command line.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr, never a
traceback); 4 an invariant checker failed the run (the seed and the command that
replays it are printed).
"""

from __future__ import annotations

import sys

import click

# The commands register themselves on the group when their modules load.
from relay.cli import check, hsm, hunt, predict, replay, seek, serving, sweep  # noqa: F401
from relay.cli.options import EXIT_BAD_INPUT, cli


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click, with every usage error reduced to one line."""
    if not (sys.argv[1:] if argv is None else argv):
        # Alone, the command is a question: what can it do? The help, exit 0.
        with click.Context(cli, info_name="relaysim") as ctx:
            click.echo(cli.get_help(ctx))
        return
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
