"""The vocabularies, each spelled once: the registry of faults and operator actions
(`relay.core.faults.KINDS`), which the scenario schema, the admin endpoint and
`RelayTier.handle` read, each entry's handler agreeing with its "still in effect"
test; and the effect kinds (`relay.core.tier.Wait` and its classes), which carry
the message they are for."""

from __future__ import annotations

from typing import get_args

import pytest

from relay.core.events import FaultEvent, OperatorEvent
from relay.core.faults import ACTIONS, FAULTS, KINDS, LIVE
from relay.core.tier import Result, Wait
from relay.scenario import schema
from relay.serve import admin
from tests.conftest import tier_for


def test_the_schema_and_the_admin_endpoint_take_the_registrys_names() -> None:
    """A scenario's faults and operators, and the admin endpoint's kinds, are the
    registry's names, no more and no fewer: a kind is added in one place."""
    fault_names = get_args(schema.FaultEvent.model_fields["kind"].annotation)
    action_names = get_args(schema.OperatorEvent.model_fields["action"].annotation)
    assert set(fault_names) == set(FAULTS)
    assert set(action_names) == set(ACTIONS)
    assert set(FAULTS) | set(ACTIONS) == set(KINDS)
    assert admin.KINDS == LIVE
    assert set(admin.ON_NODE) | set(admin.ON_BACKEND) == set(LIVE)


def test_a_kind_not_in_the_registry_is_refused_by_the_scenario() -> None:
    """A scenario naming a fault the registry lacks gets the registry's names."""
    with pytest.raises(schema.ConfigError) as exc:
        schema.scenario_from_data({"faults": [{"at": 0, "kind": "meteor", "node": 1}]}, source="x")
    assert "faults.0.kind" in str(exc.value)
    assert "crash" in str(exc.value)


@pytest.mark.parametrize("name", [k for k in LIVE if k != "attach"])
def test_each_live_kind_holds_once_handled_and_not_before(name: str) -> None:
    """Each kind the admin endpoint injects, carried out through `RelayTier.handle`
    on legacy (no supervisor undoes it), is in effect by its own entry's test, and
    was not before."""
    tier = tier_for(design="legacy")
    kind = KINDS[name]
    node = tier.nodes[0] if kind.on_node else None
    factor = 3.0
    assert not kind.in_effect(tier, node, factor)
    if kind.operator:
        tier.handle(OperatorEvent(1.0, name, 1), 1.0)
    elif kind.on_node:
        tier.handle(FaultEvent(1.0, name, 1), 1.0)
    else:
        tier.handle(FaultEvent(1.0, name, factor=factor), 1.0)
    assert kind.in_effect(tier, node, factor)
    tier.heal(2.0)
    assert not kind.in_effect(tier, node, factor)


def test_each_effect_names_its_message_and_a_clients_think_the_next() -> None:
    """Every effect a flow yields carries the message it is for; in serve mode a
    think the client ends names, once resumed, the operation's next message: no
    side channel says which request a flow is on."""
    tier = tier_for()
    first, flow = tier.admit(0, 0, 1.0, messages=2)
    effect = next(flow)
    seen = []
    while isinstance(effect, Wait) and not effect.client():
        seen.append((type(effect).__name__, effect.request))
        effect = flow.send((Result.DONE, 1.5))
    think = effect
    assert isinstance(think, Wait)
    assert seen == [("CallHsm", first), ("CallBackend", first)]
    assert think.request is first
    effect = flow.send((Result.DONE, 60.0))  # the client's next message came
    assert isinstance(effect, Wait)
    second = think.request
    assert second is not None
    assert second is not first
    assert (second.arrived, effect.request) == (60.0, second)
    assert not hasattr(tier.ledger, "last_opened")
