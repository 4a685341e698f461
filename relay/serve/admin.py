"""Live fault injection into a serving tier: the admin endpoint, loopback only.

    POST   /faults  {"kind": "hsm_stall", "node": 1}     inject a fault
    DELETE /faults                                       clear every fault
    GET    /faults                                       the tier's state
    /proxies, /reset, /version                           toxics on the ports, in
                                                         Toxiproxy's REST shape
                                                         (`relay.serve.toxiproxy`)

Kinds: those of `relay.core.faults.KINDS` marked live (`hsm_stall`, `crash`,
`timer_race`, `slow_backend`, `detach`, `attach`), whose entries say what each
does, what it acts on (a node, or the backend with a `factor`) and when it still
holds. Each goes through the model exactly as a scheduled
fault or operator action would, so the designs react as they do in replays: on
`fixed` a stalled lane is reset at its call deadline and the deep health check
detaches and re-attaches the node; on `legacy` operators come after their delay.
Clearing undoes what is still in effect: backend speed, pending notifications, and
restarts nodes that are down or stalled.

Nobody else can drive it (docs/serve.md): the Host header must be the address it
listens on (no DNS rebinding); a change (POST, DELETE) must carry a JSON content
type (which a web page cannot send cross-origin without a preflight this endpoint
never grants), no foreign Origin, and the run's token as `Authorization: Bearer`
(or as the password of `Basic`, which is what a Toxiproxy client built on requests
sends from ~/.netrc; the endpoint never asks a browser for it). A change without
a body (Toxiproxy's DELETE, POST /reset) needs no content type.
A fault is validated against a strict schema per kind (known keys only, finite
numbers in range) before anything is applied; anything else gets a 4xx and one
line. The state lists the faults still in effect, at most one per kind and node.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

import trio
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from relay.core.events import FaultEvent, OperatorEvent
from relay.core.faults import KINDS as REGISTRY
from relay.core.faults import LIVE
from relay.engines.trio import TrioDriver
from relay.net import REAL, Network
from relay.scenario.schema import describe_error
from relay.serve.httpd import JSON, Answer, Request, TooDeep, error, json_of, serve_http
from relay.serve.ports import HOST, listen
from relay.serve.toxiproxy import Proxies, ProxyError

KINDS = LIVE  # what the endpoint takes: the registry's live kinds
ON_NODE = tuple(k for k in LIVE if REGISTRY[k].on_node)
ON_BACKEND = tuple(k for k in LIVE if not REGISTRY[k].on_node)
if TYPE_CHECKING:
    NodeKind = str
    BackendKind = str
else:
    NodeKind = Literal[ON_NODE]
    BackendKind = Literal[ON_BACKEND]
MAX_BODY = 4096  # a fault is a few dozen bytes
MAX_FACTOR = 1000.0  # a backend this much slower already times every request out


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NodeFault(_Fault):
    """A fault on one relay node."""

    kind: NodeKind
    node: int = Field(ge=1)


class BackendFault(_Fault):
    """The backend, `factor` times slower."""

    kind: BackendKind
    factor: float = Field(gt=0, le=MAX_FACTOR, allow_inf_nan=False)


Fault = Annotated[NodeFault | BackendFault, Field(discriminator="kind")]
_FAULT: TypeAdapter[NodeFault | BackendFault] = TypeAdapter(Fault)
_EXAMPLE = '{"kind": "crash", "node": 1}'


class AdminError(Exception):
    """A request refused: its HTTP status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Admin:
    """Applies faults to one driver's tier; `handle` is the HTTP handler.

    `token` is the run's secret every change must carry; `port` the one the endpoint
    listens on (set by `serve_admin`), which the Host header must name; `scale` the
    model's seconds per real second (`serve --speed`), for times shown in real ones.
    """

    def __init__(self, driver: TrioDriver, token: str, port: int = 0, scale: float = 1.0) -> None:
        self.driver = driver
        self._scale = scale
        self.tier = driver.tier
        self.port = port
        self._token = token.encode()
        self._started = trio.current_time()
        self._faults: dict[tuple[str, int], dict[str, Any]] = {}  # by (kind, node)
        self.proxies: Proxies | None = None  # the ports' toxics, when serve has them

    async def handle(self, request: Request) -> Answer:
        """Route one HTTP request."""
        if Proxies.routes(request.path):
            return self._toxiproxy(request)
        try:
            if request.path != "/faults":
                raise AdminError(404, f"not found: {request.path}: try /faults")
            self._check(request)
            if request.method == "DELETE":
                self.clear()
            elif request.method == "POST":
                self.inject(parse(request.body))
        except AdminError as exc:
            return error(exc.status, str(exc))
        body = json.dumps(self.state(), allow_nan=False).encode() + b"\n"
        return Answer(200, JSON, body)

    def _toxiproxy(self, request: Request) -> Answer:
        """A request in Toxiproxy's REST shape, under this endpoint's rules."""
        try:
            self._check(request)
            if self.proxies is None:
                raise AdminError(
                    404, "no toxics on this server: start serve with --toxics (docs/serve.md)"
                )
            status, doc = self.proxies.handle(request.method, request.path, request.body)
        except (AdminError, ProxyError) as exc:
            return error(exc.status, str(exc))
        if request.method != "GET":
            self.tier.log.info("admin.toxics", method=request.method, path=request.path)
        if doc is None:
            return Answer(status, JSON, b"")
        return Answer(status, JSON, json.dumps(doc, allow_nan=False).encode() + b"\n")

    def _check(self, request: Request) -> None:
        """Refuse what is not a well-formed, authorised request to this endpoint."""
        here = f"{HOST}:{self.port}"
        host = request.headers.get("host", "")
        if host != here:
            raise AdminError(403, f"host: expected {here}, got {host!r}")
        if request.method == "GET":
            return
        if request.method not in ("POST", "DELETE"):
            raise AdminError(405, f"method {request.method} not allowed on {request.path}")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://{here}":
            raise AdminError(403, f"origin: {origin!r} may not change faults")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != JSON and (request.body or kind):
            raise AdminError(415, f"content-type: expected {JSON}, got {kind or 'none'!r}")
        if not hmac.compare_digest(_token(request.headers.get("authorization", "")), self._token):
            raise AdminError(
                401, "authorization: expected 'Bearer TOKEN' with this run's admin token"
            )

    def inject(self, fault: NodeFault | BackendFault) -> None:
        """Apply one validated fault now (see the module doc); AdminError names a node
        this tier does not have."""
        now = trio.current_time()
        entry: dict[str, Any] = {
            "kind": fault.kind,
            "at_s": round((now - self._started) / self._scale, 3),
        }
        key: tuple[str, int]
        kind = fault.kind
        if isinstance(fault, BackendFault):
            self.driver.apply(FaultEvent(now, kind, factor=fault.factor))
            key, entry["factor"] = (kind, 0), fault.factor
        else:
            count = len(self.tier.nodes)
            if fault.node > count:
                raise AdminError(400, f"node: expected a relay number 1..{count}, got {fault.node}")
            if REGISTRY[kind].operator:
                self.driver.apply(OperatorEvent(now, kind, fault.node))
            else:
                self.driver.apply(FaultEvent(now, kind, fault.node))
            key, entry["node"] = (kind, fault.node), fault.node
        self._faults.pop(key, None)  # the latest injection goes last
        self._faults[key] = entry
        self._faults = {k: f for k, f in self._faults.items() if self._in_effect(f)}
        self.tier.log.info("admin.inject", **fault.model_dump())

    def clear(self) -> None:
        """Undo what is still in effect (`RelayTier.heal`) and take every toxic off."""
        self.driver.heal()
        self._faults.clear()
        if self.proxies is not None:
            self.proxies.net.reset()
        self.tier.log.info("admin.clear")

    def _in_effect(self, fault: dict[str, Any]) -> bool:
        """Whether an injected fault still holds: the model says, not the log of
        posts (a crash on `fixed` is restarted at once; a stall reset; an attach is
        an action, never a standing fault)."""
        kind = REGISTRY[fault["kind"]]
        node = self.tier.nodes[fault["node"] - 1] if kind.on_node else None
        return kind.in_effect(self.tier, node, fault.get("factor", 1.0))

    @property
    def faults(self) -> list[dict[str, Any]]:
        """The injected faults still in effect, in the order last injected."""
        return [f for f in self._faults.values() if self._in_effect(f)]

    def state(self) -> dict[str, Any]:
        """The nodes, the backend and the faults in effect (`at_s`: real seconds since
        the endpoint started)."""
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
            "faults": self.faults,
            **({"toxics": self.proxies.toxics()} if self.proxies is not None else {}),
        }


