"""Toxics on serve's ports in Toxiproxy's REST shape: on the simulated network under
the virtual clock (the routes, the rules, a toxic's exact effect), and on real
sockets with Toxiproxy's own Python client (`toxiproxy-python`, on requests)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from relay.net.sim import SimNetwork
from relay.scenario.schema import Scenario, load_scenario
from relay.serve import simnet
from relay.serve.protocol import Decoder, Frame, Type
from tests.conftest import CONFIGS
from tests.test_serve_cli import FAST, admin, relaysim, send_requests, serving

T = TypeVar("T")

# Constant services: every lone request's round trip is the same but for the network.
CONSTANT = [
    "backend.service_ms={dist: constant, mean: 5}",
    "hsm.service_ms={dist: constant, mean: 8}",
]


def smoke() -> Scenario:
    return load_scenario(CONFIGS / "smoke.yaml", CONSTANT)


def call(port: int, method: str, path: str, body: Any = None, **headers: str) -> bytes:
    """An HTTP request to the admin endpoint on `port`, with the run's token as
    Bearer unless `authorization` is given ("" for none)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    auth = headers.pop("authorization", f"Bearer {simnet.ADMIN_TOKEN}")
    if auth:
        lines.append(f"Authorization: {auth}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    data = b"" if body is None else json.dumps(body).encode()
    if data:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def round_trip(net: SimNetwork, port: int) -> float:
    """Seconds from sending one request on a new connection to its reply."""
    stream = await net.host(simnet.CLIENT_HOST).connect(simnet.SERVER_HOST, port)
    start = trio.current_time()
    await stream.send_all(Frame(Type.REQUEST, 1, b"k" * 16, 7).encode())
    decoder = Decoder()
    while not [f for f in decoder.feed(await stream.receive_some()) if f.id == 1]:
        pass
    elapsed = trio.current_time() - start
    await stream.aclose()
    return elapsed


def test_the_toxiproxy_routes_on_the_simulated_network() -> None:
    """The routes answer with Toxiproxy's JSON and status codes (200, 204, 400, 404,
    405, 409); a latency toxic added through them delays each reply by exactly its
    latency, a changed one by the new figure, none once deleted; /reset takes every
    toxic off; GET /faults lists them."""
    seen: dict[str, Any] = {}

    async def main() -> None:
        net = SimNetwork(1)
        async with simnet.serving(smoke(), net) as (_, ports):
            a, d = ports["admin"], ports["dispatcher"]

            async def ask(method: str, path: str, body: Any = None) -> tuple[int, Any]:
                status, raw = await simnet.exchange(net, a, call(a, method, path, body))
                return status, json.loads(raw) if raw else None

            seen["bare"] = await round_trip(net, d)
            seen["proxies"] = await ask("GET", "/proxies")
            latency = {"type": "latency", "attributes": {"latency": 300}}
            seen["added"] = await ask("POST", "/proxies/dispatcher/toxics", latency)
            seen["again"] = await ask("POST", "/proxies/dispatcher/toxics", latency)
            seen["slow"] = await round_trip(net, d)
            change = {"attributes": {"latency": 120}}
            seen["changed"] = await ask(
                "POST", "/proxies/dispatcher/toxics/latency_downstream", change
            )
            seen["less"] = await round_trip(net, d)
            seen["listed"] = await ask("GET", "/proxies/dispatcher/toxics")
            seen["faults"] = await ask("GET", "/faults")
            seen["deleted"] = await ask("DELETE", "/proxies/dispatcher/toxics/latency_downstream")
            seen["after"] = await round_trip(net, d)
            seen["gone"] = await ask("GET", "/proxies/dispatcher/toxics/latency_downstream")
            seen["no proxy"] = await ask("GET", "/proxies/nowhere/toxics")
            seen["create"] = await ask("POST", "/proxies", {"name": "x", "upstream": "a:1"})
            bad = {"type": "latency", "attributes": {"latency": -1}}
            seen["bad"] = await ask("POST", "/proxies/relay1/toxics", bad)
            await ask("POST", "/proxies/relay1/toxics", {"type": "timeout", "stream": "upstream"})
            seen["reset"] = await ask("POST", "/reset")
            seen["empty"] = await ask("GET", "/proxies/relay1")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    bare = seen["bare"]
    assert bare > 0
    status, proxies = seen["proxies"]
    assert status == 200
    assert sorted(proxies) == ["dispatcher", "relay1", "relay2", "relay3", "relay4"]
    assert proxies["dispatcher"]["enabled"] is True
    assert proxies["dispatcher"]["toxics"] == []
    latency = {"latency": 300, "jitter": 0}
    assert seen["added"] == (200, {"name": "latency_downstream", "type": "latency",
                                   "stream": "downstream", "toxicity": 1.0,
                                   "attributes": latency})  # fmt: skip
    assert seen["again"][0] == 409
    assert seen["slow"] - bare == pytest.approx(0.3)
    assert seen["changed"][1]["attributes"] == {"latency": 120, "jitter": 0}
    assert seen["less"] - bare == pytest.approx(0.12)
    assert [t["name"] for t in seen["listed"][1]] == ["latency_downstream"]
    assert seen["faults"][1]["toxics"] == {"dispatcher": seen["listed"][1]}
    assert seen["deleted"] == (204, None)
    assert seen["after"] == pytest.approx(bare)
    assert seen["gone"][0] == 404
    assert seen["no proxy"][0] == 404
    assert "relay1" in seen["no proxy"][1]["error"]
    assert seen["create"][0] == 405
    assert seen["bad"] == (400, {"error": "toxic.attributes.latency: -1: expected a number >= 0"})
    assert seen["reset"] == (204, None)
    assert seen["empty"][1]["toxics"] == []


@pytest.mark.parametrize(
    ("authorization", "headers", "status"),
    [
        ("", {}, 401),
        ("Bearer wrong", {}, 401),
        ("Basic " + base64.b64encode(b"relaysim:wrong").decode(), {}, 401),
        ("Basic " + base64.b64encode(f"relaysim:{simnet.ADMIN_TOKEN}".encode()).decode(), {}, 204),
        (f"Bearer {simnet.ADMIN_TOKEN}", {"Origin": "http://evil.example"}, 403),
        (f"Bearer {simnet.ADMIN_TOKEN}", {"Content-Type": "text/plain"}, 415),
        (f"Bearer {simnet.ADMIN_TOKEN}", {}, 204),
    ],
    ids=["no-token", "wrong-bearer", "wrong-basic", "basic", "foreign-origin", "form", "bearer"],
)
def test_a_change_to_the_toxics_keeps_the_admin_rules(
    authorization: str, headers: dict[str, str], status: int
) -> None:
    """POST /reset needs the run's token, as Bearer or as Basic's password (what
    requests sends from a netrc file); a foreign Origin or a non-JSON content type is
    refused; a bodiless change needs no content type."""

    async def main() -> int:
        net = SimNetwork(1)
        async with simnet.serving(smoke(), net) as (_, ports):
            a = ports["admin"]
            request = call(a, "POST", "/reset", authorization=authorization, **headers)
            got, _ = await simnet.exchange(net, a, request)
            return got

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == status


@pytest.fixture
def toxiproxy_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[int], Any]]:
    """Toxiproxy's Python client, pointed at an admin port; the run's token in a netrc
    file (toxiproxy-python has no way to pass a header: requests reads $NETRC)."""
    from toxiproxy import Toxiproxy
    from toxiproxy.api import APIConsumer

    before = APIConsumer.host, APIConsumer.port

    def at(port: int) -> Any:
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1\nlogin relaysim\npassword {admin['token']}\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        APIConsumer.host, APIConsumer.port = "127.0.0.1", port
        return Toxiproxy()

    yield at
    APIConsumer.host, APIConsumer.port = before


