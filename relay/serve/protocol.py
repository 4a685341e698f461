"""The wire protocol between CSs, the dispatcher and relay nodes: a sans-IO codec.

Every message is one frame: a 4-byte big-endian length, then a 36-byte header,
then the body (docs/protocol.md has it byte by byte):

    length  u32   bytes after this field (header + body), at most max_frame
    version u8    1
    type    u8    1 request, 2 reply, 3 error, 4 info
    status  u8    reply: the outcome; error: the error code; request: 0
    flags   u8    request: messages left in its counter operation, this one included
                  (0 or 1: the operation's last); otherwise 0
    id      u64   request id, chosen by the client, echoed in the reply
    key     16 B  idempotency key: the same operation re-sent carries the same key
    muni    u32   municipality (CS) id
    spare   u32   0 (reserved)
    body    ...   request: the operation's data; reply: the answer (an overflow: why,
                  as its reason's name); error: UTF-8 text; info: UTF-8 JSON

`Decoder` turns bytes, in whatever pieces the network delivers them, into
`Frame`s, and raises `ProtocolError` with the code to answer with at the first
thing that is not a valid frame, carrying the valid frames that came before it in
the same bytes (each is still owed its answer): after one, a connection is closed
(there is no way to find the next frame boundary in garbage). It never buffers more than one
frame of `max_frame` bytes, so a hostile length prefix cannot make it allocate.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from relay.core.request import Outcome

VERSION = 1
MAX_FRAME = 64 * 1024  # default bound on length: header plus body
_LENGTH = struct.Struct(">I")
_HEADER = struct.Struct(">BBBBQ16sII")
HEADER_SIZE = _HEADER.size  # 36
_WIRE = struct.Struct(">I" + _HEADER.format[1:])  # the length prefix and the header at once


class Type(enum.IntEnum):
    """What a frame is."""

    REQUEST = 1
    REPLY = 2
    ERROR = 3
    INFO = 4  # a client asks (no body); the server answers with JSON (same id)


class Status(enum.IntEnum):
    """A reply's outcome: the four outcomes of a request (relay.core.request.Outcome)."""

    COMPLETED = 0
    OVERFLOW = 1
    TIMEOUT = 2
    ERROR = 3


#: The reply status that carries each outcome of a request, and back.
STATUS_OF: dict[Outcome, Status] = {
    Outcome.COMPLETED: Status.COMPLETED,
    Outcome.OVERFLOW: Status.OVERFLOW,
    Outcome.TIMEOUT: Status.TIMEOUT,
    Outcome.ERROR: Status.ERROR,
}
OUTCOME_OF: dict[Status, Outcome] = {status: outcome for outcome, status in STATUS_OF.items()}


class ErrorCode(enum.IntEnum):
    """Why a peer's input was rejected (an error frame's status)."""

    MALFORMED = 1  # a field that cannot be what the protocol says
    UNSUPPORTED_VERSION = 2
    UNKNOWN_TYPE = 3
    TOO_LARGE = 4  # length prefix above the receiver's max_frame
    TOO_SLOW = 5  # a frame took longer than the receiver allows to arrive
    BUSY = 6  # the receiver is at its connection limit
    UNKNOWN_MUNICIPALITY = 7  # a request from a CS the tier does not serve (per request)
    INTERNAL = 8  # the server failed this request (a bug); it goes on serving
    # The server is closing this connection: with id 0, a notice (send nothing more
    # here; replies still owed follow); with a request's id, that request was refused
    # unread, so re-sending it elsewhere is safe.
    SHUTTING_DOWN = 9  # the server is stopping
    IDLE = 10  # the connection carried nothing for the idle timeout
    # Keys (per request, the connection stays): the key belongs to an operation of
    # several messages that is still on one of them (its reply has not gone out),
    KEY_IN_USE = 11
    # or the message would continue an operation it contradicts: another connection
    # (so another port), another municipality, or another count of messages left.
    WRONG_CONTINUATION = 12
    # The client read none of its replies for the write timeout: the server, blocked
    # writing, closes the connection (its requests still end in the ledger).
    NOT_READING = 13


