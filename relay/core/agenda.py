"""The rule book of a run: what happens next, and when a waiting flow wakes.

Every engine runs the model by these rules and by nothing of its own, so the fast
engine and the trio engine cannot disagree: given the same tier, arrivals and
events they take the same steps in the same order and produce the same run.

When a flow wakes (`wake`): the service behind its effect says when it finishes
(`RelayTier.submit`: the HSM lane's FIFO finish, the backend's answer, a think's
end, never for a lost reply); the flow wakes then with `DONE`, or at the effect's
deadline with `UNANSWERED`, whichever comes first. A reply landing exactly on its
deadline is in time. On a real clock that cannot wake a task sooner than its
`resolution`, an effect that ends within it of now is done at once (`due_now`).

What happens next (`Agenda.next`), from earliest to latest instant, and at one
instant in this order:
1. scheduled actions and faults (the scenario's, then the ones the model decides
   on, each in the order given), then the distributor's health check, which runs
   every `health_check_s` from the run's start (check k at start + k × period);
2. flows and counter users' retries due then, in the order their waits began;
3. the next first attempt.
Actions and checks run only while work is left. A crash wakes every flow waiting
on the crashed node at the crash instant, in the order their waits began. Once
the arrivals are exhausted and nothing is due before the horizon (the last
arrival, or the latest retry any counter user decided on) plus `drain_s`, the
run ends there, cut short: what is still open then is lost (the liveness bound).

An *open* agenda (serve mode) has no arrival stream: requests come from clients,
their flows run until they must wait, and their waits join the agenda like any
other (`expect`). It never ends, and its actions and health checks run whether or
not work is left; a wait whose service answers at an instant nobody knew in
advance (a real HSM) is due at its deadline until the answer comes (`answer`).
The rules above are otherwise the same, for the same code takes the steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Final

from relay.core.events import Event, in_order
from relay.core.tier import Effect, Flow, RelayTier, Result, Retry, Wait

if TYPE_CHECKING:
    # mypyc's native 64-bit integer, for the heap's indices (plain int when run
    # interpreted: annotations are never evaluated).
    from mypy_extensions import i64

_DONE: Final = Result.DONE
_UNANSWERED: Final = Result.UNANSWERED
_INF: Final = math.inf

# What `Agenda.next` returns: the kind of the next step.
END: Final = 0  # the run is over (`cut_short` says whether the liveness bound ended it)
WAKE: Final = 1  # `waiter` wakes at `now` with `result`
RETRY: Final = 2  # a counter user tries again: `retry`
ARRIVAL: Final = 3  # a first attempt from CS `cs`
ACTION: Final = 4  # carry out `event`
CHECK: Final = 5  # the distributor's health check


def wake(finish: float, deadline: float) -> tuple[float, Result]:
    """When a flow waiting for a service that finishes at `finish`, until
    `deadline`, wakes, and with what: a reply exactly on its deadline is in time."""
    if in_time(finish, deadline):
        return finish, _DONE
    return deadline, _UNANSWERED


def in_time(finish: float, deadline: float) -> bool:
    """Whether a service finishing at `finish` answers a wait until `deadline`."""
    return finish <= deadline


def due_now(finish: float, deadline: float, now: float, resolution: float) -> bool:
    """Whether an effect that ends at min(`finish`, `deadline`) is done at once: it
    ends within a real clock's `resolution` of `now` (0 under virtual time: never)."""
    return resolution > 0.0 and min(finish, deadline) <= now + resolution


class Waiting:
    """A flow stopped at an effect it must wait for; `finish` is what the services
    said when the effect started (None: the effect is to be performed)."""

    __slots__ = ("effect", "finish")

    def __init__(self, effect: Effect, finish: float | None) -> None:
        self.effect = effect
        self.finish = finish


class Ended:
    """A flow that has ended, with the counter user's retry, if any."""

    __slots__ = ("retry",)

    def __init__(self, retry: Retry | None) -> None:
        self.retry = retry


