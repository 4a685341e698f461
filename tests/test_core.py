"""Core pieces without trio: lifecycle table, timer, HSM lane, monitor, dispatcher, design."""

import itertools
import math
import random

import numpy as np
import pytest

from relay.core import agenda
from relay.core.design import Design, preset
from relay.core.dispatcher import Dispatcher, Refused
from relay.core.hsm import HsmQueue
from relay.core.ledger import LatencyHistogram, Ledger
from relay.core.monitor import Monitor
from relay.core.node import Node
from relay.core.request import LifecycleError, Outcome, Phase, Request
from relay.core.summary import percentiles
from relay.core.timer import OsTimer


def make_node(number: int, max_connections: int = 2) -> Node:
    return Node(
        number=number,
        max_connections=max_connections,
        cores=4,
        interrupt=0.001,
        timer=OsTimer(30.0, 0.015625),
        hsm=HsmQueue(lambda: 0.01),
        monitor=Monitor(enabled=False, period=10, handling=0.002, cores=4, phase=0, salt=1),
        rng=random.Random(number),
    )


def test_lifecycle_follows_the_table() -> None:
    """A request moves received → allocated → HSM → forwarded → answered → cleaned."""
    r = Request(1, cs=0, attempt=0, arrived=0.0)
    for phase in (Phase.ALLOCATED, Phase.HSM_PENDING, Phase.FORWARDED, Phase.ANSWERED):
        r.advance(phase)
    r.advance(Phase.CLEANED)
    assert r.phase is Phase.CLEANED


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((), Phase.FORWARDED),  # skipping the HSM
        ((Phase.ALLOCATED, Phase.HSM_PENDING, Phase.FAILED), Phase.ANSWERED),
        ((Phase.FAILED, Phase.CLEANED), Phase.CLEANED),  # cleaned twice
    ],
)
def test_illegal_transition_raises(path: tuple[Phase, ...], bad: Phase) -> None:
    """Moves the table does not list raise LifecycleError naming both phases."""
    r = Request(7, cs=0, attempt=0, arrived=0.0)
    for p in path:
        r.advance(p)
    with pytest.raises(LifecycleError, match=f"-> {bad.value}"):
        r.advance(bad)


def test_timer_reset_in_expiry_tick_is_the_race_window() -> None:
    """A reset in the expiry's OS tick reaches the window; one tick earlier does not."""
    t = OsTimer(timeout=30.0, resolution=0.015625)
    expiry = t.arm(100.0)
    assert not t.reset(expiry - 0.016, expiry, scoped=False)
    assert t.same_tick_resets == 0
    assert t.reset(expiry, expiry, scoped=False)  # same instant: dropped on legacy
    assert (t.same_tick_resets, t.pending) == (1, 1)
    assert not t.reset(expiry, expiry, scoped=True)  # request-scoped: never dropped
    assert (t.same_tick_resets, t.pending) == (2, 1)


