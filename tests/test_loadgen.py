"""Municipal load: sizes, connection caps, and the day's arrivals."""

from __future__ import annotations

import random
import statistics

import pytest

from loadgen.arrivals import first_attempts
from loadgen.municipalities import build, cs_cap
from loadgen.profile import WEEKDAY, slots
from relay.scenario.schema import CsConnectionsConfig, PopulationConfig


def test_sizes_are_heavy_tailed_like_japan() -> None:
    """1,741 municipalities, median near 25k, mean near 73k, named cities at their size."""
    munis = build(PopulationConfig(), CsConnectionsConfig())
    sizes = [m.population for m in munis]
    assert len(munis) == 1741
    assert 20_000 < statistics.median(sizes) < 31_000
    assert 60_000 < statistics.mean(sizes) < 90_000
    assert munis[0].name == "Yokohama"
    assert munis[0].population == 3_730_000
    assert max(sizes) == 3_730_000
    assert min(sizes) >= 200


def test_caps_grow_with_size_up_to_the_maximum() -> None:
    """Caps rise with residents, stop at the maximum, and named overrides win."""
    cfg = CsConnectionsConfig(base=2, per_100k=1.0, maximum=30, overrides={"Kyoto": 42})
    assert cs_cap(1_000, cfg) == 2
    assert cs_cap(500_000, cfg) == 7
    assert cs_cap(10_000_000, cfg) == 30
    assert cs_cap(1_000, cfg, "Kyoto") == 42


def test_arrivals_are_sorted_counted_and_within_hours() -> None:
    """Exactly n arrivals, in time order, all inside the service hours."""
    munis = build(PopulationConfig(count=50), CsConnectionsConfig())
    hours = (7.5 * 3600, 21.5 * 3600)
    got = list(first_attempts(20_000, "weekday", hours, munis, random.Random(2)))
    times = [t for t, _ in got]
    assert len(got) == 20_000
    assert times == sorted(times)
    assert hours[0] <= times[0]
    assert times[-1] < hours[1]
    assert {cs for _, cs in got} <= {m.id for m in munis}


def test_arrivals_follow_the_weekday_peaks() -> None:
    """The 10:00 half hour carries about 2.6/0.5 times the 8:00 one, as the profile says."""
    munis = build(PopulationConfig(count=10, named={}), CsConnectionsConfig())
    got = list(first_attempts(50_000, "weekday", (27000, 77400), munis, random.Random(5)))
    at_8 = sum(1 for t, _ in got if 8 * 3600 <= t < 8.5 * 3600)
    at_10 = sum(1 for t, _ in got if 10 * 3600 <= t < 10.5 * 3600)
    assert 4.4 < at_10 / at_8 < 6.1  # expected 5.2


def test_big_cities_send_more() -> None:
    """Arrivals per municipality are proportional to population."""
    munis = build(PopulationConfig(count=20), CsConnectionsConfig())
    got = list(first_attempts(30_000, "flat", (0, 3600), munis, random.Random(9)))
    yokohama = sum(1 for _, cs in got if cs == 0)
    share = munis[0].population / sum(m.population for m in munis)
    assert abs(yokohama / len(got) - share) < 0.02


def test_service_hours_cut_the_profile() -> None:
    """Slots outside the service hours carry no load; partial slots are prorated."""
    cut = slots("weekday", 9 * 3600 + 900, 10 * 3600)
    assert [(s, e) for s, e, _ in cut] == [(33300.0, 34200.0), (34200.0, 36000.0)]
    assert cut[0][2] == WEEKDAY[9.0] / 2


@pytest.mark.parametrize("flattening", [0.3, 1.0])
def test_peak_flattening_moves_load_off_the_peaks_and_keeps_the_day(flattening: float) -> None:
    """Flattening lowers the busiest half hour, raises the quietest, keeps the day's
    total weight, and at 1 leaves every half hour at the same intensity."""
    plain = slots("weekday", 7.5 * 3600, 21.5 * 3600)
    flat = slots("weekday", 7.5 * 3600, 21.5 * 3600, flattening=flattening)
    assert [(s, e) for s, e, _ in flat] == [(s, e) for s, e, _ in plain]
    assert sum(w for *_, w in flat) == pytest.approx(sum(w for *_, w in plain))
    weights, before = [w for *_, w in flat], [w for *_, w in plain]
    assert max(weights) < max(before)
    assert min(weights) > min(before)
    if flattening == 1.0:
        assert max(weights) == pytest.approx(min(weights))
