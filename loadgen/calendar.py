"""The days a scenario replays, and what kind of day each one is.

A one-day scenario is its `load` section as written. A calendar (`calendar.until`)
replays every day from `date` to `until`: weekdays with the weekday volume, which
grows linearly from `load.requests` on the first day to `calendar.last_requests` on
the last; weekends and Japan's national holidays with `calendar.holiday_share` of
it over the shorter holiday hours (incident-2016.md, "Load"); `closed` days with no
counter traffic. Times of the run count in seconds from the first day's midnight.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import jpholiday

DAY_S = 86_400.0

DayKind = Literal["weekday", "holiday", "closed"]


@dataclass(frozen=True, slots=True)
class Day:
    """One day of the run: its date, where it starts, and its counter load."""

    date: dt.date
    offset: float  # seconds from the first day's midnight to this day's
    kind: DayKind
    requests: int
    profile: str
    hours: tuple[float, float]  # service hours, seconds since this day's midnight
    flattening: float = 0.0  # share of the profile's peaks moved off them (load.peak_flattening)

    @property
    def opens(self) -> float:
        """The instant (run time) this day's counters open."""
        return self.offset + self.hours[0]

    @property
    def closes(self) -> float:
        """The instant (run time) this day's counters close."""
        return self.offset + self.hours[1]


def kind_of(day: dt.date, closed: Sequence[dt.date] = ()) -> DayKind:
    """Whether `day` runs the weekday schedule, the holiday one, or is closed."""
    if day in closed:
        return "closed"
    if day.weekday() >= 5 or jpholiday.is_holiday(day):
        return "holiday"
    return "weekday"


class _Load(Protocol):
    @property
    def requests(self) -> int: ...
    @property
    def profile(self) -> str: ...
    @property
    def service_hours(self) -> tuple[float, float]: ...
    @property
    def peak_flattening(self) -> float: ...


class _Calendar(Protocol):
    @property
    def until(self) -> dt.date | None: ...
    @property
    def last_requests(self) -> int | None: ...
    @property
    def holiday_share(self) -> float: ...
    @property
    def holiday_profile(self) -> str: ...
    @property
    def holiday_hours(self) -> tuple[float, float]: ...
    @property
    def closed(self) -> Sequence[dt.date]: ...


class DaysSpec(Protocol):
    """What the calendar reads of a scenario (`relay.scenario.schema.Scenario` is one):
    the load generator depends on no package of the relay's."""

    @property
    def date(self) -> dt.date: ...
    @property
    def load(self) -> _Load: ...
    @property
    def calendar(self) -> _Calendar: ...


def days(scenario: DaysSpec) -> list[Day]:
    """The days of `scenario`, in order (exactly one for a scenario without a calendar)."""
    load, cal = scenario.load, scenario.calendar
    if cal.until is None:
        return [
            Day(
                scenario.date,
                0.0,
                "weekday",
                load.requests,
                load.profile,
                load.service_hours,
                load.peak_flattening,
            )
        ]
    count = (cal.until - scenario.date).days + 1
    first = load.requests
    last = first if cal.last_requests is None else cal.last_requests
    out = []
    for i in range(count):
        date = scenario.date + dt.timedelta(days=i)
        weekday = first + (last - first) * (i / (count - 1) if count > 1 else 0.0)
        kind = kind_of(date, cal.closed)
        if kind == "weekday":
            day = Day(
                date,
                i * DAY_S,
                kind,
                round(weekday),
                load.profile,
                load.service_hours,
                load.peak_flattening,
            )
        elif kind == "holiday":
            requests = round(weekday * cal.holiday_share)
            day = Day(date, i * DAY_S, kind, requests, cal.holiday_profile, cal.holiday_hours)
        else:
            day = Day(date, i * DAY_S, kind, 0, load.profile, load.service_hours)
        out.append(day)
    return out


def when(first: dt.date, t: float) -> str:
    """Run time `t` (seconds from the first midnight) as "YYYY-MM-DD HH:MM:SS"."""
    stamp = dt.datetime.combine(first, dt.time()) + dt.timedelta(seconds=round(t))
    return stamp.isoformat(sep=" ")
