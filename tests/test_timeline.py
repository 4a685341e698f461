"""The picture of a race: a shrunk world's timeline, recorded without changing the
run, on both designs, and as Chrome trace-event JSON."""

from __future__ import annotations

import json
from typing import Any

from relay.plan import timeline
from relay.scenario.schema import load_scenario
from relay.testing.worlds import Case, run_case
from tests.conftest import CONFIGS

# The world `hunt --design legacy --seed 0` on smoke shrinks to: three requests at
# once, steps that end exactly on their 0.5 s timer, one core probed every 5 ms.
CRASH = Case([(10.0, 0), (10.0, 1), (10.0, 2)], 0.5, 1.0, 499.0, 1, 0.005, 1.0, 0.0, seed=0)
BASE = load_scenario(CONFIGS / "smoke.yaml")


def test_the_timeline_shows_cause_2_on_legacy_and_not_on_fixed() -> None:
    """On legacy: a reset in its timer's expiry tick, then the next request on that
    node meets the pending notification before allocating, and the node crashes
    freeing an unallocated work area. The same world on fixed: no crash; its
    request is served."""
    legacy, fixed = timeline.both(CRASH, "legacy", BASE, {})
    notes = "\n".join(legacy.notes())
    assert "crash at 11.500000 s: unallocated_free" in notes
    assert "in its timer's expiry tick [10.500000, 10.515625)" in notes
    assert "met a pending timeout notification at 11.500000 s" in notes
    assert not any(n.outages for n in fixed.nodes)
    assert [s.outcome for s in fixed.steps][-1] == "completed"
    assert [s.outcome for s in legacy.steps][-1] == "error"


def test_recording_changes_nothing() -> None:
    """The recorder only watches: the run it records ends exactly as the hunt's own
    run of the world (outcomes, outages, race windows)."""

    def outcome(tier: Any) -> tuple[Any, ...]:
        return (
            tier.ledger.total.counts,
            [(o.start, o.kind, o.mechanism) for n in tier.nodes for o in n.outages],
            [n.timer.same_tick_resets for n in tier.nodes],
        )

    plain = run_case(CRASH, "legacy", BASE, engine="fast")
    watched = run_case(CRASH, "legacy", BASE, engine="fast", observe=timeline.Recorder)
    assert outcome(plain) == outcome(watched)
    assert outcome(run_case(CRASH, "legacy", BASE, engine="trio")) == outcome(plain)


def test_the_trace_has_the_trace_event_formats_required_fields() -> None:
    """Chrome trace-event JSON (the Trace Event Format's object form): every event
    has a name, a phase, a timestamp in µs and process and thread ids; complete
    events a duration; instant events a scope; metadata events the name they
    give; and it is JSON."""
    doc = json.loads(json.dumps(timeline.chrome_trace(timeline.both(CRASH, "legacy", BASE, {}))))
    assert doc["displayTimeUnit"] in ("ms", "ns")
    events = doc["traceEvents"]
    assert events
    phases = {e["ph"] for e in events}
    assert phases <= {"X", "i", "M"}
    for e in events:
        assert isinstance(e["name"], str)
        assert e["name"]
        assert isinstance(e["ts"], int | float)
        assert e["ts"] >= 0
        assert isinstance(e["pid"], int)
        assert isinstance(e["tid"], int)
        if e["ph"] == "X":
            assert e["dur"] >= 0
        if e["ph"] == "i":
            assert e["s"] in ("g", "p", "t")
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name")
            assert isinstance(e["args"]["name"], str)
    names = {e["name"] for e in events}
    assert "crash: unallocated_free" in names
    assert {"monitor probe", "CallHsm", "CallBackend", "timer expiry"} <= names
