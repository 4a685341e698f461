"""The library front for planners (`relay.api`, docs/api.md): scenarios from files,
mappings or scenarios with `{key: value}` overrides, replays as DataFrames, sweeps
without a YAML file, seed statistics, and warnings for values a bound clamps."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import relay
from relay.api import ClampWarning, ConfigError, Result
from tests.conftest import CONFIGS

SMOKE = CONFIGS / "smoke.yaml"


def test_a_scenario_comes_from_a_file_a_mapping_or_a_scenario_with_overrides() -> None:
    """The three sources with `{key: value}` overrides give the same scenario; a bad
    value raises ConfigError in one line naming the key."""
    from_file = relay.load_scenario(SMOKE, {"relays.count": 3, "design": "legacy"})
    assert from_file.relays.count == 3
    assert from_file.design == "legacy"
    again = relay.load_scenario(from_file.model_dump(mode="json", by_alias=True))
    assert again == from_file
    assert relay.load_scenario(from_file, ["relays.count=4"]).relays.count == 4
    with pytest.raises(ConfigError, match=r"relays\.count") as bad:
        relay.load_scenario(SMOKE, {"relays.count": 0})
    assert "\n" not in str(bad.value)


def test_a_replay_gives_its_summary_and_dataframes_that_agree_with_it() -> None:
    """`relay.replay` with a seed: the summary is that seed's; the timeline's rows add
    up to the requests and are stamped on the scenario's day; pools, size classes
    and nodes add up to the summary's overflows and requests."""
    result = relay.replay(SMOKE, seed=3)
    assert isinstance(result, Result)
    doc = result.summary
    assert doc["seed"] == 3
    assert result.violations == []
    timeline = result.timeline
    assert timeline["requests"].sum() == doc["requests"]
    assert str(timeline["time"].iloc[0].date()) == doc["date"]
    assert result.pools["relay_overflows"].sum() == doc["relay_overflows"]
    assert result.by_size["relay_overflows"].sum() == doc["relay_overflows"]
    assert list(result.by_size["size_class"])[-1] == ">=1M"
    assert result.nodes["requests"].sum() == doc["completed"] + doc["timeouts"] + doc["errors"]
    assert "race_windows_probe_collisions" in result.nodes.columns
    assert relay.replay(SMOKE, seed=4).summary["requests"] != doc["requests"]


def test_a_value_a_bound_clamps_is_warned_about_in_python_and_on_the_command_line() -> None:
    """29 March's `load.cs_connections.base=60` under its `maximum: 30` changes
    nothing: the library warns ClampWarning, `relaysim replay` one line on stderr,
    naming the key, the value and the bound."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        relay.load_scenario(CONFIGS / "2016-03-29.yaml", {"load.cs_connections.base": 60})
        relay.load_scenario(CONFIGS / "2016-03-29.yaml", {"load.cs_connections.base": 20})
    [clamp] = [w for w in seen if issubclass(w.category, ClampWarning)]
    assert "load.cs_connections.base=60" in str(clamp.message)
    assert "load.cs_connections.maximum=30" in str(clamp.message)
    sets = ["--set", "load.cs_connections.base=5", "--set", "load.cs_connections.maximum=2"]
    cmd = [sys.executable, "-m", "relay", "replay", str(SMOKE), "--quiet", *sets]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("relaysim: warning: ")
    assert "load.cs_connections.base=5 is above load.cs_connections.maximum=2" in line


def test_a_sweep_needs_no_file_and_gives_one_row_per_point_and_seed() -> None:
    """`relay.sweep` over a grid and seeds: one row per point and seed with tidy
    column names, a point that does not validate in its error row, and `by_point`
    giving each point's mean, sd, min and max over its seeds as numpy computes them."""
    table = relay.sweep(
        SMOKE,
        grid={"relays.count": [0, 2, 4]},
        seeds=[1, 2, 3],
        workers=2,
        goal={"relay_overflows_at_most": 100_000},
    )
    assert len(table) == 9
    assert all(" " not in column for column in table.columns)
    failed = table[table["relays.count"] == 0]
    assert failed["error"].str.contains("relays.count").all()
    ran = table[table["error"].isna()]
    assert ran["goal_met"].all()
    stats = relay.by_point(table)
    assert list(stats["relays.count"]) == [2, 4]
    assert list(stats["seeds"]) == [3, 3]
    for _, point in stats.iterrows():
        values = ran[ran["relays.count"] == point["relays.count"]]["p99_ms"].to_numpy()
        assert point["p99_ms_mean"] == pytest.approx(values.mean())
        assert point["p99_ms_sd"] == pytest.approx(np.std(values, ddof=1))
        assert (point["p99_ms_min"], point["p99_ms_max"]) == (values.min(), values.max())


def test_the_library_loads_pandas_on_use_and_leaves_matplotlibs_backend_alone() -> None:
    """`import relay` loads neither pandas nor matplotlib (the CLI stays quick);
    importing the report module keeps a notebook's matplotlib backend."""
    code = (
        "import sys, relay\n"
        "assert 'pandas' not in sys.modules and 'matplotlib' not in sys.modules\n"
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "import relay.plan.report\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "relay.replay\n"
        "assert 'pandas' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_prediction_from_python_gives_its_figures_and_runs_as_dataframes() -> None:
    """`relay.predict` on a scenario with a prior: the figures' table has the median
    inside its 5-95% interval and the variance shares adding to one; the runs'
    table has one row per draw and seed with the reading drawn."""
    prior = {"dist": "uniform", "low": 50, "high": 400}
    scenario = relay.load_scenario(SMOKE).model_dump(mode="json", by_alias=True)
    scenario["priors"] = {"backend.service_ms.mean": prior}
    made = relay.predict(scenario, samples=4, seeds=[1, 2], workers=2)
    figures = made.figures
    p99 = figures.loc["p99_ms"]
    assert p99["p5"] <= p99["median"] <= p99["p95"]
    assert p99["variance_from_readings"] + p99["variance_from_seeds"] == pytest.approx(1.0)
    assert p99["rank_backend.service_ms.mean"] > 0.5
    runs = made.runs
    assert len(runs) == 8
    assert runs["backend.service_ms.mean"].between(50, 400).all()


def test_seek_from_python_finds_the_cheapest_limit_meeting_a_goal() -> None:
    """`relay.seek` on the smoke day: the answer's seeds meet the goal, the next
    cheaper limit's do not, in fewer points than the axis has."""
    found = relay.seek(
        SMOKE,
        axes={"load.cs_connections.base": [1, 2, 3, 4, 6, 8, 12]},
        overrides={"load.cs_connections.maximum": 100},
        goal="relay_overflows <= 5",
        seeds=[1, 2],
        workers=2,
    )
    assert found.answer is not None
    limit = found.answer["load.cs_connections.base"]
    tested = found.tested
    at = tested[tested["load.cs_connections.base"] == limit]
    assert (at["relay_overflows"] <= 5).all()
    values = [1, 2, 3, 4, 6, 8, 12]
    assert limit != values[0]  # the smoke day overflows at a limit of 1: a search happened
    cheaper = values[values.index(limit) - 1]
    below = tested[tested["load.cs_connections.base"] == cheaper]
    assert (below["relay_overflows"] > 5).any()
    assert found.doc["evaluated"] < len(values)
