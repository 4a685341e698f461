"""Service-time and think-time distributions, as the scenario file states them."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Sampler = Callable[[], float]


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
        """A zero-argument function drawing values (times `scale`) from `rng`."""
        mean = self.mean * scale
        if self.dist == "constant":
            return lambda: mean
        if self.dist == "exponential":
            rate = 1.0 / mean
            expo = rng.expovariate
            return lambda: expo(rate)
        if self.dist == "uniform":
            lo, hi = mean * (1 - self.spread), mean * (1 + self.spread)
            uni = rng.uniform
            return lambda: uni(lo, hi)
        sigma2 = math.log1p(self.cv * self.cv)
        mu, sigma = math.log(mean) - sigma2 / 2, math.sqrt(sigma2)
        lognorm = rng.lognormvariate
        return lambda: lognorm(mu, sigma)
