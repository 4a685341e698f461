"""Shared test helpers: small scenarios built in code, no files needed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import settings

from relay.core.events import FaultEvent, OperatorEvent
from relay.core.tier import RelayTier
from relay.engines import fast as driver_fast
from relay.engines import trio as driver_trio
from relay.engines.common import RunEnd
from relay.scenario.build import new_tier
from relay.scenario.schema import Scenario

# Property-test profiles. `ci` (the default) runs the same 150 examples every time,
# so a red CI is never a fluke; `nightly` runs 3,000 fresh ones. Choose with
# RELAYSIM_HYPOTHESIS=nightly or pytest's --hypothesis-profile=nightly.
settings.register_profile("ci", max_examples=150, derandomize=True, database=None)
settings.register_profile("nightly", max_examples=3000, database=None)
settings.load_profile(os.environ.get("RELAYSIM_HYPOTHESIS", "ci"))

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Undo a CLI test's process-wide structlog set-up (its level filter would hide
    the events a later test captures)."""
    yield
    structlog.reset_defaults()


def scenario(**over: Any) -> Scenario:
    """A small valid scenario with nested overrides, e.g. scenario(load={"requests": 50})."""
    base: dict[str, Any] = {"name": "test", "load": {"requests": 200}}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return Scenario.model_validate(base)


@pytest.fixture
def tmp_yaml(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML text to a file and return its path."""

    def write(text: str, name: str = "scenario.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return write


Drive = Callable[..., RunEnd]


@pytest.fixture(params=["trio", "fast"])
def drive(request: pytest.FixtureRequest) -> Drive:
    """Run a tier to its end on the engine of this parametrisation (trio: MockClock)."""

    def run(
        tier: RelayTier,
        arrivals: Iterable[tuple[float, int]],
        events: Iterable[OperatorEvent | FaultEvent] = (),
    ) -> RunEnd:
        if request.param == "trio":
            return driver_trio.run(tier, arrivals, events)
        return driver_fast.run(tier, arrivals, events)

    return run


def tier_for(**over: Any) -> RelayTier:
    s = scenario(**over)
    return new_tier(s, cs_caps=[100] * 4)
