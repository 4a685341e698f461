"""The real HSM: a SoftHSM2 token behind one owning worker process, and its faults.

These tests talk to a real token (Debian's softhsm2, which `make test` installs),
each module in its own state folder. Where a test times a deadline, it runs on
trio's MockClock without autojump (`mock_clock`): virtual time stands still while
the real worker computes, and moves only when the test moves it, once every task
waits on the frozen worker (`frozen`). An autojumping clock would jump past the
deadlines while the worker computes (trio issue 456); the real clock would make
the windows depend on the machine's load. A wait for a real process that virtual
time cannot bound is bounded in real time (`within_real`). Nothing sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar, cast

import pytest
import structlog
import trio
import trio.testing

from hsm_adapter import Hsm
from hsm_adapter.errors import (
    HsmLost,
    HsmOperationError,
    HsmSetupError,
    HsmStuck,
    HsmUnavailable,
)
from hsm_adapter.lane import TOKEN_BUCKETS, LaneState, Pkcs11Hsm, open_pkcs11
from hsm_adapter.testing import FaultyHsm, SimulatedHsm
from hsm_adapter.token import TokenConfig, ensure, status
from relay.cli import main
from relay.core import checkers
from relay.core.events import FaultEvent
from relay.core.request import Outcome
from relay.engines.trio import REAL_CLOCK_RESOLUTION, DeviceServices, TrioDriver
from tests.conftest import tier_for

T = TypeVar("T")

PIN = "pin-7f3a9c51"  # distinctive, so a leak is found by searching for it
WRONG_PIN = "wrong-9b2e1d"


async def frozen(clock: trio.testing.MockClock, due: float, work: Callable[[], Awaitable[T]]) -> T:
    """`work()` against a frozen worker: once every task waits, virtual time moves to
    just before `due` seconds in (the work must still be waiting), then to `due`,
    where the work must end. Returns what it returned."""
    start = clock.current_time()
    result: list[T] = []

    async def run() -> None:
        result.append(await work())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        clock.jump(start + due - 0.001 - clock.current_time())
        await trio.testing.wait_all_tasks_blocked()
        assert not result, f"ended before its {due:g} s"
        clock.jump(start + due - clock.current_time())
        await trio.testing.wait_all_tasks_blocked()
        if not result:
            nursery.cancel_scope.cancel()
    assert result, f"still waiting at {due:g} s"
    return result[0]


async def within_real(seconds: float, wait: Callable[[], Awaitable[None]]) -> None:
    """`wait()` for a real process, failing after `seconds` of real time (a clock that
    stands still cannot bound it)."""
    done = threading.Event()

    async def guard() -> None:
        if not await trio.to_thread.run_sync(done.wait, seconds):
            raise trio.TooSlowError(f"no answer within {seconds:g} s of real time")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(guard)
        try:
            await wait()
        finally:
            done.set()


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> TokenConfig:
    """A token initialised in this module's own state folder, PIN from the environment."""
    state = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELAYSIM_HSM_PIN", PIN)
        cfg = TokenConfig(state=state)
        ensure(cfg)
    return cfg


@pytest.fixture
def pin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token's PIN in the environment, as an SRE would provide it."""
    monkeypatch.setenv("RELAYSIM_HSM_PIN", PIN)


@pytest.mark.usefixtures("pin")
def test_init_is_idempotent_and_status_checks_the_keys_live(token: TokenConfig) -> None:
    """A second init creates nothing; status lists both keys and passes a live check."""
    assert ensure(token)["created"] == []
    doc = status(token)
    assert doc["token"] == "relaysim"
    assert doc["objects"] == [
        "relay-enc (secret_key)",
        "relay-sign (private_key)",
        "relay-sign (public_key)",
    ]
    assert doc["sign_verify"] is True
    assert doc["encrypt_decrypt"] is True
    # The token lives in the project's state folder, not under /etc or /var/lib.
    assert any((token.folder / "tokens").iterdir())


