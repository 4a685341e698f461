"""`relaysim load` against servers that are not what they claim (issue 23, class 8):
an INFO answer of the wrong shape, every reply sent twice, replies to ids never
sent, bytes that are no frame. The load checks what it reads, counts each kind of
wrong answer, says so, and exits non-zero.

Real sockets on loopback, so trio's real clock; every run is bounded (a fraction
of a second of load, a short drain).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import trio

from hsm_adapter.lane import unwrap_group
from relay.cli import main
from relay.cli.options import EXIT_BAD_INPUT, EXIT_INVARIANT
from relay.core.summary import Summary
from relay.serve import load
from relay.serve.protocol import Decoder, Frame, Status, Type
from tests.conftest import CONFIGS
from tests.test_load import small

INFO = b'{"protocol": 1, "design": "fixed", "speed": 1}'

#: What a hostile server sends back for one request frame.
Answer = Callable[[Frame], bytes]


def reply(frame: Frame, rid: int | None = None) -> bytes:
    """A completed reply to `frame` (under id `rid` if given)."""
    rid = frame.id if rid is None else rid
    return Frame(Type.REPLY, rid, frame.key, frame.muni, Status.COMPLETED).encode()


ANSWERS: dict[str, Answer] = {
    "twice": lambda f: reply(f) * 2,
    "unknown ids": lambda f: reply(f, f.id + 1_000_000),
    # A length prefix past any frame, then junk: no frame boundary after it.
    "garbage": lambda f: b"\xde\xad\xbe\xef" * 16,
}


def hostile(answer: Answer, info: bytes = INFO) -> Callable[[trio.SocketStream], object]:
    """A connection handler that answers INFO with `info` and each request with
    `answer(request)`."""

    async def handle(stream: trio.SocketStream) -> None:
        decoder = Decoder()
        with trio.move_on_after(30):  # bounded, whatever the client does
            while data := await stream.receive_some(65536):
                for frame in decoder.feed(data):
                    if frame.type is Type.INFO:
                        await stream.send_all(Frame(Type.INFO, frame.id, body=info).encode())
                    else:
                        await stream.send_all(answer(frame))

    return handle


async def serve_hostile(
    handler: Callable[[trio.SocketStream], object], drain: float
) -> tuple[Summary, load.LoadRun]:
    """`load.run` for half a second at 100 requests/s against `handler` on loopback."""
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
                [listener] = await nursery.start(serve, handler, 0)
                port = listener.socket.getsockname()[1]
                got = await load.run(
                    small(), "127.0.0.1", port, duration=0.5, rate=100.0, connections=2, drain=drain
                )
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the load's one failure, as itself
        raise unwrap_group(group) from None
    return got


async def test_every_reply_twice_is_counted_as_duplicates() -> None:
    """A server that answers each request twice: each request is booked once, and
    each second reply counted as a duplicate."""
    doc, record = await serve_hostile(hostile(ANSWERS["twice"]), drain=2.0)
    assert doc["requests"] > 20
    assert doc["completed"] == doc["requests"]
    assert record.violations == {"duplicate_reply": doc["requests"]}


async def test_replies_to_ids_never_sent_are_counted_and_the_requests_lost() -> None:
    """Replies under ids the load never used answer nothing: each is counted as an
    unknown id, and the requests they did not answer end lost."""
    doc, record = await serve_hostile(hostile(ANSWERS["unknown ids"]), drain=0.3)
    assert doc["requests"] > 20
    assert doc["lost"] == doc["requests"]
    assert record.violations == {"unknown_id": doc["requests"]}


async def test_bytes_that_are_no_frame_end_the_connection_and_are_counted() -> None:
    """Garbage where a reply should be: each connection that got it is counted and
    given up at once (no waiting out the drain), its requests lost."""
    start = trio.current_time()
    doc, record = await serve_hostile(hostile(ANSWERS["garbage"]), drain=30.0)
    assert trio.current_time() - start < 10  # not the 30 s drain
    assert record.violations == {"not_a_frame": 2}
    assert doc["lost"] > 0


@pytest.mark.parametrize(
    ("info", "why"),
    [
        (b"[1, 2]", "its INFO answer is a JSON list, not an object"),
        (b"not json", "its INFO answer is not JSON"),
        (b'{"protocol": 7}', "its INFO answer says protocol 7, not 1"),
        (b'{"protocol": 1, "speed": -3}', "its INFO answer's speed is -3, not a finite"),
        (b'{"protocol": 1, "crashes": "many"}', "its INFO answer's crashes is 'many', not"),
    ],
)
async def test_an_info_answer_of_the_wrong_shape_is_refused_by_name(info: bytes, why: str) -> None:
    """An INFO answer that is not relaysim serve's (not JSON, not an object, another
    protocol, figures that are no numbers) stops the load before it sends, with a
    LoadError saying what is wrong."""
    with pytest.raises(load.LoadError) as exc:
        await serve_hostile(hostile(ANSWERS["twice"], info=info), drain=0.3)
    assert "is not a relaysim serve dispatcher: " in str(exc.value)
    assert why in str(exc.value)


@contextmanager
def in_a_thread(handler: Callable[[trio.SocketStream], object]) -> Iterator[int]:
    """`handler` served on loopback by a trio run in a thread of its own (the CLI
    runs trio itself); its port. Stopped on leaving."""
    ready: list[tuple[int, trio.lowlevel.TrioToken, trio.CancelScope]] = []
    started = threading.Event()

    async def main_loop() -> None:
        with trio.CancelScope() as scope, trio.move_on_after(60):
            async with trio.open_nursery() as nursery:
                serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
                [listener] = await nursery.start(serve, handler, 0)
                port = listener.socket.getsockname()[1]
                ready.append((port, trio.lowlevel.current_trio_token(), scope))
                started.set()

    thread = threading.Thread(target=trio.run, args=(main_loop,), daemon=True)
    thread.start()
    assert started.wait(10)
    port, token, scope = ready[0]
    try:
        yield port
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(10)


@pytest.mark.parametrize(
    ("answer", "said"),
    [("twice", "duplicate reply"), ("garbage", "not a frame")],
)
def test_the_load_command_says_the_server_broke_the_protocol_and_fails(
    answer: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relaysim load` against a server that breaks the protocol names what it broke,
    how often, and exits with the invariants' code, not 0."""
    with in_a_thread(hostile(ANSWERS[answer])) as port, pytest.raises(SystemExit) as exc:
        main(
            [
                *("load", str(CONFIGS / "smoke.yaml"), "--target", f"127.0.0.1:{port}"),
                *("--rate", "50", "--duration", "0.4", "--connections", "2", "--quiet"),
            ]
        )
    err = capsys.readouterr().err
    assert exc.value.code == EXIT_INVARIANT, err
    assert f"relaysim: the server broke the protocol: {said} " in err


def test_the_load_command_refuses_an_info_list_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Against a server whose INFO answer is a JSON list: exit 2 and one line, no
    traceback."""
    listing = hostile(ANSWERS["twice"], info=b"[1]")
    with in_a_thread(listing) as port, pytest.raises(SystemExit) as exc:
        main(["load", str(CONFIGS / "smoke.yaml"), "--target", f"127.0.0.1:{port}", "--quiet"])
    captured = capsys.readouterr()
    assert exc.value.code == EXIT_BAD_INPUT
    assert captured.err.count("\n") == 1
    assert "its INFO answer is a JSON list, not an object" in captured.err
    assert "Traceback" not in captured.err + captured.out
