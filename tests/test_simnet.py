"""The real server and the real load client on the simulated network, under trio's
virtual clock (`relay.serve.simnet`): a whole day agrees with its replay, one
seed repeats a run byte for byte, the HTTP endpoints answer there too, and link
faults lose nothing the server accepted."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from relay.core import checkers
from relay.core.summary import Summary
from relay.net.sim import SimNetwork
from relay.net.toxics import toxic_from
from relay.plan.replay import replay
from relay.scenario.schema import Scenario, load_scenario
from relay.serve import simnet
from tests.conftest import CONFIGS


def smoke(*sets: str) -> Scenario:
    return load_scenario(CONFIGS / "smoke.yaml", list(sets))


# 29 March's peak intensity for 20 minutes (bench/day_simnet.py has the hour), with
# serve's idle timeout longer than any counter's think (docs/serve.md).
CUT = [
    "load.service_hours=[10:00, 10:20]",
    "load.profile=flat",
    "load.requests=35000",
    "serve.idle_timeout_s=3600",
]


DAYS = [("smoke.yaml", []), ("2016-03-29.yaml", CUT)]


@pytest.mark.parametrize(("config", "sets"), DAYS, ids=["smoke", "29-march-cut"])
def test_a_day_over_the_network_agrees_with_its_replay(config: str, sets: list[str]) -> None:
    """The smoke day, and a cut of 29 March, through server and load client on a
    network that delays nothing: overflow rate, p50 and p99 within 2% of the replay
    of the same scenario and seed, nothing lost, no protocol broken."""
    scenario = load_scenario(CONFIGS / config, sets)
    run = simnet.run(scenario, duration=86400.0)
    replayed = replay(scenario).summary
    doc = run.doc
    assert doc["lost"] == 0
    assert run.record.violations == {}

    def rate(d: Summary) -> float:
        return d["overflows"] / d["requests"]

    assert rate(doc) == pytest.approx(rate(replayed), rel=0.02)
    for p in ("p50", "p99"):
        assert doc["latency_ms"][p] == pytest.approx(replayed["latency_ms"][p], rel=0.02)
    assert doc["overflows"] > 50  # the caps bind: the rate is a figure, not a zero
    assert not run.server.tier.ledger.still_open


TOXIC = [
    ("dispatcher", toxic_from({"type": "latency", "attributes": {"latency": 5, "jitter": 4}})),
    ("dispatcher", toxic_from({"type": "slicer", "stream": "upstream",
                               "attributes": {"average_size": 30, "size_variation": 20}})),
]  # fmt: skip


def test_one_seed_repeats_a_run_byte_for_byte() -> None:
    """Under jitter and sliced writes, the same seed gives the same two ledgers
    (server's and client's), byte for byte; another seed gives others."""
    fast = ["--set", "backend.service_ms={dist: exponential, mean: 50}"][1:]

    def once(seed: int) -> tuple[str, str]:
        run = simnet.run(smoke(*fast, f"seed={seed}"), duration=20.0, rate=200.0, toxics=TOXIC)
        assert run.doc["requests"] > 3000
        return simnet.digest(run.server.tier.ledger), simnet.digest(run.record.ledger)

    first = once(3)
    assert once(3) == first
    assert once(4) != first


def test_metrics_and_admin_answer_over_the_simulated_network() -> None:
    """/metrics parses as Prometheus text and the admin endpoint injects a crash,
    both reached over the simulated network; on legacy (no supervisor) the crash
    stays in /faults."""

    async def main() -> tuple[dict[str, float], int, dict[str, object]]:
        net = SimNetwork(1)
        async with simnet.serving(smoke("design=legacy"), net) as (_, ports):
            status, body = await simnet.http(net, ports["metrics"], "GET", "/metrics")
            assert status == 200
            samples = {
                s.name: s.value
                for family in text_string_to_metric_families(body.decode())
                for s in family.samples
            }
            fault = b'{"kind": "crash", "node": 1}'
            admin, token = ports["admin"], simnet.ADMIN_TOKEN
            posted, _ = await simnet.http(net, admin, "POST", "/faults", fault, token)
            _, state = await simnet.http(net, admin, "GET", "/faults")
        return samples, posted, json.loads(state)

    clock = trio.testing.MockClock(autojump_threshold=0)
    samples, posted, state = trio.run(main, clock=clock)
    assert samples["relaysim_requests_total"] == 0
    assert posted == 200
    faults = state["faults"]
    assert isinstance(faults, list)
    assert [(f["kind"], f["node"]) for f in faults] == [("crash", 1)]


def test_connections_reset_mid_load_lose_nothing_the_server_accepted() -> None:
    """reset_peer on half the dispatcher's connections two seconds in: the client
    counts what it never heard back as lost and says nothing false; the server
    ends every request it accepted with one outcome, its ledger balanced."""
    reset = toxic_from({"type": "reset_peer", "toxicity": 0.5, "attributes": {"timeout": 2000}})
    run = simnet.run(
        smoke(), duration=10.0, rate=100.0, connections=8, toxics=[("dispatcher", reset)]
    )
    doc, ledger = run.doc, run.server.tier.ledger
    assert run.record.violations == {}
    answered = doc["completed"] + doc["overflows"] + doc["timeouts"] + doc["errors"]
    assert answered + doc["lost"] == doc["requests"]
    assert doc["lost"] + doc["errors"] > 0  # the resets cost the client something
    assert not ledger.still_open
    assert checkers.accounting(ledger) == []
    assert ledger.total.requests <= doc["requests"]
