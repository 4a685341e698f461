"""Counter operations: several upstream messages over one connection, held open
between them (incident-2016.md: the connection limits count terminals' connections,
and a counter operation writes the chip, then registers, over one connection). Every
test runs on both engines."""

from __future__ import annotations

from typing import Any

from relay.core import checkers
from relay.core.events import FaultEvent
from relay.core.request import Outcome
from relay.core.tier import RelayTier
from tests.conftest import Drive, tier_for

CONSTANT = {
    "hsm": {"service_ms": {"dist": "constant", "mean": 10}},
    "backend": {"service_ms": {"dist": "constant", "mean": 90}},
}


def operations(messages: int, think_s: float, **over: Any) -> RelayTier:
    """A tier whose operations have `messages` messages `think_s` apart."""
    load = {
        "operation": {"messages": messages, "think_s": {"dist": "constant", "mean": think_s}},
        "retry": {"max_retries": 0},
        **over.pop("load", {}),
    }
    return tier_for(**{**CONSTANT, **over}, load=load)


def test_an_operation_sends_its_messages_over_one_connection(drive: Drive) -> None:
    """Three messages, each a relay step, 20 s apart: one connection attempt, three
    completed messages, the connection held from the first to the last."""
    tier = operations(3, 20.0)
    end = drive(tier, [(100.0, 0)])
    led = tier.ledger
    assert led.total.count(Outcome.COMPLETED) == led.total.requests == 3
    assert tier.dispatcher.attempts[0] == 1
    assert tier.dispatcher.peak[0] == 1
    assert tier.dispatcher.cs_open(0) == 0  # closed at the end
    # 0.1 s per step, 20 s of the counter's own work between steps.
    assert round(end.end, 9) == 100.0 + 3 * 0.1 + 2 * 20.0
    assert checkers.check_run(led, tier.nodes) == []


def test_a_held_connection_counts_against_the_cap_between_messages(drive: Drive) -> None:
    """With a cap of one connection, a second operation arriving while the first
    one's counter works between messages is refused at the relays (cs_limit)."""
    tier = operations(2, 30.0, relays={"max_connections": 10})
    tier.dispatcher.caps[0] = 1
    drive(tier, [(0.0, 0), (10.0, 0), (40.0, 0)])
    led = tier.ledger
    assert led.refusals == {"cs_limit": 1}  # the one at 10 s; at 40 s the first is done
    assert led.total.count(Outcome.COMPLETED) == 4
    assert tier.dispatcher.refused[0] == 1


def test_a_failed_message_ends_the_operation_and_its_retry_resends_the_rest(
    drive: Drive,
) -> None:
    """A message that fails ends its operation (the connection closes); the
    counter's retry carries the failed message and the ones after it."""
    tier = operations(
        3,
        5.0,
        load={
            "retry": {
                "max_retries": 1,
                "think_s": {"dist": "constant", "mean": 60},
                "outcomes": ["error"],
            }
        },
    )
    # Message 1 is served at once; the HSM stalls just before message 2 (at 5.1 s;
    # off the 5 s health checks, which would reset the lane), which fails at its 2 s
    # HSM deadline; the lane is reset and the retry goes through.
    drive(tier, [(0.0, 0)], [FaultEvent(at=5.05, kind="hsm_stall", node=1)])
    led = tier.ledger
    assert (led.total.count(Outcome.COMPLETED), led.total.count(Outcome.ERROR)) == (3, 1)
    assert led.total.requests == 4
    assert tier.dispatcher.attempts[0] == 2  # the first try and the retry
    assert checkers.check_run(led, tier.nodes) == []


def test_a_crash_while_the_connection_sits_open_fails_the_next_message(drive: Drive) -> None:
    """The relay application dies between two messages of an operation: the next
    message finds its connection gone (an error), and the connection is released."""
    tier = operations(2, 60.0, design="legacy", recovery={"operators": False})
    drive(tier, [(0.0, 0)], [FaultEvent(at=30.0, kind="crash", node=1)])
    led = tier.ledger
    assert (led.total.count(Outcome.COMPLETED), led.total.count(Outcome.ERROR)) == (1, 1)
    assert tier.nodes[0].active == 0
    assert tier.dispatcher.cs_open(0) == 0
    assert checkers.check_run(led, tier.nodes) == []
