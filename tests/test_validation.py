"""Ground truth from queueing theory: where the relay tier reduces to a textbook
system (configs/validation/), its figures must agree with the formula, on both
engines, within four standard errors of the run (docs/validation.md).

The formulas are written here, from the textbook, and take their parameters from the
validated scenario, never from relaysim's own code: Erlang B by the stable
recursion, Erlang C from it, the M/M/c mean wait and the mean sojourn of a Jackson
tandem. Each check also proves it could fail: its tolerance plus the deviation seen
must stay under 20% of the formula's value, so a model 20% off (either way) would
have failed this very run. bench/validate.py runs the same points longer.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import ciw
import pytest

from relay.core.ledger import BUCKET_S
from relay.engines.common import Engine
from relay.plan.replay import replay
from relay.scenario.schema import Scenario, read_yaml_mapping, scenario_from_data
from tests.conftest import CONFIGS

VALIDATION = CONFIGS / "validation"
System = Literal["erlang-b", "operations", "erlang-c", "tandem"]

#: Standard errors a simulated figure may lie from its formula: a false alarm once in
#: 16,000 checks for a normal error (batch means over hundreds of batches); with the
#: SE from R replications, P(|t_(R-1)| > 4): 0.1% for 16, 0.5% for 8.
SIGMAS = 4.0
#: A check whose tolerance and deviation add up to this share of the formula's value
#: could not tell a model this far off from a right one: it is refused as a test
#: that cannot fail.
POWER = 0.2
#: Batches must span this many relaxation times (see `batch_size`).
RELAXATIONS_PER_BATCH = 10.0
MIN_BATCHES = 30


# -- the formulas ----------------------------------------------------------------------


def erlang_b(c: int, a: float) -> float:
    """Blocking of M/G/c/c at offered load `a` Erlangs: B(0) = 1,
    B(k) = a B(k-1) / (k + a B(k-1)), stable for any c."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c at offered load `a` < c: C = B / (1 - (a/c)(1 - B))."""
    b = erlang_b(c, a)
    return b / (1.0 - a / c * (1.0 - b))


def mmc_mean_wait(c: int, lam: float, mu: float) -> float:
    """Mean wait in the queue of M/M/c over all customers: C / (c mu - lam)."""
    return erlang_c(c, lam / mu) / (c * mu - lam)


def tandem_sojourn(lam: float, mu1: float, c: int, mu2: float) -> float:
    """Mean time through M/M/1 then M/M/c in tandem (Jackson: the first station's
    departures are Poisson, Burke): 1/(mu1 - lam) + W_q(M/M/c) + 1/mu2."""
    return 1.0 / (mu1 - lam) + mmc_mean_wait(c, lam, mu2) + 1.0 / mu2


def relaxation(c: int, lam: float, mu: float) -> float:
    """A generous time scale for an M/M/c station to forget its state: the M/M/1
    relaxation time 1/(s(1 - sqrt(rho))^2) at its full rate s = c mu, and never
    less than one service time."""
    rho = lam / (c * mu)
    return max(1.0 / mu, 1.0 / (c * mu * (1.0 - math.sqrt(rho)) ** 2))


# -- estimators and their standard errors ----------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A simulated figure and its standard error."""

    value: float
    se: float


def batch_size(buckets: int, tau: float) -> int:
    """Buckets per batch: the fewest that divide the run evenly and span
    RELAXATIONS_PER_BATCH times `tau` (seconds).

    Batch means assume batches nearly independent. With correlations decaying as
    exp(-t / tau) (a loss system's occupancy with exponential holds, tau the mean
    hold; a cap or less variable holds forget faster), adjacent batches of length
    T correlate by about tau / 2T: a twentieth here, and the SE comes out ~5% low.
    """
    for k in range(1, buckets + 1):
        if buckets % k == 0 and k * BUCKET_S >= RELAXATIONS_PER_BATCH * tau:
            assert buckets // k >= MIN_BATCHES, f"{buckets // k} batches: run too short for tau"
            return k
    raise AssertionError("no batch size fits")


def batched(values: Sequence[float], k: int) -> list[float]:
    return [sum(values[i : i + k]) for i in range(0, len(values), k)]


def ratio_by_batches(num: Sequence[float], den: Sequence[float], k: int) -> Estimate:
    """sum(num) / sum(den), its SE by batch means of k buckets (the ratio
    estimator's: residuals num - r den over batches, delta method)."""
    xs, ys = batched(num, k), batched(den, k)
    n = len(xs)
    r = sum(xs) / sum(ys)
    ybar = sum(ys) / n
    var = sum((x - r * y) ** 2 for x, y in zip(xs, ys, strict=True)) / (n * (n - 1))
    return Estimate(r, math.sqrt(var) / ybar)