@pytest.mark.parametrize("resolution", [0.015625, 0.01, 0.0153])
def test_timer_judges_the_expiry_tick_by_floor_division(resolution: float) -> None:
    """`reset` agrees with comparing the two floor divisions for every reset near
    and far from the expiry (its shortcut for far ones changes no answer)."""
    rng = random.Random(3)
    for _ in range(20_000):
        start = rng.uniform(0.0, 6e6)
        expiry = start + 19.0
        now = expiry - rng.choice([rng.uniform(0.0, 10 * resolution), rng.uniform(0.0, 19.0)])
        timer = OsTimer(timeout=19.0, resolution=resolution)
        timer.reset(now, expiry, scoped=True)
        assert timer.same_tick_resets == (now // resolution == expiry // resolution)


def test_hsm_lane_is_first_come_first_served() -> None:
    """Calls queue behind each other; a stuck lane never answers."""
    lane = HsmQueue(lambda: 0.5)
    assert lane.submit(10.0) == 10.5
    assert lane.submit(10.1) == 11.0  # waits for the first
    assert lane.submit(20.0) == 20.5  # idle lane starts at once
    lane.stuck = True
    assert lane.submit(21.0) == math.inf
    lane.restart(22.0)
    assert lane.submit(22.0) == 22.5


def test_the_agendas_heap_pops_waits_by_instant_then_by_when_they_began() -> None:
    """The agenda's own heap gives its waits in (instant, sequence) order, ties
    and pushes between pops included: the order both engines follow."""
    rng = random.Random(7)
    waits = [
        agenda._Due(rng.choice([1.0, 2.0, rng.random() * 3]), seq, None, agenda._DONE, None, 0)
        for seq in range(3000)
    ]
    rng.shuffle(waits)
    heap: list[agenda._Due] = []
    popped: list[agenda._Due] = []
    for i, wait in enumerate(waits):
        agenda._push(heap, wait)
        if i % 3 == 2:
            popped.append(agenda._pop(heap))
    while heap:
        popped.append(agenda._pop(heap))
    pending: list[tuple[float, int]] = []
    expected: list[tuple[float, int]] = []
    for i, wait in enumerate(waits):
        pending.append((wait.at, wait.seq))
        if i % 3 == 2:
            pending.sort()
            expected.append(pending.pop(0))
    expected += sorted(pending)
    assert [(w.at, w.seq) for w in popped] == expected


def test_monitor_collision_matches_brute_force() -> None:
    """`collides` agrees with enumerating every probe, at boundaries included."""
    m = Monitor(enabled=True, period=1.0, handling=0.1, cores=3, phase=0.25, salt=99)

    def brute(core: int, start: float, dur: float) -> bool:
        for k in range(0, 40):
            p0 = m.phase + k * m.period
            if m.probe_core(k) == core and p0 < start + dur and p0 + m.handling > start:
                return True
        return False

    grid = [i * 0.05 for i in range(600)]
    for core, start in itertools.product(range(3), grid):
        assert m.collides(core, start, 0.02) == brute(core, start, 0.02), (core, start)
    assert any(m.collides(c, s, 0.02) for c, s in itertools.product(range(3), grid))


def test_disabled_monitor_never_collides() -> None:
    """With the agent stopped (the March interim fix) no probe lands anywhere."""
    m = Monitor(enabled=False, period=1.0, handling=1.0, cores=1, phase=0.0, salt=1)
    assert not m.collides(0, 0.5, 10.0)


def test_round_robin_takes_attached_nodes_in_turn() -> None:
    """Round robin cycles over attached nodes and skips detached ones."""
    nodes = [make_node(i, max_connections=10) for i in (1, 2, 3)]
    d = Dispatcher(nodes, cs_caps=[100], policy="round_robin")
    picks = [d.route(0) for _ in range(4)]
    assert [p.number for p in picks if isinstance(p, Node)] == [1, 2, 3, 1]
    d.detach(nodes[1])
    picks = [d.route(0) for _ in range(3)]
    assert [p.number for p in picks if isinstance(p, Node)] == [3, 1, 3]


def test_least_connections_prefers_the_idlest_node() -> None:
    """Least connections picks the attached node with fewest open connections."""
    nodes = [make_node(i, max_connections=10) for i in (1, 2)]
    d = Dispatcher(nodes, cs_caps=[100], policy="least_connections")
    a, b, c = d.route(0), d.route(0), d.route(0)
    assert [n.number for n in (a, b, c) if isinstance(n, Node)] == [1, 2, 1]
    d.release(nodes[0], 0)
    d.release(nodes[0], 0)
    assert d.route(0) == nodes[0]


def test_refusals_name_their_reason() -> None:
    """A CS at its cap, a full node and an empty tier are refused with distinct reasons."""
    node = make_node(1, max_connections=1)
    d = Dispatcher([node], cs_caps=[1, 5], policy="least_connections")
    assert d.route(0) is node
    assert d.route(0) == Refused("cs_limit")
    assert d.route(1) == Refused("node_limit", node)
    d.release(node, 0)
    d.detach(node)
    assert d.route(1) == Refused("no_node")
    assert d.cs_open(0) == 0
    assert node.active == 0


def test_terminal_limit_refuses_at_the_cs_before_the_relays() -> None:
    """A CS at its terminal-to-CS limit is refused there, counted apart from the
    relays' overflows; the CS-to-relay limit refuses only below it."""
    node = make_node(1, max_connections=10)
    d = Dispatcher([node], cs_caps=[2, 2], policy="least_connections", terminal_caps=[1, None])
    assert d.route(0) is node
    assert d.route(0) == Refused("terminal_limit")
    assert [d.route(1), d.route(1)] == [node, node]
    assert d.route(1) == Refused("cs_limit")
    assert (d.refused_at_cs, d.refused) == ([1, 0], [0, 1])
    assert (d.attempts, d.peak, node.peak) == ([2, 3], [1, 2], 3)


def test_pool_peak_is_the_most_connections_open_at_once() -> None:
    """A CS pool's peak and a node's peak keep their highest occupancy after releases."""
    node = make_node(1, max_connections=10)
    d = Dispatcher([node], cs_caps=[5], policy="least_connections")
    for _ in range(3):
        d.route(0)
    for _ in range(3):
        d.release(node, 0)
    d.route(0)
    assert (d.cs_open(0), d.peak[0], node.active, node.peak) == (1, 3, 1, 3)


def test_designs_are_presets_of_switches() -> None:
    """legacy has every fix off, fixed every fix on; overrides change one switch."""
    assert not any(preset("legacy").switches().values())
    assert all(preset("fixed").switches().values())
    custom = preset("fixed").with_switches({"checked_free": False})
    assert custom.switches()["checked_free"] is False
    assert custom.name == "fixed+custom"
    assert preset("fixed").with_switches({"checked_free": True}).name == "fixed"
    with pytest.raises(KeyError):
        preset("fixed").with_switches({"no_such_fix": True})
    assert "name" not in Design.switch_names()


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 12_345])
def test_percentiles_are_nearest_rank(n: int) -> None:
    """A percentile is the ceil(p/100 x n)-th smallest value, as a sort shows."""
    values = np.random.default_rng(n).random(n)
    ps = (0.1, 1, 50, 90, 99, 100)
    ordered = sorted(values.tolist())
    expected = [ordered[max(1, math.ceil(p / 100 * n)) - 1] for p in ps]
    assert percentiles(values, ps) == expected


