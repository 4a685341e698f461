"""The HTTP layer of /metrics and the admin endpoint against malformed requests, over
real loopback sockets under trio's virtual clock (loopback bytes are readable as
soon as they are sent, so the clock only jumps when both ends wait): every request
gets an HTTP answer with one line of JSON, never a bare close or a reset."""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

import pytest
import trio
import trio.testing

from relay.serve.admin import Admin, serve_admin
from relay.serve.httpd import Answer, Request, serve_http
from relay.serve.ports import listen

HOST = b"Host: 127.0.0.1\r\n"


async def ok(request: Request) -> Answer:
    return Answer(200, "text/plain", f"{request.method} {request.path}\n".encode())


async def exchange(port: int, wire: bytes) -> tuple[int, bytes, dict[str, str], bytes]:
    """Send `wire` (while reading, as a client that writes a lot would) and read
    the answer to its end: status, reason phrase, headers, body. A reset fails."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    got = bytearray()
    async with stream:

        async def write() -> None:
            # The server may answer and close before taking it all: read on.
            with suppress(trio.BrokenResourceError):
                await stream.send_all(wire)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            while data := await stream.receive_some(65536):
                got += data
            nursery.cancel_scope.cancel()
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    _, status, reason = status_line.split(b" ", 2)
    headers = {k.decode().lower(): v.decode() for k, _, v in (x.partition(b": ") for x in lines)}
    return int(status), reason, headers, body


async def answered(wire: bytes, **options: Any) -> tuple[int, bytes, dict[str, str], bytes]:
    """What a server of `ok` answers to `wire`."""
    async with trio.open_nursery() as nursery:
        listener, port = await listen(0, "test port")
        nursery.start_soon(lambda: serve_http(ok, listener, **options))
        got = await exchange(port, wire)
        nursery.cancel_scope.cancel()
    return got


MALFORMED = [
    ("two lengths", b"POST /faults HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\n"
     b"Content-Length: 3\r\n\r\nab", 400, b"conflicting Content-Length"),
    ("negative length", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n",
     400, b"bad Content-Length"),
    ("length 10^23", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 1" + b"0" * 23
     + b"\r\n\r\n", 400, b"bad Content-Length"),
    ("header without colon", b"GET /metrics HTTP/1.1\r\n" + HOST + b"badheader\r\n\r\n",
     400, b"illegal header line"),
    ("two hosts", b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"multiple Host"),
    ("200 headers of 8 KB", b"GET /metrics HTTP/1.1\r\n" + HOST
     + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 8000) for i in range(200)) + b"\r\n",
     431, b"too long"),
    ("a 1 MB path", b"GET /" + b"a" * 1_000_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
     431, b"too long"),
    ("a body past the cap, by its length", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 100000\r\n\r\n", 413, b"larger than 4096 bytes"),
    ("HTTP/0.9", b"GET /metrics\r\n", 408, b"did not arrive whole"),
]  # fmt: skip


@pytest.mark.parametrize(("wire", "status", "says"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])  # fmt: skip
async def test_malformed_http_gets_an_http_error_with_one_line(
    wire: bytes, status: int, says: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    """Conflicting or bad lengths, a header line without a colon, two Hosts, heads
    past 8 KiB, a body past the cap and a request that never ends (HTTP/0.9) each
    get their 4xx with its reason phrase and one line of JSON, read whole by the
    client (no reset)."""
    got, reason, headers, body = await answered(wire, max_body=4096, request_timeout=5.0)
    assert got == status
    assert reason[0:1].isupper()  # a reason phrase, not an empty one
    assert headers["content-type"] == "application/json"
    assert body.count(b"\n") == 1
    assert says in json.loads(body)["error"].encode()


async def test_head_is_answered_as_get_without_the_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """`curl -I`: HEAD gets GET's status and headers (its length), and no body."""
    status, reason, headers, body = await answered(b"HEAD /metrics HTTP/1.1\r\n" + HOST + b"\r\n")
    assert (status, reason, body) == (200, b"OK", b"")
    assert headers["content-length"] == str(len(b"GET /metrics\n"))


async def test_json_nested_past_pythons_recursion_is_a_400(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A fault body of arrays 2,000 deep (4,000 bytes, under the 4 KiB cap) is a
    bad request, not a handler failure."""
    from relay.engines.trio import TrioDriver
    from tests.conftest import tier_for
    from tests.test_admin import BASE, TOKEN

    admin = Admin(TrioDriver(tier_for(**BASE, design="fixed")), TOKEN)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_admin, admin)
        body = b"[" * 2000 + b"]" * 2000
        head = (
            f"POST /faults HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        status, _, _, answer = await exchange(port, head + body)
        nursery.cancel_scope.cancel()
    assert status == 400
    assert json.loads(answer)["error"].startswith("body: nested too deep")
