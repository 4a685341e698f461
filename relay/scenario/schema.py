"""Scenario files: YAML, validated once, with errors that name the file and the key.

    configs/2016-03-29.yaml: load.requests: expected an integer > 0, got 'x'

`load_scenario` is the only way in: it reads with a safe loader, applies the
`--set KEY=VALUE` overrides and validates everything into frozen models, so the
rest of the program never sees an unchecked value. docs/scenarios.md lists every key.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from loadgen.profile import slots
from relay.core.design import Design, DesignName, preset
from relay.core.events import order
from relay.core.faults import ACTIONS, FAULTS, KINDS
from relay.scenario.distributions import Distribution
from relay.scenario.expect import check_all as check_expectations
from relay.scenario.priors import Prior


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers, so `at: 12:00` stays "12:00".

    Plain YAML 1.1 reads an unquoted 12:00 as the integer 720, which would put an
    operator event at 00:12 without a word; every other safe_load rule is kept.
    """


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class ConfigError(Exception):
    """Bad input in a scenario file or an override; the message is one line for the user."""


def _time_of_day(value: Any) -> Any:
    """Accept "HH:MM", "HH:MM:SS" or a number of seconds since midnight."""
    if isinstance(value, str):
        parts = value.split(":")
        if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
            raise ValueError('expected a time of day "HH:MM" or seconds since midnight')
        h, m, s = (int(p) for p in [*parts, "0"][:3])
        if h > 24 or m > 59 or s > 59:
            raise ValueError('expected a time of day "HH:MM" or seconds since midnight')
        return float(h * 3600 + m * 60 + s)
    return value


TimeOfDay = Annotated[float, BeforeValidator(_time_of_day), Field(ge=0, le=86400)]

#: An instant of the run: seconds since midnight of the scenario's first day. Written
#: as a time of day (the first day) or as "YYYY-MM-DD HH:MM" (any day of a calendar);
#: `Scenario` turns the dated form into seconds before validation.
Instant = Annotated[float, BeforeValidator(_time_of_day), Field(ge=0)]

_DATED = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2}(?::\d{2})?)$")


def _instant(value: Any, first: dt.date) -> Any:
    """A dated instant ("2016-01-24 07:30" or a YAML timestamp) as seconds since the
    midnight of `first`; anything else is left for `Instant` to validate."""
    if isinstance(value, dt.datetime):
        day, clock = value.date(), float(value.hour * 3600 + value.minute * 60 + value.second)
    elif isinstance(value, str) and (m := _DATED.match(value.strip())):
        try:
            day = dt.date.fromisoformat(m.group(1))
        except ValueError:
            raise ValueError(f"{value!r} is not a date") from None
        clock = _time_of_day(m.group(2))
    else:
        return value
    if day < first:
        raise ValueError(f"{value!r} is before the scenario's first day {first}")
    return (day - first).days * 86400.0 + clock


def _numeric(annotation: Any) -> bool:
    """Whether a field of this type takes a number (int, float, or an optional one)."""
    if annotation in (int, float):
        return True
    return get_origin(annotation) in (Union, UnionType) and any(
        a in (int, float) for a in get_args(annotation)
    )


class _Model(BaseModel):
    # populate_by_name: a field named after a Python keyword (`raise_`) is written
    # by its alias in files and by either name in code.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_truth_values_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """`count: true` is a mistake, not 1 (pydantic's lax mode would take it)."""
        name = info.field_name
        if (
            isinstance(value, bool)
            and name is not None
            and _numeric(cls.model_fields[name].annotation)
        ):
            raise ValueError("expected a number")
        return value


class RelaysConfig(_Model):
    """The relay servers (nodes) behind the distributor."""

    count: int = Field(default=4, ge=1, le=64, description="relay nodes at the start of the day")
    max_connections: int = Field(
        default=64, ge=1, description="concurrent CS connections one node accepts"
    )
    cores: int = Field(default=8, ge=1, le=256, description="CPU cores per node (K)")
    timeout_s: float = Field(
        default=30.0, gt=0, description="timer for the whole relay step of one request"
    )
    timer_resolution_ms: float = Field(
        default=15.625, gt=0, description="OS timer tick: events in one tick count as the same"
    )


