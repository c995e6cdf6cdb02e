"""Group commit: many concurrent single-transfer callers, one database transaction.

`LedgerBatcher.submit(chain)` queues a transfer (or a closed linked chain) and
waits for its results. One worker drains the queue into batches of at most
`BATCH_EVENTS_MAX` events, waiting at most `max_wait_ms` for a batch to fill, and
applies each batch with one `Ledger.create_transfers` call in a worker thread; while
a batch commits, the next one fills. The queue is bounded: when it is full,
`submit` waits (back-pressure) rather than growing memory without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from milletpay.ledger.engine import Ledger
from milletpay.ledger.types import (
    BATCH_EVENTS_MAX,
    CreateTransferResult,
    LedgerInputError,
    Transfer,
    TransferFlags,
    check_batch,
)

#: Chains waiting for a batch, at most.
QUEUE_MAX = 65_536
#: How long the first chain of a batch waits for others to join it.
MAX_WAIT_MS_DEFAULT = 1.0


@dataclass
class _Pending:
    chain: list[Transfer]
    future: asyncio.Future[list[CreateTransferResult]]


class LedgerBatcher:
    """Coalesces concurrent `submit` calls into batched `create_transfers` calls."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_batch: int = BATCH_EVENTS_MAX,
        max_wait_ms: float = MAX_WAIT_MS_DEFAULT,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        if not 1 <= max_batch <= BATCH_EVENTS_MAX:
            raise ValueError(f"max_batch must be between 1 and {BATCH_EVENTS_MAX}")
        if not 1 <= queue_max <= QUEUE_MAX:
            raise ValueError(f"queue_max must be between 1 and {QUEUE_MAX}")
        self._ledger = ledger
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(queue_max)
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.events = 0

    async def __aenter__(self) -> LedgerBatcher:
        self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def submit(self, chain: Transfer | Sequence[Transfer]) -> list[CreateTransferResult]:
        """Apply one transfer or one closed linked chain; returns one result per transfer."""
        given: Sequence[Transfer] = [chain] if isinstance(chain, Transfer) else chain
        events = check_batch(given, Transfer, self._max_batch)
        if not events or any(
            bool(t.flags & TransferFlags.LINKED) != (index < len(events) - 1)
            for index, t in enumerate(events)
        ):
            raise LedgerInputError(
                "a chain is one or more transfers, each LINKED but the last",
                code="ledger_chain_open",
            )
        if self._worker is None:
            raise RuntimeError("the batcher is not started")
        future: asyncio.Future[list[CreateTransferResult]] = (
            asyncio.get_running_loop().create_future()
        )
        await self._queue.put(_Pending(events, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carry: _Pending | None = None  # a chain that did not fit the previous batch
        while True:
            first = carry if carry is not None else await self._queue.get()
            carry = None
            batch = [first]
            size = len(first.chain)
            deadline = loop.time() + self._max_wait_s
            while size < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except TimeoutError:
                        break
                if size + len(item.chain) > self._max_batch:
                    carry = item  # it opens the next batch
                    break
                batch.append(item)
                size += len(item.chain)
            await self._apply(batch)

    async def _apply(self, batch: list[_Pending]) -> None:
        events = [t for item in batch for t in item.chain]
        try:
            results = await asyncio.to_thread(self._ledger.create_transfers, events)
        except Exception as error:  # the whole batch failed to commit: tell every caller
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
        else:
            self.batches += 1
            self.events += len(events)
            offset = 0
            for item in batch:
                n = len(item.chain)
                if not item.future.done():
                    item.future.set_result(results[offset : offset + n])
                offset += n
        finally:
            for _ in batch:
                self._queue.task_done()
