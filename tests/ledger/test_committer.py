"""Units of work: `Ledger.transaction`, its savepoints, and the committers built on them.

On SQLite and PostgreSQL:
- a transaction commits the transfers and the caller's own rows together, or neither;
- a savepoint undoes its block alone, and the balances the ledger holds in memory follow
  (a credit that was taken back can never be spent afterwards);
- `GroupCommitter` gives each caller its own unit's result or exception, commits the
  other units of a batch when one unit fails, fails every caller when the commit fails,
  answers only once the batch is durable, and never leaves a caller waiting, at close
  or after its writer thread died;
- `DirectCommitter` does the same for one caller at a time.

The scenarios that need several units in one batch hold the writer in a "gate" unit
while the others queue behind it, instead of hoping that threads happen to overlap.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from milletpay.ledger import Account, AccountFlags, CreateTransferResult, Ledger, Transfer
from milletpay.ledger.committer import CommitterClosed, DirectCommitter, GroupCommitter
from milletpay.ledger.engine import LedgerTransaction

R = CreateTransferResult

PLAIN_A = 1
PLAIN_B = 2
LIMITED = 3  # DEBITS_MUST_NOT_EXCEED_CREDITS: spends only what it was credited
WAIT_S = 30.0  # the most any step waits for another thread before the test fails
QUEUE_SETTLE_S = 0.3  # time for threads that are about to call `run` to queue their unit

THREADS = 16
UNITS_PER_THREAD = 50


class Boom(Exception):
    """A unit's own failure."""