class DispatcherConfig(_Model):
    """The traffic distributor in front of the relays."""

    policy: Literal["round_robin", "least_connections"] = "least_connections"
    health_check_s: float = Field(
        default=5.0, gt=0, description="seconds between two health checks of every node"
    )


class HsmConfig(_Model):
    """The tamper-resistant device each relay calls per request."""

    service_ms: Distribution = Distribution(dist="lognormal", mean=8.0, cv=0.3)
    interrupt_ms: float = Field(
        default=0.2, gt=0, description="core time to process one HSM reply interrupt"
    )
    deadline_ms: float = Field(
        default=2000.0, gt=0, description="per-call deadline (design switch hsm_call_deadline)"
    )


class ThreadNamesConfig(_Model):
    """How the backend names its processing threads, and what logging a name costs
    (the 22 February 2016 slowdown; docs/backend.md)."""

    base_chars: int = Field(default=24, ge=1, description="length of a fresh thread name")
    growth_chars: float = Field(
        default=0.0,
        ge=0,
        description="characters a name gains each time a request reuses it while traffic "
        "never pauses (the legacy naming rule; 0 under short_thread_names)",
    )
    reset_pause_s: float = Field(
        default=300.0, gt=0, description="a pause in traffic this long lets names start over"
    )
    log_us_per_char: float = Field(
        default=0.0,
        ge=0,
        description="time one log write costs per character of the thread's name; the "
        "log file takes one write at a time",
    )


class BackendConfig(_Model):
    """The card management business server."""

    service_ms: Distribution = Distribution(dist="lognormal", mean=1500.0, cv=1.0)
    thread_names: ThreadNamesConfig = ThreadNamesConfig()
    memory_mb: float = Field(default=512.0, gt=0, description="memory allocation (legacy)")
    memory_mb_raised: float = Field(
        default=2048.0, gt=0, description="memory allocation with large_backend_memory"
    )
    request_mb: float = Field(
        default=0.0,
        ge=0,
        description="memory one request holds while the backend works on it; the "
        "allocation bounds how many it holds at once (0: no bound)",
    )

    @model_validator(mode="after")
    def _room_for_one(self) -> BackendConfig:
        memory = min(self.memory_mb, self.memory_mb_raised)
        if self.request_mb > memory:
            raise ValueError(
                f"request_mb {self.request_mb:g} is more than the memory ({memory:g} MB): "
                "the backend could hold no request at all"
            )
        return self


class MonitorConfig(_Model):
    """The hardware-monitoring agent polling each relay server."""

    enabled: bool = True
    period_s: float = Field(default=10.0, gt=0, description="seconds between two probes")
    handling_ms: float = Field(default=2.0, gt=0, description="core time one probe takes")


class PopulationConfig(_Model):
    """Municipality sizes: a lognormal body plus named large cities."""

    count: int = Field(default=1741, ge=1, description="municipalities (CS) in total")
    median: float = Field(default=25_000, gt=0, description="median residents")
    mean: float = Field(default=73_000, gt=0, description="mean residents")
    minimum: float = Field(default=200, gt=0, description="smallest municipality")
    maximum: float = Field(default=3_730_000, gt=0, description="largest municipality (Yokohama)")
    named: dict[str, int] = Field(
        default_factory=lambda: {"Yokohama": 3_730_000, "Osaka": 2_700_000, "Nagoya": 2_300_000},
        description="cities with known populations, included as they are",
    )

    @model_validator(mode="after")
    def _mean_above_median(self) -> PopulationConfig:
        if self.minimum >= self.maximum:
            raise ValueError("minimum must be below maximum")
        if self.mean < self.median:
            raise ValueError("mean must be at least median (lognormal sizes)")
        if len(self.named) > self.count:
            raise ValueError("more named cities than municipalities")
        return self