def _token(authorization: str) -> bytes:
    """The token an Authorization header carries: Bearer's, or Basic's password."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return given.encode()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(given, validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return b""
    return b""


def parse(body: bytes) -> NodeFault | BackendFault:
    """A fault from a request body; AdminError (400) with one line for anything else."""
    try:
        data = json_of(body)
    except TooDeep:  # arrays in arrays a few thousand deep, under the size cap
        raise AdminError(400, f"body: nested too deep; expected {_EXAMPLE}") from None
    except ValueError as exc:  # not JSON, not UTF-8, or NaN/Infinity
        raise AdminError(400, f"body: expected a JSON object like {_EXAMPLE}") from exc
    if not isinstance(data, dict):
        raise AdminError(400, f"body: expected a JSON object like {_EXAMPLE}")
    try:
        return _FAULT.validate_python(data)
    except ValidationError as exc:
        raise AdminError(400, _describe(exc, data)) from None


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    """One line for the first thing wrong with a fault."""
    first = exc.errors()[0]
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return f"kind: expected one of {', '.join(KINDS)}, got {data.get('kind')!r}"
    # The first element of the location is the kind the union chose: drop it.
    return describe_error({**first, "loc": first["loc"][1:]})


async def serve_admin(
    admin: Admin,
    port: int = 0,
    *,
    scale: float = 1.0,
    network: Network = REAL,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The admin endpoint on 127.0.0.1:`port` of `network` until cancelled; reports
    its port. `scale`: trio seconds per real second (`serve --speed`)."""
    listener, admin.port = await listen(port, "admin port", network)
    task_status.started(admin.port)
    await serve_http(
        admin.handle,
        listener,
        request_timeout=5.0 * scale,
        max_body=MAX_BODY,
        log=admin.tier.log,
    )
