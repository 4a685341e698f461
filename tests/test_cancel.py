"""Cancelling `check`, `sweep` and `hunt` (issue 28): SIGTERM or SIGINT stops every
worker within 5 s, what was done is written with the runs cut short as errors, and
the exit code is 128 + the signal's number.

The subprocess test signals on the line `check` prints once its workers are out
and bounds the exit with `communicate`'s timeout; the in-process ones signal
themselves at a chosen point. None sleeps or polls.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import signal
import subprocess
import sys
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


def ended_within(pid: int, seconds: float) -> bool:
    """Whether process `pid` has ended, or ends within `seconds`: a blocking wait on
    its pidfd (readable once it has exited), not a poll."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], seconds)
        return bool(readable)
    finally:
        os.close(fd)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_check_leaves_no_process_and_writes_partial_junit(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """`check` of the regression suite, signalled as soon as it says its runs are out
    (its two workers running), exits 128 + the signal within 5 s with every worker
    gone, and leaves a JUnit file that parses, the runs cut short as errors saying
    "cancelled"."""
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
        assert proc.stdout is not None
        # A blocking read of its first line: said once the workers are started.
        assert proc.stdout.readline().startswith("suite regression: 6 runs on 2 local workers")
        workers = descendants(proc.pid)
        assert len(workers) >= 2, workers  # the pool's two (and its resource tracker)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=STOP_WITHIN_S)  # TimeoutExpired past the bound
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    # The workers were joined before it exited; its resource tracker ends as its
    # pipe closes. None is left running under PID 1.
    assert [pid for pid in workers if not ended_within(pid, STOP_WITHIN_S)] == []
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
