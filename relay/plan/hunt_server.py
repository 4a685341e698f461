"""The hunt over the real server: a drawn world (`relay.testing.worlds.ServerWorld`)
served by `RelayServer` to `relaysim load` over the simulated network, and what
must hold of it.

The world's race part (arrivals, timings, probes, seed) is the replay hunt's; the
tier is built as the replay hunt builds it, then served on the simulated network
(`relay.serve.simnet`) with the world's toxics on the dispatcher's port (from the
first request's instant: the load's handshake is not what is hunted), its link
controls between the load's host and the server's, its stop and its hostile
clients (`relay.serve.rogues`). `judge` holds the run to:

- no crash and no hang of a node (the January races, on `legacy`);
- the server's ledger: every request it admitted has exactly one outcome and the
  invariants hold (`relay.core.checkers`);
- the client's: every reply it read answers a request it sent, once;
- on a network that loses nothing and with no stop, no request of the load goes
  unanswered, and (with no other client) both sides count the same outcomes;
- no flow outlives the liveness bound: every outcome within the longest a message
  can take (`RelayTier.longest_message_s`) of the last admission;
- a stop drains within its bound, cutting nothing.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from dataclasses import replace
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import seed as hypothesis_seed

from relay.core.request import Outcome
from relay.core.rng import Streams
from relay.core.tier import RelayTier
from relay.net.toxics import Toxic, toxic_from
from relay.plan import pools
from relay.plan.hunt import SEARCH, Found, HuntResult, count_world, search_until_cancelled
from relay.scenario.build import tier_params
from relay.scenario.schema import Scenario
from relay.serve import simnet
from relay.serve.rogues import ROGUES
from relay.serve.simnet import CLIENT_HOST, SERVER_HOST, Situation
from relay.testing.verdicts import Verdict, judge_model, windows
from relay.testing.worlds import ServerWorld, server_worlds, world_document

COMPLETED, OVERFLOW, TIMEOUT, ERROR = (
    Outcome.COMPLETED,
    Outcome.OVERFLOW,
    Outcome.TIMEOUT,
    Outcome.ERROR,
)
LOAD_CONNECTIONS = 4  # the load's connections: few, so a reset or a limit meets some
ANSWERS_S = 60.0  # how long the load waits for the replies still due after sending


def run_server_world(
    world: ServerWorld,
    design: str,
    base: Scenario | None = None,
    pins: dict[str, Any] | None = None,
) -> simnet.SimRun:
    """Serve `world` on `design` (over `base`'s other settings, with `pins` laid
    over what it drew) to the load client over the simulated network."""
    case = world.case
    scenario = Scenario.model_validate(world_document(case, design, base, pins))
    params = tier_params(scenario)
    params = replace(params, monitor=replace(params.monitor, phase_s=case.phase_s))
    tier = RelayTier(params, [100] * 4, Streams(scenario.seed))
    # The toxics go on as the first request is due: the load's handshake (INFO)
    # before it is not what is hunted.
    first = case.arrivals[0][0]
    actions: list[tuple[float, simnet.Action]] = [
        (first, functools.partial(_poison, toxic=toxic_from(t))) for t in world.toxics
    ]
    for at, control, lasts in world.controls:
        actions.append((at, functools.partial(_control, control=control)))
        actions.append((at + lasts, _repair))
    if world.stop_at is not None:
        actions.append((world.stop_at, lambda here: here.server.stop()))
    return simnet.run(
        scenario,
        duration=case.arrivals[-1][0] + 1.0,
        arrivals=case.arrivals,
        connections=LOAD_CONNECTIONS,
        drain=ANSWERS_S,
        actions=actions,
        clients=[functools.partial(_from, first, ROGUES[name]) for name in world.rogues],
        tier=tier,
    )


async def _from(at: float, rogue: simnet.Client, here: Situation) -> None:
    """`rogue`, once the load's first request is due: among the load, not before it."""
    await trio.sleep_until(at)
    await rogue(here)


def _poison(here: Situation, toxic: Toxic) -> None:
    here.net.add_toxic(here.address("dispatcher"), toxic)


def _repair(here: Situation) -> None:
    here.net.repair(CLIENT_HOST, SERVER_HOST)


def _control(here: Situation, control: str) -> None:
    if control == "hold":
        here.net.hold(CLIENT_HOST, SERVER_HOST)
    else:
        here.net.partition(CLIENT_HOST, SERVER_HOST)


def judge_server(run: simnet.SimRun, world: ServerWorld) -> Verdict | None:
    """What went wrong in a world over the server, if anything (the module doc)."""
    server = run.server
    tier = server.tier
    verdict = judge_model(tier)
    if verdict is not None:
        return verdict
    broken = run.record.violations
    if broken:
        return Verdict("invariant", "protocol", f"the client read {dict(broken)}")
    doc = run.doc
    if not world.perturbed and doc["lost"]:
        return Verdict("invariant", "lost", f"{doc['lost']} requests of the load had no reply")
    if not world.perturbed and not world.rogues:
        total = tier.ledger.total
        theirs = (doc["completed"], doc["overflows"], doc["timeouts"], doc["errors"])
        ours = tuple(total.count(o) for o in (COMPLETED, OVERFLOW, TIMEOUT, ERROR))
        if theirs != ours:
            return Verdict("invariant", "agreement", f"client counted {theirs}, server {ours}")
    if run.admitted:
        bound = max(at for at, _ in run.admitted) + tier.longest_message_s
        if tier.ledger.last_outcome_at > bound + 1e-9:
            return Verdict("invariant", "liveness", "a request ended after its bound")
    if run.drained_in is not None:
        if server.stats.cut:
            return Verdict("invariant", "drain", f"the stop cut {server.stats.cut} requests")
        limit = server.drain + server.limits.frame_timeout + 1e-6
        if run.drained_in > limit:
            return Verdict("invariant", "drain", f"stopped after {run.drained_in:.3f} s")
    return None


def hunt_over_server(
    base: Scenario,
    design: str,
    examples: int,
    seed: int,
    pins: dict[str, Any] | None,
) -> HuntResult:
    """`relay.plan.hunt.hunt`'s search over the real server and client: each world
    served on the simulated network (`run_server_world`) and judged
    (`judge_server`); deterministic for `seed`."""
    result = HuntResult(0, Counter())

    @hypothesis_seed(seed)
    @settings(SEARCH, max_examples=examples)
    @given(server_worlds(monitor=base.monitor.enabled, rogues=tuple(ROGUES)))
    def search(world: ServerWorld) -> None:
        pools.checkpoint()
        run = run_server_world(world, design, base, pins)
        count_world(result, windows(run.server.tier))
        verdict = judge_server(run, world)
        if verdict is not None:
            # The picture draws the model on the arrivals as the server saw them.
            seen = sorted(run.admitted) or world.case.arrivals
            result.failure, result.world = verdict, world
            result.case = replace(world.case, arrivals=seen)
            raise Found(verdict.detail)

    with contextlib.suppress(Found):
        search_until_cancelled(search, result)
    return result
