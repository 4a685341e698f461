"""A small HTTP/1.1 server on loopback for serve mode's endpoints (metrics, admin).

h11 parses; each connection carries one request and is closed after the answer;
a request must arrive within `request_timeout` and its body stay under `max_body`, so a
slow or hostile client costs one task for a few seconds and nothing else. A handler
that fails (a bug) answers 500 for that request; the server goes on. Errors are
JSON, `{"error": "one line"}`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11
import trio

from relay.core.tier import LogSink

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request: method, path (no query), headers (names lower-case; the
    first of repeated ones), body."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a handler returns: status, content type, body."""

    status: int
    content_type: str
    body: bytes


Handler = Callable[[Request], Awaitable[Answer]]


def error(status: int, message: str) -> Answer:
    """An error answer: `status` and one line, as JSON."""
    return Answer(status, JSON, json.dumps({"error": message}).encode() + b"\n")


async def serve_http(
    handler: Handler,
    listener: trio.SocketListener,
    *,
    request_timeout: float = 5.0,
    max_body: int = 65536,
    log: LogSink | None = None,
) -> None:
    """Answer HTTP requests on `listener` with `handler` until cancelled."""

    async def one(stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(request_timeout):
                await _exchange(stream, handler, max_body, log)

    await trio.serve_listeners(one, [listener])


async def _exchange(
    stream: trio.SocketStream, handler: Handler, max_body: int, log: LogSink | None
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=8192)
    head: h11.Request | None = None
    body = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = bytes(await stream.receive_some(4096))
                conn.receive_data(data)
                if not data:
                    return
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > max_body:
                    answer = error(413, f"body: larger than {max_body} bytes")
                    break
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                answer = await _answer(handler, head, body, log)
                break
            else:
                return
    except (h11.RemoteProtocolError, trio.BrokenResourceError):
        return
    headers = [
        ("content-type", answer.content_type),
        ("content-length", str(len(answer.body))),
        ("connection", "close"),
    ]
    try:
        out = conn.send(h11.Response(status_code=answer.status, headers=headers)) or b""
        out += conn.send(h11.Data(data=answer.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)
    except (h11.LocalProtocolError, trio.BrokenResourceError):
        return


async def _answer(handler: Handler, head: h11.Request, body: bytes, log: LogSink | None) -> Answer:
    """The handler's answer to one request; a handler that fails answers 500."""
    headers: dict[str, str] = {}
    for name, value in head.headers:
        headers.setdefault(name.decode("ascii", "replace"), value.decode("latin-1"))
    request = Request(
        head.method.decode("ascii", "replace"),
        head.target.decode("ascii", "replace").split("?")[0],
        headers,
        body,
    )
    try:
        return await handler(request)
    except Exception as exc:  # a bug answers this request only
        if log is not None:
            log.info(
                "http.handler_failed", method=request.method, path=request.path, error=repr(exc)
            )
        return error(500, f"internal error: {exc.__class__.__name__}")
