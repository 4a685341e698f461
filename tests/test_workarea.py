"""The work-area allocator: strict about every free."""

import pytest

from relay.core.workarea import AllocatorError, WorkAreaAllocator


def test_allocate_then_free_balances() -> None:
    """Allocating and freeing each area once leaves nothing live and counts both."""
    a = WorkAreaAllocator()
    handles = [a.allocate() for _ in range(3)]
    for h in handles:
        a.free(h)
    assert (a.allocs, a.frees, a.live) == (3, 3, 0)


def test_free_of_never_allocated_area_raises() -> None:
    """Freeing an area the request never got (cause 2's termination path) raises."""
    a = WorkAreaAllocator()
    with pytest.raises(AllocatorError, match="never allocated"):
        a.free(None)
    with pytest.raises(AllocatorError, match="never allocated"):
        a.free(42)


def test_double_free_raises() -> None:
    """Freeing the same area twice raises and does not count the second free."""
    a = WorkAreaAllocator()
    h = a.allocate()
    a.free(h)
    with pytest.raises(AllocatorError, match="already freed"):
        a.free(h)
    assert a.frees == 1


def test_reset_drops_live_areas() -> None:
    """A process restart drops the live areas and reports how many."""
    a = WorkAreaAllocator()
    a.allocate()
    a.allocate()
    assert a.reset() == 2
    assert a.live == 0
