"""`relaysim seek` (relay.plan.seek): the cheapest point of a grid meeting a goal, by
bisection one axis at a time, against the whole grid's answer."""

from __future__ import annotations

import concurrent.futures as cf
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.plan import seek, sweep
from tests.conftest import CONFIGS


class Oracle(cf.Executor):
    """Answers each run from `meets(values, seed)` instead of replaying: the search's
    logic alone, over any monotone or non-monotone landscape."""

    def __init__(self, meets: Callable[[dict[str, Any], int | None], bool]) -> None:
        self.meets = meets
        self.runs = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        _, _, overrides, _, _ = args
        values = dict(overrides)
        seed = values.pop("seed", None)
        self.runs += 1
        future: cf.Future[Any] = cf.Future()
        met = self.meets(values, seed)
        future.set_result({"relay_overflows": 0 if met else 1, "expectations_met": met})
        return future


def plan_of(tmp_path: Path, grid: dict[str, list[int]], seeds: list[int]) -> sweep.Sweep:
    path = tmp_path / "seek.yaml"
    base = (CONFIGS / "smoke.yaml").as_posix()
    path.write_text(json.dumps({"base": base, "grid": grid, "seeds": seeds}), encoding="utf-8")
    return sweep.load_sweep(path)


@settings(max_examples=60, deadline=None)
@given(
    a=st.integers(1, 7),
    b=st.integers(1, 9),
    need=st.sampled_from([1.0, 0.5]),
    threshold=st.integers(2, 30),
    bad_seed=st.integers(1, 3),
)
def test_bisection_finds_the_cheapest_point_the_whole_grid_would(
    tmp_path_factory: Any, a: int, b: int, need: float, threshold: int, bad_seed: int
) -> None:
    """For any monotone landscape (a point meets the goal when its weighted values
    reach a threshold; one seed needs more), the search's answer is the
    lexicographically cheapest point of the whole grid whose seeds meet it, in no
    more evaluations than its bound, and its cheaper neighbours all fail."""
    grid = {
        "load.cs_connections.base": list(range(1, a + 1)),
        "load.requests": list(range(1, b + 1)),
    }
    seeds = [1, 2, 3]
    plan = plan_of(tmp_path_factory.mktemp("seek"), grid, seeds)

    def meets(values: dict[str, Any], seed: int | None) -> bool:
        score = 3 * values["load.cs_connections.base"] + values["load.requests"]
        return bool(score >= threshold + (2 if seed == bad_seed else 0))

    def point_meets(r: int, q: int) -> bool:
        ok = sum(meets({"load.cs_connections.base": r, "load.requests": q}, s) for s in seeds)
        return bool(ok >= need * len(seeds) - 1e-9)

    cheapest = [(r, q) for r in grid["load.cs_connections.base"] for q in grid["load.requests"]
                if point_meets(r, q)]  # fmt: skip
    doc = seek.run(plan, "relay_overflows <= 0", Oracle(meets), need=need)
    if not cheapest:
        assert doc["answer"] is None
        return
    answer = doc["answer"]["values"]
    assert (answer["load.cs_connections.base"], answer["load.requests"]) == min(cheapest)
    assert doc["searched"] <= seek.Seeker(plan, "relay_overflows <= 0", Oracle(meets)).bound
    assert doc["monotone"] is True
    assert all(not n["met"] for n in doc["neighbours"])


def test_a_landscape_where_dearer_hurts_is_flagged(tmp_path: Path) -> None:
    """Where a cheaper neighbour of the answer meets the goal too (a dearer value of
    a later axis hurt), the document says it is not monotone and the command's text
    warns that the answer may not be the cheapest."""
    from relay.cli.seek import seeking_lines

    grid = {"load.cs_connections.base": [1, 2], "load.requests": [1, 2]}
    plan = plan_of(tmp_path, grid, [1])

    def meets(values: dict[str, Any], seed: int | None) -> bool:
        base, requests = values["load.cs_connections.base"], values["load.requests"]
        return bool(base == 2 or requests == 1)  # (1, 1) meets, (1, 2) does not

    doc = seek.run(plan, "relay_overflows <= 0", Oracle(meets))
    assert doc["answer"]["values"] == {"load.cs_connections.base": 2, "load.requests": 1}
    assert doc["monotone"] is False
    assert any("may not be the cheapest" in line for line in seeking_lines(doc))


def test_seek_on_the_command_line(tmp_path: Path) -> None:
    """`relaysim seek` on the smoke day: the answer meets the goal on its seeds and
    its cheaper neighbour does not; a goal that does not parse, and a sweep of points
    (no grid), are one line, exit 2."""
    path = tmp_path / "seek.yaml"
    base = (CONFIGS / "smoke.yaml").as_posix()
    body = {"base": base, "grid": {"load.cs_connections.base": [1, 2, 3, 4, 6, 8]},
            "set": {"load.cs_connections.maximum": 100}, "seeds": [1, 2]}  # fmt: skip
    path.write_text(json.dumps(body), encoding="utf-8")
    out = tmp_path / "seek.json"
    cmd = [sys.executable, "-m", "relay", "seek", str(path), "--workers", "2"]
    goal = ["--goal", "relay_overflows <= 5"]
    done = subprocess.run([*cmd, *goal, "--json", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    answer = doc["answer"]
    assert all(r["relay_overflows"] <= 5 for r in answer["rows"])
    for neighbour in doc["neighbours"]:
        assert any(r["relay_overflows"] > 5 for r in neighbour["rows"])
    assert doc["evaluated"] < doc["grid"]
    assert "cheapest meeting relay_overflows <= 5" in done.stdout
    points = tmp_path / "points.yaml"
    points.write_text(json.dumps({"base": base, "points": [{"relays.count": 2}]}))
    for args, says in (([str(path), "--goal", "overflows <"], "overflows <"),
                       ([str(points), "--goal", "crashes == 0"], "needs grid")):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "relay", "seek", *args], capture_output=True, text=True
        )
        assert done.returncode == 2
        assert len(done.stderr.splitlines()) == 1
        assert says in done.stderr
