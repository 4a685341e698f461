"""A small HTTP/1.1 server on loopback for serve mode's endpoints (metrics, admin).

h11 parses (a sans-IO state machine: every malformed head, conflicting length or
bad header line is its RemoteProtocolError, answered with its status hint); each
connection carries one request and is closed after the answer; a request must
arrive within `request_timeout` and its body stay under `max_body`, so a slow or
hostile client costs one task for a few seconds and nothing else. Every request
gets an answer, never a bare close or a reset (`serve_http`). A handler that
fails (a bug) answers 500 for that request; the server goes on. Errors are JSON,
`{"error": "one line"}`.
"""

from __future__ import annotations

import http
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from relay.core.tier import LogSink
from relay.net import linger

#: After answering, what the client still sends is read and dropped for up to this
#: long (`relay.net.linger`), so that it reads the answer and not a reset.
LINGER_S = 1.0

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


def json_of(body: bytes) -> Any:
    """The JSON document a request body holds; ValueError for anything else: not
    UTF-8 or not JSON, NaN or Infinity (which JSON does not have), or nested past
    Python's recursion limit (a few kilobytes of brackets)."""
    try:
        return json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise TooDeep("nested too deep") from None


class TooDeep(ValueError):
    """A JSON body nested past Python's recursion limit."""


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def error(status: int, message: str) -> Answer:
    """An error answer: `status` and one line, as JSON."""
    return Answer(status, JSON, json.dumps({"error": message}).encode() + b"\n")


#: The request line and headers together may take this many bytes; past it the
#: answer is 431 (h11's hint), whatever the client goes on sending.
MAX_HEAD = 8192


async def serve_http(
    handler: Handler,
    listener: trio.abc.Listener[trio.abc.Stream],
    *,
    request_timeout: float = 5.0,
    max_body: int = 65536,
    log: LogSink | None = None,
) -> None:
    """Answer HTTP requests on `listener` with `handler` until cancelled. Every
    request gets an answer: the handler's, or an error with one line of JSON for
    input that is no valid HTTP/1.1 (400, or h11's hint: 431 for a head past
    MAX_HEAD), a body past `max_body` (413, from its Content-Length when it gives
    one), a request not whole within `request_timeout` (408). HEAD is answered as
    GET without the body."""

    async def one(stream: trio.abc.Stream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
            answer: Answer | None = _TIMEOUT
            head = False
            with trio.move_on_after(request_timeout):
                answer, head = await _receive(conn, stream, handler, max_body, log)
            if answer is None:
                return  # the client went before it sent a request
            with trio.move_on_after(request_timeout):
                await _send(conn, stream, answer, head)
                await linger(stream, LINGER_S)

    await trio.serve_listeners(one, [listener])


_TIMEOUT = error(408, "request timeout: the request did not arrive whole in time")


async def _receive(
    conn: h11.Connection,
    stream: trio.abc.Stream,
    handler: Handler,
    max_body: int,
    log: LogSink | None,
) -> tuple[Answer | None, bool]:
    """Read one request and answer it: (the answer, whether it was a HEAD); None
    for a client that closed before sending anything whole."""
    head: h11.Request | None = None
    body = bytearray()
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(4096)
                except trio.BrokenResourceError:
                    return None, False
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.Request):
                head = event
                declared = _content_length(event)
                if declared is not None and declared > max_body:
                    return error(413, f"body: larger than {max_body} bytes"), False
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > max_body:
                    return error(413, f"body: larger than {max_body} bytes"), False
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                is_head = head.method == b"HEAD"
                return await _answer(handler, head, bytes(body), log), is_head
            else:  # ConnectionClosed (or a Paused we never ask for)
                return None, False
    except h11.RemoteProtocolError as exc:
        return error(exc.error_status_hint, f"bad request: {exc}"), False


def _content_length(head: h11.Request) -> int | None:
    """The Content-Length a request declares (h11 has checked it is one integer)."""
    for name, value in head.headers:
        if name == b"content-length":
            return int(value)
    return None


async def _send(conn: h11.Connection, stream: trio.abc.Stream, answer: Answer, head: bool) -> None:
    """Write `answer` with its reason phrase; without the body for a HEAD."""
    headers = [("connection", "close")]
    if answer.status != 204:  # No Content has neither a body nor a length
        headers += [
            ("content-type", answer.content_type),
            ("content-length", str(len(answer.body))),
        ]
    reason = _REASONS.get(answer.status, b"")
    try:
        out = conn.send(h11.Response(status_code=answer.status, headers=headers, reason=reason))
        if not head and answer.status != 204:
            out = (out or b"") + (conn.send(h11.Data(data=answer.body)) or b"")
        out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
        await stream.send_all(out)
    except (h11.LocalProtocolError, trio.BrokenResourceError):
        return


_REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}


async def _answer(handler: Handler, head: h11.Request, body: bytes, log: LogSink | None) -> Answer:
    """The handler's answer to one request; a handler that fails answers 500."""
    headers: dict[str, str] = {}
    for name, value in head.headers:
        headers.setdefault(name.decode("ascii", "replace"), value.decode("latin-1"))
    method = head.method.decode("ascii", "replace")
    request = Request(
        "GET" if method == "HEAD" else method,
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
