"""The fast driver: runs the relay tier's flows on a discrete-event loop.

Same flows, same core, same decisions as `relay.engines.trio`; only the waiting
differs. Where the trio driver parks one task per request in a cancel scope, this
driver keeps one heap of wake-ups: when a flow yields an effect, the simulated
service says when it will finish, and the flow is resumed at that instant or at the
effect's deadline, whichever comes first (a reply landing exactly on the deadline
counts as in time). A crash moves the wake-ups of every flow waiting on the crashed
node to the crash instant, as the trio driver cancels their scopes.

Periodic and scheduled work (health checks every `dispatcher.health_check_s` from
t = 0, operator actions, fault injections) runs before any flow event at a later
instant, and only while the run has work left: the run ends when the load has
stopped and every request has its outcome, or at the liveness bound `drain_s` after
the last arrival, exactly as under trio.

Events at the same instant are taken in the order they were scheduled, so a run is
a pure function of the scenario and its seed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from typing import cast

from relay.core.events import FaultEvent, OperatorEvent
from relay.core.tier import CallBackend, CallHsm, Flow, RelayTier, Result, Retry, Think
from relay.engines.common import PROGRESS_EVERY, Progress, RunEnd

_DONE = Result.DONE
_DEADLINE = Result.DEADLINE


class FastDriver:
    """Drives one RelayTier through a stream of arrivals and operator events."""

    def __init__(self, tier: RelayTier, *, progress: Progress | None = None) -> None:
        self.tier = tier
        self._progress = progress
        # Wake-ups: (time, seq, flow, result, node number) for a waiting flow, or
        # (time, seq, None, retry, 0) for a counter user's retry.
        self._heap: list[tuple[float, int, Flow | None, Result | Retry, int]] = []
        self._stale: set[int] = set()  # wake-ups a crash moved earlier
        self._controls: list[tuple[float, int, OperatorEvent | FaultEvent]] = []
        self._controls_seq = 0

    def run(
        self,
        arrivals: Iterable[tuple[float, int]],
        events: Iterable[OperatorEvent | FaultEvent] = (),
    ) -> RunEnd:
        """Feed `arrivals` (time, CS) and scheduled `events`; return when the run is over."""
        # One loop, locals only: this is the per-request path of a whole-day replay.
        tier = self.tier
        heap, stale = self._heap, self._stale
        push, pop = heapq.heappush, heapq.heappop
        arrive, backend_submit = tier.arrive, tier.backend.submit
        progress = self._progress
        drain = tier.params.drain_s
        period = tier.params.health_check_s
        # Operator actions and faults: the scenario's, then those the model schedules
        # (tier.agenda), in time order; equal times keep their order.
        controls = self._controls
        for event in sorted(events, key=lambda e: e.at):
            self._control(event)
        inf = math.inf
        next_event = controls[0][0] if controls else inf
        checks = 1  # health check number k runs at k * period
        next_control = min(next_event, period)

        feed = iter(arrivals)
        first = next(feed, None)
        t_arrival, cs = first if first is not None else (inf, 0)
        # The latest instant at which load is known to arrive: the last arrival so
        # far, or a retry some counter user has already decided on.
        horizon = t_arrival if first is not None else -inf
        count = seq = 0
        now = 0.0
        cut_short = False
        flow: Flow | None
        sent: Result | None
        while True:
            # The next instant: a wake-up, or the next arrival (wake-ups first on ties).
            if heap and heap[0][0] <= t_arrival:
                t = heap[0][0]
                if t_arrival == inf and t > horizon + drain:
                    now, cut_short = horizon + drain, True  # the liveness bound
                    break
            elif t_arrival < inf:
                t = t_arrival
            else:
                break  # no load left and every flow has ended
            if t >= next_control:
                # A health check or scheduled action is due first; a crash there may
                # move wake-ups before t, so choose again afterwards.
                now = next_control
                if next_event <= now:
                    tier.handle(heapq.heappop(controls)[2], now)
                else:
                    tier.health_check(now)
                    checks += 1
                if tier.crashed or tier.agenda:
                    seq = self._notice(now, seq)
                next_event = controls[0][0] if controls else inf
                next_control = min(next_event, period * checks)
                continue
            now = t
            if heap and heap[0][0] == t:
                _, number, flow, what, _ = pop(heap)
                if stale and number in stale:
                    stale.discard(number)
                    continue
                if flow is None:  # a counter user tries again: a new request
                    retry = cast(Retry, what)
                    flow, sent = tier.again(retry), None
                else:
                    sent = cast(Result, what)
            else:
                flow, sent = arrive(cs, 0, t), None
                count += 1
                if progress is not None and count % PROGRESS_EVERY == 0:
                    progress(t, tier)
                nxt = next(feed, None)
                if nxt is None:
                    t_arrival = inf
                else:
                    t_arrival, cs = nxt
                    horizon = t_arrival
            # Resume the flow (start it, for a new request) until its next effect.
            try:
                effect = next(flow) if sent is None else flow.send((sent, t))
            except StopIteration as stop:
                again: Retry | None = stop.value
                if again is not None:
                    if again.at > horizon:
                        horizon = again.at
                    seq += 1
                    push(heap, (again.at, seq, None, again, 0))
            else:
                node = effect.node
                kind = type(effect)
                if kind is CallHsm:
                    finish = node.hsm.submit(t)
                elif kind is CallBackend:
                    finish = backend_submit(t)
                elif kind is Think:  # the counter resumes at its deadline
                    finish = effect.deadline
                else:  # LostReply: nothing will answer before the deadline
                    finish = inf
                seq += 1
                if finish <= effect.deadline:
                    push(heap, (finish, seq, flow, _DONE, node.number))
                else:
                    push(heap, (effect.deadline, seq, flow, _DEADLINE, node.number))
            if tier.crashed or tier.agenda:
                seq = self._notice(t, seq)
                next_event = controls[0][0] if controls else inf
                next_control = min(next_event, period * checks)
        if progress is not None:
            progress(now, tier)
        return RunEnd(0.0, now, cut_short)

    def _control(self, event: OperatorEvent | FaultEvent) -> None:
        self._controls_seq += 1
        heapq.heappush(self._controls, (event.at, self._controls_seq, event))

    def _notice(self, now: float, seq: int) -> int:
        """Act on what the model reported: schedule the actions it decided on, and
        resume at `now` every flow waiting on a crashed node (they see the crash).

        Returns the last sequence number used. Crashes are rare, so scanning the heap
        here beats keeping a per-node index of waiting flows on every request.
        """
        while self.tier.agenda:
            self._control(self.tier.agenda.pop(0))
        if not self.tier.crashed:
            return seq
        crashed = {node.number for node in self.tier.crashed}
        self.tier.crashed.clear()
        moved = [
            entry
            for entry in self._heap
            if entry[2] is not None and entry[4] in crashed and entry[1] not in self._stale
        ]
        for _, old, flow, _, number in moved:
            self._stale.add(old)
            seq += 1
            heapq.heappush(self._heap, (now, seq, flow, _DEADLINE, number))
        return seq


def run(
    tier: RelayTier,
    arrivals: Iterable[tuple[float, int]],
    events: Iterable[OperatorEvent | FaultEvent] = (),
    *,
    progress: Progress | None = None,
) -> RunEnd:
    """Run a whole replay on the discrete-event loop; deterministic by construction."""
    return FastDriver(tier, progress=progress).run(arrivals, events)