class ProtocolError(Exception):
    """Input that is not a valid frame; `code` is what to answer with before closing.
    `frames`: the whole, valid frames that came before it in the same input, in
    order (a receiver still owes each of them its answer)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.frames: list[Frame] = []


class Frame(NamedTuple):
    """One message. `status` means the outcome (reply) or error code (error).

    A named tuple rather than a frozen dataclass: serve makes two of these per
    request, and a tuple is built in a fifth of the time (docs/performance.md).
    """

    type: Type
    id: int
    key: bytes = b"\x00" * 16
    muni: int = 0
    status: int = 0
    body: bytes = b""
    # A request's messages left in its operation, itself included (the flags byte):
    # more than 1 and the server holds the operation's connection for the next one,
    # sent with the same key. 0 or 1: the operation's last (or only) message.
    left: int = 0

    def encode(self) -> bytes:
        """The frame's bytes on the wire."""
        return encode_frame(*self)


def encode_frame(
    type: int,
    id: int,
    key: bytes = b"\x00" * 16,
    muni: int = 0,
    status: int = 0,
    body: bytes = b"",
    left: int = 0,
) -> bytes:
    """The bytes on the wire of the frame with these fields (`Frame`'s, in its
    order): what `Frame.encode` does, without making the frame first (serve's
    replies)."""
    if len(key) != 16:
        raise ValueError("idempotency key must be 16 bytes")
    head = _WIRE.pack(HEADER_SIZE + len(body), VERSION, type, status, left, id, key, muni, 0)
    return head + body if body else head


def error_frame(code: ErrorCode, message: str, id: int = 0) -> Frame:
    """An error frame carrying `code` and a one-line UTF-8 message."""
    return Frame(Type.ERROR, id, status=code, body=message.encode()[:1024])


class Decoder:
    """Bytes in, frames out, for one connection (see the module doc)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if max_frame < HEADER_SIZE:
            raise ValueError(f"max_frame must be at least the header, {HEADER_SIZE} bytes")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need: int | None = None  # length of the frame being read, once known

    @property
    def pending(self) -> int:
        """Bytes received that do not form a whole frame yet (a partial frame)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """Add bytes from the peer; return the whole frames they complete, in order.
        ProtocolError at the first invalid frame, carrying the valid ones before it."""
        if not self._buf and len(data) >= _LENGTH.size:
            # The common case, one whole frame read on its own: parsed from `data`
            # without a pass through the buffer.
            (need,) = _LENGTH.unpack_from(data)
            if len(data) == _LENGTH.size + need and HEADER_SIZE <= need <= self.max_frame:
                try:
                    return [_parse(bytes(data[_LENGTH.size :]))]
                except ProtocolError as exc:
                    exc.frames = []
                    raise
        self._buf += data
        frames: list[Frame] = []
        try:
            return self._frames(frames)
        except ProtocolError as exc:
            exc.frames = frames
            raise

    def _frames(self, frames: list[Frame]) -> list[Frame]:
        while True:
            if self._need is None:
                if len(self._buf) < _LENGTH.size:
                    return frames
                (need,) = _LENGTH.unpack_from(self._buf)
                if need > self.max_frame:
                    raise ProtocolError(
                        ErrorCode.TOO_LARGE, f"frame of {need} bytes exceeds {self.max_frame}"
                    )
                if need < HEADER_SIZE:
                    raise ProtocolError(
                        ErrorCode.MALFORMED, f"frame of {need} bytes is shorter than its header"
                    )
                self._need = need
            end = _LENGTH.size + self._need
            if len(self._buf) < end:
                return frames
            frames.append(_parse(bytes(self._buf[_LENGTH.size : end])))
            del self._buf[:end]
            self._need = None


_TYPES = {t.value: t for t in Type}  # a dict lookup: Type(kind) costs an enum call


def _parse(raw: bytes) -> Frame:
    version, kind, status, flags, rid, key, muni, spare = _HEADER.unpack_from(raw)
    if version != VERSION:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"protocol version {version}")
    ftype = _TYPES.get(kind)
    if ftype is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"message type {kind}")
    if spare or (flags and ftype is not Type.REQUEST):
        raise ProtocolError(ErrorCode.MALFORMED, "reserved header fields must be 0")
    if ftype is Type.REQUEST and status:
        raise ProtocolError(ErrorCode.MALFORMED, "a request carries no status")
    if ftype is Type.REPLY and status not in Status._value2member_map_:
        raise ProtocolError(ErrorCode.MALFORMED, f"reply status {status}")
    return Frame(ftype, rid, key, muni, status, raw[HEADER_SIZE:], flags)
