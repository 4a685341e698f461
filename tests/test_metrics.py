"""/metrics by Prometheus's conventions: every overflow reason, so the reasons add up
to the overflow outcomes; outcomes and what is in flight add up to the requests;
durations by outcome in real seconds and, under their own name, in scenario
seconds; per-node series; one unit per metric."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hsm_adapter.lane import TOKEN_BUCKETS, LaneState
from relay.core.events import FaultEvent
from relay.core.ledger import OUTCOMES, LatencyHistogram
from relay.core.request import Outcome
from relay.scenario.schema import load_scenario
from relay.serve import simnet
from relay.serve.metrics import BUCKETS, TierCollector, registry_for, serving_ledger
from tests.conftest import CONFIGS

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_the_figures_add_up_mid_run_as_prometheus_reads_them() -> None:
    """Scraped in the middle of a run with refusals at the CS and at the relays: the
    overflow reasons (terminal_limit included) sum to the overflow outcomes, the
    outcomes and the in-flight requests to the requests, each outcome's duration
    histogram counts that outcome, the per-node outcomes stay within the totals,
    and the scenario clock reads the time of day of the scrape: the day's opening,
    when serve started, plus the virtual seconds since."""
    scenario = load_scenario(
        CONFIGS / "smoke.yaml", ["load.terminal_connections.overrides={Yokohama: 1}"]
    )
    scraped: list[tuple[float, str]] = []

    def scrape(here: simnet.Situation) -> None:
        import trio

        scraped.append((trio.current_time(), generate_latest(registry_for(here.server)).decode()))

    simnet.run(scenario, duration=40.0, rate=150.0, actions=[(30.0, scrape)])
    [(at, text)] = scraped
    s = parse(text)
    requests = value(s, "relaysim_requests_total")
    outcomes = {o.value: value(s, "relaysim_outcomes_total", outcome=o.value) for o in OUTCOMES}
    reasons = {
        r: value(s, "relaysim_overflows_total", reason=r)
        for r in ("terminal_limit", "cs_limit", "node_limit", "no_node")
    }
    assert requests > 1000
    assert reasons["terminal_limit"] > 0
    assert reasons["cs_limit"] > 0
    assert sum(reasons.values()) == outcomes["overflow"]
    assert sum(outcomes.values()) + value(s, "relaysim_in_flight") == requests
    for o in OUTCOMES:
        counted = value(s, "relaysim_request_duration_seconds_count", outcome=o.value)
        assert counted == outcomes[o.value]
    nodes = [n for (name, labels), _ in s.items() if name == "relaysim_node_requests_total"
             for _, n in labels]  # fmt: skip
    assert len(nodes) == 4
    on_nodes = sum(value(s, "relaysim_node_outcomes_total", node=n, outcome="completed")
                   for n in nodes)  # fmt: skip
    assert on_nodes == outcomes["completed"]
    opens = scenario.load.service_hours[0]
    assert value(s, "relaysim_scenario_clock_seconds") == pytest.approx(opens + at)
    assert value(s, "relaysim_serve_limit_bytes", limit="max_frame") == 65536
    assert value(s, "relaysim_serve_limit_seconds", limit="idle_timeout") > 0
    assert not [name for (name, _) in s if name == "relaysim_serve_limit"]  # units apart


def test_durations_are_real_seconds_and_scenario_seconds_under_their_own_name() -> None:
    """At --speed 60, a request that took 60 model seconds took 1 real second: it is
    counted at le=1 of the real-seconds histogram and at le=60 of the scenario one,
    with sums of 1 and 60; a timeout's duration is counted under its outcome."""
    ledger = serving_ledger(60.0)
    done = ledger.open(cs=0, attempt=0, now=0.0)
    ledger.close(done, Outcome.COMPLETED, now=60.0)
    late = ledger.open(cs=1, attempt=0, now=0.0)
    ledger.close(late, Outcome.TIMEOUT, now=1140.0)  # 19 real seconds
    tier: Any = SimpleNamespace(ledger=ledger)
    server: Any = SimpleNamespace(tier=tier, limits=SimpleNamespace(scale=60.0))
    families = {f.name: f for f in TierCollector(server)._durations()}
    real = parse_family(families["relaysim_request_duration_seconds"])
    model = parse_family(families["relaysim_request_scenario_duration_seconds"])
    assert real[("completed", "1")] == 1
    assert real[("completed", "0.5")] == 0
    assert model[("completed", "60")] == 1
    assert model[("completed", "30")] == 0
    assert real[("timeout", "20")] == 1
    assert real[("timeout", "10")] == 0
    sums = {(o, kind): v for (o, kind), v in real.items() if kind == "sum"}
    assert sums[("completed", "sum")] == pytest.approx(1.0)
    assert model[("completed", "sum")] == pytest.approx(60.0)
    assert len(BUCKETS) + 1 == sum(1 for (o, le) in real if o == "completed" and le != "sum"
                                   and le != "count")  # fmt: skip


