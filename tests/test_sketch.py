"""Latency sketches (relay.core.sketch): every quantile within 0.5% of numpy's
nearest-rank percentile of the samples, on drawn samples and on a whole day's
replay; merging is exact; memory is bins, not samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.ledger import Ledger
from relay.core.sketch import ALPHA, Sketch, merged
from relay.core.summary import latency
from relay.engines import fast
from relay.scenario.build import build
from relay.scenario.schema import load_scenario
from tests.conftest import CONFIGS

QS = (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0)


def exact(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, 100 * q, method="inverted_cdf"))


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 5000),
    sigma=st.floats(0.1, 3.0),
    zeros=st.integers(0, 20),
)
def test_every_quantile_is_within_alpha_of_the_samples(
    seed: int, n: int, sigma: float, zeros: int
) -> None:
    """Lognormal samples (with some zeros): each nearest-rank quantile of the sketch
    is within ALPHA of numpy's on the samples, the extremes exact, the mean exact."""
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.lognormal(0.0, sigma, n), np.zeros(zeros)])
    sketch = Sketch()
    for v in values:
        sketch.append(float(v))
    for q, got in zip(QS, sketch.quantiles(QS), strict=True):
        want = exact(values, q)
        assert got == pytest.approx(want, rel=ALPHA, abs=1e-6), q
    assert sketch.quantiles((1.0,))[0] == values.max()
    assert sketch.mean == pytest.approx(values.mean())


def test_merging_is_exact_whatever_the_split() -> None:
    """A run's values sketched in parts and merged give the very sketch of all of
    them (days run on different workers combine exactly)."""
    rng = np.random.default_rng(5)
    values = rng.lognormal(0.0, 1.5, 20_000)
    whole = Sketch()
    for v in values:
        whole.append(float(v))
    parts = [Sketch() for _ in range(7)]
    for i, v in enumerate(values):
        parts[i % 7 if v > 1 else 0].append(float(v))
    combined = merged(parts)
    assert combined.counts == whole.counts
    assert (combined.offset, combined.count, combined.zeros) == (
        whole.offset,
        whole.count,
        whole.zeros,
    )
    assert combined.quantiles(QS) == whole.quantiles(QS)
    assert combined.mean == pytest.approx(whole.mean)


def test_an_empty_sketch_has_no_quantiles() -> None:
    """Nothing counted: NaN quantiles and mean, none at or below any value."""
    empty = Sketch()
    assert all(math.isnan(x) for x in empty.quantiles((0.5, 1.0)))
    assert math.isnan(empty.mean)
    assert empty.at_most(10.0) == 0


def test_a_whole_days_percentiles_are_within_one_percent_of_numpys() -> None:
    """29 March on the fast engine, the ledger keeping every sample beside its
    sketches: the day's p50, p90, p95, p99 and max within 1% (0.5% by construction) of
    numpy's on the samples; the sketches hold a tenth of the samples' bytes."""
    scenario = load_scenario(CONFIGS / "2016-03-29.yaml")
    built = build(scenario, None, Ledger(samples=True))
    fast.run(built.tier, built.arrivals, built.tier.params.events)
    ledger = built.tier.ledger
    assert ledger.samples is not None
    samples = np.frombuffer(ledger.samples, dtype=np.float64)
    whole = merged(ledger.latencies.values())
    assert whole.count == len(samples) > 700_000
    qs = (0.5, 0.9, 0.95, 0.99, 1.0)
    for q, got in zip(qs, whole.quantiles(qs), strict=True):
        assert got == pytest.approx(exact(samples, q), rel=0.01)
    # The summary's figures are these quantiles (ms), p95 among them.
    lat = latency(whole)
    assert lat["p95"] == pytest.approx(exact(samples, 0.95) * 1000, rel=0.01)
    held = sum(s.counts.itemsize * len(s.counts) for s in ledger.latencies.values())
    assert held < samples.nbytes / 10  # bins of 4 bytes, against 8 a sample
