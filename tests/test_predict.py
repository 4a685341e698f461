"""Predictions with their uncertainty (`relaysim predict`, relay.plan.predict): the
priors drawn by Latin hypercube, the interval, the variance split between readings
and seeds, the rank correlations, and 18 April's replay showing its interval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relay.plan import predict
from relay.scenario.priors import Prior
from relay.scenario.schema import ConfigError, load_scenario, scenario_from_data
from tests.conftest import CONFIGS


def with_priors(**priors: dict[str, Any]) -> Any:
    """The smoke scenario with `priors` (dotted keys spelt with __)."""
    data = {"priors": {k.replace("__", "."): v for k, v in priors.items()}}
    smoke = load_scenario(CONFIGS / "smoke.yaml").model_dump(mode="json", by_alias=True)
    return scenario_from_data({**smoke, **data}, [], "smoke with priors")


def test_the_draws_are_a_latin_hypercube_of_the_priors_and_repeat_from_the_seed() -> None:
    """Each reading's draws put one value in each of the samples' equal-probability
    strata of its prior; the same scenario seed gives the same draws, another seed
    others; integer priors draw integers."""
    scenario = with_priors(
        relays__count={"dist": "uniform", "low": 2, "high": 6, "integer": True},
        backend__service_ms__mean={"dist": "loguniform", "low": 100, "high": 1000},
    )
    drawn = predict.draws(scenario, 10)
    logs = sorted(np.log10(d["backend.service_ms.mean"]) for d in drawn)
    strata = [int((x - 2.0) * 10) for x in logs]  # log10 from 2 to 3, tenths
    assert strata == list(range(10))
    assert all(isinstance(d["relays.count"], int) for d in drawn)
    assert predict.draws(scenario, 10) == drawn
    other = scenario.model_copy(update={"seed": scenario.seed + 1})
    assert predict.draws(other, 10) != drawn


@pytest.mark.parametrize(
    ("prior", "u", "expected"),
    [
        ({"dist": "uniform", "low": 1, "high": 3}, 0.25, 1.5),
        ({"dist": "loguniform", "low": 10, "high": 1000}, 0.5, 100.0),
        ({"dist": "triangular", "low": 0, "mode": 1, "high": 1}, 0.25, 0.5),
        ({"dist": "triangular", "low": 0, "mode": 0, "high": 1}, 0.75, 0.5),
    ],
)
def test_a_prior_value_is_the_inverse_of_its_distribution(
    prior: dict[str, Any], u: float, expected: float
) -> None:
    """The value at a quantile is where the distribution's CDF reaches it."""
    assert Prior.model_validate(prior).value(u) == pytest.approx(expected)


def test_the_variance_splits_between_readings_and_seeds_as_the_law_of_total_variance() -> None:
    """A figure the reading alone decides is all readings; one only the seed moves is
    all seeds; the rank correlation follows the reading, sign included."""
    rng = np.random.default_rng(1)
    rows = []
    for draw in range(12):
        for seed in range(4):
            rows.append(
                {
                    "draw": draw,
                    "seed": seed,
                    "values": {"x": float(draw)},
                    **dict.fromkeys(predict.FIGURES, 0.0),
                    "relay_overflows": 10.0 * draw,
                    "overflows": float(rng.normal()),
                    "p99_ms": 100.0 - draw + 0.1 * float(rng.normal()),
                }
            )
    out = predict.analyse(rows, ["x"], 12, 4)
    assert out["relay_overflows"]["variance_from_readings"] == 1.0
    assert out["relay_overflows"]["rank_correlation"]["x"] == 1.0
    assert out["overflows"]["variance_from_seeds"] > 0.7
    assert out["p99_ms"]["variance_from_readings"] > 0.99
    assert out["p99_ms"]["rank_correlation"]["x"] == -1.0
    assert out["crashes"]["rank_correlation"]["x"] is None  # constant: no ranks
    values = [10.0 * d for d in range(12) for _ in range(4)]
    assert out["relay_overflows"]["p5"] == pytest.approx(np.quantile(values, 0.05))
    assert out["relay_overflows"]["median"] == pytest.approx(np.median(values))


def test_predict_on_the_command_line(tmp_path: Path) -> None:
    """`relaysim predict` on a scenario with priors writes relaysim.predict/1 with one
    row per draw and seed and the figures' intervals; a scenario without priors, and
    a prior on a key no scenario has, are one line each, exit 2."""
    smoke = (CONFIGS / "smoke.yaml").read_text(encoding="utf-8")
    good = tmp_path / "good.yaml"
    good.write_text(
        smoke + "priors:\n  backend.service_ms.mean: {dist: uniform, low: 50, high: 400}\n",
        encoding="utf-8",
    )
    out = tmp_path / "p.json"
    cmd = [sys.executable, "-m", "relay", "predict"]
    args = ["--samples", "4", "--seeds", "2", "--workers", "2", "--json", str(out), "--quiet"]
    done = subprocess.run([*cmd, str(good), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == predict.SCHEMA
    assert len(doc["rows"]) == 8
    p99 = doc["figures"]["p99_ms"]
    assert p99["p5"] <= p99["median"] <= p99["p95"]
    assert p99["variance_from_readings"] > 0.5  # the backend's time decides p99
    bad = tmp_path / "bad.yaml"
    bad.write_text(smoke + "priors:\n  relays.cuont: {dist: uniform, low: 1, high: 2}\n")
    for path, says in ((CONFIGS / "smoke.yaml", "no priors"), (bad, "cuont")):
        done = subprocess.run([*cmd, str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 2
        assert len(done.stderr.splitlines()) == 1
        assert says in done.stderr


def test_the_replay_of_18_april_shows_its_recorded_interval_beside_the_point(
    tmp_path: Path,
) -> None:
    """18 April's file names the prediction recorded for it: replay's JSON and table
    carry its median and 5-95% interval beside the point; a changed scenario does
    not claim it."""
    out = tmp_path / "april.json"
    cmd = [sys.executable, "-m", "relay", "replay", str(CONFIGS / "2016-04-18.yaml")]
    done = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    recorded = json.loads((CONFIGS / "predictions" / "2016-04-18.json").read_text())
    doc = json.loads(out.read_text())
    shown = doc["prediction"]["figures"]["relay_overflows"]
    assert shown["p95"] == recorded["figures"]["relay_overflows"]["p95"]
    assert "predicted relay overflows" in done.stdout
    changed = [*cmd, "--set", "relays.count=5", "--json", str(out), "--quiet"]
    assert subprocess.run(changed, capture_output=True, check=False).returncode == 0
    assert "prediction" not in json.loads(out.read_text())


def test_a_prediction_file_for_another_scenario_is_refused(tmp_path: Path) -> None:
    """A recorded prediction must be a relaysim.predict/1 document for the scenario."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"schema": predict.SCHEMA, "scenario": "other"}))
    with pytest.raises(ConfigError, match="is for 'other', not 'smoke'"):
        predict.interval(path, "smoke")