def share_by_batches(num: Sequence[float], total: int, k: int) -> Estimate:
    """sum(num) / total for a `total` fixed by the scenario, its SE by batch means
    of k buckets. A batch's count varies with its number of arrivals as well, which
    the fixed total does not: the SE errs a little high, never low."""
    xs = batched(num, k)
    n = len(xs)
    return Estimate(sum(xs) / total, math.sqrt(n * statistics.variance(xs)) / total)


def replications(values: Sequence[float]) -> Estimate:
    """The mean of independent replications (different seeds, same length) and its
    SE: the sample standard deviation over sqrt(R)."""
    return Estimate(statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values)))


# -- points and their scenarios ------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One validation point: a reduction (a file under configs/validation/), its c
    and its offered load per server, and how long each run is."""

    system: System
    c: int
    load: float  # A / c (of the backend, in the tandem)
    requests: int  # messages per run
    seed: int
    runs: int = 1  # independent replications (erlang-c, tandem): seeds seed, seed + 1, ...
    hsm_load: float = 0.0  # tandem: the HSM lane's utilisation

    @property
    def label(self) -> str:
        what = {"erlang-b": "B", "operations": "B ops", "erlang-c": "C", "tandem": "tandem"}
        hsm = f" rho1={self.hsm_load:g}" if self.system == "tandem" else ""
        return f"{what[self.system]} c={self.c} A/c={self.load:g}{hsm}"

    def longer(self, factor: float) -> Point:
        """The same point measured `factor` times as long: longer runs, or more
        replications of the same length (so a time in ms keeps its formula value),
        never fewer than 8."""
        if self.runs > 1:
            return replace(self, runs=max(8, round(self.runs * factor)))
        return replace(self, requests=round(self.requests * factor))


@functools.cache
def base(system: System) -> dict[str, Any]:
    return read_yaml_mapping(VALIDATION / f"{system}.yaml")


def window(s: Scenario) -> float:
    """Seconds of the day over which arrivals fall."""
    return s.load.service_hours[1] - s.load.service_hours[0]


def scenario_for(point: Point, run: int = 0, stretch: float = 1.0) -> Scenario:
    """The point's scenario: its base file with c, the run length, the service means
    that give the point's load, and the seed of replication `run`. `stretch`
    (erlang-b) makes the hold that many times what the point's load says: a model
    off by that much."""
    data = base(point.system)
    s0 = scenario_from_data(data)
    lam = point.requests / window(s0)  # messages per second
    hsm = s0.hsm.service_ms.mean / 1000.0 * stretch
    c = point.c
    over: list[tuple[str, Any]] = [("load.requests", point.requests), ("seed", point.seed + run)]
    if point.system in ("erlang-b", "operations"):
        over += [("load.cs_connections.base", c), ("load.cs_connections.maximum", c)]
    else:
        per = s0.backend.request_mb
        over += [("backend.memory_mb", c * per), ("backend.memory_mb_raised", c * per)]
    if point.system == "erlang-b":
        hold = c * point.load / lam * stretch
        over += [
            ("backend.service_ms.mean", (hold - hsm) * 1000.0),
            ("hsm.service_ms.mean", hsm * 1000.0),
        ]
    elif point.system == "operations":
        # Keep the base file's think / backend ratio; scale both to the load.
        m = s0.load.operation.messages
        ratio = s0.load.operation.think_s.mean / (s0.backend.service_ms.mean / 1000.0)
        hold = c * point.load / (round(point.requests / m) / window(s0))
        backend = (hold - m * hsm) / (m + (m - 1) * ratio)
        over += [
            ("backend.service_ms.mean", backend * 1000.0),
            ("load.operation.think_s.mean", backend * ratio),
        ]
    else:
        over.append(("backend.service_ms.mean", c * point.load / lam * 1000.0))
        if point.system == "tandem":
            over.append(("hsm.service_ms.mean", point.hsm_load / lam * 1000.0))
    return scenario_from_data(data, over, str(VALIDATION / f"{point.system}.yaml"))


def _need(s: Scenario, dists: dict[str, str]) -> None:
    """The formula's assumptions about the scenario's distributions hold."""
    have = {
        "hsm": s.hsm.service_ms.dist,
        "backend": s.backend.service_ms.dist,
        "think": s.load.operation.think_s.dist,
    }
    for key, dist in dists.items():
        assert have[key] == dist, f"{s.name}: the formula assumes a {dist} {key}"


def cs_cap(s: Scenario) -> int:
    """The one CS's connection cap, which the formula takes as c."""
    caps = s.load.cs_connections
    assert s.load.population.count == 1
    assert caps.per_100k == 0
    assert caps.base == caps.maximum
    return caps.maximum