class RaiseConfig(_Model):
    """Limits raised for the large municipalities (spring 2016, at their request)."""

    from_residents: int = Field(ge=1, description="municipalities this large or larger")
    factor: float = Field(gt=1, le=100, description="their limit times this, rounded down")


class CsConnectionsConfig(_Model):
    """Each CS's CS-to-relay simultaneous-connection limit, enforced at the relays:
    floor(base + per_100k x residents / 100,000), at most `maximum`, then raised for
    the large municipalities (`raise`); a name in `overrides` is set outright."""

    base: int = Field(default=2, ge=1, description="limit of the smallest CS")
    per_100k: float = Field(default=1.0, ge=0, description="extra connections per 100k residents")
    maximum: int = Field(default=30, ge=1, description="limit of the largest CS by the formula")
    overrides: dict[str, int] = Field(
        default_factory=dict, description="limit by city name (raised limits)"
    )
    raise_: RaiseConfig | None = Field(
        default=None,
        alias="raise",
        description="the formula's limit raised for municipalities from a size on",
    )


class TerminalConnectionsConfig(_Model):
    """Each CS's terminal-to-CS simultaneous-connection limit, enforced at the CS (a
    refusal there never reaches the relays). Set by city name: the record gives
    Yokohama's; a CS not named has no limit on this hop."""

    overrides: dict[str, int] = Field(default_factory=dict, description="limit by city name")


class RetryConfig(_Model):
    """A counter user retrying a failed operation."""

    max_retries: int = Field(default=3, ge=0, le=100, description="retries after the first try")
    max_resends: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="re-sends of a failed chip-writing operation (resend_chip_operations)",
    )
    think_s: Distribution = Distribution(dist="exponential", mean=60.0)
    outcomes: tuple[Literal["overflow", "timeout", "error"], ...] = ("overflow", "timeout", "error")


class OperationConfig(_Model):
    """A counter operation: the upstream messages one terminal sends, one after the
    other, over one connection it holds from the first message to the last."""

    messages: int = Field(
        default=1, ge=1, le=100, description="upstream request messages per counter operation"
    )
    think_s: Distribution = Field(
        default=Distribution(dist="exponential", mean=60.0),
        description="the counter's own steps between two messages of one operation, "
        "with the connection held open",
    )


class LoadConfig(_Model):
    """Municipal counter load for the day."""

    requests: int = Field(
        default=715_000,
        ge=1,
        description="upstream request messages over the day (first attempts); they come "
        "as requests / operation.messages counter operations",
    )
    operation: OperationConfig = OperationConfig()
    profile: Literal["weekday", "weekend", "flat"] = "weekday"
    peak_flattening: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of each half hour's distance from the day's mean intensity "
        "moved to the mean (0: the profile as it is; 1: flat)",
    )
    service_hours: tuple[TimeOfDay, TimeOfDay] = (7.5 * 3600, 21.5 * 3600)
    chip_write_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of operations that write the card's IC chip before the card "
        "management system registers them (docs/backend.md)",
    )
    population: PopulationConfig = PopulationConfig()
    cs_connections: CsConnectionsConfig = CsConnectionsConfig()
    terminal_connections: TerminalConnectionsConfig = TerminalConnectionsConfig()
    retry: RetryConfig = RetryConfig()

    @model_validator(mode="after")
    def _hours_ordered(self) -> LoadConfig:
        if self.service_hours[0] >= self.service_hours[1]:
            raise ValueError("service_hours must open before they close")
        slots(self.profile, *self.service_hours)  # raises if no traffic falls inside
        return self


# The names of operators' actions and faults: the registry's (relay.core.faults),
# as literals pydantic checks and lists in its errors.
if TYPE_CHECKING:
    ActionName = str
    FaultName = str
else:
    ActionName = Literal[ACTIONS]
    FaultName = Literal[FAULTS]