class Carrier:
    """A driver's `advance` (`relay.engines.trio.TrioDriver`), compiled: in serve
    mode it runs for every request.

    `advance(flow, step=None, now=None)` runs `flow` from its start (at `now`,
    default `clock()`) or resumed with `step` until it must wait: effects that end
    within `resolution` of that instant (`due_now`) are done at once, and the flow
    goes on at the same instant. `finish_of` says when an effect's service
    finishes (None: the core's simulated services, `RelayTier.submit`); `settle`
    takes in a crash or an action the tier reported meanwhile, before the next
    effect is looked at."""

    __slots__ = ("clock", "finish_of", "resolution", "settle", "tier")

    def __init__(
        self,
        tier: RelayTier,
        resolution: float,
        finish_of: Callable[[Effect, float], float | None] | None,
        settle: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self.tier = tier
        self.resolution = resolution
        self.finish_of = finish_of
        self.settle = settle
        self.clock = clock

    def advance(
        self, flow: Flow, step: tuple[Result, float] | None = None, now: float | None = None
    ) -> Waiting | Ended:
        """Run `flow` until it must wait (see the class doc); the effect to wait for
        next, or how the flow ended."""
        tier, resolution, finish_of = self.tier, self.resolution, self.finish_of
        at = step[1] if step is not None else self.clock() if now is None else now
        effect = next(flow) if step is None else flow.send(step)
        while True:
            if tier.crashed or tier.agenda:
                self.settle()
            if not isinstance(effect, Wait):
                return Ended(effect)  # the flow's end
            finish = tier.submit(effect, at) if finish_of is None else finish_of(effect, at)
            if finish is None or not due_now(finish, effect.deadline, at, resolution):
                return Waiting(effect, finish)
            result = _DONE if in_time(finish, effect.deadline) else _UNANSWERED
            effect = flow.send((result, at))


class _Due:
    """One wait in the agenda: due `at`, begun `seq`-th; a flow's `waiter` wakes with
    `result` (its node: `number`), or a counter user's `retry` (no waiter) arrives.

    Ordered by (at, seq) (`__lt__`; the agenda's heap compares the two fields
    itself): compiled, comparing two of these is a comparison of two doubles, where
    a heap of tuples compared element by element through Python objects (a sixth of
    a whole day's instructions)."""

    __slots__ = ("at", "number", "result", "retry", "seq", "waiter")

    def __init__(
        self,
        at: float,
        seq: int,
        waiter: object,
        result: Result,
        retry: Retry | None,
        number: int,
    ) -> None:
        self.at = at
        self.seq = seq
        self.waiter = waiter
        self.result = result
        self.retry = retry
        self.number = number

    def __lt__(self, other: _Due) -> bool:
        return self.at < other.at or (self.at == other.at and self.seq < other.seq)


# The heap of waits, in compiled code: `heapq`'s algorithm on `_Due`s, each
# comparison two native doubles (and a native int on a tie) read from the objects,
# where `heapq` asks Python's rich comparison for each (and the module's dict for
# `heappush` itself, on every call). Any heap pops these in the same order: (at,
# seq) is a total order, seq being unique.


def _push(heap: list[_Due], item: _Due) -> None:
    """Add `item` to `heap`."""
    heap.append(item)
    _sift_down(heap, 0, len(heap) - 1)


def _pop(heap: list[_Due]) -> _Due:
    """Remove and return the earliest of `heap` (not empty)."""
    last = heap.pop()
    if not heap:
        return last
    first = heap[0]
    heap[0] = last
    _sift_up(heap, 0)
    return first


def _sift_down(heap: list[_Due], start: i64, pos: i64) -> None:
    # heapq's _siftdown: move heap[pos] up towards `start` while it is earlier than
    # its parent.
    item = heap[pos]
    at, seq = item.at, item.seq
    while pos > start:
        parentpos = (pos - 1) >> 1
        parent = heap[parentpos]
        if at < parent.at or (at == parent.at and seq < parent.seq):
            heap[pos] = parent
            pos = parentpos
            continue
        break
    heap[pos] = item


def _sift_up(heap: list[_Due], pos: i64) -> None:
    # heapq's _siftup: move the smaller child up until a leaf, then put heap[pos]'s
    # item there and sift it down (fewer comparisons than stopping early).
    end: i64 = len(heap)
    start = pos
    item = heap[pos]
    child = 2 * pos + 1
    while child < end:
        right = child + 1
        if right < end:
            a, b = heap[child], heap[right]
            if not (a.at < b.at or (a.at == b.at and a.seq < b.seq)):
                child = right
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    heap[pos] = item
    _sift_down(heap, start, pos)


class Agenda:
    """The steps of one run in order: a heap of waits, the arrival stream, the
    scheduled actions and the health checks (the module doc has the rules).

    `next()` returns the next step's kind and sets its details as attributes; the
    engine carries the step out, reports what the flow did (`wait`, `ended`), and
    calls `settle()` after every step so crashes and the model's own actions are
    taken into account before the next one.
    """

    def __init__(
        self,
        tier: RelayTier,
        arrivals: Iterable[tuple[float, int]],
        events: Iterable[Event] = (),
        start: float = 0.0,
        open: bool = False,
    ) -> None:
        """The steps of a run of `tier` beginning at `start`: first attempts from
        `arrivals` (time, CS), and `events`; `open`: serve mode (the module doc)."""
        self.tier = tier
        self.open = open
        self._start = start
        # Waits, earliest first (`_Due` orders them): a waiting flow, or a counter
        # user's retry (waiter None).
        self._heap: list[_Due] = []
        self._stale: set[int] = set()  # waits a crash moved earlier
        self._seq = 0
        self._controls: list[tuple[float, int, Event]] = []
        self._controls_seq = 0
        for event in in_order(list(events)):
            self._control(event)
        self._period = tier.params.health_check_s
        self._checks = 1  # the next health check is number k, at k * period
        self._drain = tier.params.drain_s
        self._next_control = _INF
        self._feed: Iterator[tuple[float, int]] = iter(arrivals)
        self._t_arrival = _INF
        self._cs_next = 0
        # The latest instant load is known to arrive at: the last arrival so far,
        # or a retry some counter user has already decided on.
        self.horizon = -_INF
        self._advance_feed()
        self._update_control()
        # The current step, for the engine.
        self.now = 0.0
        self.waiter: object = None
        self.result: Result = _DONE
        self.retry: Retry | None = None
        self.cs = 0
        self.event: Event | None = None
        self.arrivals = 0  # first attempts handed out so far
        self.cut_short = False

    # -- the order of steps ------------------------------------------------------

    def next(self) -> int:
        """The next step of the run (END, WAKE, RETRY, ARRIVAL, ACTION or CHECK)."""
        heap, stale = self._heap, self._stale
        while True:
            t_arrival = self._t_arrival
            if heap and heap[0].at <= t_arrival:
                t = heap[0].at
                if t_arrival == _INF and t > self.horizon + self._drain and not self.open:
                    self.now, self.cut_short = self.horizon + self._drain, True
                    return END
            elif t_arrival < _INF:
                t = t_arrival
            elif self.open:
                t = _INF  # an open agenda: its actions and checks, whatever the load
            else:
                return END  # no load left and every flow has ended
            if t >= self._next_control:
                # An action or a health check is due first; a crash there may move
                # waits before t, so the engine settles and asks again.
                self.now = self._next_control
                if self._controls and self._controls[0][0] <= self.now:
                    self.event = heappop(self._controls)[2]
                    self._update_control()
                    return ACTION
                self._checks += 1
                self._update_control()
                return CHECK
            self.now = t
            if heap and heap[0].at == t:
                due = _pop(heap)
                if stale and due.seq in stale:
                    stale.discard(due.seq)
                    continue
                if due.waiter is None:
                    self.retry = due.retry
                    return RETRY
                self.waiter, self.result = due.waiter, due.result
                return WAKE
            self.cs = self._cs_next
            self.arrivals += 1
            self._advance_feed()
            return ARRIVAL

    def _advance_feed(self) -> None:
        nxt = next(self._feed, None)
        if nxt is None:
            self._t_arrival = _INF
        else:
            self._t_arrival, self._cs_next = nxt
            self.horizon = nxt[0]

    def peek(self) -> float:
        """The instant of the step `next()` would take (math.inf: none; -math.inf:
        the run is over), without taking it."""
        heap, stale = self._heap, self._stale
        while heap and stale and heap[0].seq in stale:
            stale.discard(_pop(heap).seq)
        t_arrival = self._t_arrival
        if heap and heap[0].at <= t_arrival:
            t = heap[0].at
            if t_arrival == _INF and t > self.horizon + self._drain and not self.open:
                return self.horizon + self._drain
        elif t_arrival < _INF:
            t = t_arrival
        elif self.open:
            t = _INF
        else:
            return -_INF
        return min(t, self._next_control)

    def _update_control(self) -> None:
        event_at = self._controls[0][0] if self._controls else _INF
        self._next_control = min(event_at, self._start + self._period * self._checks)

    def _control(self, event: Event) -> None:
        self._controls_seq += 1
        heappush(self._controls, (event.at, self._controls_seq, event))

    # -- what the engine reports ------------------------------------------------------

    def wait(self, waiter: object, effect: Effect, now: float) -> int:
        """`waiter` (a flow, or what carries it) waits on `effect` from `now`: it
        wakes as `wake` says. The wait's number (for `answer`)."""
        return self.expect(waiter, effect, self.tier.submit(effect, now))

    def expect(self, waiter: object, effect: Effect, finish: float) -> int:
        """`waiter` waits on `effect`, whose service said it finishes at `finish`
        (math.inf: never, or not known yet: a real device's call, ended by
        `answer`): it wakes as `wake` says. The wait's number."""
        deadline, number = effect.deadline, effect.node.number
        self._seq += 1
        if finish <= deadline:
            _push(self._heap, _Due(finish, self._seq, waiter, _DONE, None, number))
        else:
            _push(self._heap, _Due(deadline, self._seq, waiter, _UNANSWERED, None, number))
        return self._seq

    def answer(self, seq: int, waiter: object, number: int, now: float, result: Result) -> None:
        """Wait number `seq` (of `waiter`, on node `number`) ends at `now` with
        `result`: its service answered before its deadline."""
        self._stale.add(seq)
        self._seq += 1
        _push(self._heap, _Due(now, self._seq, waiter, result, None, number))

    def ended(self, retry: Retry | None) -> None:
        """A flow ended; the counter user tries again at `retry.at`, if at all."""
        if retry is not None:
            if retry.at > self.horizon:
                self.horizon = retry.at
            self._seq += 1
            _push(self._heap, _Due(retry.at, self._seq, None, _DONE, retry, 0))

    def settle(self) -> None:
        """Take in what the last step changed: the actions the model scheduled
        (operators reacting to a failure) join the schedule, and every flow waiting
        on a node that crashed wakes now, in the order its wait began."""
        tier = self.tier
        if tier.agenda:
            for event in tier.agenda:
                self._control(event)
            tier.agenda.clear()
            self._update_control()
        if not tier.crashed:
            return
        crashed = {node.number for node in tier.crashed}
        tier.crashed.clear()
        moved = sorted(
            (
                due
                for due in self._heap
                if due.waiter is not None and due.number in crashed and due.seq not in self._stale
            ),
            key=lambda due: due.seq,
        )
        for due in moved:
            self._stale.add(due.seq)
            self._seq += 1
            _push(self._heap, _Due(self.now, self._seq, due.waiter, _UNANSWERED, None, due.number))

    @property
    def pending(self) -> bool:
        """Whether the last step left something for `settle` to do (a crash, or an
        action the model scheduled): engines skip the call when not."""
        return bool(self.tier.crashed or self.tier.agenda)