@pytest.mark.usefixtures("pin")
async def test_round_trips_through_the_lane(token: TokenConfig) -> None:
    """Sign/verify and encrypt/decrypt round trips; tampered input is refused."""
    async with open_pkcs11(token, deadline=5.0) as hsm:
        signature = await hsm.sign(b"card 1234")
        assert await hsm.verify(b"card 1234", signature)
        assert not await hsm.verify(b"card 1235", signature)
        blob = await hsm.encrypt(b"resident record")
        assert blob != b"resident record"
        assert await hsm.decrypt(blob) == b"resident record"
        with pytest.raises(HsmOperationError, match="decrypt"):
            await hsm.decrypt(blob[:16] + b"\x00" * 5)
        assert await hsm.health()


@pytest.mark.usefixtures("pin")
async def test_hundreds_of_tasks_share_one_token_without_a_crash(token: TokenConfig) -> None:
    """300 concurrent trio tasks sign and verify through the one lane; the worker never
    dies (two threads inside SoftHSM at once would crash it)."""
    results: list[bool] = []

    async with open_pkcs11(token, deadline=10.0) as hsm:

        async def client(i: int) -> None:
            data = f"request {i}".encode()
            results.append(await hsm.verify(data, await hsm.sign(data)))

        async with trio.open_nursery() as nursery:
            for i in range(300):
                nursery.start_soon(client, i)
        assert hsm.restarts == 0
        assert hsm.state is LaneState.READY
    assert results == [True] * 300


@pytest.mark.usefixtures("pin")
async def test_a_hung_worker_fails_at_the_deadline_and_the_lane_recovers(
    token: TokenConfig, mock_clock: trio.testing.MockClock
) -> None:
    """When the worker stops answering (frozen with SIGSTOP, as the HSM froze in
    2016), the call in it fails at its deadline, not before, with the calls queued
    behind it, and the lane kills the worker and serves again from a new one."""
    async with open_pkcs11(token, deadline=0.5) as hsm:
        assert await hsm.sign(b"before")
        pid = hsm.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        outcomes: list[tuple[bytes, str]] = []

        async def call(data: bytes) -> None:
            try:
                await hsm.sign(data)
                outcomes.append((data, "answered"))
            except HsmStuck:
                outcomes.append((data, "stuck"))

        async def both() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, b"into the frozen worker")
                nursery.start_soon(call, b"queued behind it")

        await frozen(mock_clock, 0.5, both)
        assert sorted(outcomes) == [
            (b"into the frozen worker", "stuck"),
            (b"queued behind it", "stuck"),
        ]
        # Refused at once while it is replaced: the replacement runs on real
        # processes, so it may be anywhere from stuck to starting again by now.
        with pytest.raises(HsmUnavailable, match=r"HSM lane (stuck|restarting|starting)"):
            await hsm.sign(b"while the worker is replaced")
        await within_real(30, hsm.wait_ready)
        assert await hsm.verify(b"again", await hsm.sign(b"again"))
        states = [state for _, state, _ in hsm.history]
        assert states == ["starting", "ready", "stuck", "restarting", "starting", "ready"]
        assert hsm.restarts == 1


@pytest.mark.usefixtures("pin")
async def test_token_calls_are_timed_answered_or_failed(
    token: TokenConfig, mock_clock: trio.testing.MockClock
) -> None:
    """Each call's time from submission to its end is counted into TOKEN_BUCKETS: the
    answered ones at the virtual time they took (none: the clock stands still), the
    two a frozen worker holds as failed at their 0.4 s deadline, a call its caller
    gave up on in neither."""
    async with open_pkcs11(token, deadline=0.4) as hsm:
        assert await hsm.verify(b"timed", await hsm.sign(b"timed"))
        with trio.move_on_after(0):  # the caller gives up at once
            await hsm.sign(b"given up")
        pid = hsm.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)

        async def stuck(data: bytes) -> None:
            with pytest.raises(HsmStuck):
                await hsm.sign(data)

        async def two() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stuck, b"into the frozen worker")
                nursery.start_soon(stuck, b"queued behind it")

        await frozen(mock_clock, 0.4, two)
        await within_real(30, hsm.wait_ready)
    half = TOKEN_BUCKETS.index(0.5)  # counts[i]: above bound i - 1, at most bound i
    assert (hsm.answered.count, hsm.answered.total, hsm.answered.counts[0]) == (2, 0.0, 2)
    assert (hsm.failed.count, hsm.failed.counts[half]) == (2, 2)
    assert hsm.failed.total == pytest.approx(0.8)


