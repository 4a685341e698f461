"""The open arrival stream of first attempts over the day.

Given the number of requests N, an inhomogeneous Poisson process conditioned on N
arrivals places them independently with the density of the day profile; each goes to
a municipality with probability proportional to its population. Slots are generated
one at a time, so memory stays proportional to the busiest half hour, not the day.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np

from loadgen.calendar import Day
from loadgen.municipalities import Municipality
from loadgen.profile import slots


def first_attempts(
    n: int,
    profile: str,
    hours: tuple[float, float],
    municipalities: Sequence[Municipality],
    rng: random.Random,
    flattening: float = 0.0,
) -> Iterator[tuple[float, int]]:
    """Yield `(t, municipality_id)` for `n` first attempts, in increasing `t`, over
    `profile` (its peaks flattened by `flattening`: `loadgen.profile.slots`).

    Drawn with numpy (seeded from `rng`) one slot at a time: the day's 715,000
    arrivals cost a few vectorised calls instead of a Python loop each.
    """
    if n == 0:
        return
    gen = np.random.default_rng(rng.getrandbits(128))
    day = slots(profile, *hours, flattening=flattening)
    weights = np.array([w for _, _, w in day])
    per_slot = gen.multinomial(n, weights / weights.sum())
    cum = np.cumsum([m.population for m in municipalities], dtype=np.float64)
    ids = np.array([m.id for m in municipalities])
    for (start, end, _), k in zip(day, per_slot.tolist(), strict=True):
        if not k:
            continue
        times = np.sort(start + gen.random(k) * (end - start))
        # Inverse CDF over population: municipality i with probability pop_i / total.
        who = ids[np.searchsorted(cum, gen.random(k) * cum[-1], side="right")]
        yield from zip(times.tolist(), who.tolist(), strict=True)


def over_days(
    days: Sequence[Day],
    municipalities: Sequence[Municipality],
    rng: random.Random,
    messages: int = 1,
) -> Iterator[tuple[float, int]]:
    """Yield `(t, municipality_id)` for every first attempt of `days`, in increasing `t`
    (run time: seconds from the first day's midnight). A day's `requests` are
    messages; with `messages` per counter operation, it has requests / messages
    operations (rounded), and those are what arrive."""
    for day in days:
        offset = day.offset
        operations = round(day.requests / messages)
        for t, who in first_attempts(
            operations, day.profile, day.hours, municipalities, rng, day.flattening
        ):
            yield offset + t, who