async def off_thread(fn: Callable[[], T]) -> T:
    """`fn()` (a blocking client call) in a worker thread, bounded."""
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(fn)


async def test_toxiproxy_python_puts_toxics_on_the_real_sockets(
    toxiproxy_client: Callable[[int], Any],
) -> None:
    """Against `relaysim serve --toxics`, Toxiproxy's own client lists serve's ports
    as proxies; a latency toxic it adds on the dispatcher delays a reply over real
    TCP by at least its latency; a reset_peer it adds on relay1 resets a real
    connection there; `relaysim fault show` lists both; destroying one and /reset
    take them off."""
    async with serving("--toxics", *FAST) as (_, port, _, _):
        client = toxiproxy_client(admin["port"])
        proxies = await off_thread(client.proxies)
        assert sorted(proxies) == ["dispatcher", "relay1", "relay2", "relay3", "relay4"]
        assert proxies["dispatcher"].listen == f"127.0.0.1:{port}"
        dispatcher, relay1 = proxies["dispatcher"], proxies["relay1"]
        await off_thread(lambda: dispatcher.add_toxic(type="latency", attributes={"latency": 300}))
        await off_thread(
            lambda: relay1.add_toxic(type="reset_peer", stream="upstream", attributes={})
        )
        start = trio.current_time()
        [reply] = await send_requests(port, 1)
        assert reply.type is Type.REPLY
        assert trio.current_time() - start >= 0.3  # a lower bound: no load makes it less

        async def ask_relay1() -> None:
            # The reset can come before the connect has finished (a loaded machine),
            # or on the first read or write: either way it is a reset, not a refusal.
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", int(relay1.listen.split(":")[1]))
            except OSError as exc:
                causes = exc.__cause__
                assert isinstance(causes, BaseExceptionGroup)
                assert causes.subgroup(ConnectionResetError) is not None, causes
                raise trio.BrokenResourceError("reset while connecting") from exc
            async with stream:
                await stream.send_all(Frame(Type.REQUEST, 1, os.urandom(16), 1).encode())
                while await stream.receive_some():
                    pass

        with trio.fail_after(30):
            with pytest.raises(trio.BrokenResourceError):
                await ask_relay1()

        code, out, _ = await relaysim("fault", "--admin", f"127.0.0.1:{admin['port']}", "show",
                                      state=admin["state"])  # fmt: skip
        assert code == 0
        assert "latency_downstream" in out
        assert "reset_peer_upstream" in out

        assert await off_thread(lambda: dispatcher.destroy_toxic("latency_downstream"))
        assert await off_thread(lambda: list(dispatcher.toxics())) == []
        assert await off_thread(client.reset)
        assert await off_thread(lambda: list(relay1.toxics())) == []


