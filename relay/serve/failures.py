"""Failed requests in serve's log, rate-limited.

Each request that ends in a timeout, an error or an overflow is logged at info
(`request.failed`: its outcome, the overflow's reason, the node, the CS, the
id its client gave it and how long it took in real seconds), at most `LINES` of each
outcome in a window of `WINDOW_S` real seconds, the window opening at the first
of them. Those past it are counted, and as the window ends one line says how many
(`request.failed.suppressed`): a hung node that times out thousands of requests
shows the first ones and how many followed, not a flood that buries the rest of
the log. Windows are timed on trio's clock, so a virtual clock times them as
exactly as the model's own waits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

from relay.core.request import Request
from relay.core.tier import LogSink

LINES = 5  # lines of one outcome in a window
WINDOW_S = 1.0  # real seconds


@dataclass(slots=True)
class _Window:
    """One outcome's window: when it ends (trio's clock), the lines it logged and
    the failures it counted without a line."""

    ends: float
    logged: int = 0
    suppressed: int = 0


class FailureLog:
    """Logs failed requests on `log`, at most `lines` of each outcome per `window`
    real seconds (see the module doc); `scale` is trio's seconds per real second
    (`serve --speed`). `run` says what was suppressed as each window ends."""

    def __init__(
        self, log: LogSink, scale: float = 1.0, lines: int = LINES, window: float = WINDOW_S
    ) -> None:
        self.log = log
        self._scale = scale
        self._lines = lines
        self._real_window = window
        self._window = window * scale
        self._windows: dict[str, _Window] = {}  # by outcome
        self._sleep: trio.CancelScope | None = None  # `run`'s, until a window ends

    def failed(self, req: Request, rid: int, now: float) -> None:
        """Request `req` (id `rid` on its connection) ended at `now` without
        completing: log it, or count it if its outcome's window is full."""
        assert req.outcome is not None
        outcome = req.outcome.value
        window = self._windows.get(outcome)
        if window is None or now >= window.ends:
            if window is not None:
                self._said(outcome, window, window.ends)  # before `run` wakes to
            window = self._windows[outcome] = _Window(now + self._window)
        if window.logged < self._lines:
            window.logged += 1
            about: dict[str, str] = {}
            if req.refusal is not None:
                about["reason"] = req.refusal
            if req.node > 0:  # placed on a node (or refused by it)
                about["node"] = f"relay{req.node}"  # `Node.name`
            seconds = round((now - req.arrived) / self._scale, 6)
            self.log.info(
                "request.failed", outcome=outcome, **about, cs=req.cs, id=rid, duration_s=seconds
            )
            return
        window.suppressed += 1
        sleep = self._sleep
        if window.suppressed == 1 and sleep is not None and window.ends < sleep.deadline:
            sleep.deadline = window.ends  # say so when this window ends

    async def run(self) -> None:
        """Until cancelled: as each window that suppressed lines ends, say how many;
        on cancellation (the server stopping), say what is still counted."""
        try:
            while True:
                counting = [w.ends for w in self._windows.values() if w.suppressed]
                with trio.CancelScope(deadline=min(counting, default=math.inf)) as self._sleep:
                    await trio.sleep_forever()
                self._sleep = None
                self._flush(trio.current_time())
        finally:
            self._sleep = None
            self._flush(math.inf)

    def _flush(self, by: float) -> None:
        """Say what each window ended `by` then suppressed (math.inf: every window,
        now), and close it."""
        now = trio.current_time()
        for outcome, window in list(self._windows.items()):
            if window.ends <= by:
                del self._windows[outcome]
                self._said(outcome, window, min(window.ends, now))

    def _said(self, outcome: str, window: _Window, at: float) -> None:
        """Say at `at` how many failures `window` counted without a line, if any."""
        if window.suppressed:
            self.log.info(
                "request.failed.suppressed",
                t=at,
                outcome=outcome,
                suppressed=window.suppressed,
                window_s=self._real_window,
            )
