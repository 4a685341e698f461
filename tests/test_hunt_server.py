"""The hunt over the real server and load client on the simulated network
(`relay.plan.hunt_server`): on fixed no drawn world (race timings, toxics, a held
or partitioned link, a stop, hostile clients) breaks anything; on legacy both 2016
races are found through the server; the judge catches a server that loses a reply;
`relaysim hunt --server` prints the command that finds it again."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from relay.cli import main
from relay.cli.options import EXIT_CRASH, EXIT_HANG
from relay.plan.hunt import PHASES
from relay.plan.hunt_server import judge_server, run_server_world
from relay.serve.connection import Outbox
from relay.serve.rogues import ROGUES
from relay.testing.verdicts import windows
from relay.testing.worlds import MIN_SHARE, Case, ServerWorld, server_worlds
from tests.conftest import CONFIGS

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=PHASES)
ROGUE_NAMES = tuple(ROGUES)


def test_fixed_over_the_server_breaks_nothing_and_reaches_both_windows() -> None:
    """On fixed, whatever the network, a stop and hostile clients do, no world
    crashes, hangs, loses or disagrees; both race windows are reached through the
    server, and the worlds exercise toxics, controls, stops and most rogues (all of
    them over the bench's 10,000 worlds, `make bench-hunt-server`)."""
    hits: Counter[str] = Counter()

    @SETTINGS
    @given(server_worlds(rogues=ROGUE_NAMES))
    def prop(world: ServerWorld) -> None:
        run = run_server_world(world, "fixed")
        reached = windows(run.server.tier)
        hits["examples"] += 1
        hits["timer"] += reached["same_tick_reset"] > 0
        hits["probe"] += reached["probe_collision"] > 0
        hits["toxics"] += bool(world.toxics)
        hits["controls"] += bool(world.controls)
        hits["stops"] += world.stop_at is not None
        hits.update(world.rogues)
        assert judge_server(run, world) is None

    prop()
    assert hits["timer"] >= MIN_SHARE * hits["examples"], hits
    assert hits["probe"] >= MIN_SHARE * hits["examples"], hits
    assert min(hits["toxics"], hits["controls"], hits["stops"]) > 0, hits
    assert sum(hits[name] > 0 for name in ROGUE_NAMES) >= 5, hits


@pytest.mark.parametrize(
    ("focus", "mechanism"), [("timer", "unallocated_free"), ("probe", "core_contention")]
)
def test_legacy_over_the_server_meets_each_race(focus: str, mechanism: str) -> None:
    """On legacy, hypothesis finds a world where each 2016 fault strikes, through
    the server and its client."""

    @SETTINGS
    @given(server_worlds(focus=focus, rogues=ROGUE_NAMES))
    def prop(world: ServerWorld) -> None:
        verdict = judge_server(run_server_world(world, "legacy"), world)
        assert verdict is None, f"legacy: {verdict}"

    with pytest.raises(AssertionError, match=f"legacy: .*{mechanism}"):
        prop()


#: A quiet world: a few requests, no race timings, nothing on the network.
QUIET = ServerWorld(
    case=Case(
        arrivals=[(10.0 + 0.1 * i, i % 4) for i in range(8)],
        timeout_s=2.0,
        hsm_ms=5.0,
        backend_ms=100.0,
        cores=2,
        period_s=0.5,
        handling_ms=1.0,
        phase_s=0.1,
        seed=3,
        monitor=False,
    )
)


def test_the_judge_catches_a_server_that_drops_a_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server whose outbox drops one reply fails the world ("lost": the client
    never heard of a request it sent), where the same world passes untouched."""
    assert judge_server(run_server_world(QUIET, "fixed"), QUIET) is None
    queue = Outbox.queue
    dropped: list[int] = []

    def lossy(self: Outbox, data: bytes, *, reply: bool = True) -> None:
        if reply and not dropped:
            dropped.append(1)
            return
        queue(self, data, reply=reply)

    monkeypatch.setattr(Outbox, "queue", lossy)
    verdict = judge_server(run_server_world(QUIET, "fixed"), QUIET)
    assert verdict is not None
    assert (verdict.kind, verdict.mechanism) == ("invariant", "lost")


@pytest.mark.parametrize(
    ("sets", "code", "found"),
    [([], EXIT_HANG, "hang: core_contention"), (["monitor.enabled=false"], EXIT_CRASH, "crash")],
)
def test_hunt_over_the_server_finds_it_and_says_how_to_again(
    sets: list[str], code: int, found: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relaysim hunt --server` on legacy exits with the failure's code, shows the
    shrunk world, and prints the command that finds it again (with --server)."""
    overrides = [arg for s in sets for arg in ("--set", s)]
    args = ["hunt", str(CONFIGS / "smoke.yaml"), "--design", "legacy", *overrides]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--server", "--examples", "200", "--seed", "1"])
    out = capsys.readouterr().out
    assert exc.value.code == code, out
    assert "worlds searched over the server on legacy" in out
    assert f"FOUND {found}" in out
    assert "shrunk world: ServerWorld(" in out
    assert "replay with: relaysim hunt" in out
    assert "--server --examples 200 --seed 1" in out
