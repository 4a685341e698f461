"""Relative arrival intensity over the day, per half hour.

The weekday shape follows incident-2016.md: traffic concentrated from about 9:30 to
12:00 and again in the 14:00 hour, within service hours 7:30 to 21:30. The numbers
are the reference SimPy model's (../shared/bench/simpy_baseline.py), so the two
models see the same day.
"""

from __future__ import annotations

from collections.abc import Mapping

HALF_HOUR = 1800.0

#: Weekday intensity per half-hour slot, keyed by the slot's start in hours.
WEEKDAY: Mapping[float, float] = {
    7.5: 0.3, 8.0: 0.5, 8.5: 0.9, 9.0: 1.4, 9.5: 2.2, 10.0: 2.6, 10.5: 2.6,
    11.0: 2.5, 11.5: 2.2, 12.0: 1.0, 12.5: 1.0, 13.0: 1.6, 13.5: 1.8,
    14.0: 2.4, 14.5: 2.4, 15.0: 1.9, 15.5: 1.8, 16.0: 1.6, 16.5: 1.4,
    17.0: 1.0, 17.5: 0.7, 18.0: 0.5, 18.5: 0.4, 19.0: 0.3, 19.5: 0.25,
    20.0: 0.2, 20.5: 0.15, 21.0: 0.1,
}  # fmt: skip

#: Weekends and holidays: 7:30 to 18:30, a low, late-morning hump.
WEEKEND: Mapping[float, float] = {
    7.5: 0.2, 8.0: 0.3, 8.5: 0.5, 9.0: 0.7, 9.5: 0.9, 10.0: 1.0, 10.5: 1.0,
    11.0: 1.0, 11.5: 0.9, 12.0: 0.6, 12.5: 0.6, 13.0: 0.8, 13.5: 0.8,
    14.0: 0.8, 14.5: 0.8, 15.0: 0.7, 15.5: 0.6, 16.0: 0.5, 16.5: 0.4,
    17.0: 0.3, 17.5: 0.2, 18.0: 0.1,
}  # fmt: skip

PROFILES: Mapping[str, Mapping[float, float]] = {"weekday": WEEKDAY, "weekend": WEEKEND}


def slots(
    name: str, open_s: float, close_s: float, *, flattening: float = 0.0
) -> list[tuple[float, float, float]]:
    """Half-hour slots `(start_s, end_s, weight)` of profile `name`, cut to service hours.

    `flat` spreads the load evenly over the service hours. `flattening` (0..1) moves
    that share of every slot's distance from the day's mean intensity to the mean:
    peaks lose what the quiet hours gain and the day's total stays (spring 2016:
    municipalities moved pre-issue settings out of the peak hours); 1 is flat.
    """
    if name == "flat":
        return [(open_s, close_s, 1.0)]
    cut = []
    for hour, weight in sorted(PROFILES[name].items()):
        start = max(hour * 3600.0, open_s)
        end = min(hour * 3600.0 + HALF_HOUR, close_s)
        if end > start and weight > 0:
            cut.append((start, end, weight))
    if not cut:
        raise ValueError(f"profile {name!r} has no traffic inside the service hours")
    mean = sum(w * (e - s) for s, e, w in cut) / sum(e - s for s, e, _ in cut)
    return [(s, e, (w - flattening * (w - mean)) * (e - s) / HALF_HOUR) for s, e, w in cut]
