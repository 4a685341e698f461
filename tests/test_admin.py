"""Live fault injection: each fault goes through the model and the design reacts.

The admin handler is called directly under trio's virtual clock (the HTTP layer
is exercised by tests/test_serve_cli.py), so health checks and operators' delays
take no real time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from relay.core.request import Outcome
from relay.engines.trio import TrioDriver
from relay.serve.admin import Admin
from tests.conftest import tier_for

BASE: dict[str, Any] = {
    "relays": {"count": 2, "timeout_s": 10},
    "dispatcher": {"health_check_s": 1.0, "policy": "round_robin"},
    "hsm": {"service_ms": {"dist": "constant", "mean": 5}, "deadline_ms": 500},
    "backend": {"service_ms": {"dist": "constant", "mean": 100}},
    "monitor": {"enabled": False},
    "load": {"retry": {"max_retries": 0}},
    "recovery": {
        "detection_min": {"dist": "constant", "mean": 2},
        "restart_min": 1,
    },
}


@asynccontextmanager
async def serving(design: str) -> AsyncIterator[Admin]:
    """An admin over a tier of `design` whose periodic work runs for the block."""
    driver = TrioDriver(tier_for(**BASE, design=design))
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.serve)
        yield Admin(driver)
        nursery.cancel_scope.cancel()


async def post(admin: Admin, **fault: Any) -> tuple[int, dict[str, Any]]:
    answer = await admin.handle("POST", "/faults", json.dumps(fault).encode())
    return answer.status, json.loads(answer.body)


async def one_request(driver: TrioDriver, cs: int = 0) -> Outcome | None:
    req, flow = driver.tier.admit(cs, 0, trio.current_time())
    await driver.perform(flow)
    return req.outcome


async def test_a_stall_on_fixed_is_detached_reset_and_reattached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """fixed: the deep health check detaches the stalled node, its lane is reset at the
    check's call deadline, and the next check puts it back."""
    with structlog.testing.capture_logs() as logs:
        async with serving("fixed") as admin:
            admin.tier.log = structlog.get_logger("relay")
            status, state = await post(admin, kind="hsm_stall", node=1)
            assert status == 200
            assert state["nodes"][0]["hsm_stuck"] is True
            await trio.sleep(2.5)
    health = [(e["event"], e["node"]) for e in logs if e["event"].startswith("health.")]
    assert health == [("health.detach", "relay1"), ("health.attach", "relay1")]
    assert admin.state()["nodes"][0] == {
        "name": "relay1",
        "up": True,
        "hsm_stuck": False,
        "attached": True,
        "pending_timeouts": 0,
        "outages": 1,
    }


async def test_a_crash_on_legacy_waits_for_the_operators(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """legacy: a crashed node stays down (and attached: the 2016 distributor) until the
    operators notice after their delay and restart it."""
    async with serving("legacy") as admin:
        await post(admin, kind="crash", node=1)
        assert admin.state()["nodes"][0]["up"] is False
        assert await one_request(admin.driver) is Outcome.ERROR  # round robin: relay1 first
        await trio.sleep(2 * 60 + 30)  # detected after 2 min, detached, back 1 min later
        assert admin.state()["nodes"][0]["up"] is False
        await trio.sleep(60)
        assert admin.state()["nodes"][0]["up"] is True


@pytest.mark.parametrize(
    ("design", "outcome", "crashed"),
    [("legacy", Outcome.ERROR, True), ("fixed", Outcome.TIMEOUT, False)],
)
async def test_the_timer_race_meets_the_next_request(
    autojump_clock: trio.testing.MockClock, design: str, outcome: Outcome, crashed: bool
) -> None:
    """A pending timeout notification reaches the node's next request before it
    allocates: legacy crashes freeing nothing (cause 2), fixed reports a timeout."""
    async with serving(design) as admin:
        await post(admin, kind="timer_race", node=1)
        assert await one_request(admin.driver) is outcome
    mechanisms = [o.mechanism for o in admin.tier.nodes[0].outages]
    assert mechanisms == (["unallocated_free"] if crashed else [])


async def test_a_slow_backend_and_clearing_it(autojump_clock: trio.testing.MockClock) -> None:
    """slow_backend multiplies the backend's time; clear puts everything back."""
    async with serving("fixed") as admin:
        await post(admin, kind="slow_backend", factor=10)
        start = trio.current_time()
        await one_request(admin.driver)
        assert trio.current_time() - start == pytest.approx(0.005 + 1.0)
        await post(admin, kind="detach", node=2)
        answer = await admin.handle("DELETE", "/faults", b"")
        state = json.loads(answer.body)
        start = trio.current_time()
        await one_request(admin.driver)
        assert trio.current_time() - start == pytest.approx(0.005 + 0.1)
    assert state["backend_slowdown"] == 1.0
    assert [n["attached"] for n in state["nodes"]] == [True, True]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/faults", b'{"kind": "meteor", "node": 1}', 400, "kind: expected one of"),
        ("POST", "/faults", b'{"kind": "crash", "node": 9}', 400, "node: expected a relay"),
        ("POST", "/faults", b'{"kind": "slow_backend", "factor": -1}', 400, "factor:"),
        ("POST", "/faults", b"not json", 400, "body: expected a JSON object"),
        ("PUT", "/faults", b"", 405, "method PUT"),
        ("GET", "/other", b"", 404, "not found"),
    ],
)
async def test_bad_admin_requests_get_a_clear_error(
    method: str, path: str, body: bytes, status: int, message: str
) -> None:
    """Unknown kinds, nodes that do not exist, bad factors, bad JSON, wrong methods
    and paths: an error status and one line saying what is wrong; nothing applied."""
    tier = tier_for(**BASE, design="fixed")
    admin = Admin(TrioDriver(tier))
    answer = await admin.handle(method, path, body)
    assert answer.status == status
    assert message in json.loads(answer.body)["error"]
    assert admin.injected == []
