"""Shared test helpers: small scenarios built in code, no files needed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import settings

from relay import testing
from relay.core.events import FaultEvent, OperatorEvent
from relay.core.tier import RelayTier
from relay.engines.common import ENGINES, RunEnd
from relay.scenario.build import new_tier
from relay.testing import scenario

# pytester: tests/test_pytest_plugin.py runs the docs' example suite in a pytest of its own.
pytest_plugins = ["pytester"]

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


@pytest.fixture
def tmp_yaml(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML text to a file and return its path."""

    def write(text: str, name: str = "scenario.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return write


Drive = Callable[..., RunEnd]


@pytest.fixture(params=ENGINES)
def drive(request: pytest.FixtureRequest) -> Drive:
    """Run a tier to its end on the engine of this parametrisation (trio: MockClock)."""

    def run(
        tier: RelayTier,
        arrivals: Iterable[tuple[float, int]],
        events: Iterable[OperatorEvent | FaultEvent] = (),
    ) -> RunEnd:
        return testing.drive(request.param, tier, arrivals, events)

    return run


def tier_for(**over: Any) -> RelayTier:
    s = scenario(**over)
    return new_tier(s, cs_caps=[100] * 4)
