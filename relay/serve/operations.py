"""The requests serve admits and the counter operations they make up, apart from
the sockets that carry them (`relay.serve.server` reads the frames and writes
what the outboxes hold).

Each request frame becomes one message of the core (`RelayTier.admit`), carried
by the trio driver until its outcome and answered with one reply frame: at once
when it needs no wait (`admit`), else when the driver's conductor says it ended
(a device's answer, a queue). An operation of several messages (`Operation`)
holds its key, its connection and its flow from its first message to its end:
between two messages the flow waits on its client's next message, for at most
the idle timeout; a message with its key that cannot be the next one is refused
with `KEY_IN_USE` or `WRONG_CONTINUATION` and leaves the operation untouched.
Nothing admitted is lost: a request whose connection has gone still ends and
records its outcome; only its reply goes undelivered.
"""

from __future__ import annotations

import functools
import math
from collections import Counter

import trio

from relay.core.agenda import Ended, Waiting
from relay.core.node import Node
from relay.core.request import Outcome, Request
from relay.core.tier import Effect, Flow, RelayTier, Result
from relay.engines.trio import TrioDriver
from relay.serve.connection import Connection, Outbox, ServerStats
from relay.serve.failures import FailureLog
from relay.serve.protocol import STATUS_OF, ErrorCode, Frame, Type, encode_frame, error_frame

# Read on every request: module constants, not lookups on enum classes.
_REPLY = Type.REPLY
_COMPLETED = Outcome.COMPLETED
_COMPLETED_STATUS = STATUS_OF[_COMPLETED]


class Operation:
    """A counter operation of several messages, from its first message to its end,
    under its key: whose it is (the connection, so the port, and the municipality),
    how many messages it has left (the next one included), and, between two of
    them, its flow parked for the client's next message until `expires`."""

    __slots__ = ("conn", "expires", "flow", "key", "left", "muni", "think")

    def __init__(self, key: bytes, conn: Connection, muni: int, left: int) -> None:
        self.key = key
        self.conn = conn
        self.muni = muni
        self.left = left
        self.flow: Flow | None = None  # None while one of its messages runs
        self.think: Effect | None = None  # what its flow waits on between messages
        self.expires = math.inf

    def contradiction(self, conn: Connection, frame: Frame) -> tuple[ErrorCode, str] | None:
        """Why `frame`, with this operation's key, cannot be its next message, if so."""
        if self.flow is None:
            return ErrorCode.KEY_IN_USE, (
                "key in use: its operation's message is still running; "
                "send the next message after its reply"
            )
        if conn is not self.conn:
            return ErrorCode.WRONG_CONTINUATION, (
                "the operation continues on the connection it began on"
            )
        if frame.muni != self.muni:
            return ErrorCode.WRONG_CONTINUATION, (
                f"the operation is municipality {self.muni}'s, not {frame.muni}'s"
            )
        if max(frame.left, 1) != self.left:
            return ErrorCode.WRONG_CONTINUATION, (
                f"the operation has {self.left} messages left, this one included; "
                f"flags says {frame.left}"
            )
        return None


