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
from relay.serve.admin import Admin, serve_admin
from relay.serve.httpd import Request
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
        yield Admin(driver, TOKEN, PORT)
        nursery.cancel_scope.cancel()


TOKEN, PORT = "f2Zq-test-token", 7001
#: What `relaysim fault` sends: the endpoint's own Host, JSON, the run's token.
HEADERS = {
    "host": f"127.0.0.1:{PORT}",
    "content-type": "application/json",
    "authorization": f"Bearer {TOKEN}",
}


def call(method: str, body: bytes = b"", path: str = "/faults", **headers: str) -> Request:
    """A request as `relaysim fault` sends it, with `headers` changed (None: left out)."""
    sent = {**HEADERS, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return Request(method, path, {k: v for k, v in sent.items() if v != "-"}, body)


async def post(admin: Admin, **fault: Any) -> tuple[int, dict[str, Any]]:
    answer = await admin.handle(call("POST", json.dumps(fault).encode()))
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
        answer = await admin.handle(call("DELETE"))
        state = json.loads(answer.body)
        start = trio.current_time()
        await one_request(admin.driver)
        assert trio.current_time() - start == pytest.approx(0.005 + 0.1)
    assert state["backend_slowdown"] == 1.0
    assert [n["attached"] for n in state["nodes"]] == [True, True]


@pytest.mark.parametrize(
    ("request_", "status", "message"),
    [
        (call("POST", b'{"kind": "meteor", "node": 1}'), 400, "kind: expected one of"),
        (call("POST", b'{"node": 1}'), 400, "kind: expected one of"),
        (call("POST", b'{"kind": "crash", "node": 9}'), 400, "node: expected a relay"),
        (call("POST", b'{"kind": "crash", "node": 0}'), 400, "node: expected a number"),
        (call("POST", b'{"kind": "crash", "node": true}'), 400, "node: expected a valid integer"),
        (call("POST", b'{"kind": "crash"}'), 400, "node: required key is missing"),
        (call("POST", b'{"kind": "slow_backend", "factor": -1}'), 400, "factor:"),
        (call("POST", b'{"kind": "slow_backend", "factor": "5"}'), 400, "factor:"),
        (call("POST", b'{"kind": "slow_backend", "factor": NaN}'), 400, "body: expected"),
        (call("POST", b'{"kind": "slow_backend", "factor": Infinity}'), 400, "body: expected"),
        (call("POST", b'{"kind": "slow_backend", "factor": 1e400}'), 400, "finite number"),
        (call("POST", b'{"kind": "slow_backend", "factor": 1e9}'), 400, "factor:"),
        # A key the logger also takes (it crashed the server: issue 16) or any other.
        (call("POST", b'{"kind": "crash", "node": 1, "event": "x"}'), 400, "event: unknown key"),
        (call("POST", b'{"kind": "slow_backend", "factor": 2, "node": 1}'), 400, "node: unknown"),
        (call("POST", b"not json"), 400, "body: expected a JSON object"),
        (call("POST", b"[1, 2]"), 400, "body: expected a JSON object"),
        (call("POST", b"\xff\xfe"), 400, "body: expected a JSON object"),
        (call("PUT"), 405, "method PUT"),
        (call("GET", path="/other"), 404, "not found"),
    ],
)
async def test_bad_admin_requests_get_a_clear_error(
    request_: Request, status: int, message: str
) -> None:
    """Unknown kinds and keys, nodes that do not exist, numbers that are not finite
    and positive, bad JSON, wrong methods and paths: an error status and one line
    saying what is wrong; nothing applied, and the reply is valid JSON."""
    tier = tier_for(**BASE, design="fixed")
    admin = Admin(TrioDriver(tier), TOKEN, PORT)
    answer = await admin.handle(request_)
    assert answer.status == status
    error = json.loads(answer.body, parse_constant=pytest.fail)["error"]
    assert message in error
    assert "\n" not in error
    assert admin.faults == []
    assert tier.backend.slowdown == 1.0
    assert all(n.up and not n.hsm.stuck for n in tier.nodes)


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"host": "evil.example:7001"}, 403, "host: expected 127.0.0.1:7001"),
        ({"host": "localhost:7001"}, 403, "host:"),
        ({"host": "-"}, 403, "host:"),
        ({"content_type": "text/plain"}, 415, "content-type: expected application/json"),
        ({"content_type": "-"}, 415, "content-type:"),
        ({"origin": "http://evil.example"}, 403, "origin:"),
        ({"authorization": "-"}, 401, "authorization:"),
        ({"authorization": "Bearer wrong"}, 401, "authorization:"),
        ({"authorization": TOKEN}, 401, "authorization:"),
    ],
)
async def test_a_change_needs_this_host_json_and_the_runs_token(
    headers: dict[str, str], status: int, message: str
) -> None:
    """What a web page in a local browser could send (text/plain, another Host by DNS
    rebinding, its own Origin) or anyone without the run's token is refused, for
    injecting and for clearing alike; nothing is applied."""
    tier = tier_for(**BASE, design="fixed")
    admin = Admin(TrioDriver(tier), TOKEN, PORT)
    body = b'{"kind": "crash", "node": 1}'
    for method in ("POST", "DELETE"):
        answer = await admin.handle(call(method, body, **headers))
        assert answer.status == status
        assert message in json.loads(answer.body)["error"]
    assert [n.up for n in tier.nodes] == [True, True]
    ok = await admin.handle(call("POST", body))
    assert ok.status == 200


