"""Service-time and think-time distributions, as the scenario file states them."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.core.rng import Duration, Sampler


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

    def duration(self) -> Duration:
        """The core's own description of this distribution (`relay.core.rng.Duration`)."""
        return Duration(self.dist, self.mean, self.cv, self.spread)

    def sampler(self, rng: random.Random, scale: float = 1.0) -> Sampler:
        """A zero-argument function drawing values (times `scale`): `Duration.sampler`."""
        return self.duration().sampler(rng, scale)
