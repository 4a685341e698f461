"""Where many runs go (a local process pool or a Dask cluster), and how a run of
them is cut short by SIGTERM or SIGINT without leaving work behind.

A CI runner cancels a job with SIGTERM (then SIGKILL a few seconds later); a person
presses Ctrl-C. Either way `check`, `sweep` and `hunt` must stop every worker,
write what they have, and exit with the signal's code. The signal handler only
notes the signal (`cancellable`); the loops that wait on workers (`harvest`) or
run worlds (`checkpoint`) look at it between results, so nothing is interrupted
halfway through writing a row, and the first signal undoes the handlers: a second
one acts at once, as it would have without us. `load` runs under trio, which takes
the signals itself: `signalled` hands them to the run as they come.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from multiprocessing.connection import wait
from types import FrameType
from typing import TypeVar

from relay.scenario.schema import ConfigError

K = TypeVar("K")
R = TypeVar("R")

#: The signals that cancel a run of many.
SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: How often a wait on workers looks for a signal (seconds): well inside the 5 s a
#: cancelled job has to stop.
POLL_S = 0.2
#: How long terminated workers get to exit before they are killed.
GRACE_S = 2.0


class Cancelled(BaseException):
    """A run of many was cancelled by a signal. A BaseException, like
    KeyboardInterrupt: no `except Exception` (a case's error, hypothesis's failure
    handling) takes it for a result."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"cancelled by {self.name}")

    @property
    def exit_code(self) -> int:
        """The exit code of a run this cancelled (`exit_code`)."""
        return exit_code(self.name)


def cut_short(name: str) -> str:
    """The error of a run that the signal `name` cut short."""
    return f"cancelled by {name}"


def exit_code(name: str) -> int:
    """The exit code of a run cancelled by the signal `name`: 128 + its number, as a
    shell reports a process the signal ended (143 for SIGTERM, 130 for SIGINT)."""
    return 128 + signal.Signals[name]


_received: list[int] = []  # the signal that cancelled this process's run, once one has


@contextmanager
def cancellable() -> Iterator[None]:
    """While inside, SIGTERM and SIGINT cancel the run (`cancelled`) instead of
    ending the process; the first one puts the old handlers back. Outside the main
    thread (no signals there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}

    def noted(signum: int, frame: FrameType | None) -> None:
        _received.append(signum)
        for s, handler in old.items():
            signal.signal(s, handler)

    _received.clear()
    for s in SIGNALS:
        signal.signal(s, noted)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _received.clear()  # the run that was cancelled has said so: the next starts afresh


async def signalled(stop: Callable[[str], None]) -> None:
    """Inside a trio run: call `stop` with each SIGTERM's or SIGINT's name as it
    arrives, instead of trio raising KeyboardInterrupt or the process ending."""
    import trio  # deferred: the runs of many need no trio

    with trio.open_signal_receiver(*SIGNALS) as received:
        async for signum in received:
            stop(signal.Signals(signum).name)


def cancelled() -> Cancelled | None:
    """The signal that cancelled the run, if one has."""
    return Cancelled(_received[0]) if _received else None


def checkpoint() -> None:
    """Raise Cancelled if the run has been cancelled: called between worlds."""
    if _received:
        raise Cancelled(_received[0])


def harvest(
    executor: cf.Executor,
    futures: Mapping[cf.Future[R], K],
    tick: Callable[[], None] | None = None,
) -> Iterator[tuple[K, R | Exception]]:
    """Each future's key and its result (or the exception its worker died of), as
    they complete; `tick` is called after each wait (at least every POLL_S), so a
    progress line can come while no result does. When the run is cancelled it stops
    every worker (`halt`) and raises Cancelled; the caller still has what came before."""
    pending = set(futures)
    while pending:
        done, pending = cf.wait(pending, timeout=POLL_S, return_when=cf.FIRST_COMPLETED)
        if tick is not None:
            tick()
        for future in done:
            try:
                yield futures[future], future.result()
            except Exception as exc:  # the worker itself died, or the cluster lost it
                yield futures[future], exc
        stop = cancelled()
        if stop is not None:
            halt(executor, pending)
            raise stop


def halt(executor: cf.Executor, pending: set[cf.Future[R]]) -> None:
    """Stop `executor`'s work now: cancel what has not started and end what has
    (a local pool's processes: terminated, then killed after GRACE_S; a Dask
    cluster's futures: cancelled on the cluster)."""
    for future in pending:
        future.cancel()  # a Dask future cancels its task on the cluster too
    if isinstance(executor, cf.ProcessPoolExecutor):
        workers = multiprocessing.active_children()
        # The executor's thread reaps its workers: a shutdown without waiting drops
        # the executor's hold on it (no later shutdown waits for it), so it is held
        # here and waited for once the workers have gone. (cpython has no public
        # handle; without one, the workers still read as alive, unreaped, after halt
        # returns.)
        manager: threading.Thread | None = getattr(executor, "_executor_manager_thread", None)
        executor.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        # Each worker's end awaited on its sentinel, not joined: two threads waiting
        # for one child, the loser records no exit code.
        for process in workers:
            if not wait([process.sentinel], GRACE_S):
                process.kill()
                wait([process.sentinel], GRACE_S)
        if manager is not None:
            manager.join(GRACE_S)
    else:
        executor.shutdown(wait=False)


def _worker_start() -> None:
    """In each local worker: ignore SIGINT. A Ctrl-C reaches the whole process
    group; the parent decides, and stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def local_pool(workers: int) -> Iterator[cf.Executor]:
    """A pool of `workers` processes, started fresh (spawn: no inherited threads)."""
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_start)
    try:
        yield pool
    except BaseException:  # Ctrl-C or an error: the workers ignore SIGINT, so end them
        halt(pool, set())
        raise
    finally:
        pool.shutdown(wait=True)  # at once after a halt


@contextmanager
def dask_pool(address: str) -> Iterator[cf.Executor]:
    """The executor of the Dask cluster at `address` (its workers need relaysim)."""
    from distributed import Client  # deferred: a heavy import, only for --dask

    # distributed's Client carries no annotations: hence the ignores.
    try:
        client = Client(address, timeout=10)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--dask {address}: cannot connect: {exc}") from None
    try:
        yield client.get_executor(pure=False)  # type: ignore[no-untyped-call]
    finally:
        client.close()  # type: ignore[no-untyped-call]
