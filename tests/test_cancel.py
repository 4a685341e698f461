"""Cancelling `check`, `sweep` and `hunt` (issue 28): SIGTERM or SIGINT stops every
worker within 5 s, what was done is written with the runs cut short as errors, and
the exit code is 128 + the signal's number.

The subprocess tests wait on real processes (a pool of spawned workers), so they
poll with a real-time bound; the in-process ones signal themselves at a chosen
point, so they wait on nothing.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, JUnitXml

from relay.plan import hunt as hunts
from relay.plan import pools
from relay.plan import sweep as sweeps
from relay.scenario.schema import load_scenario
from tests.conftest import CONFIGS, ROOT

RELAYSIM = str(Path(sys.executable).with_name("relaysim"))
STOP_WITHIN_S = 5.0  # the bound, from the signal to the last process gone


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc: each thread's children)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                text = Path(f"/proc/{parent}/task/{task}/children").read_text()
            except FileNotFoundError:
                continue
            kids = {int(k) for k in text.split()}
            todo += sorted(kids - found)
            found |= kids
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, ended but not reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(what: str, done: Callable[[], bool], within: float) -> None:
    """Poll `done` until it holds, failing after `within` real seconds."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s")
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_check_leaves_no_process_and_writes_partial_junit(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """`check` of the regression suite, signalled while both workers run, is gone
    with all its processes within 5 s, exits 128 + the signal, and leaves a JUnit
    file that parses, with the runs cut short as errors saying "cancelled"."""
    junit, report = tmp_path / "check.xml", tmp_path / "check.json"
    suite = ROOT / "configs" / "suites" / "regression.yaml"
    command = [RELAYSIM, "check", str(suite), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(
        [*command, "--junit", str(junit), "--json", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Both workers started: the pool's two spawned processes (and its tracker).
        wait_for("two workers", lambda: len(descendants(proc.pid)) >= 3, within=60)
        below = descendants(proc.pid)
        proc.send_signal(signum)
        signalled = time.monotonic()
        _, err = proc.communicate(timeout=STOP_WITHIN_S * 4)
        wait_for("every worker gone", lambda: not any(map(running, below)), STOP_WITHIN_S)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert took < STOP_WITHIN_S
    assert f"cancelled by {signum.name}" in err
    [parsed] = list(JUnitXml.fromfile(str(junit)))
    cases = list(parsed)
    errors = [c for c in cases if any(isinstance(r, Error) for r in c.result)]
    doc = json.loads(report.read_text())
    assert doc["cancelled"] == signum.name
    assert len(cases) == doc["runs"] == parsed.tests == 6
    assert parsed.errors == len(errors)
    assert errors, "the runs cut short are errors"
    assert all("cancelled" in r.message for c in errors for r in c.result)


@pytest.fixture
def signal_at() -> Iterator[Callable[[int], None]]:
    """Send this process SIGTERM (inside `pools.cancellable`, as the commands run)."""
    with pools.cancellable():
        yield lambda signum: os.kill(os.getpid(), signum)


def test_a_cancelled_sweep_keeps_its_rows_and_cuts_the_rest(
    tmp_yaml: Callable[..., Path], signal_at: Callable[[int], None]
) -> None:
    """A sweep signalled after its first row ends its workers, keeps the rows that
    came, gives every other point an error row "cancelled by SIGTERM" and says so."""
    path = tmp_yaml(
        f"base: {(CONFIGS / 'smoke.yaml').as_posix()}\n"
        "grid: {relays.count: [2, 3, 4, 5, 6, 7, 8, 9]}\n",
        name="sweep.yaml",
    )
    plan = sweeps.load_sweep(path)

    def first(done: int, failed: int, total: int) -> None:
        if done == 1:
            signal_at(signal.SIGTERM)

    others = set(multiprocessing.active_children())  # earlier tests' pools, if any
    with pools.local_pool(1) as pool:
        doc = sweeps.run(plan, pool, progress=first)
    assert doc["cancelled"] == "SIGTERM"
    errors = [r["error"] for r in doc["rows"]]
    assert len(errors) == 8
    assert errors.count("cancelled by SIGTERM") >= 1
    assert errors.count(None) >= 1
    assert set(errors) <= {None, "cancelled by SIGTERM"}
    assert not [p for p in multiprocessing.active_children() if p not in others]


def test_a_cancelled_hunt_stops_at_the_world_it_was_in_without_shrinking(
    monkeypatch: pytest.MonkeyPatch, signal_at: Callable[[int], None]
) -> None:
    """A hunt signalled during its third world searches no fourth, shrinks nothing
    (hypothesis does not take the cancel for a failure) and records the signal."""
    counted = hunts.count_world

    def count(result: hunts.HuntResult, reached: dict[str, int]) -> None:
        counted(result, reached)
        if result.examples == 3:
            signal_at(signal.SIGTERM)

    monkeypatch.setattr(hunts, "count_world", count)
    base = load_scenario(CONFIGS / "smoke.yaml")
    result = hunts.hunt(base, "fixed", examples=500, seed=1)
    assert result.cancelled == "SIGTERM"
    assert result.examples == 3
    assert result.failure is None
    assert result.shrink_runs == 0
    doc: dict[str, Any] = result.document()
    assert doc["cancelled"] == "SIGTERM"