class OperatorEvent(_Model):
    """An operator's action at an instant on one relay node (none for one on the
    backend): detach, attach, add, restart, stop_monitor, start_monitor,
    restart_backend; `relay.core.faults.KINDS` says what each does."""

    at: Instant
    action: ActionName
    node: int | None = Field(
        default=None,
        ge=1,
        description="relay number, 1-based as in the incident (#1..#4); none for restart_backend",
    )


class FaultEvent(_Model):
    """A named fault injected at an instant: `crash`, `hsm_stall` and `timer_race`
    on relay `node`; `slow_backend` (no node) makes the backend `factor` times
    slower, 1 restoring it; `relay.core.faults.KINDS` says what each does."""

    at: Instant
    kind: FaultName
    node: int | None = Field(default=None, ge=1, description="relay number, 1-based")
    factor: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        allow_inf_nan=False,
        description="slow_backend only: how many times slower the backend runs",
    )


class RecoveryConfig(_Model):
    """How operators bring a failed node back when no supervisor does (legacy).

    January 2016: operators noticed a crashed or hung relay after 10 to 90 minutes
    (the outage table), detached it, restarted it and put it back.
    """

    operators: bool = Field(default=True, description="operators restart failed nodes")
    detection_min: Distribution = Distribution(dist="uniform", mean=50.0, spread=0.8)
    restart_min: float = Field(
        default=5.0, ge=0, description="minutes from detaching a node to having it back"
    )
    standby_from: Instant | None = Field(
        default=None,
        description="from then on staff stand by in the server room (22 Jan 2016): "
        "failures are noticed after standby_detection_min instead",
    )
    standby_detection_min: Distribution = Distribution(dist="uniform", mean=3.0, spread=0.6)


class CalendarConfig(_Model):
    """A replay of several days, from the scenario's `date` to `until`.

    Weekdays carry `load.requests` on the first day, growing linearly to
    `last_requests` on the last day, with `load.profile` and `load.service_hours`;
    weekends and Japan's national holidays (the jpholiday package) carry
    `holiday_share` of the day's weekday volume over the shorter holiday hours;
    `closed` days carry none. Without `until` the scenario is the one day `date`,
    shaped by `load` alone.
    """

    until: dt.date | None = Field(default=None, description="last day replayed (inclusive)")
    last_requests: int | None = Field(
        default=None, ge=0, description="weekday volume on the last day (default: load.requests)"
    )
    holiday_share: float = Field(
        default=0.15, ge=0, le=1, description="a weekend or holiday's share of the weekday volume"
    )
    holiday_profile: Literal["weekday", "weekend", "flat"] = "weekend"
    holiday_hours: tuple[TimeOfDay, TimeOfDay] = (7.5 * 3600, 18.5 * 3600)
    closed: tuple[dt.date, ...] = Field(default=(), description="days with no counter traffic")

    @model_validator(mode="after")
    def _hours_ordered(self) -> CalendarConfig:
        if self.holiday_hours[0] >= self.holiday_hours[1]:
            raise ValueError("holiday_hours must open before they close")
        slots(self.holiday_profile, *self.holiday_hours)
        return self


class RunConfig(_Model):
    """How the run ends."""

    drain_s: float = Field(
        default=900.0, gt=0, description="after the last arrival, time allowed to finish"
    )