def test_percentiles_of_nothing_are_nan() -> None:
    """No values, no percentile: NaN (the summary writes null)."""
    assert all(math.isnan(v) for v in percentiles(np.empty(0), (50, 99)))


def test_a_latency_histogram_counts_each_latency_at_or_below_its_bound() -> None:
    """Latencies land in the first bucket whose bound they do not exceed; the
    cumulative counts are Prometheus' buckets; nothing else is kept."""
    h = LatencyHistogram([0.1, 1.0, 10.0])
    for seconds in (0.05, 0.1, 0.5, 1.0, 9.0, 11.0, 500.0):
        h.append(seconds)
    assert h.counts == [2, 2, 1, 2]
    assert h.cumulative() == [2, 4, 5, 7]
    assert (h.count, round(h.total, 6)) == (7, 521.65)


def test_a_bounded_ledger_keeps_no_sample() -> None:
    """With latency bounds (serve mode) completed requests go to the histogram, and
    the per-bucket sketches a replay keeps stay empty."""
    ledger = Ledger(latency_bounds=[1.0])
    for i in range(100):
        req = ledger.open(cs=0, attempt=0, now=float(i))
        ledger.close(req, Outcome.COMPLETED, now=float(i) + 0.5)
    assert ledger.histogram is not None
    assert (ledger.histogram.count, ledger.histogram.counts) == (100, [100, 0])
    assert all(sketch.count == 0 for sketch in ledger.latencies.values())
    assert ledger.total.count(Outcome.COMPLETED) == 100
