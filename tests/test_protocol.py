"""The wire codec: round trips in any split, and hostile bytes rejected with a code."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.serve.protocol import (
    HEADER_SIZE,
    MAX_FRAME,
    Decoder,
    ErrorCode,
    Frame,
    ProtocolError,
    Status,
    Type,
    error_frame,
)
from tests.conftest import ROOT

frames = st.builds(
    Frame,
    type=st.sampled_from(Type),
    id=st.integers(0, 2**64 - 1),
    key=st.binary(min_size=16, max_size=16),
    muni=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=300),
).map(
    lambda f: Frame(
        f.type,
        f.id,
        f.key,
        f.muni,
        0 if f.type is Type.REQUEST else (Status.TIMEOUT if f.type is Type.REPLY else 4),
        f.body,
    )
)


@given(st.lists(frames, max_size=5), st.data())
def test_frames_survive_any_split(batch: list[Frame], data: st.DataObject) -> None:
    """Frames encoded back to back decode to themselves however the bytes are cut."""
    wire = b"".join(f.encode() for f in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    decoder, out, last = Decoder(), [], 0
    for cut in [*cuts, len(wire)]:
        out += decoder.feed(wire[last:cut])
        last = cut
    assert out == batch
    assert decoder.pending == 0


@given(st.binary(max_size=2000))
def test_garbage_yields_frames_or_a_protocol_error_only(junk: bytes) -> None:
    """Arbitrary bytes never raise anything but ProtocolError, and a decoder that has
    not rejected its input holds at most one partial frame."""
    decoder = Decoder(max_frame=256)
    code: ErrorCode | None = None
    try:
        decoder.feed(junk)
    except ProtocolError as exc:  # anything else fails the test
        code = exc.code
    if code is None:
        assert decoder.pending < 4 + 256
    else:
        assert code in ErrorCode


def header(version: int = 1, kind: int = 1, status: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">BBBBQ16sII", version, kind, status, flags, 7, b"k" * 16, 3, 0)


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (struct.pack(">I", MAX_FRAME + 1), ErrorCode.TOO_LARGE),
        (struct.pack(">I", 2**32 - 1), ErrorCode.TOO_LARGE),
        (struct.pack(">I", 5) + b"hello", ErrorCode.MALFORMED),
        (struct.pack(">I", HEADER_SIZE) + header(version=2), ErrorCode.UNSUPPORTED_VERSION),
        (struct.pack(">I", HEADER_SIZE) + header(kind=9), ErrorCode.UNKNOWN_TYPE),
        (struct.pack(">I", HEADER_SIZE) + header(kind=2, flags=1), ErrorCode.MALFORMED),
        (struct.pack(">I", HEADER_SIZE) + header(kind=2, status=77), ErrorCode.MALFORMED),
        (struct.pack(">I", HEADER_SIZE) + header(kind=1, status=1), ErrorCode.MALFORMED),
    ],
)
def test_hostile_frames_are_rejected_with_their_code(wire: bytes, code: ErrorCode) -> None:
    """Oversized, undersized, unknown-version, unknown-type and malformed frames each
    get the error code a server answers with before closing."""
    with pytest.raises(ProtocolError) as exc:
        Decoder().feed(wire)
    assert exc.value.code is code


def test_a_request_says_how_many_messages_its_operation_has_left() -> None:
    """A request's flags byte is its operation's messages left (this one included);
    it survives the round trip, and old clients' 0 means a one-message operation."""
    frame = Frame(Type.REQUEST, 5, b"k" * 16, 3, 0, b"x", left=3)
    [back] = Decoder().feed(frame.encode())
    assert back == frame
    assert Decoder().feed(Frame(Type.REQUEST, 6).encode())[0].left == 0


def test_an_oversized_prefix_is_rejected_before_its_body_arrives() -> None:
    """A 4 GB length prefix is refused from its 4 bytes, without waiting or buffering."""
    decoder = Decoder()
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(struct.pack(">I", 2**31))


def test_error_frames_carry_code_and_message() -> None:
    """An error frame round-trips its code and a UTF-8 message."""
    [frame] = Decoder().feed(error_frame(ErrorCode.TOO_SLOW, "frame took too long", 9).encode())
    assert (frame.type, frame.status, frame.id) == (Type.ERROR, ErrorCode.TOO_SLOW, 9)
    assert frame.body.decode() == "frame took too long"


def test_the_documented_example_is_what_goes_on_the_wire() -> None:
    """docs/protocol.md's example request encodes to exactly the bytes it shows."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    block = doc.split("```")[1]
    shown = bytes.fromhex(" ".join(line.split("  ")[0] for line in block.strip().splitlines()))
    frame = Frame(Type.REQUEST, 7, b"\x00" * 15 + b"\x01", 42, 0, b"hello")
    assert frame.encode() == shown
    assert Decoder().feed(shown) == [frame]