@pytest.mark.usefixtures("pin")
async def test_a_killed_worker_is_reported_unhealthy_then_replaced(token: TokenConfig) -> None:
    """Killing the worker fails calls with a clear error instead of crashing the caller;
    health is false until the new worker serves."""
    async with open_pkcs11(token, deadline=5.0) as hsm:
        hsm.kill()
        with pytest.raises((HsmLost, HsmUnavailable), match="HSM"):
            await hsm.sign(b"during the kill")
        assert not await hsm.health()
        with trio.fail_after(30):
            await hsm.wait_ready()
        assert await hsm.health()
        assert ("restarting", "worker exited") in [(s, why) for _, s, why in hsm.history]


async def test_the_pin_never_reaches_logs_or_errors(
    token: TokenConfig, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Neither the right PIN nor a wrong one appears in log events, output, errors or
    the lane's history, through a good session and a failed login."""
    monkeypatch.setenv("RELAYSIM_HSM_PIN", PIN)
    texts: list[str] = [repr(token.pin()), str(token.pin())]
    with structlog.testing.capture_logs() as logs:
        async with open_pkcs11(token, deadline=5.0) as hsm:
            await hsm.sign(b"x")
            texts += [str(h) for h in hsm.history]
        monkeypatch.setenv("RELAYSIM_HSM_PIN", WRONG_PIN)
        with pytest.raises(HsmSetupError) as failed:
            async with open_pkcs11(token, deadline=5.0):
                pass
    texts += [str(failed.value), repr(failed.value), *map(str, logs)]
    out, err = capfd.readouterr()
    texts += [out, err]
    assert "wrong PIN" in str(failed.value)
    assert logs  # the lane did report its steps
    for text in texts:
        assert PIN not in text
        assert WRONG_PIN not in text


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"RELAYSIM_HSM_PIN": WRONG_PIN}, [], "relaysim: token 'relaysim': login: wrong PIN"),
        ({}, ["--label", "missing"], "relaysim: token 'missing': no such token"),
        ({}, ["--module", "/nonexistent/libsofthsm2.so"], "PKCS#11 library /nonexistent/"),
        ({}, ["--mechanism", "ECDSA_SHA256"], "sign with ECDSA_SHA256: mechanism not supported"),
        ({}, ["--mechanism", "NO_SUCH"], "mechanism 'NO_SUCH': unknown PKCS#11 mechanism name"),
    ],
)
def test_bad_hsm_input_gets_one_line_and_exit_2(
    token: TokenConfig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    args: list[str],
    expected: str,
) -> None:
    """Wrong PIN, missing token, missing library, unsupported mechanism: one line, exit 2."""
    monkeypatch.setenv("RELAYSIM_HSM_PIN", PIN)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exc:
        main(["hsm", "status", "--state", str(token.state), *args])
    out, err = capsys.readouterr()
    assert exc.value.code == 2
    assert err.count("\n") == 1
    assert expected in err
    assert PIN not in err + out
    assert WRONG_PIN not in err + out


def test_hsm_cli_init_then_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`relaysim hsm init` creates token, keys and a private PIN file; `status` reports
    them with a passing live check."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYSIM_HSM")}
    with pytest.MonkeyPatch.context() as mp:
        for key in set(os.environ) - set(env):
            mp.delenv(key)
        main(["hsm", "init", "--state", str(tmp_path)])
        first = capsys.readouterr().out
        main(["hsm", "status", "--state", str(tmp_path)])
        second = capsys.readouterr().out
    assert "created token relaysim" in first
    assert "live sign/verify and encrypt/decrypt: ok" in second
    assert (tmp_path / "softhsm" / "user.pin").stat().st_mode & 0o777 == 0o600


