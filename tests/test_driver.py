"""Both drivers, trio (autojump clock) and fast (event loop): deadlines, retries,
liveness, crashes, operators. Every test runs on each engine, so the two agree on
every mechanism, not only on averages."""

from __future__ import annotations

import trio
import trio.testing

from relay.core import checkers
from relay.core.agenda import Waiting
from relay.core.events import FaultEvent, OperatorEvent
from relay.core.request import Outcome
from relay.core.sketch import merged
from relay.core.tier import RelayTier
from relay.engines.trio import TrioDriver
from tests.conftest import Drive, tier_for


def test_requests_complete_after_hsm_and_backend(drive: Drive) -> None:
    """With constant service times a request takes HSM time plus backend time."""
    tier = tier_for(
        hsm={"service_ms": {"dist": "constant", "mean": 10}},
        backend={"service_ms": {"dist": "constant", "mean": 90}},
    )
    end = drive(tier, [(100.0, 0), (200.0, 1)])
    latencies = merged(tier.ledger.latencies.values())
    assert latencies.count == 2
    assert round(latencies.low, 9) == round(latencies.high, 9) == 0.1
    assert tier.ledger.total.count(Outcome.COMPLETED) == 2
    assert end.end == 200.1
    assert not end.cut_short


def test_slow_backend_times_out_at_the_step_timer(drive: Drive) -> None:
    """A backend slower than the relay step's timer ends the request as a timeout."""
    tier = tier_for(
        relays={"timeout_s": 5},
        backend={"service_ms": {"dist": "constant", "mean": 60_000}},
        load={"requests": 1, "retry": {"max_retries": 0}},
    )
    drive(tier, [(10.0, 0)])
    assert tier.ledger.total.count(Outcome.TIMEOUT) == 1
    assert tier.ledger.last_outcome_at == 15.0
    assert checkers.check_run(tier.ledger, tier.nodes) == []


def test_hsm_call_deadline_fails_a_slow_hsm_early(drive: Drive) -> None:
    """With hsm_call_deadline a slow HSM fails the request at the HSM deadline, as an error."""
    over = {
        "hsm": {"service_ms": {"dist": "constant", "mean": 10_000}, "deadline_ms": 500},
        "load": {"requests": 1, "retry": {"max_retries": 0}},
    }
    tier = tier_for(**over)
    drive(tier, [(10.0, 0)])
    assert tier.ledger.total.count(Outcome.ERROR) == 1
    assert tier.ledger.last_outcome_at == 10.5
    legacy = tier_for(**over, design="legacy")
    drive(legacy, [(10.0, 0)])
    assert legacy.ledger.total.count(Outcome.COMPLETED) == 1  # waits the HSM out


def test_refused_operation_is_retried_as_new_requests(drive: Drive) -> None:
    """An overflow is retried after think time, each retry a new request, up to the limit."""
    tier = tier_for(
        relays={"count": 1, "max_connections": 1},
        backend={"service_ms": {"dist": "constant", "mean": 1_000_000}},
        load={
            "retry": {
                "max_retries": 2,
                "think_s": {"dist": "constant", "mean": 5},
                "outcomes": ["overflow"],
            }
        },
    )
    drive(tier, [(0.0, 0), (1.0, 1)])
    led = tier.ledger
    # CS 0 holds the only connection until its 30 s timer fires; CS 1's try at 1 s
    # and its retries at 6 s and 11 s all find the node full, then it gives up.
    assert led.refusals == {"node_limit": 3}
    assert led.total.requests == 4
    assert sorted(r for b in led.buckets.values() for r in [b.requests]) == [4]
    assert led.total.count(Outcome.TIMEOUT) == 1
    assert checkers.check_run(led, tier.nodes) == []


def test_liveness_bound_reports_requests_that_never_end(
    drive: Drive,
) -> None:
    """A request still open drain_s after the last arrival is lost, and the checkers say so."""
    # A stuck HSM lane with no per-call deadline and a step timer far beyond the
    # drain bound: the request would wait out the timer, so the bound must cut it.
    tier = tier_for(
        design="legacy",
        relays={"count": 1, "timeout_s": 1e7},
        run={"drain_s": 60},
        load={"retry": {"max_retries": 0}},
    )
    tier.nodes[0].hsm.stuck = True
    end = drive(tier, [(100.0, 2)])
    assert end.cut_short
    assert end.end == 160.0
    violations = checkers.check_run(tier.ledger, tier.nodes)
    assert any("1 request(s) never got an outcome" in str(v) for v in violations)
    assert any(v.checker == "allocator" for v in violations)


def test_detached_node_gets_no_new_connections(drive: Drive) -> None:
    """After an operator detaches relay #1, all new requests go to the others."""
    tier = tier_for(dispatcher={"policy": "round_robin"})
    arrivals = [(float(t), 0) for t in range(0, 100)]
    drive(tier, arrivals, [OperatorEvent(at=49.5, action="detach", node=1)])
    assert tier.ledger.nodes[1].requests == 13  # t = 0, 4, ..., 48
    assert sum(t.requests for t in tier.ledger.nodes.values()) == 100


CRASH = {
    "relays": {"count": 1, "timeout_s": 1000},
    "hsm": {"service_ms": {"dist": "constant", "mean": 10}},
    "backend": {"service_ms": {"dist": "constant", "mean": 100_000}},
    "load": {"retry": {"max_retries": 0}},
}


def outcomes_at(tier: RelayTier) -> dict[str, int]:
    return {o.value: tier.ledger.total.count(o) for o in Outcome if tier.ledger.total.count(o)}


