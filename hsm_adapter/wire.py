"""Frames between the trio lane and the worker process that owns the token.

A frame is a 4-byte big-endian length and a pickle. Both ends are our own code in
processes we started, over a pipe nobody else holds, so pickle is safe here and is
the cheapest encoding for a batch of small tuples. `MAX_FRAME` bounds what either
side will buffer.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, BinaryIO

MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct(">I")


class WireError(Exception):
    """The other end sent something that is not a frame (or closed mid-frame)."""


def encode(obj: Any) -> bytes:
    """One frame holding `obj`."""
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


class Decoder:
    """Incremental decoder: feed bytes, take whole frames (sans-IO, for trio)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> list[Any]:
        """Add `data`; return every frame it completed, in order."""
        self._buf += data
        out = []
        while len(self._buf) >= _LEN.size:
            (size,) = _LEN.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise WireError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            end = _LEN.size + size
            if len(self._buf) < end:
                break
            out.append(pickle.loads(self._buf[_LEN.size : end]))
            del self._buf[:end]
        return out


def write(stream: BinaryIO, obj: Any) -> None:
    """Write one frame to a blocking binary stream and flush it."""
    stream.write(encode(obj))
    stream.flush()
