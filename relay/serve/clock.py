"""The clock of a server that runs the model faster than real time (`serve --speed`).

trio asks its clock for the time and for how long to sleep until a deadline; this
one answers in the model's seconds, `speed` of them per real second. Every wait of
the model (service times, think times, deadlines, health checks) then passes `speed`
times faster, with no change to the model or the driver: the speed is a property of
time, injected like any clock. What must stay in real seconds (a client's frame
timeout, the HTTP endpoints' limits) is scaled by the server itself (`Limits.scale`).

`ScenarioClock` names an instant of that clock twice, as the scenario's time of
day and as real time in UTC, for serve's log (`ClockedLog`), its INFO answers and
`/metrics`.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import trio

from loadgen import calendar
from loadgen.calendar import DaysSpec
from relay.core.tier import LogSink


class ScaledClock(trio.abc.Clock):
    """trio's clock, `speed` model seconds per real second, from 0 at start."""

    def __init__(self, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._real0 = 0.0

    def start_clock(self) -> None:
        """Called by trio once, as the run starts."""
        self._real0 = time.perf_counter()

    def current_time(self) -> float:
        """Model seconds since the run started."""
        return (time.perf_counter() - self._real0) * self.speed

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Real seconds until the model's `deadline`."""
        return max(0.0, (deadline - self.current_time()) / self.speed)


class VirtualClock(trio.abc.Clock):
    """Virtual time that jumps to the next deadline whenever every task waits, as
    `trio.testing.MockClock(autojump_threshold=0)` does, without reading a real
    clock on each `current_time` (MockClock converts from `perf_counter` on every
    call, a tenth of a simulated-network run). For runs with no real I/O: a task
    waiting on a socket or a thread would see its timeouts jump past."""

    def __init__(self) -> None:
        self._now = 0.0

    def start_clock(self) -> None:
        """Time starts at 0."""

    def current_time(self) -> float:
        """The virtual instant."""
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """trio asks only when no task can run: jump to `deadline` and sleep not at
        all (a run with nothing left to wake sleeps, as trio does, in its I/O poll)."""
        if deadline == math.inf:
            return math.inf
        if deadline > self._now:
            self._now = deadline
        return 0.0


class ScenarioClock:
    """Serve's clock, named: an instant of trio's clock (the model's seconds) as the
    scenario's time of day and as real time in UTC, the two names every serve log
    line, INFO answer and `/metrics` gives it (one mapping for all of them).

    Serve starts its scenario day at the opening of the scenario's first day, the
    instant a load replaying the day starts from, and runs it `speed` scenario
    seconds a real second. Real time is the wall clock read once at start, then
    trio's clock: the two names of an instant always agree, whatever the clock (a
    virtual one in tests), and a log does not jump when the wall clock is stepped.
    """

    def __init__(self, date: dt.date, opens: float = 0.0, speed: float = 1.0) -> None:
        """`opens`: seconds since the midnight of `date` when serve starts."""
        self.date = date
        self.opens = opens
        self.speed = speed
        self.started_at: float | None = None  # trio's clock at start
        self.started_utc = 0.0  # the wall clock then, Unix seconds

    @classmethod
    def of(cls, scenario: DaysSpec, speed: float = 1.0) -> ScenarioClock:
        """The clock of a server of `scenario`: its first day from its opening."""
        return cls(scenario.date, calendar.days(scenario)[0].opens, speed)

    def start(self, now: float, utc: float | None = None) -> None:
        """Serve starts at trio's instant `now`, the wall clock's `utc` (default: now)."""
        self.started_at = now
        self.started_utc = time.time() if utc is None else utc

    def seconds(self, now: float) -> float:
        """Scenario seconds since the midnight of its first day at trio's `now`."""
        return self.opens + (0.0 if self.started_at is None else now - self.started_at)

    def at(self, seconds: float) -> float:
        """trio's instant at scenario time `seconds` (the inverse of `seconds`)."""
        return (self.started_at or 0.0) + seconds - self.opens

    def scenario_time(self, now: float) -> str:
        """The scenario's date and time of day at `now`: "2016-03-29 10:00:04"."""
        return calendar.when(self.date, self.seconds(now))

    def utc(self, now: float) -> str:
        """Real time at `now`, ISO 8601 in UTC to the millisecond: "...T01:00:04.250Z"."""
        if self.started_at is None:
            unix = time.time()
        else:
            unix = self.started_utc + (now - self.started_at) / self.speed
        stamp = dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="milliseconds")
        return stamp.removesuffix("+00:00") + "Z"

    def named(self, log: LogSink) -> LogSink:
        """`log`, each event stamped with this clock (`ClockedLog`); once only."""
        return log if isinstance(log, ClockedLog) else ClockedLog(log, self)


class ClockedLog:
    """A log sink whose every event carries `scenario_time` and `utc` (its instant
    on `ScenarioClock`) in place of the model's bare `t`, whose origin is the
    clock's own (arbitrary at --speed 1, serve's start at another speed)."""

    def __init__(self, log: LogSink, clock: ScenarioClock) -> None:
        self.log = log
        self.clock = clock

    def info(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log `event` at its instant: the model's `t`, or trio's clock now."""
        t = kw.pop("t", None)
        now = trio.current_time() if t is None else float(t)
        clock = self.clock
        return self.log.info(
            event, *args, scenario_time=clock.scenario_time(now), utc=clock.utc(now), **kw
        )