class ServeConfig(_Model):
    """`relaysim serve`'s limits on its clients (replays ignore them; docs/serve.md)."""

    max_frame_bytes: int = Field(
        default=65536, ge=64, le=16 * 1024 * 1024, description="largest frame a client may send"
    )
    frame_timeout_s: float = Field(
        default=5.0, gt=0, le=3600, allow_inf_nan=False, description="a whole frame must arrive in"
    )
    idle_timeout_s: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        allow_inf_nan=False,
        description="a connection carrying nothing this long is closed",
    )
    write_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        allow_inf_nan=False,
        description="a client reading none of its replies this long is closed",
    )
    max_connections: int = Field(default=1024, ge=1, le=100_000)
    max_connections_per_peer: int = Field(default=256, ge=1, le=100_000)
    reserved_connections: int = Field(
        default=64, ge=0, description="last slots, for peers holding fewer than this many"
    )
    drain_s: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        allow_inf_nan=False,
        description="on stop, time to answer what was admitted (default: the longest a "
        "request can live)",
    )

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if self.reserved_connections >= self.max_connections:
            raise ValueError(
                f"reserved_connections ({self.reserved_connections}) must be below "
                f"max_connections ({self.max_connections})"
            )
        return self


class Scenario(_Model):
    """A whole scenario file, validated."""

    name: str = "scenario"
    date: dt.date = dt.date(2016, 3, 29)
    seed: int = Field(default=1, ge=0)
    design: DesignName = "fixed"
    switches: dict[str, bool] = Field(default_factory=dict)
    calendar: CalendarConfig = CalendarConfig()
    relays: RelaysConfig = RelaysConfig()
    dispatcher: DispatcherConfig = DispatcherConfig()
    hsm: HsmConfig = HsmConfig()
    backend: BackendConfig = BackendConfig()
    monitor: MonitorConfig = MonitorConfig()
    load: LoadConfig = LoadConfig()
    operators: tuple[OperatorEvent, ...] = ()
    faults: tuple[FaultEvent, ...] = ()
    recovery: RecoveryConfig = RecoveryConfig()
    run: RunConfig = RunConfig()
    serve: ServeConfig = ServeConfig()
    # Thresholds the run must meet (`relay.scenario.expect`), as `--expect` gives them.
    expect: tuple[str, ...] = ()
    # Readings the record leaves open, as distributions (`relaysim predict`).
    priors: dict[str, Prior] = Field(default_factory=dict)
    # The `relaysim predict` document recorded for this scenario (a path relative to
    # its file): `replay` shows its interval beside the point.
    prediction: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _dated_instants(cls, data: Any) -> Any:
        """Turn "YYYY-MM-DD HH:MM" instants into seconds since the first midnight."""
        if not isinstance(data, dict):
            return data
        try:
            raw = data.get("date", dt.date(2016, 3, 29))
            start = raw if isinstance(raw, dt.date) else dt.date.fromisoformat(str(raw))
        except ValueError:
            return data  # `date` itself is invalid: its field reports it
        data = dict(data)

        def resolve(where: str, value: Any) -> Any:
            try:
                return _instant(value, start)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None

        for key in ("operators", "faults"):
            events = data.get(key)
            if isinstance(events, list):
                data[key] = [
                    {**e, "at": resolve(f"{key}.{i}.at", e["at"])}
                    if isinstance(e, dict) and "at" in e
                    else e
                    for i, e in enumerate(events)
                ]
        recovery = data.get("recovery")
        if isinstance(recovery, dict) and "standby_from" in recovery:
            at = resolve("recovery.standby_from", recovery["standby_from"])
            data["recovery"] = {**recovery, "standby_from": at}
        return data

    @field_validator("expect")
    @classmethod
    def _expectations(cls, texts: tuple[str, ...]) -> tuple[str, ...]:
        check_expectations(texts, "expect.", {"replay", "load"})  # a scenario's runs
        return texts

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        unknown = set(self.switches) - set(Design.switch_names())
        if unknown:
            raise ValueError(f"switches: unknown switch {sorted(unknown)[0]!r}")
        last = self.calendar.until or self.date
        if last < self.date:
            raise ValueError(f"calendar.until: {last} is before the first day {self.date}")
        relays = self.relays.count
        for ev in self.scheduled():
            what = ev.action if isinstance(ev, OperatorEvent) else ev.kind
            kind = "operators" if isinstance(ev, OperatorEvent) else "faults"
            if not KINDS[what].on_node:
                if ev.node is not None:
                    raise ValueError(f"{kind}: {what} at {ev.at:.0f} s takes no node")
                continue
            if ev.node is None:
                raise ValueError(f"{kind}: {what} at {ev.at:.0f} s needs a node")
            if what == "add":
                if ev.node != relays + 1:
                    raise ValueError(
                        f"operators: add of relay #{ev.node} at {ev.at:.0f} s, "
                        f"but the next relay to add is #{relays + 1}"
                    )
                relays += 1
            elif ev.node > relays:
                raise ValueError(
                    f"{kind}: {what} of relay #{ev.node} at {ev.at:.0f} s, "
                    f"but only {relays} relay(s) exist then"
                )
        return self

    def scheduled(self) -> list[OperatorEvent | FaultEvent]:
        """Operator and fault events in time order (operators first at equal times)."""
        events: list[OperatorEvent | FaultEvent] = [*self.operators, *self.faults]
        return sorted(events, key=lambda e: order(e.at, isinstance(e, FaultEvent)))

    def resolved_design(self) -> Design:
        """The preset named by `design`, with `switches` applied."""
        return preset(self.design).with_switches(self.switches)


