"""structlog set-up: JSON lines for machines, a console renderer for people.

Events carry virtual time `t` (seconds since midnight) and the node they concern;
the model logs per-node events only, never per request, so a whole-day replay does
not pay for logging it does not show. Loggers are not cached, so tests can capture
them with `structlog.testing.capture_logs()`.
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
    *,
    timestamps: bool = False,
) -> structlog.typing.FilteringBoundLogger:
    """Configure structlog process-wide and return a logger for the run. With
    `timestamps` (serve mode, which runs on the real clock) each event carries the
    UTC time it was logged; a replay's events carry their virtual time instead."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    stamp: list[structlog.typing.Processor] = (
        [structlog.processors.TimeStamper(fmt="iso", utc=True)] if timestamps else []
    )
    structlog.configure(
        processors=[*stamp, structlog.processors.add_log_level, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("relaysim")
    return logger
