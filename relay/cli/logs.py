"""structlog set-up: JSON lines for machines, a console renderer for people.

A replay's events carry virtual time `t` (seconds since the first midnight) and
the node they concern; the model logs per-node events only, never per request, so
a whole-day replay does not pay for logging it does not show. Serve's events carry
`scenario_time` and `utc` instead (`relay.serve.clock.ClockedLog`), and the console
starts each line with the UTC. Loggers are not cached, so tests can capture them
with `structlog.testing.capture_logs()`.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["console", "json"]


#: The levels a run can be asked for: what the model and the servers log.
LEVELS = ("info", "warning", "error")


def configure(
    fmt: LogFormat = "console",
    level: str = "info",
    stream: TextIO | None = None,
) -> structlog.typing.FilteringBoundLogger:
    """Configure structlog process-wide and return a logger for the run."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, timestamp_key="utc")
    )
    structlog.configure(
        processors=[structlog.processors.add_log_level, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("relaysim")
    return logger