async def test_fault_wrapper_stall_fails_at_the_deadline_and_recovers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Under virtual time: a stalled call fails at exactly its deadline; once the one-shot
    stall is spent the next call is served; lose, fail and slow do what they say."""
    hsm = FaultyHsm(SimulatedHsm(lambda: 0.008), deadline=2.0)
    hsm.inject("stall", count=1)
    start = trio.current_time()
    with pytest.raises(HsmStuck):
        await hsm.sign(b"a")
    assert trio.current_time() - start == pytest.approx(2.0)
    assert await hsm.verify(b"a", await hsm.sign(b"a"))
    hsm.inject("lose", count=1)
    with pytest.raises(HsmStuck):
        await hsm.encrypt(b"b")
    hsm.inject("fail", count=1)
    with pytest.raises(HsmOperationError, match="injected"):
        await hsm.sign(b"c")
    hsm.inject("slow", delay=lambda: 0.5)
    start = trio.current_time()
    assert await hsm.decrypt(await hsm.encrypt(b"d")) == b"d"
    assert trio.current_time() - start == pytest.approx(2 * (0.5 + 0.008))
    hsm.clear()
    assert await hsm.health()
    assert hsm.injected == {"stall": 1, "lose": 1, "fail": 1, "slow": 2}


class KillAfter:
    """A lane that an operator kills at its `n`-th sign, the way cause 1 struck: the
    device stops answering in the middle of the day's traffic."""

    def __init__(self, lane: Pkcs11Hsm, n: int) -> None:
        self.lane, self.n, self.calls = lane, n, 0

    async def sign(self, data: bytes) -> bytes:
        self.calls += 1
        if self.calls == self.n:
            self.lane.kill()
        return await self.lane.sign(data)


@pytest.mark.usefixtures("pin")
async def test_a_running_relay_survives_its_hsm_dying(token: TokenConfig) -> None:
    """The relay's flows on trio with the real token: when the worker dies under load,
    the requests caught in it end as errors with a clear log line, none is lost, no
    node crashes; after the lane is replaced the relay completes every request."""
    arrivals = [(i % 7, 0) for i in range(40)]  # CS ids, all at once
    scenario_over = {
        "relays": {"count": 2, "timeout_s": 10},
        "backend": {"service_ms": {"dist": "constant", "mean": 1}},
        "monitor": {"enabled": False},
        "load": {"retry": {"max_retries": 0}},
        "design": "fixed",
    }
    async with open_pkcs11(token, deadline=2.0) as lane:
        with structlog.testing.capture_logs() as logs:
            tier = tier_for(**scenario_over)
            tier.log = structlog.get_logger("relay")
            services = DeviceServices(tier, cast(Hsm, KillAfter(lane, 10)))
            now = trio.current_time()
            await TrioDriver(tier, services=services).run([(now, cs) for _, cs in arrivals])
        total = tier.ledger.total
        assert total.requests == 40
        assert total.closed == 40  # every request has its one outcome
        assert total.count(Outcome.ERROR) == services.failures > 0
        assert total.count(Outcome.COMPLETED) == 40 - services.failures
        assert checkers.check_run(tier.ledger, tier.nodes) == []
        assert all(node.up for node in tier.nodes)
        failed = [e for e in logs if e["event"] == "hsm.failed"]
        assert len(failed) == services.failures
        assert all("HSM" in e["error"] for e in failed)

        with trio.fail_after(30):
            await lane.wait_ready()
        again = tier_for(**scenario_over)
        now = trio.current_time()
        await TrioDriver(again, services=DeviceServices(again, lane)).run(
            [(now, cs) for _, cs in arrivals]
        )
        assert again.ledger.total.count(Outcome.COMPLETED) == 40