class Operations:
    """The requests admitted on a server's connections and the operations they
    belong to (see the module doc)."""

    def __init__(
        self,
        tier: RelayTier,
        driver: TrioDriver,
        stats: ServerStats,
        failures: FailureLog,
        idle_timeout: float,
    ) -> None:
        """`idle_timeout`: how long, on the driver's clock, an operation waits for its
        client's next message."""
        self.tier = tier
        self.driver = driver
        self.stats = stats
        self.failures = failures  # failed requests logged, rate-limited
        self.idle_timeout = idle_timeout
        self.ops: dict[bytes, Operation] = {}  # operations of several messages, by key
        self.in_flight = 0  # requests admitted and not yet ended
        self.idle = trio.Event()  # set while none is
        self.idle.set()
        self.closed = False  # no next message is admitted (`close`)
        # Where replies that come later are written from (`Outbox.kick`), once set.
        self.work: trio.Nursery | None = None
        # (instant, CS) of each request admitted, when someone keeps them (a hunt)
        self.admitted: list[tuple[float, int]] | None = None

    @property
    def between_messages(self) -> int:
        """Operations waiting for their client's next message."""
        return sum(op.flow is not None for op in self.ops.values())

    def between_by_municipality(self) -> dict[int, int]:
        """Operations waiting for their client's next message, by municipality."""
        held = Counter(op.muni for op in self.ops.values() if op.flow is not None)
        return dict(sorted(held.items()))

    def close(self, now: float) -> None:
        """Admit no next message: the operations between messages end now (their CS
        connections close), those on a message when it ends."""
        self.closed = True
        self.expire(now, everything=True)

    def admit(self, conn: Connection, frame: Frame, at: Node | None, now: float) -> None:
        """Start `frame`'s request, which arrived at `now`: a new operation's first
        message, or the next message of an operation waiting for it (same key, same
        client: else an error frame for it, and the operation is untouched). Answer
        it at once if it ends without waiting (the reader flushes), else hand it to
        the driver's conductor."""
        outbox, key = conn.outbox, frame.key
        op = self.ops.get(key)
        if op is not None:
            refused = op.contradiction(conn, frame)
            if refused is not None:
                code, message = refused
                self.stats.rejected[code.name] += 1
                outbox.put(error_frame(code, message, frame.id), reply=False)
                return
        if self.admitted is not None:
            self.admitted.append((now, frame.muni))
        try:
            if op is not None:  # the client's next message: the operation goes on
                assert op.flow is not None
                assert op.think is not None
                flow, op.flow, op.expires = op.flow, None, math.inf
                state = self.driver.advance(flow, (Result.DONE, now))
                req = op.think.request  # the think's end opened the next message
                assert req is not None
            else:
                messages = frame.left if frame.left > 1 else 1
                req, flow = self.tier.admit(frame.muni, 0, now, at, messages)
                if messages > 1:  # the key is the operation's until it ends
                    op = self.ops[key] = Operation(key, conn, frame.muni, messages)
                    conn.ops.add(key)
                state = self.driver.advance(flow, None, now)
        except Exception as exc:
            outbox.queue(self._failed(frame, exc))
            return
        if isinstance(state, Ended):  # the commonest: it ended without a wait
            outbox.queue(self._reply(frame, req))
            if op is not None:
                self._end(op)
            return
        if not state.effect.client():
            # It must wait (a device, a queue): the driver's conductor carries it on
            # and says when its message ends (`_ended`).
            assert self.work is not None
            outbox.owed += 1
            self.in_flight += 1
            if self.in_flight == 1:
                self.idle = trio.Event()
            ended = functools.partial(self._ended, outbox, frame, req, flow, op)
            self.driver.follow(flow, state, ended)
            return
        # Its message ended at once: its client's turn.
        outbox.queue(self._reply(frame, req))
        self._between(op, flow, state)

    def _ended(
        self,
        outbox: Outbox,
        frame: Frame,
        req: Request,
        flow: Flow,
        op: Operation | None,
        state: Waiting | Ended | Exception,
    ) -> None:
        """A message the conductor carried on has ended (the operation's end, or a
        think before its next message, which is the client's to send; or a bug in
        it): its reply goes out."""
        if isinstance(state, Exception):
            reply = self._failed(frame, state)
        else:
            try:
                reply = self._reply(frame, req)
                self._between(op, flow, state)
            except Exception as exc:
                reply = self._failed(frame, exc)
        outbox.queue(reply)
        assert self.work is not None
        outbox.kick(self.work)
        outbox.answered()
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    def _between(self, op: Operation | None, flow: Flow, state: Waiting | Ended) -> None:
        """After a message of operation `op` (None: an operation of one message):
        one with messages to come waits for the client's next (same key, same
        client), holding its CS connection, for at most the idle timeout; once
        `closed` (the server stopping) no next message is admitted, and a closed
        connection brings none, so either ends it at once."""
        if op is None:
            return
        if type(state) is not Waiting:
            self._end(op)
            return
        op.flow, op.left = flow, op.left - 1
        op.think = state.effect
        if self.closed or op.conn.gone or op.conn.closing is not None:
            self._end(op, abandoned=True)
            return
        op.expires = trio.current_time() + self.idle_timeout

    def orphan(self, conn: Connection) -> None:
        """`conn` admits no more (closing or closed): none of the operations begun on
        it gets a next message. Those between messages end now (their CS connections
        close), those on a message when it ends (`_between`)."""
        parked = [self.ops[k] for k in conn.ops if self.ops[k].flow is not None]
        for op in parked:
            self._end(op, abandoned=True)

    def _end(self, op: Operation, abandoned: bool = False) -> None:
        """Forget operation `op` (its key is free again); `abandoned`: end its flow,
        parked for a next message that will not come (its CS connection closes)."""
        del self.ops[op.key]
        op.conn.ops.discard(op.key)
        if abandoned:
            assert op.flow is not None
            self.stats.abandoned += 1
            self.driver.advance(op.flow, (Result.ABANDONED, trio.current_time()))

    def expire(self, now: float, everything: bool = False) -> float:
        """Abandon the operations whose client has not sent the next message within
        the idle timeout (or all those between messages); when the next of the
        others expires."""
        parked = [op for op in self.ops.values() if op.flow is not None]
        soonest = math.inf
        for op in parked:
            if everything or now >= op.expires:
                self._end(op, abandoned=True)
            else:
                soonest = min(soonest, op.expires)
        return soonest

    def _reply(self, frame: Frame, req: Request) -> bytes:
        """The reply to `frame` carrying its request's outcome (an overflow's body:
        why it was refused), encoded."""
        outcome = req.outcome
        if outcome is _COMPLETED:  # the commonest, without a lookup
            return encode_frame(_REPLY, frame.id, frame.key, frame.muni, _COMPLETED_STATUS)
        if outcome is None:
            return self._failed(frame, RuntimeError(f"request {req.id} ended without an outcome"))
        self.failures.failed(req, frame.id, self.driver.now())
        why = req.refusal
        body = b"" if why is None else why.encode()
        return encode_frame(_REPLY, frame.id, frame.key, frame.muni, STATUS_OF[outcome], body)

    def _failed(self, frame: Frame, exc: Exception) -> bytes:
        """An INTERNAL error for `frame`, whose request hit a bug: the request stays
        open in the ledger (the accounting checker and relaysim_in_flight show it);
        this client gets an error, the others go on being served."""
        self.stats.rejected[ErrorCode.INTERNAL.name] += 1
        self.tier.log.info("serve.request_failed", id=frame.id, error=repr(exc))
        return error_frame(ErrorCode.INTERNAL, "internal error", frame.id).encode()
