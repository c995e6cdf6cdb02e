"""Group commit of units of work: many callers, one write transaction.

A unit of work is a function of a `LedgerTransaction`: it reads and writes its own rows
on the transaction's connection and moves money through it. `GroupCommitter.run(work)`
hands the unit to one writer thread and waits. The writer takes every unit waiting (at
most `max_batch`), runs each inside its own savepoint, in arrival order, and commits
them all at once: one fsync for the lot. A unit that raises is undone alone, by its
savepoint, and its caller gets the exception; if the commit itself fails, every caller
of the batch gets that error and nothing of the batch is stored. No caller hears back
before its unit is durable.

This is `LedgerBatcher`'s idea for whole operations instead of single transfers: the
wallet's per-operation transactions were each one fsync, which bounded the wallet at a
few hundred operations a second whatever the CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa

from milletpay.ledger.engine import Ledger, LedgerTransaction
from milletpay.store.engine import ConnectionTransaction, write_transaction

T = TypeVar("T")


class Savepoints(Protocol):
    def savepoint(self) -> AbstractContextManager[None]: ...


TxT = TypeVar("TxT", bound=Savepoints)
TxT_co = TypeVar("TxT_co", bound=Savepoints, covariant=True)


class Transactions(Protocol[TxT_co]):
    """Where a committer's transactions come from: a `Ledger`, or
    `store.engine.EngineTransactions` for units that write rows of their own only."""

    def transaction(self) -> AbstractContextManager[TxT_co]: ...


#: Units run in one transaction, at most.
BATCH_MAX_DEFAULT = 256
#: Units waiting for the writer, at most; `run` blocks while the queue is full.
QUEUE_MAX_DEFAULT = 4096
#: How often a stopping writer empties the queue while it waits for a blocked `run`.
LOCK_POLL_S = 0.01
#: How long the writer holds an event loop still for one batch, at most (see
#: `GroupCommitter.hold_while_writing`); a longer batch lets the loop go on.
LOOP_HOLD_MAX_S = 0.05


class Committer(Protocol):
    """Runs a unit of work in a ledger write transaction and returns its result."""

    def run(self, work: Callable[[LedgerTransaction], T]) -> T: ...


class DirectCommitter:
    """Each unit in a transaction of its own, on the caller's thread."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def run(self, work: Callable[[LedgerTransaction], T]) -> T:
        with self._ledger.transaction() as tx:
            return work(tx)


@dataclass
class _Unit:
    work: Callable[[Any], Any]
    future: Future[Any] = field(default_factory=Future)


class CommitterClosed(RuntimeError):
    """The committer was closed: no more units are taken."""


