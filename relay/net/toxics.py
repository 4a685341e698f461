"""Link faults in Toxiproxy's vocabulary: one registry entry per toxic kind.

A toxic sits on a proxy (a listening address: the dispatcher's port, a relay
node's) and acts on one direction of every connection made to it: `upstream`
(client to server) or `downstream` (server to client), on a share `toxicity` of
those connections (drawn once per connection, from the network's seed). Its
attributes are Toxiproxy's, with Toxiproxy's names, units and zero defaults:

- `latency` (`latency` ms, `jitter` ms): each write arrives `latency` ± `jitter`
  later, order kept;
- `bandwidth` (`rate` KB/s, 1 KB = 1,000 bytes): bytes go no faster than `rate`;
- `slicer` (`average_size`, `size_variation` bytes, `delay` us): each write
  arrives in slices of about `average_size` bytes, `delay` apart;
- `timeout` (`timeout` ms): nothing gets through; the connection closes `timeout`
  after the toxic met it (0: never; data is dropped until the toxic goes);
- `reset_peer` (`timeout` ms): the connection is reset (both ends see "connection
  reset") `timeout` after the toxic met it;
- `slow_close` (`delay` ms): a close (FIN) in this direction arrives `delay` later;
- `limit_data` (`bytes`): once `bytes` bytes have gone through, the connection
  closes.

Each entry holds the kind's attributes and its effect (`Kind`); the simulated
network (`relay.net.sim`) calls the effects, and the same entries validate a
toxic however it arrives (a hunt's draw, the admin endpoint's JSON).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Direction = Literal["upstream", "downstream"]
DIRECTIONS: tuple[Direction, ...] = ("upstream", "downstream")

#: Bytes on their way: (the instant they arrive, the bytes).
Segment = tuple[float, bytes]


class ToxicError(ValueError):
    """A toxic that cannot be: one line naming the field and the value."""


class Wire(Protocol):
    """What a toxic can do to one direction of one connection."""

    state: dict[str, Any]  # each toxic's own state on this direction, by toxic name

    @property
    def second(self) -> float:
        """The clock's units in one real second (`serve --speed X`: X)."""
        ...

    def close_at(self, at: float, by: str) -> None:
        """Close the connection at `at` (both ends see it closed), for toxic `by`
        (taking the toxic off before then cancels it)."""

    def reset_at(self, at: float, by: str) -> None:
        """Reset the connection at `at` (both ends see "connection reset"), for
        toxic `by`."""


@dataclass(frozen=True)
class Toxic:
    """One toxic, as Toxiproxy's JSON has it."""

    name: str
    type: str
    stream: Direction = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, float] = field(default_factory=dict)

    def __getitem__(self, attribute: str) -> float:
        return self.attributes.get(attribute, 0.0)

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's JSON of this toxic (every attribute of its kind given)."""
        attrs = {a: _number(self[a]) for a in KINDS[self.type].attributes}
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": attrs,
        }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _same(toxic: Toxic, wire: Wire, data: list[Segment], rng: random.Random) -> list[Segment]:
    return data


def _nothing(toxic: Toxic, wire: Wire, at: float) -> None:
    return None


@dataclass(frozen=True)
class Kind:
    """A toxic kind: its attributes (Toxiproxy's names), what it does when it first
    meets a connection (`meets`, at an instant), to each write's bytes (`passes`),
    and how much later it lets this direction's close arrive (`close_delay`, in real
    seconds). The times a toxic's attributes give are real time (Toxiproxy's); each
    effect turns them into the clock's units with `Wire.second`."""

    attributes: tuple[str, ...]
    meets: Callable[[Toxic, Wire, float], None] = _nothing
    passes: Callable[[Toxic, Wire, list[Segment], random.Random], list[Segment]] = _same
    close_delay: Callable[[Toxic], float] = lambda toxic: 0.0


def _latency(toxic: Toxic, wire: Wire, data: list[Segment], rng: random.Random) -> list[Segment]:
    jitter = toxic["jitter"]
    delay = (toxic["latency"] + (rng.uniform(-jitter, jitter) if jitter else 0.0)) / 1000
    delay *= wire.second
    delay = max(delay, 0.0)
    return [(at + delay, chunk) for at, chunk in data]


def _bandwidth(toxic: Toxic, wire: Wire, data: list[Segment], rng: random.Random) -> list[Segment]:
    rate = toxic["rate"] * 1000.0 / wire.second  # bytes a unit of the clock
    mine = wire.state.setdefault(toxic.name, {})
    out = []
    for at, chunk in data:
        start = max(at, mine.get("busy", 0.0))
        mine["busy"] = start + (len(chunk) / rate if rate > 0 else math.inf)
        out.append((mine["busy"], chunk))
    return out


