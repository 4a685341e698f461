"""Live fault injection into a serving tier: the admin endpoint, loopback only.

    POST   /faults  {"kind": "hsm_stall", "node": 1}     inject a fault
    DELETE /faults                                       clear every fault
    GET    /faults                                       the tier's state

Kinds: `hsm_stall` (the node's HSM lane stops answering: cause 1), `crash` (the
node's application terminates: what cause 2 does), `timer_race` (leave a timeout
notification pending on the node, as a dropped reset does: its next request meets
it before allocating), `slow_backend` (`factor` times slower), `detach` and
`attach` (the distributor). Each goes through the model exactly as a scheduled
fault or operator action would, so the designs react as they do in replays: on
`fixed` a stalled lane is reset at its call deadline and the deep health check
detaches and re-attaches the node; on `legacy` operators come after their delay.
Clearing undoes what is still in effect: backend speed, pending notifications, and
restarts nodes that are down or stalled. Bad requests get 400 and one line.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from relay.core.events import FaultEvent, OperatorEvent
from relay.engines.trio import TrioDriver
from relay.serve.httpd import Answer, serve_http

KINDS = ("hsm_stall", "crash", "timer_race", "slow_backend", "detach", "attach")
JSON = "application/json"


class Admin:
    """Applies faults to one driver's tier; `handle` is the HTTP handler."""

    def __init__(self, driver: TrioDriver) -> None:
        self.driver = driver
        self.tier = driver.tier
        self.injected: list[dict[str, Any]] = []

    async def handle(self, method: str, path: str, body: bytes) -> Answer:
        """Route one HTTP request."""
        if path != "/faults":
            return _error(404, "not found: try /faults")
        try:
            if method == "GET":
                pass
            elif method == "DELETE":
                self.clear()
            elif method == "POST":
                self.inject(_parse(body))
            else:
                return _error(405, f"method {method} not allowed on /faults")
        except ValueError as exc:
            return _error(400, str(exc))
        return Answer(200, JSON, json.dumps(self.state()).encode() + b"\n")

    def inject(self, fault: dict[str, Any]) -> None:
        """Apply one fault now (see the module doc); ValueError names what is wrong."""
        kind = fault.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        now = trio.current_time()
        if kind == "slow_backend":
            factor = fault.get("factor")
            if not isinstance(factor, int | float) or isinstance(factor, bool) or factor <= 0:
                raise ValueError(f"factor: expected a number > 0, got {factor!r}")
            self.driver.apply(FaultEvent(now, "slow_backend", factor=float(factor)))
        else:
            number = fault.get("node")
            count = len(self.tier.nodes)
            if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= count:
                raise ValueError(f"node: expected a relay number 1..{count}, got {number!r}")
            if kind in ("hsm_stall", "crash", "timer_race"):
                self.driver.apply(FaultEvent(now, kind, number))
            else:
                self.driver.apply(OperatorEvent(now, kind, number))
        self.injected.append({"t": now, **fault})
        self.tier.log.info("admin.inject", **{k: v for k, v in fault.items() if k != "t"})

    def clear(self) -> None:
        """Undo what is still in effect (`RelayTier.heal`)."""
        self.driver.heal()
        self.tier.log.info("admin.clear")

    def state(self) -> dict[str, Any]:
        """The nodes, the backend and the faults injected so far."""
        d = self.tier.dispatcher
        return {
            "design": self.tier.design.name,
            "backend_slowdown": self.tier.backend.slowdown,
            "nodes": [
                {
                    "name": n.name,
                    "up": n.up,
                    "hsm_stuck": n.hsm.stuck,
                    "attached": on,
                    "pending_timeouts": n.timer.pending,
                    "outages": len(n.outages),
                }
                for n, on in zip(self.tier.nodes, d.attached, strict=True)
            ],
            "injected": self.injected,
        }


def _parse(body: bytes) -> dict[str, Any]:
    try:
        fault = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError('body: expected a JSON object like {"kind": "crash", "node": 1}') from None
    if not isinstance(fault, dict):
        raise ValueError('body: expected a JSON object like {"kind": "crash", "node": 1}')
    return fault


def _error(status: int, message: str) -> Answer:
    return Answer(status, JSON, json.dumps({"error": message}).encode() + b"\n")


async def serve_admin(
    admin: Admin, port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """The admin endpoint on 127.0.0.1:`port` until cancelled."""
    await serve_http(admin.handle, port, task_status=task_status)
