"""Multi-day scenarios: the calendar, dated instants, and the January operators' actions."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loadgen import arrivals, calendar, municipalities
from relay.cli import main
from relay.core.events import FaultEvent, OperatorEvent
from relay.plan.replay import replay
from relay.scenario.schema import ConfigError, load_scenario
from relay.testing import scenario
from tests.conftest import CONFIGS, Drive, tier_for
from tests.test_races import PROBE_RACE, mechanisms, outcomes

FEB_WEEK: dict[str, Any] = {"until": "2016-02-14", "last_requests": 1600}
FEB: dict[str, Any] = {"date": "2016-02-08", "calendar": FEB_WEEK}


def test_calendar_days_follow_weekends_holidays_and_the_ramp() -> None:
    """A week of February 2016: weekdays ramp linearly, Thursday 11 Feb (a national
    holiday) and the weekend carry the holiday share over holiday hours."""
    s = scenario(**FEB, load={"requests": 1000})
    days = calendar.days(s)
    assert [d.date.day for d in days] == list(range(8, 15))
    assert [d.kind for d in days] == ["weekday"] * 3 + ["holiday"] + ["weekday"] + ["holiday"] * 2
    # Day i of 7 gets 1000 + 600 * i / 6 on a weekday, 15% of that on a holiday.
    assert [d.requests for d in days] == [1000, 1100, 1200, 195, 1400, 225, 240]
    assert days[3].hours == (7.5 * 3600, 18.5 * 3600)
    assert days[3].profile == "weekend"
    assert [d.offset for d in days] == [i * 86_400.0 for i in range(7)]


def test_closed_days_carry_no_load() -> None:
    """A day listed under calendar.closed has no counter traffic at all."""
    s = scenario(**{**FEB, "calendar": {**FEB_WEEK, "closed": ["2016-02-09"]}})
    assert [(d.kind, d.requests) for d in calendar.days(s)][1] == ("closed", 0)


def test_a_scenario_without_calendar_is_its_load_section() -> None:
    """No calendar: one day, whatever its date, shaped exactly as `load` says."""
    s = scenario(date="2016-03-27", load={"requests": 500, "profile": "flat"})  # a Sunday
    [day] = calendar.days(s)
    assert (day.kind, day.requests, day.profile, day.offset) == ("weekday", 500, "flat", 0.0)


def test_arrivals_over_days_stay_inside_each_days_hours() -> None:
    """The stream is sorted across days, and every arrival lies in its day's hours."""
    s = scenario(**FEB, load={"requests": 1000})
    days = calendar.days(s)
    munis = municipalities.build(s.load.population, s.load.cs_connections)
    times = [t for t, _ in arrivals.over_days(days, munis, random.Random(3))]
    assert times == sorted(times)
    assert len(times) == sum(d.requests for d in days)
    for d in days:
        inside = [t for t in times if d.offset <= t < d.offset + 86_400]
        assert len(inside) == d.requests
        assert all(d.opens <= t <= d.closes for t in inside)


def test_dated_instants_count_from_the_first_midnight(tmp_yaml: Callable[[str], Path]) -> None:
    """`at: "2016-02-10 09:30"` is 2 days and 9.5 hours after the first day's midnight;
    a plain clock time is on the first day."""
    p = tmp_yaml(
        "date: 2016-02-08\ncalendar: {until: 2016-02-14}\n"
        "operators:\n"
        "  - {at: '2016-02-10 09:30', action: stop_monitor, node: 1}\n"
        "  - {at: 2016-02-11 10:00:00, action: start_monitor, node: 1}\n"
        "  - {at: '08:00', action: detach, node: 2}\n"
        "recovery: {standby_from: '2016-02-09 00:00'}\n"
    )
    s = load_scenario(p)
    assert [e.at for e in s.scheduled()] == [8 * 3600, 2 * 86_400 + 9.5 * 3600, 3 * 86_400 + 36000]
    assert s.recovery.standby_from == 86_400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "date: 2016-02-08\noperators: [{at: '2016-02-07 09:00', action: detach, node: 1}]\n",
            "operators.0.at: '2016-02-07 09:00' is before the scenario's first day 2016-02-08",
        ),
        (
            "date: 2016-02-08\nrecovery: {standby_from: '2016-02-30 09:00'}\n",
            "recovery.standby_from: '2016-02-30 09:00' is not a date",
        ),
        (
            "date: 2016-02-08\ncalendar: {until: 2016-02-01}\n",
            "calendar.until: 2016-02-01 is before the first day 2016-02-08",
        ),
    ],
)
def test_bad_dated_instants_get_one_line(
    tmp_yaml: Callable[[str], Path], text: str, expected: str
) -> None:
    """Dates before the first day, or impossible ones, are named with their key, in one
    line (events after the last day are allowed: they never happen, so a calendar can
    be cut short with --set calendar.until=...)."""
    p = tmp_yaml(text)
    with pytest.raises(ConfigError) as exc:
        load_scenario(p)
    assert str(exc.value) == f"{p}: {expected}"


