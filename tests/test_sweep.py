"""`relaysim sweep`: grids and point lists on a process pool or a Dask cluster,
failed points in their rows, the JSON and CSV outputs, and bad sweep files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relay.cli import main
from relay.core.design import Design
from relay.plan.pools import local_pool
from relay.plan.sweep import CLASS_FIGURES, Goal, csv_rows, load_sweep, run
from relay.scenario.schema import ConfigError
from tests.conftest import CONFIGS

SMOKE = (CONFIGS / "smoke.yaml").as_posix()


def sweep_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"base: {SMOKE}\n{body}", encoding="utf-8")
    return path


def cli(*args: str) -> int:
    try:
        main(["sweep", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


GRID = """
name: caps
grid:
  relays.count: [2, 3]
  load.cs_connections.per_100k: [0.0, 5.0]
set: {load.cs_connections.base: 1, load.cs_connections.maximum: 100}
goal: {overflow_rate_below: 0.01}
"""


def test_a_grid_runs_every_combination_with_its_overrides(tmp_path: Path) -> None:
    """A 2x2 grid on two local workers gives four rows in grid order, each with the
    figures of its own overrides: more connections per CS, fewer overflows."""
    plan = load_sweep(sweep_file(tmp_path, GRID))
    with local_pool(2) as pool:
        doc = run(plan, pool, label="2 local workers")
    rows = doc["rows"]
    assert [r["values"] for r in rows] == [
        {"relays.count": 2, "load.cs_connections.per_100k": 0.0},
        {"relays.count": 2, "load.cs_connections.per_100k": 5.0},
        {"relays.count": 3, "load.cs_connections.per_100k": 0.0},
        {"relays.count": 3, "load.cs_connections.per_100k": 5.0},
    ]
    assert doc["failed"] == 0
    assert all(r["error"] is None and r["requests"] > 0 for r in rows)
    for tight, loose in ((rows[0], rows[1]), (rows[2], rows[3])):
        assert tight["overflows"] > loose["overflows"]
        assert tight["goal_met"] is False
    for row in rows:  # where it overflows: the size classes add up to the row's count
        by_class = [row[k] for k in CLASS_FIGURES]
        assert len(by_class) == 5
        assert sum(by_class) == row["relay_overflows"]
    assert doc["axes"] == ["relays.count", "load.cs_connections.per_100k"]
    assert doc["points_per_minute"] > 0


def test_a_failing_point_is_reported_in_its_row_and_the_rest_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A point whose run fails its checks (a drain too short to finish: requests
    lost) gets its error in its row; the other points still run; the CLI exits 4
    and says how many failed; JSON and CSV agree."""
    body = """
points:
  - {label: good, relays.count: 3}
  - {label: bad, run.drain_s: 0.001}
seeds: [1, 2]
"""
    out, table = tmp_path / "rows.json", tmp_path / "rows.csv"
    path = sweep_file(tmp_path, body)
    assert cli(str(path), "--workers", "2", "--json", str(out), "--csv", str(table)) == 4
    assert "2 of 4 points failed" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    by_label = {(r["label"], r["seed"]): r for r in doc["rows"]}
    assert set(by_label) == {("good", 1), ("good", 2), ("bad", 1), ("bad", 2)}
    assert by_label["good", 1]["error"] is None
    assert by_label["good", 1]["requests"] != by_label["good", 2]["requests"] or (
        by_label["good", 1]["overflows"] != by_label["good", 2]["overflows"]
    )  # two seeds, two different days
    assert by_label["bad", 1]["error"].startswith("checks failed:")
    with table.open(newline="") as f:
        lines = list(csv.DictReader(f))
    assert [(x["label"], x["seed"], bool(x["error"])) for x in lines] == [
        ("good", "1", False),
        ("good", "2", False),
        ("bad", "1", True),
        ("bad", "2", True),
    ]


