"""A small HTTP/1.1 server on loopback for serve mode's endpoints (metrics, admin).

h11 parses; each connection carries one request and is closed after the answer;
a request must arrive within `request_timeout` and its body stay under `max_body`, so a
slow or hostile client costs one task for a few seconds and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11
import trio


@dataclass(frozen=True, slots=True)
class Answer:
    """What a handler returns: status, content type, body."""

    status: int
    content_type: str
    body: bytes


Handler = Callable[[str, str, bytes], Awaitable[Answer]]  # (method, path, body)


async def serve_http(
    handler: Handler,
    port: int = 0,
    *,
    request_timeout: float = 5.0,
    max_body: int = 65536,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer HTTP requests on 127.0.0.1:`port` with `handler` until cancelled."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])

    async def one(stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(request_timeout):
                await _exchange(stream, handler, max_body)

    await trio.serve_listeners(one, listeners)


async def _exchange(stream: trio.SocketStream, handler: Handler, max_body: int) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=8192)
    request: h11.Request | None = None
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
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > max_body:
                    answer = Answer(413, "text/plain", b"body too large\n")
                    break
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                path = request.target.decode("ascii", "replace").split("?")[0]
                answer = await handler(request.method.decode("ascii", "replace"), path, body)
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
    out = conn.send(h11.Response(status_code=answer.status, headers=headers)) or b""
    out += conn.send(h11.Data(data=answer.body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    try:
        await stream.send_all(out)
    except trio.BrokenResourceError:
        return
