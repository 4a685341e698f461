"""The PKCS#11 lane: one worker process owns the token; trio feeds it in batches.

    async with open_pkcs11(TokenConfig(), deadline=2.0) as hsm:
        signature = await hsm.sign(b"...")

Calls from any number of trio tasks go into one queue. A sender task takes
everything queued as one batch frame to the worker's stdin; a receiver task takes
result frames from its stdout and wakes the callers. So the per-call cost on the
trio side is a queue append and a park, and the pipe carries one frame per batch
each way instead of a thread hop per call. A caller that waits on more than the
lane (the relay's driver: a flow's deadline, its node's crash) submits without
awaiting (`submit`) and is told the result (`Waiter.answered`), so that it needs no
cancel scope of its own around the call.

Every call has a deadline, watched by one watchdog task (calls are due in the order
they were made, so it need only watch the oldest): a call that passes it declares
the lane **stuck**: every
caller waiting on it fails at once with `HsmStuck`, new calls fail fast with
`HsmUnavailable`, the worker is killed (a process can be; a thread in C cannot) and
a new one re-opens the token and keys. A worker that exits by itself (or is killed
from outside) fails the calls in it with `HsmLost`, and is replaced the same way.
`state` and `history` report each step (starting, ready, stuck, restarting,
failed), and `answered` and `failed` count each call's time from its submission
into buckets (`TOKEN_BUCKETS`): one bucket increment a call, no sample kept. This
is cause 1 of January 2016 in
the real world, and the design's answer to it: a silent HSM costs one deadline,
not the relay.
"""

from __future__ import annotations

import enum
import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from subprocess import PIPE
from typing import Any, Protocol

import outcome
import structlog
import trio

from hsm_adapter import wire
from hsm_adapter.errors import (
    HsmError,
    HsmLost,
    HsmOperationError,
    HsmSetupError,
    HsmStuck,
    HsmUnavailable,
)
from hsm_adapter.token import WORKER, TokenConfig, TokenError
from relay.core.ledger import LatencyHistogram

#: Token-call duration bounds, seconds: SoftHSM2 signs in a fraction of a ms alone,
#: a few ms behind 64 callers (docs/hsm.md); up past the default 2 s deadline.
TOKEN_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class LaneState(enum.Enum):
    """Where the lane is in its life."""

    STARTING = "starting"
    READY = "ready"
    STUCK = "stuck"
    RESTARTING = "restarting"
    FAILED = "failed"


class Waiter(Protocol):
    """Who waits for a call made with `Pkcs11Hsm.submit`."""

    def answered(self, error: HsmError | None, value: Any) -> None:
        """The call's value (`error` None), or why it failed. Called once, from one
        of the lane's tasks, unless the waiter was `forget`-ten first."""
        ...


class _TaskWaiter:
    """A trio task awaiting `Pkcs11Hsm.call`: woken with the value, or the error."""

    __slots__ = ("task",)

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task

    def answered(self, error: HsmError | None, value: Any) -> None:
        """Reschedule the task with the value, or with the error to raise."""
        trio.lowlevel.reschedule(
            self.task, outcome.Value(value) if error is None else outcome.Error(error)
        )