def test_a_dask_cluster_on_loopback_runs_the_same_rows(tmp_path: Path) -> None:
    """`--dask ADDRESS` runs the sweep on a Dask LocalCluster on 127.0.0.1 and gets the
    same figures as the local pool (every run is a pure function of its seed)."""
    distributed = pytest.importorskip("distributed")
    path = sweep_file(tmp_path, GRID)
    local, remote = tmp_path / "local.json", tmp_path / "dask.json"
    assert cli(str(path), "--workers", "2", "--quiet", "--json", str(local)) == 0
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        assert cli(str(path), "--dask", address, "--quiet", "--json", str(remote)) == 0

    def figures(p: Path) -> list[dict[str, Any]]:
        doc = json.loads(p.read_text())
        return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in doc["rows"]]

    assert figures(local) == figures(remote)
    assert json.loads(remote.read_text())["executor"] == f"dask {address}"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("grid: {relays.count: [1]}\npoints: [{}]\n", "either grid: or points:"),
        ("grid: {relays.count: []}\n", "grid.relays.count: needs at least one value"),
        ("points: []\nfrobnicate: 1\n", "frobnicate: unknown key"),
        ("grid: {relays.count: [1]}\nset: {relays.count: zero}\n", "relays.count"),
    ],
)
def test_a_bad_sweep_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, expected: str
) -> None:
    """Each mistake in a sweep file is named in one line on stderr, exit 2."""
    assert cli(str(sweep_file(tmp_path, body))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert expected in err


def test_a_missing_base_scenario_is_named(tmp_path: Path) -> None:
    """A base scenario that is not there is reported with its path."""
    path = tmp_path / "sweep.yaml"
    path.write_text("base: nowhere.yaml\ngrid: {relays.count: [1]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: no such file"):
        load_sweep(path)


def test_the_example_sweeps_load() -> None:
    """The shipped sweeps validate against their base scenarios, with the grid and
    the list of points their comments describe."""
    grid = load_sweep(CONFIGS / "sweeps" / "relays-vs-caps.yaml")
    assert len(grid.points) == 16
    assert grid.axes == ["relays.count", "load.cs_connections.base"]
    readings = load_sweep(CONFIGS / "sweeps" / "april-readings.yaml")
    labels = [p.label for p in readings.points]
    assert len(readings.points) == 30  # ten readings, three seeds each
    assert len(set(labels)) == 10
    assert readings.points[0].values == {}  # the scenario as shipped comes first
    ablation = load_sweep(CONFIGS / "sweeps" / "ablation.yaml")
    switches = {k for p in ablation.points for k in p.values if k.startswith("switches.")}
    assert switches == {f"switches.{name}" for name in Design.switch_names()}  # each fix off once


def test_the_table_is_whole_when_stdout_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Piped or in a CI log (no terminal), the sweep's table keeps every figure
    whole: a column per axis with its values, no number cut short."""
    out = tmp_path / "rows.json"
    assert cli(str(sweep_file(tmp_path, GRID)), "--workers", "2", "--json", str(out)) == 0
    printed = capsys.readouterr().out
    assert "…" not in printed
    header = next(line for line in printed.splitlines() if "relays.count" in line)
    assert "load.cs_connections.per_100k" in header
    for row in json.loads(out.read_text())["rows"]:
        assert f"{row['requests']:,}" in printed
        assert f"{100 * row['overflow_rate']:.3f}" in printed


def test_a_point_whose_values_do_not_validate_gets_its_row_and_the_rest_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relays.count: [0, 2]`: the point with no relays gets its error row naming the
    key, the other point runs, the command exits 4; a sweep none of whose points
    validates (a misspelt axis) is still refused before anything runs, exit 2."""
    out = tmp_path / "rows.json"
    path = sweep_file(tmp_path, "grid: {relays.count: [0, 2]}\n")
    assert cli(str(path), "--workers", "1", "--quiet", "--json", str(out)) == 4
    rows = {r["values"]["relays.count"]: r for r in json.loads(out.read_text())["rows"]}
    assert "relays.count" in rows[0]["error"]
    assert rows[2]["error"] is None
    assert rows[2]["requests"] > 0
    assert "1 of 2 points failed" in capsys.readouterr().err
    misspelt = sweep_file(tmp_path, "grid: {relay.count: [1, 2]}\n")
    assert cli(str(misspelt), "--quiet") == 2
    assert "relay" in capsys.readouterr().err


def test_a_value_a_bound_clamps_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A swept `load.cs_connections.base` above the file's `maximum` is named, with
    the point and the bound, before the run: that point runs as its neighbour does."""
    body = "grid: {load.cs_connections.base: [1, 60]}\nset: {load.cs_connections.maximum: 30}\n"
    assert cli(str(sweep_file(tmp_path, body)), "--workers", "1", "--quiet") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "point 'load.cs_connections.base=60'" in warnings[0]
    assert "load.cs_connections.maximum=30" in warnings[0]


def test_a_goal_on_the_relays_overflow_events(tmp_path: Path) -> None:
    """`relay_overflows_below` and `relay_overflows_at_most` judge the record's
    count; the CSV's columns are names without spaces."""
    body = "grid: {relays.count: [2]}\ngoal: {relay_overflows_below: 1000000}\n"
    plan = load_sweep(sweep_file(tmp_path, body))
    with local_pool(1) as pool:
        doc = run(plan, pool)
    [row] = doc["rows"]
    assert row["relay_overflows"] > 0
    assert row["goal_met"] is True
    assert Goal(relay_overflows_at_most=0).met(row) is False
    assert Goal(relay_overflows_at_most=row["relay_overflows"]).met(row) is True
    header, _ = csv_rows(doc)
    assert all(" " not in name for name in header)
    assert "relay_overflows_ge_1m" in header


def test_each_point_gets_its_spread_over_the_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A point run on three seeds: the document's `over_seeds` gives each figure's
    mean, sample sd, min and max over them, as numpy computes them from the rows,
    and the table prints them."""
    body = "grid: {relays.count: [2, 3]}\nseeds: [1, 2, 3]\n"
    out = tmp_path / "rows.json"
    assert cli(str(sweep_file(tmp_path, body)), "--workers", "2", "--json", str(out)) == 0
    doc = json.loads(out.read_text())
    assert "over the seeds" in capsys.readouterr().out
    for point in doc["over_seeds"]:
        rows = [r for r in doc["rows"] if r["point"] == point["point"]]
        values = np.array([r["p99_ms"] for r in rows])
        figure = point["p99_ms"]
        assert point["seeds"] == 3
        assert figure["mean"] == pytest.approx(values.mean())
        assert figure["sd"] == pytest.approx(values.std(ddof=1))
        assert (figure["min"], figure["max"]) == (values.min(), values.max())