# ---------------------------------------------------------------------------
# Reading, overriding, and reporting errors in one line.


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `KEY.PATH=VALUE`; the value is parsed as YAML (so `3`, `true`, `[a, b]`)."""
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(p.strip() for p in path):
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, for example load.requests=5000")
    try:
        value = _safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_override(data: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    """Set `value` at `path` inside nested mappings, creating mappings on the way."""
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(path[: i + 1])
            raise ConfigError(f"--set {text}: {where} is not a mapping")
        node = child
    node[path[-1]] = value


def describe_error(error: ErrorDetails) -> str:
    """One line for a pydantic validation error: the key path and what is wrong."""
    loc = ".".join(str(p) for p in error["loc"])
    kind = error["type"]
    if not loc and kind == "value_error":  # a whole-scenario check names its own keys
        return str(error["msg"]).removeprefix("Value error, ")
    loc = loc or "(top level)"
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    if kind == "missing":
        return f"{loc}: required key is missing"
    if kind == "model_type":  # a section given as a number, a list, a string
        return f"{loc}: expected a mapping of keys, got {error.get('input')!r}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if kind.startswith("greater_than") or kind.startswith("less_than"):
        msg = "expected a number that is " + msg.removeprefix("Input should be ")
    elif msg.startswith("Input should be"):
        msg = "expected " + msg.removeprefix("Input should be ")
    got = error.get("input")
    if isinstance(got, dict | list):
        return f"{loc}: {msg}"
    return f"{loc}: {msg}, got {got!r}"


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read, override and validate a scenario; any problem raises one-line ConfigError."""
    p = Path(path)
    return scenario_from_data(read_yaml_mapping(p), overrides, str(p))


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML file (a scenario, a sweep) holds, unvalidated; ConfigError
    in one line naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"{p}: cannot read: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text (a binary file?)") from None
    try:
        data = _safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{p}: YAML syntax error: {where}{problem}") from None
    if data is None:
        raise ConfigError(f"{p}: the file is empty (nothing to run)")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of keys at the top level")
    return data


def scenario_from_data(
    data: dict[str, Any],
    overrides: Sequence[str | tuple[str, Any]] = (),
    source: str = "scenario",
    overridden: str = "with --set",
) -> Scenario:
    """Apply overrides (`KEY=VALUE` text, or `(KEY, value)` pairs) to a copy of
    `data` and validate it; errors name `source` (the file), and `overridden` when
    there were overrides, in one line."""
    data = copy.deepcopy(data)
    try:
        for item in overrides:
            if isinstance(item, str):
                key_path, value = parse_override(item)
                apply_override(data, key_path, value, item)
            else:
                key, value = item
                apply_override(data, key.split("."), value, key)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    where = f"{source} ({overridden})" if overrides else source
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe_error(exc.errors()[0])}") from None
