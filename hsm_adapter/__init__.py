"""The relay's HSM interface and its implementations.

The relay calls an HSM through one async interface (`Hsm`). In virtual-time replays
the HSM is the core's simulated lane (`relay.hsm.HsmLane`, performed by
`relay.driver_trio.SimulatedServices`); the PKCS#11 implementation over a real token
(SoftHSM2), with one owning lane, per-call deadlines and a killable worker, is the
subject of the HSM issue and lands here.
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

    async def health(self) -> bool:
        """Whether the device answers a live operation within its deadline."""
        ...
