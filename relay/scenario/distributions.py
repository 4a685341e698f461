"""Service-time and think-time distributions, as the scenario file states them."""

from __future__ import annotations

import itertools
import math
import random
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from relay.core.rng import Sampler, blocks

BLOCK = 4096  # values drawn per numpy call


class Distribution(BaseModel):
    """A positive random duration: `{dist: lognormal, mean: 8, cv: 0.5}`.

    The unit is carried by the key that holds it (`service_ms`, `think_s`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dist: Literal["constant", "exponential", "lognormal", "uniform"] = "lognormal"
    mean: float = Field(gt=0, description="mean value, in the unit of the enclosing key")
    cv: float = Field(
        default=0.5, ge=0, le=10, description="coefficient of variation (lognormal only)"
    )
    spread: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="uniform only: values lie in mean*(1-spread) .. mean*(1+spread)",
    )

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
