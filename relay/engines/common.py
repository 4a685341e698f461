"""What every engine shares: how a run ends, and the progress hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from relay.core.tier import RelayTier

#: The two engines: the discrete-event loop, and trio tasks.
Engine = Literal["fast", "trio"]
ENGINES: tuple[Engine, ...] = ("fast", "trio")

#: Called now and then during a run with the simulated time and the tier.
Progress = Callable[[float, RelayTier], None]
PROGRESS_EVERY = 2048  # arrivals between two progress callbacks


@dataclass(frozen=True, slots=True)
class RunEnd:
    """When the run stopped and whether the liveness bound cut it short."""

    start: float
    end: float
    cut_short: bool