class GroupCommitter(Generic[TxT]):
    """One writer thread committing units of work in batches; `run` and `submit` are
    thread-safe. The transactions are a `Ledger`'s, or any other `Transactions`."""

    def __init__(
        self,
        ledger: Transactions[TxT],
        *,
        batch_max: int = BATCH_MAX_DEFAULT,
        queue_max: int = QUEUE_MAX_DEFAULT,
        name: str = "millet-committer",
    ) -> None:
        if batch_max < 1 or queue_max < 1:
            raise ValueError("batch_max and queue_max must be at least 1")
        self._ledger = ledger
        self._batch_max = batch_max
        self._queue: queue.Queue[_Unit | None] = queue.Queue(queue_max)
        self._closed = False
        self._lock = threading.Lock()
        self._held_loop: asyncio.AbstractEventLoop | None = None
        self._hold_when: Callable[[], bool] = lambda: True
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self.batches = 0
        self.units = 0

    def hold_while_writing(
        self, loop: asyncio.AbstractEventLoop | None, when: Callable[[], bool] = lambda: True
    ) -> None:
        """From now on, hold `loop` still while the writer runs a batch's units, for each
        batch that begins with `when()` true (None: no more). The batch's transaction
        has begun, so on SQLite the writer holds the database's write gate, which the
        writers of every process take in turn; the loop's thread would take the
        interpreter's lock from the writer time and again (it parses requests, answers
        them), and the gate would stay shut to the other processes for that long. Held,
        the loop waits (at most `LOOP_HOLD_MAX_S` a batch) and does its work while the
        writer waits for the gate or for units. A process writing alone gains nothing
        from it: its loop only waits (`when`: whether other processes write too). A
        unit must not wait for the loop: it goes on only once the unit is done."""
        self._held_loop = loop
        self._hold_when = when

    def run(self, work: Callable[[TxT], T]) -> T:
        """Run `work` in a shared write transaction; its result once committed, or the
        exception it raised (and then nothing it wrote is kept). `work` must not call
        `run` itself: the writer would wait for itself."""
        result: T = self.submit(work).result()
        return result

    def submit(self, work: Callable[[TxT], T]) -> Future[T]:
        """`run` without the wait: the future holds `work`'s result once committed, or
        its exception (an event loop awaits it with `asyncio.wrap_future`)."""
        unit = _Unit(work)
        # The check and the put under one lock: a unit that passed the check is in the
        # queue before `close` queues its stop mark, so the writer answers it. (Put after
        # the lock, it could land behind the mark once the writer had gone: no answer.)
        with self._lock:
            if self._closed:
                raise CommitterClosed("the committer is closed")
            self._queue.put(unit)
        return unit.future

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish the units already queued, then stop the writer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout_s)

    def __enter__(self) -> GroupCommitter[TxT]:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        try:
            self._serve()
        finally:  # also if the writer dies: refuse what waits, and every later unit
            # A `run` may hold the lock while it waits for room in a full queue: keep
            # making room until the lock is ours.
            while not self._lock.acquire(timeout=LOCK_POLL_S):
                self._refuse_queued()
            try:
                self._closed = True
            finally:
                self._lock.release()
            self._refuse_queued()

    def _loop_to_hold(self) -> asyncio.AbstractEventLoop | None:
        loop = self._held_loop
        return loop if loop is not None and self._hold_when() else None

    def _refuse_queued(self) -> None:
        while True:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                return
            if unit is not None and unit.future.set_running_or_notify_cancel():
                unit.future.set_exception(CommitterClosed("the committer is closed"))

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._batch_max:
                try:
                    unit = self._queue.get_nowait()
                except queue.Empty:
                    break
                if unit is None:
                    stop = True
                    break
                batch.append(unit)
            # A unit whose caller gave up (its future cancelled) before the writer took
            # it is not run; one taken can no longer be cancelled, so its future is
            # always there to answer.
            batch = [unit for unit in batch if unit.future.set_running_or_notify_cancel()]
            if batch:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Unit]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self._ledger.transaction() as tx, _held(self._loop_to_hold()):
                for unit in batch:
                    try:
                        with tx.savepoint():
                            outcomes.append((True, unit.work(tx)))
                    except Exception as error:  # the unit's own failure: undone alone
                        outcomes.append((False, error))
        except BaseException as error:  # the transaction failed: nothing was stored
            for unit in batch:
                unit.future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        self.batches += 1
        self.units += len(batch)
        for unit, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                unit.future.set_result(value)
            else:
                unit.future.set_exception(value)


@contextlib.contextmanager
def _held(loop: asyncio.AbstractEventLoop | None) -> Iterator[None]:
    """`loop` held still while the block runs: its next callback waits for the block's
    end (or `LOOP_HOLD_MAX_S`)."""
    if loop is None:
        yield
        return
    running = threading.Lock()  # a plain lock: cheaper to wait on than an Event
    running.acquire()
    with contextlib.suppress(RuntimeError):  # a closed loop holds nothing
        loop.call_soon_threadsafe(_wait_for, running)
    try:
        yield
    finally:
        running.release()


def _wait_for(running: threading.Lock) -> None:
    """On the held loop: wait until the writer lets `running` go."""
    if running.acquire(timeout=LOOP_HOLD_MAX_S):
        running.release()


class RowWriter:
    """Write transactions for units that write rows of their own (no ledger) on
    `engine`: the shared transactions of `committer` when there is one, else one of
    their own each, on the caller's thread. `run` waits for the unit; `submit` gives a
    future of it, which an event loop awaits with `settled` instead of blocking a thread
    on it."""

    def __init__(
        self, engine: sa.Engine, committer: GroupCommitter[ConnectionTransaction] | None
    ) -> None:
        self._engine = engine
        self._committer = committer

    def run(self, unit: Callable[[sa.Connection], T]) -> T:
        """`unit`'s result once committed, or the exception it raised."""
        return self.submit(unit).result()

    def submit(self, unit: Callable[[sa.Connection], T]) -> Future[T]:
        """A future of `unit`'s result once committed. Without a committer the unit runs
        now, in a transaction of its own, and the future is done when this returns."""
        if self._committer is not None:
            return self._committer.submit(lambda tx: unit(tx.connection))
        future: Future[T] = Future()
        try:
            with write_transaction(self._engine) as conn:
                result = unit(conn)
        except Exception as error:
            future.set_exception(error)
        else:
            future.set_result(result)
        return future


async def settled(future: Future[T]) -> Future[T]:
    """`future` once it is done, waited for on the event loop without a thread; its
    result or exception is for the caller to read (`future.result()` no longer blocks)."""
    with contextlib.suppress(Exception):
        await asyncio.wrap_future(future)
    return future
