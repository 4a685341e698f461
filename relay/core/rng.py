"""Named random streams derived from one seed.

One seed decides everything: every consumer (load generator, each node's HSM, the
backend, the monitor, the counter users) draws from its own stream, so adding a
draw in one place does not shift the numbers another place sees.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

#: Draws one value each call (a service time, a think time).
Sampler = Callable[[], float]


class Streams:
    """A factory of independent, reproducible `random.Random` streams keyed by name."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def stream(self, name: str) -> random.Random:
        """The stream called `name`; the same (seed, name) always gives the same numbers."""
        # str seeds are hashed with SHA-512 by random.Random (version 2): stable
        # across processes and Python versions, unlike hash().
        return random.Random(f"relaysim:{self.seed}:{name}")


def blocks(draw: Callable[[], Any]) -> Sampler:
    """A sampler handing out, one by one, the values of the arrays `draw` returns
    (numpy draws a block at a time; a draw per call costs a generator step)."""

    def values() -> Iterator[float]:
        while True:
            yield from draw().tolist()

    return values().__next__
