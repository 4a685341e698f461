"""A calendar replayed in stretches of days over workers and merged
(relay.plan.split, `replay --workers`): the stretches keep every day's kind and
volume, the merge adds what adds and merges the latency sketches exactly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from loadgen import calendar
from relay.core.ledger import Ledger
from relay.core.sketch import Sketch
from relay.engines import fast
from relay.plan import split
from relay.plan.replay import replay
from relay.scenario.build import build
from relay.scenario.schema import ConfigError, Scenario, load_scenario
from tests.conftest import CONFIGS

WEEK = ["calendar.until=2016-04-04", "operators=[]", "calendar.last_requests=3000"]


def week() -> Scenario:
    return load_scenario(CONFIGS / "smoke.yaml", WEEK)


def test_stretches_keep_every_days_kind_and_volume() -> None:
    """Cut in three, the week's days are the same days, in order, each with the
    kind and volume it has in the whole calendar."""
    whole = calendar.days(week())
    parts = split.stretches(week(), 3)
    assert len(parts) == 3
    cut = [d for p in parts for d in calendar.days(p)]
    assert [(d.date, d.kind, d.requests) for d in cut] == [
        (d.date, d.kind, d.requests) for d in whole
    ]


def test_the_merge_adds_up_and_its_percentiles_are_the_samples_within_alpha() -> None:
    """Each stretch replayed on its own, then merged: every count is the sum of the
    stretches', the days and the timeline follow each other, each pool keeps its
    highest peak, and the latency percentiles are within 0.5% of numpy's on all the
    stretches' samples; one stretch merged is the plain replay."""
    parts = split.stretches(week(), 3)
    done = [split.run_stretch(p.model_dump(mode="json", by_alias=True), p.name, "fast")
            for p in parts]  # fmt: skip
    merged = split.merge(parts, done)
    docs = [d for d, _ in done]
    for key in ("requests", "completed", "overflows", "relay_overflows", "timeouts"):
        assert merged[key] == sum(d[key] for d in docs)
    assert [r["date"] for r in merged["days"]] == [r["date"] for d in docs for r in d["days"]]
    ts = [b["t"] for b in merged["timeline"]]
    assert ts == sorted(ts)
    assert len(ts) == sum(len(d["timeline"]) for d in docs)
    blocking = merged["blocking"]
    assert blocking is not None
    columns = [d["blocking"]["pools"]["peak"] for d in docs if d["blocking"] is not None]
    peaks = [max(col) for col in zip(*columns, strict=True)]
    assert blocking["pools"]["peak"] == peaks
    assert sum(r["relay_overflows"] for r in blocking["by_size"]) == merged["relay_overflows"]
    samples = []
    for p in parts:  # the same stretches, keeping every sample
        built = build(p, None, Ledger(samples=True))
        fast.run(built.tier, built.arrivals, built.tier.params.events)
        assert built.tier.ledger.samples is not None
        samples.append(np.frombuffer(built.tier.ledger.samples, dtype=np.float64))
    every = np.concatenate(samples)
    latency = dict(merged["latency_ms"])
    for q in (50, 90, 99):
        want = float(np.percentile(every, q, method="inverted_cdf")) * 1000
        assert latency[f"p{q}"] == pytest.approx(want, rel=0.005)
    assert merged["latency_ms"]["max"] == pytest.approx(every.max() * 1000, abs=1e-3)
    [one] = split.stretches(load_scenario(CONFIGS / "smoke.yaml"), 3)
    plain = replay(one).summary
    alone = split.merge([one], [split.run_stretch(one.model_dump(mode="json", by_alias=True),
                                                  one.name, "fast")])  # fmt: skip
    assert {**alone, "wall_seconds": 0} == {**plain, "wall_seconds": 0}


def test_a_sketch_travels_between_processes_whole() -> None:
    """A sketch's state read back is the same sketch."""
    sketch = Sketch()
    for v in np.random.default_rng(3).lognormal(0, 1, 1000):
        sketch.append(float(v))
    back = Sketch.from_state(sketch.state())
    assert back.state() == sketch.state()
    assert back.quantiles((0.5, 0.99, 1.0)) == sketch.quantiles((0.5, 0.99, 1.0))


def test_a_run_whose_state_crosses_days_is_not_split() -> None:
    """Operator actions (January's relays added) carry the tier's state across days:
    refused in one line, and `replay --workers` exits 2 with it."""
    with pytest.raises(ConfigError, match="operator actions or faults"):
        split.stretches(load_scenario(CONFIGS / "jan-2016.yaml"), 2)
    cmd = [
        sys.executable,
        "-m",
        "relay",
        "replay",
        str(CONFIGS / "jan-2016.yaml"),
        "--workers",
        "2",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
