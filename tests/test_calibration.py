"""The calibrated 29 March 2016: the audit's overflow count, from the model's mechanisms."""

from __future__ import annotations

import pytest

from relay.config import load_scenario
from relay.replay import replay
from tests.conftest import CONFIGS

AUDIT_OVERFLOWS = 12_650  # incident-2016.md: connection-overflow events on 29 March 2016
AUDIT_REQUESTS = 715_000  # upstream request messages that day


@pytest.mark.slow
def test_29_march_shows_the_audited_overflows() -> None:
    """The whole day on seed 1 shows 12,650 overflows within 15%, nothing lost, checks clean."""
    scenario = load_scenario(CONFIGS / "2016-03-29.yaml", [])
    assert scenario.seed == 1
    result = replay(scenario)
    doc = result.summary
    assert result.violations == []
    assert doc["lost"] == 0
    assert doc["overflows"] == pytest.approx(AUDIT_OVERFLOWS, rel=0.15)
    # Retries come on top of the day's first attempts, and stay a small share of it.
    assert AUDIT_REQUESTS <= doc["requests"] <= AUDIT_REQUESTS * 1.03
