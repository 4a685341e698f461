"""The open arrival stream of first attempts over the day.

Given the number of requests N, an inhomogeneous Poisson process conditioned on N
arrivals places them independently with the density of the day profile; each goes to
a municipality with probability proportional to its population. Slots are generated
one at a time, so memory stays proportional to the busiest half hour, not the day.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator, Sequence

from loadgen.municipalities import Municipality
from loadgen.profile import slots


def first_attempts(
    n: int,
    profile: str,
    hours: tuple[float, float],
    municipalities: Sequence[Municipality],
    rng: random.Random,
) -> Iterator[tuple[float, int]]:
    """Yield `(t, municipality_id)` for `n` first attempts, in increasing `t`."""
    if n == 0:
        return
    day = slots(profile, *hours)
    per_slot = Counter(rng.choices(range(len(day)), weights=[w for _, _, w in day], k=n))
    cum = list(itertools.accumulate(m.population for m in municipalities))
    ids = [m.id for m in municipalities]
    for index, (start, end, _) in enumerate(day):
        k = per_slot.get(index, 0)
        if not k:
            continue
        width = end - start
        times = sorted(start + rng.random() * width for _ in range(k))
        yield from zip(times, rng.choices(ids, cum_weights=cum, k=k), strict=True)
