"""The relay application's work areas: one per request, allocated then freed.

The allocator is strict, like a debugging heap: freeing an area that was never
allocated, or one already freed, raises `AllocatorError`. On the legacy design that
is exactly how cause 2 kills the application (the termination path frees an area the
request never got).
"""

from __future__ import annotations


class AllocatorError(Exception):
    """A free of a work area that was never allocated or is already free."""


class WorkAreaAllocator:
    """Hands out work-area handles and checks every free against them."""

    __slots__ = ("_live", "_next", "allocs", "frees")

    def __init__(self) -> None:
        self._next = 1
        self._live: set[int] = set()
        self.allocs = 0
        self.frees = 0

    def allocate(self) -> int:
        """A fresh work area's handle."""
        handle = self._next
        self._next += 1
        self._live.add(handle)
        self.allocs += 1
        return handle

    def free(self, handle: int | None) -> None:
        """Free `handle`; None or an unknown or freed handle raises AllocatorError."""
        if handle is None:
            raise AllocatorError("free of a work area that was never allocated")
        try:
            self._live.remove(handle)
        except KeyError:
            kind = "already freed" if 0 < handle < self._next else "never allocated"
            raise AllocatorError(f"free of work area {handle}, {kind}") from None
        self.frees += 1

    @property
    def live(self) -> int:
        """Areas allocated and not yet freed."""
        return len(self._live)

    def reset(self) -> int:
        """Drop every live area (the process restarted); returns how many were dropped."""
        dropped = len(self._live)
        self._live.clear()
        return dropped
