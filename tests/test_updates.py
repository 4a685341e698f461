"""Lost card updates: chip-writing operations under dropped connections, timeouts
and re-sends, as property tests under trio's virtual clock.

Hypothesis draws the traffic (every operation writes the chip), how congested the
tier is (CS caps, node limits), backend times around the relay's timer (so replies
are lost after the backend applied them), crashes that drop the connections of
everything on a node, and trio's interleaving. On `fixed` (re-send with the same
key, an idempotent backend) every operation ends registered exactly once; on
`legacy` (no re-send) hypothesis finds operations left inconsistent.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings

from relay.core import checkers
from relay.engines.common import ENGINES, Engine
from relay.testing.worlds import World, run_updates, worlds


def check_consistent(world: World, design: str, engine: Engine) -> None:
    """Every operation registered exactly once; every request accounted for."""
    tier = run_updates(world, design, engine)
    ledger = tier.ledger
    assert checkers.check_run(ledger, tier.nodes) == []
    assert not ledger.still_open
    assert len(ledger.chip_operations) == len(world.arrivals)
    assert ledger.inconsistent == 0, f"{design}: {ledger.inconsistent} inconsistent"
    assert ledger.duplicates_applied == 0, f"{design}: {ledger.duplicates_applied} duplicates"


SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Found by hypothesis: one CS connection, every answer on the timer. Re-sends of
# operations already applied must not hold the connection (the backend confirms a
# known key at once), or an unapplied one runs out of re-sends.
STARVED = World(
    arrivals=[(10.0, 0)] * 13 + [(11.0, 0), (11.0, 0), (14.0, 0)],
    cs_cap=1,
    node_limit=1,
    backend_s=2.0,
    timeout_s=2.0,
    crashes=[],
    seed=0,
)


@pytest.mark.parametrize("engine", ENGINES)
def test_fixed_registers_every_chip_operation_exactly_once(engine: Engine) -> None:
    """On fixed, under any drawn congestion, timeouts and crashes, no card is left
    inconsistent and no registration is applied twice."""

    @SETTINGS
    @given(worlds())
    @example(STARVED)
    def prop(world: World) -> None:
        check_consistent(world, "fixed", engine)

    prop()


@pytest.mark.parametrize("engine", ENGINES)
def test_legacy_leaves_cards_inconsistent_under_congestion(engine: Engine) -> None:
    """On legacy (no re-send), hypothesis finds a world where a dropped connection
    leaves a written chip unregistered."""

    @SETTINGS
    @given(worlds())
    def prop(world: World) -> None:
        check_consistent(world, "legacy", engine)

    with pytest.raises(AssertionError, match=r"legacy: \d+ inconsistent"):
        prop()


@pytest.mark.parametrize("engine", ENGINES)
def test_resend_without_an_idempotent_backend_applies_twice(engine: Engine) -> None:
    """Re-sending without the backend's at-most-once check applies an operation the
    backend had already applied (its reply lost to the timer) a second time."""

    @SETTINGS
    @given(worlds())
    def prop(world: World) -> None:
        tier = run_updates(world, "fixed", engine, {"idempotent_backend": False})
        assert tier.ledger.duplicates_applied == 0, "resend: duplicates"

    with pytest.raises(AssertionError, match="resend: duplicates"):
        prop()