# ---- fixtures and helpers -------------------------------------------------------------


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """A ledger with two plain accounts, one limited account and scratch tables of the
    caller's own; whatever a test did, the ledger's invariants hold afterwards."""
    ledger = Ledger.open(database_url)
    ledger.create_accounts(
        [
            Account(PLAIN_A, 1, 1),
            Account(PLAIN_B, 1, 1),
            Account(LIMITED, 1, 1, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
        ]
    )
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch_note (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE scratch_parent (id INTEGER PRIMARY KEY)")
        # Checked at COMMIT, not at the INSERT: a unit can leave its transaction unable
        # to commit, the way a real deferred constraint does.
        conn.exec_driver_sql(
            "CREATE TABLE scratch_child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL "
            "REFERENCES scratch_parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    with ledger:
        yield ledger
        assert ledger.verify().ok


def _note(tx: LedgerTransaction, note_id: int) -> None:
    tx.connection.exec_driver_sql(f"INSERT INTO scratch_note (id) VALUES ({note_id})")


def _notes(ledger: Ledger) -> set[int]:
    with ledger.engine.connect() as conn:
        return {row[0] for row in conn.exec_driver_sql("SELECT id FROM scratch_note")}


def _move(tx: LedgerTransaction, transfer_id: int, debit: int, credit: int, amount: int) -> R:
    (result,) = tx.create_transfers([Transfer(transfer_id, debit, credit, amount, 1, 1)])
    return result


def _posted(ledger: Ledger, account_id: int) -> tuple[int, int]:
    """(debits_posted, credits_posted) as stored."""
    (account,) = ledger.lookup_accounts([account_id])
    return account.debits_posted, account.credits_posted


def _stored_ids(ledger: Ledger, ids: list[int]) -> set[int]:
    return {t.id for t in ledger.lookup_transfers(ids)}


class Gate:
    """A unit that holds the writer until opened, so that the units after it queue up."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def unit(self, _tx: LedgerTransaction) -> None:
        self.entered.set()
        assert self.opened.wait(WAIT_S)


def _behind_gate(
    committer: GroupCommitter,
    pool: ThreadPoolExecutor,
    units: list[Callable[[LedgerTransaction], Any]],
) -> list[Future[Any]]:
    """Queue `units`, in this order, while the writer is held; then let it go."""
    gate = Gate()
    held = pool.submit(committer.run, gate.unit)
    assert gate.entered.wait(WAIT_S)
    futures = []
    for unit in units:
        futures.append(pool.submit(committer.run, unit))
        time.sleep(QUEUE_SETTLE_S / len(units))  # keeps the arrival order the list's
    time.sleep(QUEUE_SETTLE_S)
    gate.opened.set()
    assert held.result(WAIT_S) is None
    return futures


def _in_daemon(call: Callable[[], Any]) -> Future[Any]:
    """`call()` on a daemon thread: a caller that hangs fails the test, not the run."""
    answer: Future[Any] = Future()

    def target() -> None:
        try:
            answer.set_result(call())
        except BaseException as error:
            answer.set_exception(error)

    threading.Thread(target=target, daemon=True).start()
    return answer


# ---- Ledger.transaction ---------------------------------------------------------------


def test_transaction_commits_transfers_and_own_rows_together(ledger: Ledger) -> None:
    with ledger.transaction() as tx:
        assert _move(tx, 10, PLAIN_A, PLAIN_B, 5) == R.OK
        _note(tx, 10)
    assert _stored_ids(ledger, [10]) == {10}
    assert _notes(ledger) == {10}
    assert _posted(ledger, PLAIN_A) == (5, 0)
    assert _posted(ledger, PLAIN_B) == (0, 5)


def test_transaction_that_raises_keeps_neither_transfers_nor_rows(ledger: Ledger) -> None:
    with ledger.transaction() as tx:  # the writer now holds these accounts in memory
        assert _move(tx, 9, PLAIN_A, PLAIN_B, 1) == R.OK
    with pytest.raises(Boom), ledger.transaction() as tx:
        assert _move(tx, 10, PLAIN_A, LIMITED, 5) == R.OK
        _note(tx, 10)
        raise Boom
    assert _stored_ids(ledger, [9, 10]) == {9}
    assert _notes(ledger) == set()
    assert _posted(ledger, PLAIN_A) == (1, 0)
    assert _posted(ledger, LIMITED) == (0, 0)
    # The credit to LIMITED was rolled back: spending it must be refused.
    assert ledger.create_transfers([Transfer(11, LIMITED, PLAIN_B, 5, 1, 1)]) == [R.EXCEEDS_CREDITS]


# ---- LedgerTransaction.savepoint ------------------------------------------------------


def test_savepoint_undoes_its_block_alone(ledger: Ledger) -> None:
    with ledger.transaction() as tx:
        assert _move(tx, 10, PLAIN_A, PLAIN_B, 5) == R.OK
        _note(tx, 10)
        with pytest.raises(Boom), tx.savepoint():
            assert _move(tx, 11, PLAIN_A, LIMITED, 7) == R.OK
            _note(tx, 11)
            raise Boom
        # Only the credit the savepoint took back would make this possible.
        assert _move(tx, 12, LIMITED, PLAIN_B, 7) == R.EXCEEDS_CREDITS
        assert _move(tx, 13, PLAIN_A, PLAIN_B, 1) == R.OK
        _note(tx, 13)
    assert _stored_ids(ledger, [10, 11, 12, 13]) == {10, 13}
    assert _notes(ledger) == {10, 13}
    assert _posted(ledger, PLAIN_A) == (6, 0)
    assert _posted(ledger, PLAIN_B) == (0, 6)
    assert _posted(ledger, LIMITED) == (0, 0)
    with ledger.transaction() as tx:  # a later transaction sees the same balances
        assert _move(tx, 14, LIMITED, PLAIN_B, 7) == R.EXCEEDS_CREDITS
        assert _move(tx, 15, PLAIN_A, LIMITED, 2) == R.OK
        assert _move(tx, 16, LIMITED, PLAIN_B, 2) == R.OK
    assert _posted(ledger, LIMITED) == (2, 2)


def test_savepoint_that_completes_keeps_its_block(ledger: Ledger) -> None:
    with ledger.transaction() as tx:
        with tx.savepoint():
            assert _move(tx, 10, PLAIN_A, LIMITED, 4) == R.OK
            _note(tx, 10)
        assert _move(tx, 11, LIMITED, PLAIN_B, 4) == R.OK
    assert _stored_ids(ledger, [10, 11]) == {10, 11}
    assert _notes(ledger) == {10}
    assert _posted(ledger, LIMITED) == (4, 4)


def test_inner_savepoint_undone_outer_kept(ledger: Ledger) -> None:
    with ledger.transaction() as tx:
        with tx.savepoint():
            assert _move(tx, 20, PLAIN_A, LIMITED, 10) == R.OK
            with pytest.raises(Boom), tx.savepoint():
                assert _move(tx, 21, PLAIN_A, LIMITED, 5) == R.OK
                _note(tx, 21)
                raise Boom
            assert _move(tx, 22, LIMITED, PLAIN_B, 12) == R.EXCEEDS_CREDITS
            assert _move(tx, 23, LIMITED, PLAIN_B, 10) == R.OK
        assert _move(tx, 24, PLAIN_A, PLAIN_B, 1) == R.OK
    assert _stored_ids(ledger, [20, 21, 22, 23, 24]) == {20, 23, 24}
    assert _notes(ledger) == set()
    assert _posted(ledger, LIMITED) == (10, 10)
    assert _posted(ledger, PLAIN_A) == (11, 0)


def test_outer_savepoint_undone_takes_its_inner_savepoint_with_it(ledger: Ledger) -> None:
    with ledger.transaction() as tx:
        assert _move(tx, 30, PLAIN_A, PLAIN_B, 1) == R.OK
        with pytest.raises(Boom), tx.savepoint():
            assert _move(tx, 31, PLAIN_A, LIMITED, 8) == R.OK
            with tx.savepoint():  # completes, but is part of the outer block
                assert _move(tx, 32, PLAIN_A, LIMITED, 3) == R.OK
                _note(tx, 32)
            raise Boom
        assert _move(tx, 33, LIMITED, PLAIN_B, 1) == R.EXCEEDS_CREDITS
    assert _stored_ids(ledger, [30, 31, 32, 33]) == {30}
    assert _notes(ledger) == set()
    assert _posted(ledger, LIMITED) == (0, 0)
    assert _posted(ledger, PLAIN_A) == (1, 0)


def test_accounts_created_in_an_undone_savepoint_do_not_exist(ledger: Ledger) -> None:
    with ledger.transaction() as tx:
        with pytest.raises(Boom), tx.savepoint():
            tx.create_accounts([Account(50, 1, 1)])
            assert _move(tx, 40, PLAIN_A, 50, 3) == R.OK
            raise Boom
        assert _move(tx, 41, PLAIN_A, 50, 3) == R.CREDIT_ACCOUNT_NOT_FOUND
        tx.create_accounts([Account(51, 1, 1)])
    assert ledger.lookup_accounts([50, 51]) == ledger.lookup_accounts([51])
    assert _stored_ids(ledger, [40, 41]) == set()
    ledger.create_accounts([Account(50, 1, 1)])  # the id is free again
    assert ledger.create_transfers([Transfer(42, PLAIN_A, 50, 3, 1, 1)]) == [R.OK]
    assert _posted(ledger, 50) == (0, 3)


# ---- GroupCommitter -------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_every_caller_gets_its_own_result_and_units_share_batches(ledger: Ledger) -> None:
    def unit(thread_no: int, unit_no: int, committer: GroupCommitter) -> Any:
        transfer_id = 1000 + thread_no * UNITS_PER_THREAD + unit_no
        amount = thread_no + 1

        def work(tx: LedgerTransaction) -> tuple[int, int, R, int]:
            batch_no = committer.batches  # batches committed before this one
            return thread_no, unit_no, _move(tx, transfer_id, PLAIN_A, PLAIN_B, amount), batch_no

        return work

    def caller(thread_no: int, committer: GroupCommitter) -> list[tuple[int, int, R, int]]:
        return [
            committer.run(unit(thread_no, unit_no, committer))
            for unit_no in range(UNITS_PER_THREAD)
        ]

    with (
        GroupCommitter(ledger) as committer,
        ThreadPoolExecutor(THREADS + 1) as pool,
    ):  # and the gate
        gate = Gate()
        held = pool.submit(committer.run, gate.unit)
        assert gate.entered.wait(WAIT_S)
        callers = [pool.submit(caller, n, committer) for n in range(THREADS)]
        time.sleep(QUEUE_SETTLE_S)  # every caller's first unit waits behind the gate
        gate.opened.set()
        held.result(WAIT_S)
        answers = [c.result(WAIT_S) for c in callers]

    for thread_no, answer in enumerate(answers):
        assert [(t, u, r) for t, u, r, _ in answer] == [
            (thread_no, u, R.OK) for u in range(UNITS_PER_THREAD)
        ]
    first_batch = {answer[0][3] for answer in answers}
    assert len(first_batch) == 1  # the units queued behind the gate went in one batch
    total_units = THREADS * UNITS_PER_THREAD
    assert committer.units == total_units + 1  # and the gate
    assert committer.batches < committer.units
    amounts = sum((n + 1) * UNITS_PER_THREAD for n in range(THREADS))
    assert _posted(ledger, PLAIN_A) == (amounts, 0)
    assert _posted(ledger, PLAIN_B) == (0, amounts)
    ids = list(range(1000, 1000 + total_units))
    assert _stored_ids(ledger, ids) == set(ids)


@pytest.mark.timeout(60)
def test_a_failing_unit_is_undone_alone_and_its_batch_commits(ledger: Ledger) -> None:
    ran: list[str] = []

    def first(tx: LedgerTransaction) -> tuple[R, int]:
        ran.append("first")
        _note(tx, 1)
        return _move(tx, 31, PLAIN_A, PLAIN_B, 3), committer.batches

    def failing(tx: LedgerTransaction) -> None:
        ran.append("failing")
        assert _move(tx, 32, PLAIN_A, LIMITED, 9) == R.OK
        _note(tx, 2)
        raise Boom("unit 2")

    def last(tx: LedgerTransaction) -> tuple[R, int]:
        ran.append("last")
        _note(tx, 3)
        return _move(tx, 33, LIMITED, PLAIN_B, 9), committer.batches

    with GroupCommitter(ledger) as committer, ThreadPoolExecutor(4) as pool:
        done = _behind_gate(committer, pool, [first, failing, last])
        first_result, first_batch = done[0].result(WAIT_S)
        last_result, last_batch = done[2].result(WAIT_S)
        batches_after = committer.batches
        with pytest.raises(Boom, match="unit 2"):
            done[1].result(WAIT_S)
    assert ran == ["first", "failing", "last"]
    assert first_batch == last_batch == batches_after - 1  # one batch, after the gate's
    assert first_result == R.OK
    assert last_result == R.EXCEEDS_CREDITS  # the undone unit's credit is not spendable
    assert _stored_ids(ledger, [31, 32, 33]) == {31}
    assert _notes(ledger) == {1, 3}
    assert _posted(ledger, LIMITED) == (0, 0)
    assert _posted(ledger, PLAIN_A) == (3, 0)


@pytest.mark.timeout(60)
def test_a_unit_whose_own_statement_fails_is_undone_alone(ledger: Ledger) -> None:
    """On PostgreSQL the failed statement aborts the transaction; the unit's savepoint
    must bring it back, or the rest of the batch could not commit."""

    def first(tx: LedgerTransaction) -> R:
        _note(tx, 1)
        return _move(tx, 35, PLAIN_A, PLAIN_B, 2)

    def duplicate(tx: LedgerTransaction) -> None:
        assert _move(tx, 36, PLAIN_A, PLAIN_B, 5) == R.OK
        _note(tx, 1)  # the first unit's row: a duplicate key

    def last(tx: LedgerTransaction) -> R:
        _note(tx, 3)
        return _move(tx, 37, PLAIN_A, PLAIN_B, 4)

    with GroupCommitter(ledger) as committer, ThreadPoolExecutor(4) as pool:
        done = _behind_gate(committer, pool, [first, duplicate, last])
        assert done[0].result(WAIT_S) == R.OK
        with pytest.raises(sa.exc.IntegrityError):
            done[1].result(WAIT_S)
        assert done[2].result(WAIT_S) == R.OK
        assert committer.batches == 2  # the gate's, then these three together
    assert _stored_ids(ledger, [35, 36, 37]) == {35, 37}
    assert _notes(ledger) == {1, 3}
    assert _posted(ledger, PLAIN_A) == (6, 0)


@pytest.mark.timeout(60)
def test_a_failed_commit_fails_every_caller_and_stores_nothing(ledger: Ledger) -> None:
    def first(tx: LedgerTransaction) -> R:
        _note(tx, 1)
        return _move(tx, 41, PLAIN_A, LIMITED, 5)

    def orphan(tx: LedgerTransaction) -> str:
        # Accepted now; the deferred foreign key refuses it at COMMIT.
        tx.connection.exec_driver_sql("INSERT INTO scratch_child (id, parent_id) VALUES (1, 999)")
        return "inserted"

    def last(tx: LedgerTransaction) -> R:
        _note(tx, 3)
        return _move(tx, 43, PLAIN_A, PLAIN_B, 2)

    with GroupCommitter(ledger) as committer, ThreadPoolExecutor(4) as pool:
        done = _behind_gate(committer, pool, [first, orphan, last])
        errors = []
        for future in done:
            with pytest.raises(sa.exc.IntegrityError) as caught:
                future.result(WAIT_S)
            errors.append(caught.value)
        assert errors[0] is errors[1] is errors[2]  # the commit's own error, for all
        # The writer goes on, and the credit that was never committed cannot be spent.
        assert committer.run(lambda tx: _move(tx, 44, LIMITED, PLAIN_B, 5)) == R.EXCEEDS_CREDITS
        assert committer.run(lambda tx: _move(tx, 45, PLAIN_A, PLAIN_B, 1)) == R.OK
    assert _stored_ids(ledger, [41, 43, 44, 45]) == {45}
    assert _notes(ledger) == set()
    assert _posted(ledger, LIMITED) == (0, 0)
    assert _posted(ledger, PLAIN_A) == (1, 0)
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM scratch_child").scalar() == 0


@pytest.mark.timeout(60)
def test_close_finishes_queued_units_then_refuses_new_ones(ledger: Ledger) -> None:
    def unit(transfer_id: int) -> Callable[[LedgerTransaction], R]:
        return lambda tx: _move(tx, transfer_id, PLAIN_A, PLAIN_B, 1)

    committer = GroupCommitter(ledger)
    with ThreadPoolExecutor(8) as pool:
        gate = Gate()
        held = pool.submit(committer.run, gate.unit)
        assert gate.entered.wait(WAIT_S)
        queued = [pool.submit(committer.run, unit(50 + i)) for i in range(5)]
        time.sleep(QUEUE_SETTLE_S)
        closing = pool.submit(committer.close)
        time.sleep(QUEUE_SETTLE_S)
        assert not closing.done()  # close waits for the queued units
        gate.opened.set()
        held.result(WAIT_S)
        assert [f.result(WAIT_S) for f in queued] == [R.OK] * 5
        closing.result(WAIT_S)
    with pytest.raises(CommitterClosed):
        committer.run(unit(60))
    committer.close()  # a second close is harmless
    assert _stored_ids(ledger, list(range(50, 61))) == set(range(50, 55))
    assert _posted(ledger, PLAIN_A) == (5, 0)


@pytest.mark.timeout(120)
def test_a_unit_racing_close_is_answered_never_left_waiting(ledger: Ledger) -> None:
    rounds, callers = 30, 8
    answered: dict[int, object] = {}  # transfer id -> R.OK or CommitterClosed
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: widen the races
    try:
        for round_no in range(rounds):
            committer = GroupCommitter(ledger)
            start = threading.Barrier(callers + 1)

            def call(
                transfer_id: int,
                committer: GroupCommitter = committer,
                start: threading.Barrier = start,
            ) -> None:
                start.wait(WAIT_S)
                try:
                    answered[transfer_id] = committer.run(
                        lambda tx: _move(tx, transfer_id, PLAIN_A, PLAIN_B, 1)
                    )
                except CommitterClosed as closed:
                    answered[transfer_id] = closed

            ids = range(10_000 + round_no * callers, 10_000 + (round_no + 1) * callers)
            threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in ids]
            for thread in threads:
                thread.start()
            start.wait(WAIT_S)
            committer.close()
            for thread in threads:
                thread.join(WAIT_S)
                assert not thread.is_alive(), "a caller was left waiting after close"
    finally:
        sys.setswitchinterval(old_interval)
    assert len(answered) == rounds * callers
    ok = {i for i, outcome in answered.items() if outcome == R.OK}
    refused = {i for i, outcome in answered.items() if isinstance(outcome, CommitterClosed)}
    assert ok | refused == set(answered)
    assert _stored_ids(ledger, sorted(answered)) == ok  # refused units left no trace
    assert _posted(ledger, PLAIN_A) == (len(ok), 0)


@pytest.mark.timeout(60)
def test_units_waiting_for_room_in_a_full_queue_are_answered_at_close(ledger: Ledger) -> None:
    committer = GroupCommitter(ledger, queue_max=1)
    gate = Gate()
    held = _in_daemon(lambda: committer.run(gate.unit))
    assert gate.entered.wait(WAIT_S)
    callers = []
    for transfer_id in (90, 91, 92):  # the first fills the queue, the others wait for room
        callers.append(
            _in_daemon(lambda i=transfer_id: committer.run(lambda tx: _move(tx, i, 1, 2, 1)))
        )
        time.sleep(QUEUE_SETTLE_S / 3)
    closing = _in_daemon(committer.close)
    time.sleep(QUEUE_SETTLE_S)
    gate.opened.set()
    held.result(WAIT_S)
    closing.result(WAIT_S)
    answers = []
    for caller in callers:
        try:
            answers.append(caller.result(WAIT_S))
        except CommitterClosed as closed:
            answers.append(closed)
    ok = {i for i, a in zip((90, 91, 92), answers, strict=True) if a == R.OK}
    assert all(a == R.OK or isinstance(a, CommitterClosed) for a in answers)
    assert _stored_ids(ledger, [90, 91, 92]) == ok
    assert 90 in ok  # queued before close began: finished, not refused


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_unit_that_kills_the_writer_fails_its_batch_and_refuses_later_units(
    ledger: Ledger,
) -> None:
    def fatal(tx: LedgerTransaction) -> None:
        assert _move(tx, 95, PLAIN_A, PLAIN_B, 1) == R.OK
        raise SystemExit("the unit ends the writer thread")

    committer = GroupCommitter(ledger)
    with pytest.raises(SystemExit):
        _in_daemon(lambda: committer.run(fatal)).result(WAIT_S)
    later = _in_daemon(lambda: committer.run(lambda tx: _move(tx, 96, PLAIN_A, PLAIN_B, 1)))
    with pytest.raises(CommitterClosed):
        later.result(5.0)  # refused: no writer will ever answer it
    committer.close()
    assert _stored_ids(ledger, [95, 96]) == set()
    assert _posted(ledger, PLAIN_A) == (0, 0)


@pytest.mark.timeout(60)
def test_run_answers_only_once_the_whole_batch_is_committed(
    ledger: Ledger, database_url: str
) -> None:
    slow_finished_at: list[float] = []

    def quick(tx: LedgerTransaction) -> R:
        return _move(tx, 70, PLAIN_A, PLAIN_B, 4)

    def slow(tx: LedgerTransaction) -> R:
        time.sleep(QUEUE_SETTLE_S)  # the batch stays open well after `quick` ran
        slow_finished_at.append(time.monotonic())
        return _move(tx, 71, PLAIN_A, PLAIN_B, 1)

    def quick_caller(committer: GroupCommitter, reader: Ledger) -> tuple[R, float, set[int]]:
        result = committer.run(quick)
        answered_at = time.monotonic()
        return result, answered_at, _stored_ids(reader, [70])

    with (
        Ledger.open(database_url) as reader,
        GroupCommitter(ledger) as committer,
        ThreadPoolExecutor(4) as pool,
    ):
        gate = Gate()
        held = pool.submit(committer.run, gate.unit)
        assert gate.entered.wait(WAIT_S)
        asked = pool.submit(quick_caller, committer, reader)
        time.sleep(QUEUE_SETTLE_S / 2)
        slow_done = pool.submit(committer.run, slow)
        time.sleep(QUEUE_SETTLE_S)
        gate.opened.set()
        held.result(WAIT_S)
        result, answered_at, seen = asked.result(WAIT_S)
        assert slow_done.result(WAIT_S) == R.OK
    assert result == R.OK
    assert answered_at >= slow_finished_at[0]  # not before the batch's last unit ran
    assert seen == {70}  # another connection already sees it: it was committed


# ---- DirectCommitter ------------------------------------------------------------------


def test_direct_committer_returns_the_unit_result_once_committed(
    ledger: Ledger, database_url: str
) -> None:
    committer = DirectCommitter(ledger)

    def unit(tx: LedgerTransaction) -> tuple[R, str]:
        _note(tx, 1)
        return _move(tx, 80, PLAIN_A, LIMITED, 6), "mine"

    assert committer.run(unit) == (R.OK, "mine")
    with Ledger.open(database_url) as reader:
        assert _stored_ids(reader, [80]) == {80}
    assert _notes(ledger) == {1}
    assert _posted(ledger, LIMITED) == (0, 6)


def test_direct_committer_unit_that_raises_is_rolled_back(ledger: Ledger) -> None:
    committer = DirectCommitter(ledger)

    def unit(tx: LedgerTransaction) -> None:
        assert _move(tx, 81, PLAIN_A, LIMITED, 6) == R.OK
        _note(tx, 1)
        raise Boom("direct")

    with pytest.raises(Boom, match="direct"):
        committer.run(unit)
    assert _stored_ids(ledger, [81]) == set()
    assert _notes(ledger) == set()
    assert committer.run(lambda tx: _move(tx, 82, LIMITED, PLAIN_B, 6)) == R.EXCEEDS_CREDITS
    assert _posted(ledger, LIMITED) == (0, 0)


def test_a_unit_whose_caller_gave_up_before_the_writer_took_it_is_not_run(
    ledger: Ledger,
) -> None:
    # An event loop awaiting `submit` through asyncio.wrap_future cancels the future
    # when its task is cancelled (a client hung up). The writer must skip that unit,
    # and go on serving the others: answering a cancelled future would raise in it.
    with GroupCommitter(ledger) as committer, ThreadPoolExecutor(2) as pool:
        gate = Gate()
        held = pool.submit(committer.run, gate.unit)
        assert gate.entered.wait(WAIT_S)
        given_up = committer.submit(lambda tx: _note(tx, 1))
        kept = committer.submit(lambda tx: _note(tx, 2))
        assert given_up.cancel()
        gate.opened.set()
        assert held.result(WAIT_S) is None
        assert kept.result(WAIT_S) is None
        assert committer.run(lambda tx: _note(tx, 3)) is None  # the writer still serves
        running = committer.submit(lambda tx: _note(tx, 4))
        running.result(WAIT_S)
        assert not running.cancel()  # taken (and done): no longer cancellable
    assert _notes(ledger) == {2, 3, 4}


@pytest.mark.parametrize("mode", ["held", "no loop", "not when"])
def test_a_held_event_loop_runs_nothing_while_a_batch_runs(ledger: Ledger, mode: str) -> None:
    # A callback the loop is given while a unit runs waits for the unit's end when the
    # committer holds the loop; without the hold (no loop given, or `when` false) the
    # loop runs it at once (the unit sleeps, the interpreter's lock is free).
    held = mode == "held"
    loop = asyncio.new_event_loop()
    serving = threading.Thread(target=loop.run_forever, daemon=True)
    serving.start()
    try:
        with GroupCommitter(ledger) as committer:
            committer.hold_while_writing(
                None if mode == "no loop" else loop, when=lambda: mode != "not when"
            )
            times: dict[str, float] = {}
            called = threading.Event()

            def call_back() -> None:
                times["callback"] = time.monotonic()
                called.set()

            def unit(tx: LedgerTransaction) -> None:
                _note(tx, 1)
                loop.call_soon_threadsafe(call_back)
                time.sleep(0.02)
                times["unit_end"] = time.monotonic()

            committer.run(unit)
            assert called.wait(WAIT_S)
        assert (times["callback"] >= times["unit_end"]) is held
    finally:
        loop.call_soon_threadsafe(loop.stop)
        serving.join(WAIT_S)
        loop.close()
    assert _notes(ledger) == {1}
