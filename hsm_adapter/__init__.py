"""The relay's real HSM behind one async interface (`Hsm`).

- `hsm_adapter.lane.Pkcs11Hsm`: a real PKCS#11 token (SoftHSM2 by default) owned by
  one worker process (`hsm_adapter.worker`), fed in batches from trio, with a
  deadline on every call and a lane that is killed and replaced when a call passes
  it; `hsm_adapter.token` sets the token up under the project's state folder.
- `hsm_adapter.testing`: a simulated device and a fault-injecting wrapper, for tests.

Replays and serve mode's `--hsm simulated` use none of these: their HSM is the
core's `relay.core.hsm.HsmQueue`, whose finish times are computed, not awaited.
"""

from __future__ import annotations

from typing import Protocol


class Hsm(Protocol):
    """What a relay node needs from a tamper-resistant device."""

    async def sign(self, data: bytes) -> bytes:
        """Sign `data` (ECDSA P-256 over its SHA-256 digest)."""
        ...

    async def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether `signature` is valid for `data`."""
        ...

    async def encrypt(self, data: bytes) -> bytes:
        """Encrypt `data` under the relay's key."""
        ...

    async def decrypt(self, blob: bytes) -> bytes:
        """Decrypt what `encrypt` returned."""
        ...

    async def health(self) -> bool:
        """Whether the device answers a live operation within its deadline."""
        ...