class Pkcs11Hsm:
    """The relay's HSM over a real PKCS#11 token (see the module doc)."""

    def __init__(
        self,
        cfg: TokenConfig,
        *,
        deadline: float = 2.0,
        start_timeout: float = 20.0,
        restart_backoff: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.deadline = deadline
        self.start_timeout = start_timeout
        self.restart_backoff = restart_backoff
        self.state = LaneState.STARTING
        self.history: list[tuple[float, str, str]] = []  # (time, state, why)
        self.restarts = 0
        # Each call's time from submission to its end: the token answered it (a value
        # or a refusal), or the lane failed it (stuck, lost). Not a call given up.
        self.answered = LatencyHistogram(TOKEN_BUCKETS)
        self.failed = LatencyHistogram(TOKEN_BUCKETS)
        self._why = ""
        self._ids = itertools.count()
        # Each call in flight: its deadline (calls are due in the order they were
        # made), its operation, and who waits for it.
        self._pending: dict[int, tuple[float, str, Waiter]] = {}
        self._queue: list[tuple[int, str, tuple[Any, ...]]] = []
        self._idle_sender: trio.lowlevel.Task | None = None  # parked on an empty queue
        self._broken = trio.Event()
        self._ready = trio.Event()
        self._proc: trio.Process | None = None
        self._log = structlog.get_logger("relaysim.hsm")

    # -- the relay's interface --------------------------------------------------------

    async def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 signature over SHA-256 of `data`."""
        value: bytes = await self.call("sign", data)
        return value

    async def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether `signature` is the relay key's signature of `data`."""
        value: bool = await self.call("verify", data, signature)
        return value

    async def encrypt(self, data: bytes) -> bytes:
        """AES-256-CBC under the relay's key (IV first)."""
        value: bytes = await self.call("encrypt", data)
        return value

    async def decrypt(self, blob: bytes) -> bytes:
        """The inverse of `encrypt`."""
        value: bytes = await self.call("decrypt", blob)
        return value

    async def health(self) -> bool:
        """Whether the lane is ready and a live sign/verify passes within the deadline."""
        if self.state is not LaneState.READY:
            return False
        try:
            return await self.verify(b"health", await self.sign(b"health"))
        except HsmError:
            return False

    async def wait_ready(self) -> None:
        """Return once the lane serves (at once if it does now)."""
        await self._ready.wait()

    @property
    def worker_pid(self) -> int | None:
        """The process id of the worker that owns the token now (None between two)."""
        if self._proc is None or self._proc.returncode is not None:
            return None
        return self._proc.pid

    @property
    def in_flight(self) -> int:
        """Calls submitted whose waiters still wait for an answer."""
        return len(self._pending)

    def kill(self) -> None:
        """Kill the worker process now (a fault to inject, or an operator's hand):
        the lane sees it die, fails what was in flight and starts a new one."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def call(self, op: str, *args: Any) -> Any:
        """Run one operation on the token within the deadline."""
        rid = self.submit(op, args, _TaskWaiter(trio.lowlevel.current_task()))
        pending = self._pending

        def gave_up(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            # The caller was cancelled (its own, shorter deadline): forget the call;
            # a late result for it is dropped.
            pending.pop(rid, None)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(gave_up)

    def submit(self, op: str, args: tuple[Any, ...], waiter: Waiter) -> int:
        """Queue one operation without waiting for it; `waiter` is told how it ended
        (`Waiter.answered`: its value, `HsmOperationError` if the token refused it,
        `HsmStuck` or `HsmLost` if the lane failed under it). Returns the call's
        number, for `forget`. Raises `HsmUnavailable` at once (and queues nothing)
        when the lane is not serving."""
        if self.state is not LaneState.READY:
            raise HsmUnavailable(f"HSM lane {self.state.value}: {self._why}")
        rid = next(self._ids)
        self._pending[rid] = (trio.current_time() + self.deadline, op, waiter)
        self._queue.append((rid, op, args))
        sender = self._idle_sender
        if sender is not None:
            self._idle_sender = None
            trio.lowlevel.reschedule(sender)
        return rid

    def forget(self, rid: int) -> None:
        """The waiter of call `rid` no longer waits (it gave up): it will not be
        told, and the call's result, when it comes, is dropped."""
        self._pending.pop(rid, None)

    # -- the supervisor -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a worker serving until cancelled; `started` once the first is ready.

        A setup failure of the first worker (wrong PIN, no token) raises
        `HsmSetupError`; later ones leave the lane `failed` and retry after a pause.
        """
        first = True
        while True:
            try:
                await self._serve_one(task_status if first else None)
                first = False
            except HsmSetupError as exc:
                if first:
                    raise
                self._set(LaneState.FAILED, str(exc))
                await trio.sleep(self.restart_backoff)
            self.restarts += 1
            self._set(LaneState.RESTARTING, self._why)

    async def _serve_one(self, task_status: trio.TaskStatus[None] | None) -> None:
        self._broken = trio.Event()
        self._set(LaneState.STARTING, "opening the token")
        try:
            pin = self.cfg.pin()
        except TokenError as exc:
            raise HsmSetupError(str(exc)) from None
        self.cfg.prepare()
        proc = await trio.lowlevel.open_process(WORKER, stdin=PIPE, stdout=PIPE, env=self.cfg.env())
        # Pipes, which trio opens as non-blocking FdStreams (the sender and receiver
        # use their file descriptors directly).
        assert isinstance(proc.stdin, trio.lowlevel.FdStream)
        assert isinstance(proc.stdout, trio.lowlevel.FdStream)
        self._proc = proc
        decoder = wire.Decoder()
        try:
            request = self.cfg.request("serve", pin)
            await proc.stdin.send_all(wire.encode(request))
            answer = None
            with trio.move_on_after(self.start_timeout):
                while answer is None:
                    data = await proc.stdout.receive_some(65536)
                    if not data:
                        break
                    frames = decoder.feed(data)
                    answer = frames[0] if frames else None
            if answer is None:
                raise HsmSetupError(f"token {self.cfg.label!r}: worker did not start")
            if not answer.get("ok"):
                raise HsmSetupError(str(answer.get("error")))
            self._set(LaneState.READY, f"token {self.cfg.label!r} open")
            if task_status is not None:
                task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sender, proc.stdin)
                nursery.start_soon(self._receiver, proc.stdout, decoder)
                nursery.start_soon(self._watchdog)
                await self._broken.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                proc.kill()
                await proc.wait()
            self._fail_pending(self._why or "lane stopped")

    async def _sender(self, stdin: trio.lowlevel.FdStream) -> None:
        # Straight on the pipe (non-blocking, as trio opened it): the task is woken
        # only for work, and a batch costs one write and no extra checkpoint.
        fd = stdin.fileno()
        while True:
            if not self._queue:
                self._idle_sender = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._sender_cancelled)
            batch, self._queue = self._queue, []
            data = memoryview(wire.encode(batch))
            try:
                while data:
                    try:
                        data = data[os.write(fd, data) :]
                    except BlockingIOError:  # the pipe is full: the worker is behind
                        await trio.lowlevel.wait_writable(fd)
            except (OSError, trio.ClosedResourceError):
                self._break(LaneState.RESTARTING, "worker closed its input")
                return

    def _sender_cancelled(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self._idle_sender = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def _receiver(self, stdout: trio.lowlevel.FdStream, decoder: wire.Decoder) -> None:
        fd = stdout.fileno()
        pending, answered, deadline = self._pending, self.answered, self.deadline
        while True:
            try:
                await trio.lowlevel.wait_readable(fd)
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            except (OSError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._break(LaneState.RESTARTING, "worker exited")
                return
            # A call was submitted at its due time less the deadline, so it took
            # (now + deadline) - due: one clock read a read, a bucket increment a call.
            late = trio.current_time() + deadline
            for batch in decoder.feed(data):
                for rid, ok, value in batch:
                    call = pending.pop(rid, None)
                    if call is None:
                        continue  # its caller already gave up
                    answered.append(late - call[0])
                    if ok:
                        call[2].answered(None, value)
                    else:
                        call[2].answered(HsmOperationError(str(value)), None)

    async def _watchdog(self) -> None:
        # Calls are due in the order they were made: the oldest one pending is the
        # only one that can be overdue.
        while True:
            if not self._pending:
                await trio.sleep(self.deadline)  # a call made from now on is due later
                continue
            due, op, _ = next(iter(self._pending.values()))
            if due <= trio.current_time():
                self._break(LaneState.STUCK, f"{op} passed its {self.deadline:g} s deadline")
                return
            await trio.sleep_until(due)

    def _break(self, state: LaneState, why: str) -> None:
        if self._broken.is_set():
            return
        self._set(state, why)
        self._broken.set()
        self._fail_pending(why)

    def _fail_pending(self, why: str) -> None:
        # Stuck: a call passed its deadline; otherwise the worker went away under them.
        error = HsmStuck if self.state is LaneState.STUCK else HsmLost
        calls = list(self._pending.values())
        self._pending.clear()
        self._queue.clear()
        late = trio.current_time() + self.deadline  # as in `_receiver`
        for due, _, waiter in calls:
            self.failed.append(late - due)
            waiter.answered(error(f"HSM lane {self.state.value}: {why}"), None)

    def _set(self, state: LaneState, why: str) -> None:
        self.state, self._why = state, why
        self.history.append((trio.current_time(), state.value, why))
        if state is LaneState.READY:
            self._ready.set()
        elif self._ready.is_set():
            self._ready = trio.Event()
        self._log.info("hsm.lane", state=state.value, why=why, token=self.cfg.label)


@asynccontextmanager
async def open_pkcs11(cfg: TokenConfig, **options: Any) -> AsyncIterator[Pkcs11Hsm]:
    """A ready lane over `cfg`'s token for the duration of the block.

    Raises `HsmSetupError` if the first worker cannot open the token. An exception
    leaving the block (or the lane) comes out as itself, not wrapped in the
    nursery's exception group.
    """
    hsm = Pkcs11Hsm(cfg, **options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(hsm.run)
            try:
                yield hsm
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None


def unwrap_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested one-member groups (what a nursery makes of a
    single failure), or the group itself when several things failed."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
    return inner
