"""HSMs for tests: a simulated device and a fault-injecting wrapper.

Neither runs in production: serve mode's `--hsm simulated` uses the core's own
simulated lane (`relay.core.hsm`), whose finishing times are computed; replays never
await an HSM at all. These are for exercising what awaits a device
(`relay.engines.trio.DeviceServices`, the lane's callers) without a token:

- `SimulatedHsm`: the PKCS#11 lane's interface, one operation at a time (a FIFO lane,
  like the device), service times drawn from a sampler (seconds). Signatures are
  keyed SHA-512 digests and "encryption" is a reversible XOR keystream: shaped like
  the real answers, and checkable, but not security.
- `FaultyHsm`: wraps any `Hsm` and stalls, loses, slows or fails calls on demand,
  with a deadline on every call:

      hsm = FaultyHsm(SimulatedHsm(lambda: 0.008), deadline=2.0)
      hsm.inject("stall")             # every call hangs until cleared (cause 1)
      hsm.inject("lose", count=1)     # the next call's reply is lost
      hsm.inject("slow", delay=lambda: 0.5)
      hsm.inject("fail", count=3)
      hsm.clear()

  A stalled or lost call fails with `HsmStuck` at its deadline, and the next call
  is served again unless the fault is still set, as when the lane is reset.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import trio

from hsm_adapter import Hsm
from hsm_adapter.errors import HsmError, HsmOperationError, HsmStuck

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


FaultKind = Literal["stall", "lose", "slow", "fail"]
T = TypeVar("T")


@dataclass
class Fault:
    """One injected fault: its kind, how many calls it still affects (None: all)."""

    kind: FaultKind
    count: int | None = None
    delay: Callable[[], float] | None = None  # seconds, for "slow"


class FaultyHsm:
    """`inner` with faults injected on demand and a deadline on every call."""

    def __init__(self, inner: Hsm, *, deadline: float = 2.0) -> None:
        self.inner = inner
        self.deadline = deadline
        self.faults: list[Fault] = []
        self.injected: dict[str, int] = {}  # calls each kind of fault struck

    def inject(
        self,
        kind: FaultKind,
        *,
        count: int | None = None,
        delay: Callable[[], float] | None = None,
    ) -> None:
        """Add a fault for the next `count` calls (all calls while set, if None)."""
        if kind == "slow" and delay is None:
            raise ValueError("a slow fault needs a delay sampler")
        self.faults.append(Fault(kind, count, delay))

    def clear(self, kind: FaultKind | None = None) -> None:
        """Remove every fault, or every fault of one kind."""
        self.faults = [f for f in self.faults if kind is not None and f.kind != kind]

    def _strike(self) -> Fault | None:
        for fault in self.faults:
            if fault.count is not None:
                fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
            self.injected[fault.kind] = self.injected.get(fault.kind, 0) + 1
            return fault
        return None

    async def _call(self, op: str, run: Callable[[], Awaitable[T]]) -> T:
        fault = self._strike()
        with trio.move_on_after(self.deadline):
            if fault is None:
                return await run()
            if fault.kind in ("stall", "lose"):
                # stall: the device never answers; lose: it answered, the reply is gone.
                if fault.kind == "lose":
                    await run()
                await trio.sleep_forever()
            if fault.kind == "fail":
                raise HsmOperationError(f"HSM {op}: injected failure")
            assert fault.delay is not None
            await trio.sleep(fault.delay())
            return await run()
        raise HsmStuck(f"HSM {op}: no answer within {self.deadline:g} s")

    async def sign(self, data: bytes) -> bytes:
        """`inner.sign`, through the faults."""
        return await self._call("sign", lambda: self.inner.sign(data))

    async def verify(self, data: bytes, signature: bytes) -> bool:
        """`inner.verify`, through the faults."""
        return await self._call("verify", lambda: self.inner.verify(data, signature))

    async def encrypt(self, data: bytes) -> bytes:
        """`inner.encrypt`, through the faults."""
        return await self._call("encrypt", lambda: self.inner.encrypt(data))

    async def decrypt(self, blob: bytes) -> bytes:
        """`inner.decrypt`, through the faults."""
        return await self._call("decrypt", lambda: self.inner.decrypt(blob))

    async def health(self) -> bool:
        """A live sign/verify through the faults, within the deadline."""
        try:
            return await self.verify(b"health", await self.sign(b"health"))
        except HsmError:
            return False