def formulas(system: System, s: Scenario) -> dict[str, float]:
    """The textbook values for scenario `s`, from its own fields."""
    assert s.load.profile == "flat"
    assert s.load.retry.max_retries == 0
    assert not s.monitor.enabled
    assert s.relays.count == 1
    hsm, backend = s.hsm.service_ms.mean / 1000.0, s.backend.service_ms.mean / 1000.0
    lam = s.load.requests / window(s)
    if system == "erlang-b":
        _need(s, {"hsm": "constant", "backend": "exponential"})
        return {"blocking": erlang_b(cs_cap(s), lam * (hsm + backend))}
    if system == "operations":
        m = s.load.operation.messages
        lam_op = round(s.load.requests / m) / window(s)
        length = m * (hsm + backend) + (m - 1) * s.load.operation.think_s.mean
        return {"blocking per attempt": erlang_b(cs_cap(s), lam_op * length)}
    c = int(s.backend.memory_mb_raised // s.backend.request_mb)
    assert c == int(s.backend.memory_mb // s.backend.request_mb), "legacy and fixed differ"
    mu = 1.0 / backend
    if system == "erlang-c":
        _need(s, {"hsm": "constant", "backend": "exponential"})
        return {"P(wait)": erlang_c(c, lam / mu), "mean wait ms": 1000 * mmc_mean_wait(c, lam, mu)}
    _need(s, {"hsm": "exponential", "backend": "exponential"})
    return {"mean latency ms": 1000.0 * tandem_sojourn(lam, 1.0 / hsm, c, mu)}


# -- runs -------------------------------------------------------------------------------


def run(s: Scenario, engine: Engine) -> Mapping[str, Any]:
    """Replay `s`; the run must be clean: every request accounted for."""
    result = replay(s, engine=engine)
    doc = result.summary
    assert result.violations == [], (s.name, result.violations)
    assert doc["lost"] == 0
    assert doc["timeouts"] == doc["errors"] == 0  # nothing may end a request early
    return doc


def per_bucket(doc: Mapping[str, Any], key: str, s: Scenario) -> list[float]:
    """`key` per 5-minute bucket of the service window (by the request's arrival),
    zeros included; anything arriving after it (an operation's later messages) is
    kept in the last bucket."""
    first = int(s.load.service_hours[0] // BUCKET_S)
    n = math.ceil(window(s) / BUCKET_S)
    out = [0.0] * n
    for b in doc["timeline"]:
        i = min(max(int(b["t"] // BUCKET_S) - first, 0), n - 1)
        out[i] += b[key]
    return out


@dataclass(frozen=True)
class Check:
    """One simulated figure against its reference value (a formula, or Ciw)."""

    point: Point
    engine: str
    quantity: str
    reference: float
    sim: Estimate
    against: str = "formula"

    @property
    def tolerance(self) -> float:
        return SIGMAS * self.sim.se

    @property
    def within(self) -> bool:
        return abs(self.sim.value - self.reference) <= self.tolerance

    @property
    def could_fail(self) -> bool:
        """A model POWER off either way would have moved this run by POWER of the
        reference: it must then have landed outside the tolerance."""
        return abs(self.sim.value - self.reference) + self.tolerance < POWER * self.reference

    def require(self) -> None:
        what = (
            f"{self.point.label} on {self.engine}: {self.quantity} {self.sim.value:.6g} "
            f"vs {self.against} {self.reference:.6g} (tolerance {self.tolerance:.3g})"
        )
        assert self.within, what
        assert self.could_fail, f"{what}: too short a run to catch a model {POWER:.0%} off"


@functools.cache
def measure(point: Point, engine: Engine) -> tuple[Check, ...]:
    """Run `point` on `engine` and compare each figure with its formula."""
    s = scenario_for(point)
    expected = formulas(point.system, s)
    hsm, backend = s.hsm.service_ms.mean / 1000.0, s.backend.service_ms.mean / 1000.0
    sims: dict[str, Estimate] = {}
    if point.system == "erlang-b":
        doc = run(s, engine)
        assert set(doc["refusals"]) <= {"cs_limit"}
        k = batch_size(len(per_bucket(doc, "requests", s)), hsm + backend)
        sims["blocking"] = ratio_by_batches(
            per_bucket(doc, "overflows", s), per_bucket(doc, "requests", s), k
        )
    elif point.system == "operations":
        doc = run(s, engine)
        attempts = doc["blocking"]["pools"]["attempts"][0]
        m = s.load.operation.messages
        assert attempts == round(s.load.requests / m)  # one per operation, no retries
        assert doc["relay_overflows"] == doc["overflows"]  # one refused message per operation
        length = m * (hsm + backend) + (m - 1) * s.load.operation.think_s.mean
        overflows = per_bucket(doc, "overflows", s)
        k = batch_size(len(overflows), length)
        sims["blocking per attempt"] = share_by_batches(overflows, attempts, k)
    else:
        docs = [run(scenario_for(point, r), engine) for r in range(point.runs)]
        for doc in docs:
            assert doc["overflows"] == 0
            assert doc["backend"]["calls"] == doc["requests"]
        if point.system == "erlang-c":
            sims["P(wait)"] = replications([d["backend"]["waits"] / d["requests"] for d in docs])
            sims["mean wait ms"] = replications([d["backend"]["mean_wait_ms"] for d in docs])
        else:
            sims["mean latency ms"] = replications([d["latency_ms"]["mean"] for d in docs])
    return tuple(Check(point, engine, q, expected[q], sims[q]) for q in expected)


# -- Ciw, a peer simulator ----------------------------------------------------------------


@functools.cache
def ciw_tandem(point: Point, days: int, seed: int) -> Estimate:
    """Ciw's mean sojourn (ms) through the point's tandem network over `days` days
    of the same arrival rate, its SE by batch means over arrival buckets."""
    s = scenario_for(point)
    span = window(s)
    lam = s.load.requests / span
    mu1 = 1000.0 / s.hsm.service_ms.mean
    mu2 = 1000.0 / s.backend.service_ms.mean
    c = int(s.backend.memory_mb_raised // s.backend.request_mb)
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=lam), None],
        service_distributions=[ciw.dists.Exponential(rate=mu1), ciw.dists.Exponential(rate=mu2)],
        routing=[[0.0, 1.0], [0.0, 0.0]],
        number_of_servers=[1, c],
    )
    ciw.seed(seed)
    sim = ciw.Simulation(network)
    horizon = days * span
    sim.simulate_until_max_time(horizon + 3600.0)  # an hour to drain, as our runs do
    arrived: dict[int, float] = {}
    left: dict[int, float] = {}
    for rec in sim.get_all_records():
        if rec.node == 1:
            arrived[rec.id_number] = rec.arrival_date
        else:
            left[rec.id_number] = rec.exit_date
    n = round(horizon / BUCKET_S)
    total, count = [0.0] * n, [0.0] * n
    for who, t in arrived.items():
        if t < horizon:
            assert who in left, "a customer still inside after the drain"
            i = int(t // BUCKET_S)
            total[i] += (left[who] - t) * 1000.0
            count[i] += 1
    tau = max(relaxation(1, lam, mu1), relaxation(c, lam, mu2))
    return ratio_by_batches(total, count, batch_size(n, tau))


# -- the points the tests run (bench/validate.py runs them longer, on both engines) ----

#: M/M/c/c: c from 1 to 64, light to past saturation; one run each, long enough
#: for the fast engine to pin blocking to a few per cent.
ERLANG_B = (
    Point("erlang-b", 1, 0.5, 40_000, 101),
    Point("erlang-b", 1, 0.9, 40_000, 102),
    Point("erlang-b", 1, 1.2, 40_000, 103),
    Point("erlang-b", 4, 0.5, 150_000, 104),
    Point("erlang-b", 4, 0.9, 80_000, 105),
    Point("erlang-b", 4, 1.2, 60_000, 106),
    Point("erlang-b", 16, 0.7, 400_000, 107),
    Point("erlang-b", 16, 0.9, 200_000, 108),
    Point("erlang-b", 16, 1.2, 100_000, 109),
    Point("erlang-b", 64, 0.9, 800_000, 110),
    Point("erlang-b", 64, 1.2, 200_000, 111),
)
#: The trio engine's: fewer, shorter, where blocking is large enough to measure.
ERLANG_B_TRIO = (
    Point("erlang-b", 1, 0.5, 10_000, 201),
    Point("erlang-b", 1, 1.2, 10_000, 202),
    Point("erlang-b", 4, 0.9, 20_000, 203),
    Point("erlang-b", 16, 1.2, 20_000, 204),
)
OPERATIONS = (
    Point("operations", 4, 0.9, 240_000, 301),
    Point("operations", 1, 1.2, 60_000, 302),
)
OPERATIONS_TRIO = (Point("operations", 1, 1.2, 24_000, 401),)
ERLANG_C = (
    Point("erlang-c", 1, 0.7, 8_000, 501, runs=16),
    Point("erlang-c", 4, 0.8, 20_000, 521, runs=16),
    Point("erlang-c", 16, 0.8, 40_000, 541, runs=16),
)
ERLANG_C_TRIO = (Point("erlang-c", 2, 0.5, 8_000, 601, runs=8),)
TANDEM = Point("tandem", 2, 0.6, 20_000, 701, runs=16, hsm_load=0.5)
TANDEM_TRIO = Point("tandem", 2, 0.6, 5_000, 801, runs=8, hsm_load=0.5)
#: Ciw: days of the tandem's arrival rate, and its seed.
CIW_DAYS, CIW_SEED = 4, 7


def cases(fast: Sequence[Point], trio: Sequence[Point]) -> list[Any]:
    return [
        pytest.param(engine, p, id=f"{engine}-{p.label.replace(' ', '-')}")
        for engine, points in (("fast", fast), ("trio", trio))
        for p in points
    ]


# -- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize(("engine", "point"), cases(ERLANG_B, ERLANG_B_TRIO))
def test_blocking_of_one_capped_cs_is_erlang_b(engine: Engine, point: Point) -> None:
    """One CS capped at c connections under Poisson load loses B(c, A) of its requests."""
    for check in measure(point, engine):
        check.require()


@pytest.mark.parametrize(("engine", "point"), cases(OPERATIONS, OPERATIONS_TRIO))
def test_operations_held_over_thinks_are_blocked_as_erlang_b_says(
    engine: Engine, point: Point
) -> None:
    """A connection held for three steps and two constant thinks is refused with
    B(c, A) of its attempts: Erlang B sees only the mean hold."""
    for check in measure(point, engine):
        check.require()


@pytest.mark.parametrize(("engine", "point"), cases(ERLANG_C, ERLANG_C_TRIO))
def test_the_memory_bound_backend_queues_as_erlang_c(engine: Engine, point: Point) -> None:
    """A backend holding c requests at once makes C(c, A) of them wait, for
    C / (c mu - lambda) on average."""
    for check in measure(point, engine):
        check.require()


@pytest.mark.parametrize(("engine", "point"), cases((TANDEM,), (TANDEM_TRIO,)))
def test_latency_through_hsm_and_backend_matches_jackson_and_ciw(
    engine: Engine, point: Point
) -> None:
    """The mean latency through the HSM lane and a c-place backend is the Jackson
    tandem's, and Ciw's simulation of the same network."""
    (ours,) = measure(point, engine)
    ours.require()
    theirs = ciw_tandem(point, CIW_DAYS, CIW_SEED)
    Check(
        point,
        engine,
        "mean latency ms",
        theirs.value,
        Estimate(ours.sim.value, math.hypot(ours.sim.se, theirs.se)),
        against="Ciw",
    ).require()


def test_ciw_simulates_the_tandem_the_formula_describes() -> None:
    """Ciw's run of the tandem agrees with the Jackson formula, so it is the same
    network the model is compared with."""
    theirs = ciw_tandem(TANDEM, CIW_DAYS, CIW_SEED)
    (jackson,) = formulas("tandem", scenario_for(TANDEM)).values()
    Check(TANDEM, "ciw", "mean latency ms", jackson, theirs).require()


def test_a_model_with_holds_20_percent_longer_fails_the_check() -> None:
    """A tier whose connections were held 20% longer than the formula assumes is
    caught: the same point's check fails."""
    point = ERLANG_B[4]  # c = 4, A/c = 0.9
    (honest,) = measure(point, "fast")
    s = scenario_for(point, stretch=1.2)
    doc = run(s, "fast")
    k = batch_size(len(per_bucket(doc, "requests", s)), s.backend.service_ms.mean / 1000.0)
    off = ratio_by_batches(per_bucket(doc, "overflows", s), per_bucket(doc, "requests", s), k)
    honest.require()
    assert not replace(honest, sim=off).within
