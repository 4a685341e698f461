"""Named random streams derived from one seed.

One seed decides everything: every consumer (load generator, each node's HSM, the
backend, the monitor, the counter users) draws from its own stream, so adding a
draw in one place does not shift the numbers another place sees.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
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


class Draws:
    """A sampler the compiled core calls natively: `draw()` gives the next value
    (a direct C call, where calling a sampler goes through Python's calling
    convention); calling it does the same, so it is a `Sampler` too."""

    __slots__ = ()

    def draw(self) -> float:
        """The next value."""
        raise NotImplementedError

    def __call__(self) -> float:
        return self.draw()


class _Blocks(Draws):
    """The values of the arrays `source` returns, one by one."""

    __slots__ = ("_at", "_source", "_values")

    def __init__(self, source: Callable[[], Any]) -> None:
        self._source = source
        self._values: list[float] = []
        self._at = 0

    def draw(self) -> float:
        """The next value; the next array's first once this one is used up."""
        at, values = self._at, self._values
        if at == len(values):
            values = self._values = self._source().tolist()
            at = 0
        self._at = at + 1
        return values[at]


class _Constant(Draws):
    """The same value every time."""

    __slots__ = ("_value",)

    def __init__(self, value: float) -> None:
        self._value = value

    def draw(self) -> float:
        """The value."""
        return self._value


class _Calls(Draws):
    """What a plain sampler (any function of no argument) returns."""

    __slots__ = ("_sampler",)

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def draw(self) -> float:
        """The sampler's next value."""
        return self._sampler()


def draws(sampler: Sampler) -> Draws:
    """`sampler` as `Draws`: itself when it is one, else its calls."""
    return sampler if isinstance(sampler, Draws) else _Calls(sampler)


def blocks(source: Callable[[], Any]) -> Draws:
    """A sampler handing out, one by one, the values of the arrays `source`
    returns (numpy draws a block at a time)."""
    return _Blocks(source)


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

    def sampler(self, rng: random.Random, scale: float = 1.0) -> Draws:
        """A zero-argument function drawing values (times `scale`) seeded from `rng`.

        Values are drawn by numpy in blocks of `BLOCK` and handed out one by one: a
        draw costs a list index instead of a Python-level `random` call, which
        matters at three draws per message and a million messages a day. The block
        generator is seeded from `rng`, so the sequence is a pure function of the
        scenario's seed.
        """
        mean = self.mean * scale
        if self.dist == "constant":
            return _Constant(mean)
        gen = np.random.default_rng(rng.getrandbits(128))
        if self.dist == "exponential":
            return blocks(lambda: gen.exponential(mean, BLOCK))
        if self.dist == "uniform":
            lo, hi = mean * (1 - self.spread), mean * (1 + self.spread)
            return blocks(lambda: gen.uniform(lo, hi, BLOCK))
        sigma2 = math.log1p(self.cv * self.cv)
        mu, sigma = math.log(mean) - sigma2 / 2, math.sqrt(sigma2)
        return blocks(lambda: gen.lognormal(mu, sigma, BLOCK))