def test_stopping_the_monitor_ends_core_contention(drive: Drive) -> None:
    """The March interim fix: with the agent stopped, no probe can take a reply's core."""
    stop = [OperatorEvent(at=5.0, action="stop_monitor", node=1)]
    tier = tier_for(**PROBE_RACE, design="legacy")
    drive(tier, [(10.0, 0), (20.0, 1)], stop)
    assert tier.nodes[0].probe_collisions == 0
    assert outcomes(tier) == {"completed": 2}
    resumed = tier_for(**PROBE_RACE, design="legacy")
    drive(
        resumed,
        [(10.0, 0), (20.0, 1)],
        [*stop, OperatorEvent(at=15.0, action="start_monitor", node=1)],
    )
    assert mechanisms(resumed) == [("hang", "core_contention")]
    assert resumed.nodes[0].outages[0].start == 20.01


def test_operators_on_standby_notice_sooner(drive: Drive) -> None:
    """Before `standby_from` operators notice after detection_min, from then on after
    standby_detection_min (22 January 2016: staff waited in the server room)."""
    tier = tier_for(
        relays={"count": 1},
        design="legacy",
        load={"retry": {"max_retries": 0}},
        monitor={"enabled": False},
        recovery={
            "detection_min": {"dist": "constant", "mean": 60},
            "standby_detection_min": {"dist": "constant", "mean": 2},
            "restart_min": 1,
            "standby_from": 10_000,
        },
    )
    crashes = [
        FaultEvent(at=100, kind="crash", node=1),
        FaultEvent(at=20_000, kind="crash", node=1),
    ]
    drive(tier, [(50.0, 0), (30_000.0, 1)], crashes)
    spans = [(o.start, o.end) for o in tier.nodes[0].outages]
    assert spans == [(100, 100 + 61 * 60), (20_000, 20_000 + 3 * 60)]


def test_summary_days_add_up_to_the_totals() -> None:
    """Per-day rows partition the run: their outcomes sum to the summary's, and each
    crash is counted on the day it began."""
    s = scenario(
        **FEB,
        design="legacy",
        load={"requests": 600},
        faults=[{"at": "2016-02-10 10:00", "kind": "crash", "node": 1}],
    )
    doc = replay(s).summary
    assert [d["date"] for d in doc["days"]] == [f"2016-02-{i:02d}" for i in range(8, 15)]
    for key in ("requests", "completed", "overflows", "timeouts", "errors"):
        assert sum(d[key] for d in doc["days"]) == doc[key]
    assert [d["crashes"] for d in doc["days"]] == [0, 0, 1, 0, 0, 0, 0]
    assert doc["lost"] == 0
    assert (doc["events"] or [])[0]["t"] == 2 * 86_400 + 36_000


def test_the_january_scenario_spans_the_audit_period() -> None:
    """configs/jan-2016.yaml replays 13 Jan to 19 Mar with relays added on 24 Jan and
    4 Feb and the monitor stopped before 10 March."""
    s = load_scenario(CONFIGS / "jan-2016.yaml")
    days = calendar.days(s)
    assert (days[0].date, days[-1].date) == (dt.date(2016, 1, 13), dt.date(2016, 3, 19))
    adds = [(calendar.when(s.date, e.at)[:10], e.node) for e in s.operators if e.action == "add"]
    assert adds == [("2016-01-24", 3), ("2016-02-04", 4)]
    stops = {calendar.when(s.date, e.at)[:10] for e in s.operators if e.action == "stop_monitor"}
    assert stops == {"2016-03-10"}


def test_a_multi_day_replay_prints_its_days_and_dated_outages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`relaysim replay` of a calendar prints a row per day and dates each outage."""
    main(
        [
            "replay",
            str(CONFIGS / "smoke.yaml"),
            "--design",
            "legacy",
            "--set",
            "date=2016-02-08",
            "--set",
            "calendar.until=2016-02-10",
            "--set",
            "faults=[{at: '2016-02-09 10:30', kind: crash, node: 1}]",
        ]
    )
    printed = capsys.readouterr().out
    assert "2016-02-09 Tue" in printed  # the days table
    assert "02-09 10:30" in printed  # the outage, with its date
