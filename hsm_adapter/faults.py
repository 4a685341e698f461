"""A fault-injecting wrapper around any HSM: the January failures, on demand.

    hsm = FaultyHsm(SimulatedHsm(...), deadline=2.0)
    hsm.inject("stall")             # every call hangs until cleared (cause 1)
    hsm.inject("lose", count=1)     # the next call's reply is lost
    hsm.inject("slow", delay=lambda: 0.5)
    hsm.inject("fail", count=3)
    hsm.clear()

Faults can be set and cleared while calls are running (serve mode's live fault
injection uses this). Every call through the wrapper has a deadline: a stalled or
lost call fails with `HsmStuck` when it passes, and the next call is served again
unless the fault is still set, as when the lane is reset.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import trio

from hsm_adapter import Hsm
from hsm_adapter.errors import HsmError, HsmOperationError, HsmStuck

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
