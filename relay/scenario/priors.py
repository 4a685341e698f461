"""Priors: a reading the record leaves open, given as a distribution over its values.

A scenario's `priors:` maps a key (the dotted path of `--set`) to a distribution;
the key's own value in the file stays the point reading `replay` runs.
`relaysim predict` draws the priors together (a Latin hypercube) and crosses the
draws with seeds (`relay.plan.predict`). Each prior carries its reason (`why`),
which docs/calibration.md gives in full.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Prior(BaseModel):
    """One open reading: `dist` between `low` and `high` (triangular: peaking at
    `mode`; loguniform: uniform in the logarithm); `integer` rounds a draw."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dist: Literal["uniform", "loguniform", "triangular"]
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    mode: float | None = Field(default=None, allow_inf_nan=False)
    integer: bool = False
    why: str = ""

    @model_validator(mode="after")
    def _bounds(self) -> Prior:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.dist == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low:g}")
        if self.dist == "triangular":
            if self.mode is None or not self.low <= self.mode <= self.high:
                raise ValueError("triangular needs a mode between low and high")
        elif self.mode is not None:
            raise ValueError(f"mode is for triangular priors, not {self.dist}")
        return self

    def value(self, u: float) -> float | int:
        """The value at quantile `u` in [0, 1) (the inverse of the distribution's CDF)."""
        lo, hi = self.low, self.high
        if self.dist == "uniform":
            x = lo + u * (hi - lo)
        elif self.dist == "loguniform":
            x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            assert self.mode is not None
            split = (self.mode - lo) / (hi - lo)
            if u < split:
                x = lo + math.sqrt(u * (hi - lo) * (self.mode - lo))
            else:
                x = hi - math.sqrt((1 - u) * (hi - lo) * (hi - self.mode))
        return round(x) if self.integer else x
