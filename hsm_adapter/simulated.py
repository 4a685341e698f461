"""A simulated HSM for trio under any clock: service times drawn, no real crypto.

Same interface as the PKCS#11 lane, one operation at a time (a FIFO lane, like the
device), so serve mode and the tests can run the relay without a token. Signatures
are keyed SHA-256 digests and "encryption" is a reversible XOR keystream: shaped
like the real answers, and checkable, but not security. The service time of each
call is drawn from `service` (seconds), a zero-argument sampler such as
`relay.scenario.distributions.Distribution.sampler`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import trio

from hsm_adapter.errors import HsmOperationError

_KEY = b"relaysim-simulated-hsm"


class SimulatedHsm:
    """One simulated device: a lock for the single lane, a sampler for its pace."""

    def __init__(self, service: Callable[[], float]) -> None:
        self._service = service
        self._lane = trio.Lock()  # FIFO: trio's Lock is fair
        self.calls = 0

    async def _busy(self) -> None:
        async with self._lane:
            self.calls += 1
            await trio.sleep(self._service())

    async def sign(self, data: bytes) -> bytes:
        """A keyed digest of `data` standing in for an ECDSA signature (64 bytes)."""
        await self._busy()
        return hmac.new(_KEY, data, hashlib.sha512).digest()

    async def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether `signature` is this device's signature of `data`."""
        await self._busy()
        return hmac.compare_digest(hmac.new(_KEY, data, hashlib.sha512).digest(), signature)

    async def encrypt(self, data: bytes) -> bytes:
        """A reversible transform of `data` (not encryption)."""
        await self._busy()
        return b"SIM1" + _xor(data)

    async def decrypt(self, blob: bytes) -> bytes:
        """The inverse of `encrypt`; anything else is refused like bad ciphertext."""
        await self._busy()
        if not blob.startswith(b"SIM1"):
            raise HsmOperationError("simulated HSM: decrypt: ciphertext invalid")
        return _xor(blob[4:])

    async def health(self) -> bool:
        """A simulated device always answers when it is not stalled by a fault."""
        await self._busy()
        return True


def _xor(data: bytes) -> bytes:
    stream = hashlib.shake_256(_KEY).digest(len(data))
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))