def test_per_node_overflows_and_durations_add_up_to_the_nodes_outcomes() -> None:
    """Scraped mid-run with relays of 3 connections each: the nodes refuse requests
    at their limit (node_limit); each node's overflows are its overflow outcomes,
    the nodes' node_limit overflows are the tier's, and each node's duration
    histogram counts its outcomes, which over the nodes are every completed
    request's, with the same sum of real seconds."""
    scenario = load_scenario(CONFIGS / "smoke.yaml", ["relays.max_connections=3"])
    scraped: list[str] = []

    def scrape(here: simnet.Situation) -> None:
        scraped.append(generate_latest(registry_for(here.server)).decode())

    simnet.run(scenario, duration=20.0, rate=60.0, actions=[(15.0, scrape)])
    s = parse(scraped[0])
    nodes = [f"relay{n}" for n in range(1, 5)]
    node_limit = [value(s, "relaysim_node_overflows_total", node=n, reason="node_limit")
                  for n in nodes]  # fmt: skip
    assert sum(node_limit) > 0
    assert sum(node_limit) == value(s, "relaysim_overflows_total", reason="node_limit")
    by_node = {(labels[0][1], labels[1][1]): v for (name, labels), v in s.items()
               if name == "relaysim_node_overflows_total"}  # fmt: skip
    for n in nodes:
        mine = sum(v for (node, _), v in by_node.items() if node == n)
        assert mine == value(s, "relaysim_node_outcomes_total", node=n, outcome="overflow")
        for o in OUTCOMES:
            counted = value(s, "relaysim_node_request_duration_seconds_count", node=n,
                            outcome=o.value)  # fmt: skip
            assert counted == value(s, "relaysim_node_outcomes_total", node=n, outcome=o.value)
    for part in ("count", "sum"):
        name = f"relaysim_node_request_duration_seconds_{part}"
        on_nodes = sum(value(s, name, node=n, outcome="completed") for n in nodes)
        whole = value(s, f"relaysim_request_duration_seconds_{part}", outcome="completed")
        assert on_nodes == pytest.approx(whole)
    assert value(s, "relaysim_request_duration_seconds_count", outcome="completed") > 100


def test_per_node_durations_are_real_seconds_by_outcome() -> None:
    """At --speed 60, a request completed on relay2 after 60 model seconds is counted
    at le=1 of relay2's histogram with a sum of 1 real second, and relay3's refusal
    at its limit at 0 under overflow and as relay3's node_limit overflow."""
    ledger = serving_ledger(60.0)
    done = ledger.open(cs=0, attempt=0, now=0.0)
    ledger.at_node(done, 2)
    ledger.close(done, Outcome.COMPLETED, now=60.0)
    full = ledger.open(cs=1, attempt=0, now=0.0)
    ledger.at_node(full, 3)
    ledger.close(full, Outcome.OVERFLOW, now=0.0, refusal="node_limit")
    nodes = [SimpleNamespace(number=n, name=f"relay{n}") for n in (2, 3)]
    tier: Any = SimpleNamespace(ledger=ledger, nodes=nodes)
    server: Any = SimpleNamespace(tier=tier, limits=SimpleNamespace(scale=60.0))
    s: Samples = {}
    for family in TierCollector(server)._per_node():
        s.update({(x.name, tuple(sorted(x.labels.items()))): x.value for x in family.samples})
    bucket = "relaysim_node_request_duration_seconds_bucket"
    assert value(s, bucket, node="relay2", outcome="completed", le="1") == 1
    assert value(s, bucket, node="relay2", outcome="completed", le="0.5") == 0
    total = value(
        s, "relaysim_node_request_duration_seconds_sum", node="relay2", outcome="completed"
    )
    assert total == pytest.approx(1.0)
    assert value(s, bucket, node="relay3", outcome="overflow", le="0.005") == 1
    assert value(s, "relaysim_node_overflows_total", node="relay3", reason="node_limit") == 1
    assert value(s, "relaysim_node_overflows_total", node="relay2", reason="node_limit") == 0


def parse_family(family: Any) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for s in family.samples:
        outcome = s.labels["outcome"]
        if s.name.endswith("_bucket"):
            out[(outcome, s.labels["le"].removesuffix(".0"))] = s.value
        elif s.name.endswith("_sum"):
            out[(outcome, "sum")] = s.value
        elif s.name.endswith("_count"):
            out[(outcome, "count")] = s.value
    return out


def token_worker() -> Any:
    """A stand-in for serve's SoftHSM2 lane as the collector reads it: ready, no
    restarts, no calls timed yet (a real one needs the real clock)."""
    return SimpleNamespace(
        state=LaneState.READY,
        restarts=0,
        answered=LatencyHistogram(TOKEN_BUCKETS),
        failed=LatencyHistogram(TOKEN_BUCKETS),
    )


def test_each_nodes_lane_state_agrees_with_its_stuck_flag() -> None:
    """With a token worker that is ready (SoftHSM2) and relay1's lane stalled by an
    injected hsm_stall, relay1's lane state is stuck, not ready, as its stuck flag
    says, while the others follow the worker; once the worker itself restarts,
    every node that is not stalled shows restarting; one state per node at 1."""
    scenario = load_scenario(CONFIGS / "smoke.yaml", ["design=legacy", "recovery.operators=false"])
    worker = token_worker()
    scraped: list[Samples] = []

    def stall(here: simnet.Situation) -> None:
        import trio

        here.server.driver.apply(FaultEvent(trio.current_time(), "hsm_stall", 1))

    def scrape(here: simnet.Situation) -> None:
        scraped.append(parse(generate_latest(registry_for(here.server, worker)).decode()))
        worker.state = LaneState.RESTARTING  # for the next scrape

    simnet.run(
        scenario, duration=30.0, rate=20.0, actions=[(5.0, stall), (10.0, scrape), (20.0, scrape)]
    )
    ready, restarting = scraped
    nodes = [f"relay{n}" for n in range(1, 5)]
    for s, others in ((ready, "ready"), (restarting, "restarting")):
        for node in nodes:
            states = {st.value: value(s, "relaysim_hsm_lane_state", node=node, state=st.value)
                      for st in LaneState}  # fmt: skip
            assert sum(states.values()) == 1
            assert value(s, "relaysim_node_hsm_stuck", node=node) == states["stuck"]
            assert states["stuck" if node == "relay1" else others] == 1
    assert value(ready, "relaysim_hsm_token_call_duration_seconds_count", result="answered") == 0