async def test_relaysim_fault_puts_a_toxic_on_and_takes_it_off() -> None:
    """`relaysim fault toxic` and `untoxic` against `serve --toxics`: the toxic shows
    in the state; a toxic the registry does not know, an attribute of another kind
    and serve without --toxics each get one line and exit 2."""
    async with serving("--toxics", *FAST):
        where = ["--admin", f"127.0.0.1:{admin['port']}"]
        state = admin["state"]
        limit = ["toxic", "limit_data", "--proxy", "relay2", "--attr", "bytes=100", "--json"]
        code, out, err = await relaysim("fault", *where, *limit, state=state)
        assert code == 0, err
        [toxic] = json.loads(out)["toxics"]["relay2"]
        assert (toxic["name"], toxic["attributes"]) == ("limit_data_downstream", {"bytes": 100})
        bad = [
            (["toxic", "nope"], "toxic.type: 'nope' is not a toxic"),
            (["toxic", "latency", "--attr", "bytes=3"], "toxic.attributes.bytes: not an attribute"),
            (["toxic", "latency", "--attr", "latency"], "--attr 'latency': expected NAME=NUMBER"),
            (["untoxic", "latency_downstream"], "toxic not found: 'latency_downstream'"),
        ]
        for args, message in bad:
            code, _, err = await relaysim("fault", *where, *args, state=state)
            assert (code, err.count("\n")) == (2, 1), err
            assert message in err
        code, out, _ = await relaysim("fault", *where, "untoxic", "limit_data_downstream",
                                      "--proxy", "relay2", "--json", state=state)  # fmt: skip
        assert json.loads(out)["toxics"] == {}
    async with serving(*FAST):
        code, _, err = await relaysim("fault", "--admin", f"127.0.0.1:{admin['port']}", "toxic",
                                      "latency", state=admin["state"])  # fmt: skip
        assert code == 2
        assert "start serve with --toxics" in err
