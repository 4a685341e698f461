"""The OS timer behind each relay step, at the resolution the OS keeps.

The application arms a timer per request and resets it when the step ends. The OS
works in ticks (`resolution`, 15.625 ms on Windows by default): a reset that lands in
the same tick as the timer's expiry is "at the same instant", the window in which the
incident's OS could drop the reset and leave the timeout notification pending
(cause 2). This module judges that window; what a pending notification does to the
next request is the node's business and depends on the design.
"""

from __future__ import annotations


class OsTimer:
    """One node's relay-step timer: arms deadlines, judges same-tick resets."""

    __slots__ = ("pending", "resolution", "same_tick_resets", "timeout")

    def __init__(self, timeout: float, resolution: float) -> None:
        self.timeout = timeout
        self.resolution = resolution
        self.same_tick_resets = 0  # how often the race window was reached
        self.pending = 0  # timeout notifications left pending by a dropped reset

    def arm(self, now: float) -> float:
        """Start the timer for a step beginning at `now`; returns its expiry."""
        return now + self.timeout

    def reset(self, now: float, expiry: float, *, scoped: bool) -> bool:
        """Reset at `now` a timer expiring at `expiry`; True if the reset was dropped.

        A reset in the expiry's tick counts as reaching the race window. With a
        request-scoped timer (the fixed design) nothing can be dropped: the deadline
        dies with its request.
        """
        r = self.resolution
        # Not in the expiry's OS tick. A step that ends more than four ticks before
        # its expiry (nearly every one) is judged without the two float floor
        # divisions (an fmod each; 3% of a day): ticks that far apart cannot share
        # a floor, however the divisions round.
        if expiry - now > 4.0 * r or now // r != expiry // r:
            return False
        self.same_tick_resets += 1
        if scoped:
            return False
        self.pending += 1
        return True
