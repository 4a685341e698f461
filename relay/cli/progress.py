"""Progress while a long command runs (`load`, `sweep`, `check`): rich's live bar on a
terminal; off one (a pipe, a CI log, where a bar would print nothing until the
end) a plain line on stderr every `--progress-interval` seconds, 10 by default, so
the log shows the run is alive and how far it got; nothing with `--quiet`."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
from rich.console import Console

from relay.cli import render

INTERVAL_S = 10.0
#: The clock the lines of a run of many (`runs`) read: real time (a test sets its own).
CLOCK: Callable[[], float] = time.monotonic

F = TypeVar("F", bound=Callable[..., Any])


def interval_option(command: F) -> F:
    """`--progress-interval SECONDS`: how often a line comes off a terminal."""
    return click.option(
        "--progress-interval",
        type=click.FloatRange(min=1.0),
        default=INTERVAL_S,
        show_default=True,
        metavar="SECONDS",
        help="Off a terminal (a pipe, a CI log), a progress line on stderr this often "
        "(real seconds) instead of the live bar.",
    )(command)


class Lines:
    """Progress lines off a terminal: one whenever another `interval` seconds have
    passed since the start, on whatever clock the caller reads."""

    def __init__(self, interval: float, write: Callable[[str], None]) -> None:
        self.interval = interval
        self.write = write
        self.due = interval

    def at(self, elapsed: float, line: Callable[[], str]) -> None:
        """`elapsed` seconds after the start: write `line()` if one is due."""
        if elapsed < self.due:
            return
        self.write(line())
        # The next on the grid of intervals: a call that comes late (a busy loop)
        # does not bring a burst of lines to catch up.
        self.due = (math.floor(elapsed / self.interval) + 1) * self.interval


def _stderr(line: str) -> None:
    click.echo(line, err=True)


@contextlib.contextmanager
def load(
    name: str, duration: float, *, quiet: bool, interval: float, console: Console
) -> Iterator[Callable[[Any, float], None] | None]:
    """`relaysim load`'s progress hook (a `LoadRun` and the real seconds since the
    load began), or None: the bar on `console`'s terminal, else lines on stderr."""
    if quiet:
        yield None
    elif console.is_terminal:
        with render.load_progress(name, duration, enabled=True, console=console) as bar:
            yield bar
    else:
        lines = Lines(interval, _stderr)

        def hook(state: Any, elapsed: float) -> None:
            rate = state.answered / elapsed if elapsed > 0 else 0.0
            lines.at(
                elapsed,
                lambda: (
                    f"relaysim: load {name}: {elapsed:,.0f} of {duration:,g} s (real), "
                    f"{state.sent:,} sent, {state.answered:,} answered, {rate:,.0f} a second"
                ),
            )

        yield hook


@contextlib.contextmanager
def runs(
    name: str, total: int, *, what: str, quiet: bool, interval: float, console: Console
) -> Iterator[Callable[[int, int, int], None] | None]:
    """The progress hook of a run of many (`sweep`'s points, `check`'s runs: done,
    failed, total), or None: the bar on `console`'s terminal, else lines on stderr
    every `interval` seconds of CLOCK."""
    if quiet:
        yield None
    elif console.is_terminal:
        with render.sweep_progress(name, total, enabled=True, console=console) as bar:
            yield bar
    else:
        lines, start = Lines(interval, _stderr), CLOCK()

        def hook(done: int, failed: int, total: int) -> None:
            elapsed = CLOCK() - start
            lines.at(
                elapsed,
                lambda: (
                    f"relaysim: {name}: {done:,} of {total:,} {what} done, "
                    f"{failed:,} failed, {elapsed:,.0f} s"
                ),
            )

        yield hook
