"""Reads see a consistent ledger: due holds are released first, and verify sees one snapshot."""

from __future__ import annotations

import enum
import threading

from milletpay.core.clock import ManualClock
from milletpay.ledger import (
    Account,
    CreateTransferResult,
    Ledger,
    PendingStatus,
    Transfer,
    TransferFlags,
)


def test_a_read_after_the_timeout_sees_the_hold_released(database_url: str) -> None:
    clock = ManualClock()
    with Ledger.open(database_url, clock=clock) as ledger:
        ledger.create_accounts([Account(1, 1, 1), Account(2, 1, 1)])
        ledger.create_transfers([Transfer(10, 1, 2, 100, 1, 1, TransferFlags.PENDING, timeout_s=1)])
        (hold,) = ledger.lookup_transfers([10])
        # Exactly at the timeout: expired, with no write in between.
        clock.advance(nanoseconds=hold.timestamp + 1_000_000_000 - clock.now_ns())
        assert ledger.pending_status(10) is PendingStatus.EXPIRED
        (debit,) = ledger.lookup_accounts([1])
        assert debit.debits_pending == 0
        assert ledger.verify().ok


def test_a_read_before_the_timeout_still_sees_the_hold(database_url: str) -> None:
    clock = ManualClock()
    with Ledger.open(database_url, clock=clock) as ledger:
        ledger.create_accounts([Account(1, 1, 1), Account(2, 1, 1)])
        ledger.create_transfers([Transfer(10, 1, 2, 100, 1, 1, TransferFlags.PENDING, timeout_s=1)])
        (hold,) = ledger.lookup_transfers([10])
        clock.advance(nanoseconds=hold.timestamp + 999_999_999 - clock.now_ns())
        assert ledger.pending_status(10) is PendingStatus.PENDING
        assert ledger.lookup_accounts([1])[0].debits_pending == 100


def test_verify_sees_one_snapshot_while_writers_go_on(database_url: str) -> None:
    with Ledger.open(database_url) as ledger:
        ledger.create_accounts([Account(i, 1, 1) for i in range(1, 11)])
        stop = threading.Event()
        failures: list[object] = []
        batches_written = 0

        def write() -> None:
            nonlocal batches_written
            next_id = 1000
            with Ledger.open(database_url) as writer:
                while not stop.is_set():
                    batch = [
                        Transfer(next_id + i, 1 + i % 10, 1 + (i + 1) % 10, 1 + i, 1, 1)
                        for i in range(200)
                    ]
                    next_id += 200
                    results = writer.create_transfers(batch)
                    if any(r is not CreateTransferResult.OK for r in results):
                        failures.append(results)
                    batches_written += 1

        thread = threading.Thread(target=write)
        thread.start()
        reports = []
        try:
            while batches_written < 30 and thread.is_alive():
                reports.append(ledger.verify())
        finally:
            stop.set()
            thread.join()
        assert not failures
        assert [r.problems for r in reports if not r.ok] == []
        assert len(reports) > 1 and reports[-1].transfers > 0


class Code(enum.IntEnum):
    TOP_UP = 7


def test_an_int_enum_code_is_stored_as_its_number(database_url: str) -> None:
    with Ledger.open(database_url) as ledger:
        assert ledger.create_accounts([Account(1, 1, Code.TOP_UP), Account(2, 1, 1)]) == ["ok"] * 2
        assert ledger.create_transfers([Transfer(5, 1, 2, 9, 1, Code.TOP_UP)]) == ["ok"]
        (transfer,) = ledger.lookup_transfers([5])
        assert transfer.code == 7 and type(transfer.code) is int
        assert ledger.lookup_accounts([1])[0].code == 7