def _slicer(toxic: Toxic, wire: Wire, data: list[Segment], rng: random.Random) -> list[Segment]:
    average, variation = int(toxic["average_size"]), int(toxic["size_variation"])
    delay = toxic["delay"] / 1e6 * wire.second
    if average <= 0:
        return data
    out = []
    for at, chunk in data:
        i = 0
        while i < len(chunk):
            size = max(1, average + (rng.randint(-variation, variation) if variation else 0))
            out.append((at, chunk[i : i + size]))
            i += size
            at += delay
    return out


def _drop(toxic: Toxic, wire: Wire, data: list[Segment], rng: random.Random) -> list[Segment]:
    return []


def _timeout_meets(toxic: Toxic, wire: Wire, at: float) -> None:
    if toxic["timeout"] > 0:
        wire.close_at(at + toxic["timeout"] / 1000 * wire.second, toxic.name)


def _reset_meets(toxic: Toxic, wire: Wire, at: float) -> None:
    wire.reset_at(at + toxic["timeout"] / 1000 * wire.second, toxic.name)


def _limit(toxic: Toxic, wire: Wire, data: list[Segment], rng: random.Random) -> list[Segment]:
    mine = wire.state.setdefault(toxic.name, {"passed": 0})
    left = int(toxic["bytes"]) - mine["passed"]
    out = []
    for at, chunk in data:
        if left <= 0:
            wire.close_at(at, toxic.name)
            break
        piece = chunk[:left]
        out.append((at, piece))
        left -= len(piece)
        mine["passed"] += len(piece)
        if left <= 0:
            wire.close_at(at, toxic.name)
            break
    return out


#: The registry: every toxic kind, once.
KINDS: dict[str, Kind] = {
    "latency": Kind(("latency", "jitter"), passes=_latency),
    "bandwidth": Kind(("rate",), passes=_bandwidth),
    "slicer": Kind(("average_size", "size_variation", "delay"), passes=_slicer),
    "timeout": Kind(("timeout",), meets=_timeout_meets, passes=_drop),
    "reset_peer": Kind(("timeout",), meets=_reset_meets),
    "slow_close": Kind(("delay",), close_delay=lambda toxic: toxic["delay"] / 1000),
    "limit_data": Kind(("bytes",), passes=_limit),
}


def toxic_from(doc: Mapping[str, Any], where: str = "toxic") -> Toxic:
    """A toxic from Toxiproxy's JSON shape (`name` defaults to TYPE_STREAM, `stream`
    to downstream, `toxicity` to 1), or ToxicError naming the field at `where`."""
    if not isinstance(doc, Mapping):
        raise ToxicError(f"{where}: expected an object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - {"name", "type", "stream", "toxicity", "attributes"})
    if unknown:
        raise ToxicError(f"{where}.{unknown[0]}: unknown field")
    kind_name = doc.get("type")
    if kind_name not in KINDS:
        known = ", ".join(KINDS)
        raise ToxicError(f"{where}.type: {kind_name!r} is not a toxic ({known})")
    kind = KINDS[kind_name]
    stream = doc.get("stream", "downstream")
    if stream not in DIRECTIONS:
        raise ToxicError(f"{where}.stream: {stream!r}: expected upstream or downstream")
    toxicity = _finite(doc.get("toxicity", 1.0), f"{where}.toxicity")
    if not 0.0 <= toxicity <= 1.0:
        raise ToxicError(f"{where}.toxicity: {toxicity!r}: expected a number from 0 to 1")
    name = doc.get("name") or f"{kind_name}_{stream}"
    if not isinstance(name, str) or len(name) > 64 or not name.isprintable():
        raise ToxicError(f"{where}.name: {name!r}: expected a name of up to 64 characters")
    given = doc.get("attributes", {})
    if not isinstance(given, Mapping):
        raise ToxicError(f"{where}.attributes: expected an object")
    extra = sorted(set(given) - set(kind.attributes))
    if extra:
        known = ", ".join(kind.attributes)
        raise ToxicError(
            f"{where}.attributes.{extra[0]}: not an attribute of {kind_name} ({known})"
        )
    attributes = {}
    for attribute in kind.attributes:
        raw = given.get(attribute, 0)
        value = _finite(raw, f"{where}.attributes.{attribute}")
        if value < 0:
            raise ToxicError(f"{where}.attributes.{attribute}: {raw!r}: expected a number >= 0")
        attributes[attribute] = value
    return Toxic(name, kind_name, stream, toxicity, attributes)


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ToxicError(f"{where}: {value!r}: expected a finite number")
    return float(value)