def test_crash_ends_in_flight_requests_at_once(drive: Drive) -> None:
    """A crash fails every in-flight request at the crash instant, work areas included."""
    tier = tier_for(**CRASH)
    drive(tier, [(0.0, 0), (1.0, 1), (2.0, 2)], [FaultEvent(at=50, kind="crash", node=1)])
    assert outcomes_at(tier) == {"error": 3}
    assert tier.ledger.last_outcome_at == 50.0  # not at their 100 s backend answer
    assert checkers.check_run(tier.ledger, tier.nodes) == []
    assert tier.nodes[0].allocator.live == 0


def test_fixed_design_restarts_a_crashed_node_at_once(drive: Drive) -> None:
    """With auto_restart the node serves again right after the crash: no outage."""
    tier = tier_for(**CRASH)
    drive(tier, [(0.0, 0), (60.0, 1)], [FaultEvent(at=50, kind="crash", node=1)])
    assert outcomes_at(tier) == {"completed": 1, "error": 1}
    node = tier.nodes[0]
    assert [(o.mechanism, o.start, o.end) for o in node.outages] == [("injected_crash", 50, 50)]


def test_legacy_node_stays_down_until_an_operator_restarts_it(drive: Drive) -> None:
    """Without auto_restart the crashed node fails every request sent to it (the 2016
    distributor does not see it), and serves again once an operator restarted it."""
    tier = tier_for(**CRASH, design="legacy", recovery={"operators": False})
    events: list[OperatorEvent | FaultEvent] = [
        FaultEvent(at=50.5, kind="crash", node=1),
        OperatorEvent(at=100, action="restart", node=1),
    ]
    # 0 s: in flight at the crash; 52 s and 60 s: reach the dead node; 110 s: served.
    drive(tier, [(0.0, 0), (52.0, 1), (60.0, 2), (110.0, 3)], events)
    assert outcomes_at(tier) == {"completed": 1, "error": 3}
    assert tier.dispatcher.attached == [True]
    assert [(o.start, o.end) for o in tier.nodes[0].outages] == [(50.5, 100)]
    assert tier.ledger.last_outcome_at == 110.0 + 0.01 + 100.0
    assert checkers.check_run(tier.ledger, tier.nodes) == []


def test_deep_health_check_detaches_a_crashed_node_and_reattaches_it(drive: Drive) -> None:
    """The deep check takes a crashed node out and puts it back once restarted."""
    over = {**CRASH, "relays": {"count": 2, "timeout_s": 1000}}
    tier = tier_for(**over, switches={"auto_restart": False}, dispatcher={"policy": "round_robin"})
    events: list[OperatorEvent | FaultEvent] = [
        FaultEvent(at=50.5, kind="crash", node=1),
        OperatorEvent(at=200, action="restart", node=1),
    ]
    # Health checks run every 5 s from 0. Round robin alternates; after the check at
    # 55 s relay #1 is out until the check at 205 s.
    arrivals = [(t, 0) for t in (51.0, 52.0, 60.0, 61.0, 62.0, 210.0, 211.0)]
    drive(tier, arrivals, events)
    assert tier.ledger.nodes[1].requests == 2  # the one at 51 s (error) and one at 210/211 s
    assert tier.ledger.nodes[1].count(Outcome.ERROR) == 1
    assert tier.ledger.nodes[2].requests == 5
    assert tier.dispatcher.attached == [True, True]


def test_legacy_operators_restart_a_crashed_node_after_noticing(drive: Drive) -> None:
    """On legacy, operators detach the crashed node after the detection delay and have it
    back restart_min later; the outage lasts exactly that long."""
    tier = tier_for(
        **CRASH,
        design="legacy",
        recovery={"detection_min": {"dist": "constant", "mean": 20}, "restart_min": 5},
    )
    arrivals = [(0.0, 0), (600.0, 1), (1350.0, 2), (1650.0, 3)]
    drive(tier, arrivals, [FaultEvent(at=100, kind="crash", node=1)])
    # 0 s: in flight; 600 s: dead node; 1350 s: detached at 1300 s (20 min after 100 s),
    # no node left; 1650 s: back since 1600 s (100 s + 25 min).
    assert outcomes_at(tier) == {"completed": 1, "error": 2, "overflow": 1}
    assert [(o.kind, o.start, o.end) for o in tier.nodes[0].outages] == [("crash", 100, 1600)]


def test_health_check_never_undoes_an_operator_detach() -> None:
    """A node an operator detached stays detached however well it passes its checks."""
    tier = tier_for(**CRASH)
    node = tier.nodes[0]
    tier.dispatcher.detach(node)
    tier.health_check(10.0)
    assert tier.dispatcher.attached == [False]


async def test_serve_mode_wakes_a_crashed_nodes_waits_in_the_order_they_began(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """In serve mode (requests handed to the driver one by one, `follow`) a crash
    ends the requests waiting on its node at its instant, in the order their waits
    began: the agenda's rule, as in the replays."""
    tier = tier_for(
        relays={"count": 1},
        backend={"service_ms": {"dist": "constant", "mean": 10_000}},
        load={"retry": {"max_retries": 0}},
    )
    driver = TrioDriver(tier)
    ended: list[tuple[int, float]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.serve)
        for i in range(20):
            req, flow = tier.admit(i % 4, 0, trio.current_time())
            state = driver.advance(flow)
            assert isinstance(state, Waiting)

            def done(end: object, rid: int = req.id) -> None:
                ended.append((rid, trio.current_time()))

            driver.follow(flow, state, done)
            await trio.sleep(0.01)
        await trio.sleep(1.0)
        crash = trio.current_time()
        driver.apply(FaultEvent(crash, "crash", 1))
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert [rid for rid, _ in ended] == list(range(20))
    assert {at for _, at in ended} == {crash}
    assert tier.ledger.total.count(Outcome.ERROR) == 20
