"""The fast engine: the relay tier's flows on a discrete-event loop.

Same flows, same core, same rules as `relay.engines.trio`: the order of steps, when
a flow wakes and with what, the health checks, the liveness bound, a crash's
clean-up are all the core's (`relay.core.agenda`). This engine only carries the
steps out, resuming each flow itself; there is no task, no clock, nothing to wait
for, so a whole day runs in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from relay.core.agenda import ACTION, ARRIVAL, END, RETRY, WAKE, Agenda
from relay.core.events import Event
from relay.core.request import Request
from relay.core.tier import Flow, RelayTier, Retry, Wait
from relay.engines.common import PROGRESS_EVERY, Progress, RunEnd


def run(
    tier: RelayTier,
    arrivals: Iterable[tuple[float, int]],
    events: Iterable[Event] = (),
    *,
    progress: Progress | None = None,
    observe: Callable[[Request, Flow], Flow] | None = None,
) -> RunEnd:
    """Run a whole replay on the discrete-event loop; deterministic by construction.
    `observe` wraps each new flow, given its first message (a timeline's recorder: it
    sees every effect and resumption, and changes none)."""
    agenda = Agenda(tier, arrivals, events)
    # The per-request path of a whole-day replay. Methods are called on their
    # objects, never through bound-method locals: compiled, `agenda.next()` is a
    # direct C call, while a bound method goes through Python's calling convention.
    # The tier's reports (crashed nodes, actions it scheduled): lists it fills and
    # the agenda empties, so these names stay valid; a step checks them directly.
    crashed, todo = tier.crashed, tier.agenda
    flow: Flow
    while True:
        kind = agenda.next()
        if kind == END:
            break
        now = agenda.now
        if kind == WAKE:  # the commonest step first
            flow = cast(Flow, agenda.waiter)
            sent = True
        elif kind == ARRIVAL:
            req, flow = tier.arrive(agenda.cs, 0, now)
            if observe is not None:
                flow = observe(req, flow)
            sent = False
            if progress is not None and agenda.arrivals % PROGRESS_EVERY == 0:
                progress(now, tier)
        elif kind == RETRY:
            req, flow = tier.again(cast(Retry, agenda.retry))
            if observe is not None:
                flow = observe(req, flow)
            sent = False
        elif kind == ACTION:
            event = agenda.event
            assert event is not None
            tier.handle(event, now)
            if crashed or todo:
                agenda.settle()
            continue
        else:  # CHECK
            tier.health_check(now)
            if crashed or todo:
                agenda.settle()
            continue
        # Resume the flow (start it, for a new request) until its next effect or
        # its end.
        step = flow.send((agenda.result, now)) if sent else next(flow)
        if isinstance(step, Wait):
            agenda.wait(flow, step, now)
        else:
            agenda.ended(step)
        if crashed or todo:
            agenda.settle()
    if progress is not None:
        progress(agenda.now, tier)
    return RunEnd(0.0, agenda.now, agenda.cut_short)
