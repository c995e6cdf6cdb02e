"""Group commit: concurrent single-transfer callers share database transactions."""

from __future__ import annotations

import asyncio

import pytest

from milletpay.ledger import (
    Account,
    AccountFlags,
    CreateTransferResult,
    Ledger,
    LedgerBatcher,
    LedgerInputError,
    Transfer,
    TransferFlags,
)

R = CreateTransferResult


def _open(url: str) -> Ledger:
    ledger = Ledger.open(url)
    ledger.create_accounts(
        [
            Account(1, 1, 1),
            Account(2, 1, 1),
            Account(3, 1, 1, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
        ]
    )
    return ledger


def test_concurrent_submissions_are_coalesced_into_few_batches(database_url: str) -> None:
    async def scenario(ledger: Ledger) -> tuple[list[list[R]], LedgerBatcher]:
        async with LedgerBatcher(ledger, max_wait_ms=5) as batcher:
            results = await asyncio.gather(
                *(batcher.submit(Transfer(100 + i, 1, 2, i + 1, 1, 1)) for i in range(200))
            )
        return results, batcher

    with _open(database_url) as ledger:
        results, batcher = asyncio.run(scenario(ledger))
        assert results == [[R.OK]] * 200
        assert batcher.events == 200
        assert batcher.batches < 200 / 4  # group commit, not a transaction per transfer
        (debit,) = ledger.lookup_accounts([1])
        assert debit.debits_posted == sum(range(1, 201))
        assert ledger.verify().ok


def test_each_caller_gets_its_own_results_in_a_shared_batch(database_url: str) -> None:
    async def scenario(ledger: Ledger) -> list[list[R]]:
        async with LedgerBatcher(ledger, max_wait_ms=20) as batcher:
            return await asyncio.gather(
                batcher.submit(Transfer(10, 1, 2, 5, 1, 1)),
                batcher.submit(Transfer(11, 3, 2, 5, 1, 1)),  # account 3 has no credits
                batcher.submit(
                    [
                        Transfer(12, 1, 2, 7, 1, 1, TransferFlags.LINKED),
                        Transfer(13, 1, 9, 7, 1, 1),  # unknown account: the chain fails
                    ]
                ),
                batcher.submit(Transfer(10, 1, 2, 5, 1, 1)),  # a retry of the first
            )

    with _open(database_url) as ledger:
        results = asyncio.run(scenario(ledger))
        assert results == [
            [R.OK],
            [R.EXCEEDS_CREDITS],
            [R.LINKED_EVENT_FAILED, R.CREDIT_ACCOUNT_NOT_FOUND],
            [R.EXISTS],
        ]
        assert ledger.lookup_transfers([10, 11, 12, 13]) == ledger.lookup_transfers([10])


def test_an_open_chain_is_refused_before_it_is_queued(database_url: str) -> None:
    async def scenario(ledger: Ledger) -> None:
        async with LedgerBatcher(ledger) as batcher:
            with pytest.raises(LedgerInputError, match="chain"):
                await batcher.submit(Transfer(20, 1, 2, 1, 1, 1, TransferFlags.LINKED))
            with pytest.raises(LedgerInputError, match="chain"):
                await batcher.submit([Transfer(21, 1, 2, 1, 1, 1), Transfer(22, 1, 2, 1, 1, 1)])
            with pytest.raises(LedgerInputError, match="not a Transfer"):
                await batcher.submit([Account(5, 1, 1)])  # type: ignore[list-item]

    with _open(database_url) as ledger:
        asyncio.run(scenario(ledger))
        assert ledger.lookup_transfers([20, 21, 22]) == []


def test_batches_never_exceed_the_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []

    class Recording(Ledger):
        def create_transfers(self, transfers):  # type: ignore[no-untyped-def]
            seen.append(len(transfers))
            return super().create_transfers(transfers)

    base = _open(f"sqlite:///{tmp_path / 'b.db'}")
    ledger = Recording(base.engine)

    async def scenario() -> None:
        async with LedgerBatcher(ledger, max_batch=7, max_wait_ms=20) as batcher:
            chains = [
                [
                    Transfer(1000 + 10 * i, 1, 2, 1, 1, 1, TransferFlags.LINKED),
                    Transfer(1001 + 10 * i, 1, 2, 1, 1, 1),
                ]
                for i in range(20)
            ]
            results = await asyncio.gather(*(batcher.submit(c) for c in chains))
            assert all(r == [R.OK, R.OK] for r in results)

    asyncio.run(scenario())
    assert sum(seen) == 40
    assert max(seen) <= 7
    assert all(n % 2 == 0 for n in seen)  # a chain is never split across batches
    base.close()


def test_a_batch_that_cannot_commit_fails_every_caller(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Broken(Ledger):
        def create_transfers(self, transfers):  # type: ignore[no-untyped-def]
            raise OSError("disk full")

    base = _open(f"sqlite:///{tmp_path / 'c.db'}")
    ledger = Broken(base.engine)

    async def scenario() -> list[object]:
        async with LedgerBatcher(ledger, max_wait_ms=5) as batcher:
            return await asyncio.gather(
                *(batcher.submit(Transfer(50 + i, 1, 2, 1, 1, 1)) for i in range(3)),
                return_exceptions=True,
            )

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, OSError) for o in outcomes)
    base.close()