async def test_the_fault_list_is_current_and_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Hundreds of posts leave at most one entry per kind and node, only faults still
    in effect, with only the schema's keys; a cleared fault leaves the list."""
    async with serving("legacy") as admin:
        for i in range(300):
            await post(admin, kind="slow_backend", factor=1.0 + i % 7)
            await post(admin, kind="detach", node=1 + i % 2)
            await post(admin, kind="attach", node=1 + i % 2)
        await post(admin, kind="hsm_stall", node=2)
        await post(admin, kind="slow_backend", factor=3)
        listed = admin.state()["faults"]
        answer = await admin.handle(call("DELETE"))
        after = json.loads(answer.body)["faults"]
    assert [(f["kind"], f.get("node"), f.get("factor")) for f in listed] == [
        ("hsm_stall", 2, None),
        ("slow_backend", None, 3.0),
    ]
    assert all(set(f) <= {"kind", "node", "factor", "at_s"} for f in listed)
    assert after == []


async def test_a_crash_restarted_at_once_is_not_listed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """fixed: the supervisor restarts a crashed node at once, so the crash is no
    fault in effect; on legacy it stays listed until the operators restart it."""
    async with serving("fixed") as fixed:
        _, state = await post(fixed, kind="crash", node=1)
    async with serving("legacy") as legacy:
        _, stays = await post(legacy, kind="crash", node=1)
    assert state["faults"] == []
    assert [f["kind"] for f in stays["faults"]] == ["crash"]


async def http(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """One raw HTTP exchange with the endpoint on `port`: status and JSON body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(head.encode() + f"content-length: {len(body)}\r\n\r\n".encode())
        await stream.send_all(body)
        raw = b""
        while chunk := await stream.receive_some(65536):
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


async def test_over_http_a_handler_bug_answers_500_and_a_big_body_413(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the real HTTP layer: a body over 4 KiB is refused (413) before it is
    parsed, a bug in a handler answers 500 for that request only, and the endpoint
    goes on answering."""
    tier = tier_for(**BASE, design="fixed")
    admin = Admin(TrioDriver(tier), TOKEN)

    def broken(fault: Any) -> None:
        raise RuntimeError("a bug")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_admin, admin)
            head = (
                f"POST /faults HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                f"content-type: application/json\r\nauthorization: Bearer {TOKEN}\r\n"
            )
            big = await http(
                port, head, b'{"kind": "crash", "node": 1, "x": "' + b"a" * 5000 + b'"}'
            )
            monkeypatch.setattr(admin, "inject", broken)
            bug = await http(port, head, b'{"kind": "crash", "node": 1}')
            monkeypatch.undo()
            fine = await http(port, head, b'{"kind": "hsm_stall", "node": 2}')
            nursery.cancel_scope.cancel()
    assert big == (413, {"error": "body: larger than 4096 bytes"})
    assert bug == (500, {"error": "internal error: RuntimeError"})
    assert fine[0] == 200
    assert fine[1]["nodes"][1]["hsm_stuck"] is True


async def test_fault_times_are_real_seconds_at_any_speed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server at 60x shows when a fault was injected in real seconds since it
    started, not in the model's (120 s of the model are 2 real seconds)."""
    driver = TrioDriver(tier_for(**BASE, design="legacy"))
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.serve)
        admin = Admin(driver, TOKEN, PORT, scale=60.0)
        await trio.sleep(120.0)
        await admin.handle(call("POST", b'{"kind": "crash", "node": 1}'))
        nursery.cancel_scope.cancel()
    assert [f["at_s"] for f in admin.faults] == [2.0]