def test_the_state_folder_does_not_depend_on_where_the_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without RELAYSIM_STATE the token's folder is the checkout's state/, an absolute
    path, from any working directory (run elsewhere, `hsm init` would otherwise make
    a second token); RELAYSIM_STATE moves it."""
    from hsm_adapter.token import default_state

    monkeypatch.delenv("RELAYSIM_STATE", raising=False)
    here = default_state()
    monkeypatch.chdir(tmp_path)
    assert default_state() == here
    assert here.is_absolute()
    assert here == Path(__file__).resolve().parent.parent / "state"
    monkeypatch.setenv("RELAYSIM_STATE", str(tmp_path / "elsewhere"))
    assert default_state() == tmp_path / "elsewhere"


# The driver on the lane: calls submitted without a cancel scope, each flow parked on
# the driver's timer until the answer, its step's deadline or its node's crash.
ON_THE_LANE = {
    "relays": {"count": 1, "timeout_s": 10},
    "backend": {"service_ms": {"dist": "constant", "mean": 1}},
    "monitor": {"enabled": False},
    "load": {"retry": {"max_retries": 0}},
    "design": "fixed",
}


async def run_on(
    lane: Pkcs11Hsm, n: int, *, hsm_deadline_ms: float, crash_at: float = 0.0
) -> tuple[DeviceServices, float]:
    """`n` requests at once through `lane` (a crash of their node `crash_at` seconds
    in, if given): the services, and how long until every request ended."""
    tier = tier_for(**ON_THE_LANE, hsm={"deadline_ms": hsm_deadline_ms})
    tier.log = structlog.get_logger("relay")
    services = DeviceServices(tier, lane)
    driver = TrioDriver(tier, services=services, resolution=REAL_CLOCK_RESOLUTION)
    start = trio.current_time()
    events = [FaultEvent(start + crash_at, "crash", node=0)] if crash_at else []
    await driver.run([(start, i % 4) for i in range(n)], events)
    total = tier.ledger.total
    assert (total.requests, total.closed) == (n, n)
    assert checkers.check_run(tier.ledger, tier.nodes) == []
    return services, trio.current_time() - start


@pytest.mark.usefixtures("pin")
async def test_a_step_deadline_ends_its_wait_on_the_lane_on_time(
    token: TokenConfig, mock_clock: trio.testing.MockClock
) -> None:
    """A frozen worker and a step deadline shorter than the lane's: every request's
    HSM step ends at its deadline, not before, as an error (no device failure: the
    lane is still within its own deadline); the calls are forgotten, and the answers
    the worker sends once it resumes are dropped."""
    async with open_pkcs11(token, deadline=5.0) as lane:
        services, elapsed = await run_on(lane, 3, hsm_deadline_ms=1000)
        assert (services.failures, elapsed) == (0, 0.0)  # real signing takes no virtual time
        pid = lane.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            with structlog.testing.capture_logs():
                services, _ = await frozen(
                    mock_clock, 0.3, lambda: run_on(lane, 5, hsm_deadline_ms=300)
                )
            assert services.failures == 0
            assert lane.in_flight == 0
            assert lane.state is LaneState.READY
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await lane.verify(b"resumed", await lane.sign(b"resumed"))
        assert lane.restarts == 0


@pytest.mark.usefixtures("pin")
async def test_a_crash_wakes_the_flows_waiting_on_the_lane(
    token: TokenConfig, mock_clock: trio.testing.MockClock
) -> None:
    """Flows waiting on a frozen worker are woken by their node's crash, 0.2 s in and
    long before their 3 s deadline, and their calls forgotten."""
    async with open_pkcs11(token, deadline=5.0) as lane:
        pid = lane.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            with structlog.testing.capture_logs():
                services, _ = await frozen(
                    mock_clock, 0.2, lambda: run_on(lane, 5, hsm_deadline_ms=3000, crash_at=0.2)
                )
            assert services.failures == 0
            assert lane.in_flight == 0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await lane.sign(b"resumed")


@pytest.mark.usefixtures("pin")
async def test_a_stuck_or_restarting_lane_fails_the_steps_on_it_at_once(
    token: TokenConfig, mock_clock: trio.testing.MockClock
) -> None:
    """The lane's own deadline passes first (a frozen worker): the calls in it fail as
    stuck at that deadline, each one a logged device failure; while the lane
    restarts, new steps are refused at once; once it serves again, every request
    completes."""
    async with open_pkcs11(token, deadline=0.3) as lane:
        pid = lane.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        with structlog.testing.capture_logs() as logs:
            services, _ = await frozen(
                mock_clock, 0.3, lambda: run_on(lane, 5, hsm_deadline_ms=3000)
            )
            assert services.failures == 5
            assert lane.state is not LaneState.READY
            services, elapsed = await run_on(lane, 5, hsm_deadline_ms=3000)
            assert (services.failures, elapsed) == (5, 0.0)
        failed = [e["error"] for e in logs if e["event"] == "hsm.failed"]
        assert len(failed) == 10
        assert all(e.startswith("HSM lane stuck: sign passed") for e in failed[:5])
        assert all(re.match("HSM lane (stuck|restarting|starting): ", e) for e in failed[5:])
        await within_real(30, lane.wait_ready)
        services, _ = await run_on(lane, 5, hsm_deadline_ms=3000)
        assert services.failures == 0
        assert lane.in_flight == 0
