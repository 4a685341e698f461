"""The hardware-monitoring agent and the CPU cores it interrupts.

Every `period` seconds (from a per-node phase) the agent's status check arrives as an
interrupt on one of the node's K cores and occupies it for `handling` seconds. Each
HSM reply is an interrupt too, processed on one core for `interrupt` seconds. Cause 1
is a probe landing on the core while it processes an HSM reply.

Probe times and cores are a pure function of (node salt, probe number), so the
question "did a probe hit this core during [t, t + interrupt)?" is answered in O(1)
without a timer task per node, identically in every driver.
"""

from __future__ import annotations

import math

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of `x`."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class Monitor:
    """The monitoring agent on one node (disabled: it never probes)."""

    __slots__ = ("cores", "enabled", "handling", "period", "phase", "salt")

    def __init__(
        self, *, enabled: bool, period: float, handling: float, cores: int, phase: float, salt: int
    ) -> None:
        self.enabled = enabled
        self.period = period
        self.handling = handling
        self.cores = cores
        self.phase = phase
        self.salt = salt

    def probe_core(self, k: int) -> int:
        """The core that probe number `k` lands on."""
        return _mix(self.salt ^ k) % self.cores

    def collides(self, core: int, start: float, duration: float) -> bool:
        """Whether a probe occupies `core` at some instant of [start, start + duration)."""
        if not self.enabled:
            return False
        # Probe k occupies [phase + kP, phase + kP + handling).
        first = math.floor((start - self.handling - self.phase) / self.period) + 1
        last = math.ceil((start + duration - self.phase) / self.period) - 1
        if last < first:  # the usual case: no probe overlaps the window at all
            return False
        return any(self.probe_core(k) == core for k in range(max(first, 0), last + 1))
