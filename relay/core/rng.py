"""Named random streams derived from one seed.

One seed decides everything: every consumer (load generator, each node's HSM, the
backend, the monitor, the counter users) draws from its own stream, so adding a
draw in one place does not shift the numbers another place sees.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

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


BLOCK = 4096  # values drawn per numpy call

DistName = Literal["constant", "exponential", "lognormal", "uniform"]


@dataclass(frozen=True, slots=True)
class Duration:
    """A positive random duration: its distribution, mean, and shape (`cv` for the
    lognormal, `spread` for the uniform). The unit is the caller's."""

    dist: DistName
    mean: float
    cv: float = 0.5
    spread: float = 0.5

    def sampler(self, rng: random.Random, scale: float = 1.0) -> Sampler:
        """A zero-argument function drawing values (times `scale`) seeded from `rng`.

        Values are drawn by numpy in blocks of `BLOCK` and handed out one by one: a
        draw costs a generator step instead of a Python-level `random` call, which
        matters at two draws per request and a million requests a day. The block
        generator is seeded from `rng`, so the sequence is a pure function of the
        scenario's seed.
        """
        mean = self.mean * scale
        if self.dist == "constant":
            return itertools.repeat(mean).__next__
        gen = np.random.default_rng(rng.getrandbits(128))
        if self.dist == "exponential":
            return blocks(lambda: gen.exponential(mean, BLOCK))
        if self.dist == "uniform":
            lo, hi = mean * (1 - self.spread), mean * (1 + self.spread)
            return blocks(lambda: gen.uniform(lo, hi, BLOCK))
        sigma2 = math.log1p(self.cv * self.cv)
        mu, sigma = math.log(mean) - sigma2 / 2, math.sqrt(sigma2)
        return blocks(lambda: gen.lognormal(mu, sigma, BLOCK))
