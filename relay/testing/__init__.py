"""A test kit: small scenarios built in code, runs on either engine, and the
worlds hypothesis draws. Shared by the test suite and `relaysim hunt`, so the hunt
searches exactly the worlds the property tests check (`relay.testing.worlds`).
The public front for users' own suites is `relay.testing.strategies` and
`relay.testing.assertions` (with the pytest plugin, `relay.pytest_plugin`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from relay.core.events import Event
from relay.core.params import TierParams
from relay.core.request import Request
from relay.core.rng import Streams
from relay.core.tier import Flow, RelayTier
from relay.engines import fast, trio
from relay.engines.common import Engine, RunEnd
from relay.scenario.build import tier_params
from relay.scenario.schema import Scenario


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """`a` with `b` laid over it, mapping by mapping."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def scenario(**over: Any) -> Scenario:
    """A small valid scenario with nested overrides, e.g. scenario(load={"requests": 50})."""
    return Scenario.model_validate(merge({"name": "test", "load": {"requests": 200}}, over))


def drive(
    engine: Engine,
    tier: RelayTier,
    arrivals: Iterable[tuple[float, int]],
    events: Iterable[Event] | None = None,
    observe: Callable[[Request, Flow], Flow] | None = None,
) -> RunEnd:
    """Run `tier` to its end on `engine` (the tier's own scheduled events if none
    given); `observe` (the fast engine only) wraps each flow, as a timeline records."""
    chosen = tier.params.events if events is None else events
    if engine == "fast":
        return fast.run(tier, arrivals, chosen, observe=observe)
    assert observe is None, "flows are observed on the fast engine"
    return trio.run(tier, arrivals, chosen)


def run_world(
    doc: dict[str, Any],
    arrivals: Sequence[tuple[float, int]],
    *,
    cs_caps: Sequence[int],
    engine: Engine,
    tweak: Callable[[TierParams], TierParams] | None = None,
    observe: Callable[[RelayTier], Callable[[Request, Flow], Flow]] | None = None,
) -> RelayTier:
    """The one harness for drawn worlds: scenario `doc` validated, its parameters
    adjusted by `tweak`, a tier with `cs_caps`, `arrivals` run on `engine`
    (`observe`: a recorder of the tier's flows, on the fast engine)."""
    s = Scenario.model_validate(doc)
    params = tier_params(s)
    if tweak is not None:
        params = tweak(params)
    tier = RelayTier(params, cs_caps, Streams(s.seed))
    drive(engine, tier, arrivals, observe=None if observe is None else observe(tier))
    return tier
