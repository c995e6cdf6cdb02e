"""The ledger engine: the state machine of `state.py` on a SQL database.

Each `create_*` call is one database transaction: take the ledger's write lock,
load the working set the batch needs (one query per kind, never one per event),
apply the events in memory, write every row the batch produced with
`executemany`, commit. A batch is applied entirely or not at all.

Writers are serialized by the database itself: SQLite's write lock (BEGIN
IMMEDIATE) or, on PostgreSQL, a row lock on `ledger_meta` that every writer takes
first, so concurrent writers in other processes wait their turn instead of
deadlocking. The meta row carries the last timestamp handed out; a writer that
finds it unchanged since its own last commit knows nobody else wrote in between,
and reuses the accounts it holds in memory instead of reading them again.

`Ledger.transaction()` opens the same write transaction for a caller that has rows of
its own to commit with the transfers (a wallet operation's record, say): one commit,
one fsync, for both, and a crash between them is impossible.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from milletpay.core.clock import Clock, SystemClock
from milletpay.ledger import storage as S
from milletpay.ledger.state import AccountState, BatchState, TransferState
from milletpay.ledger.types import (
    BATCH_EVENTS_MAX,
    Account,
    AccountBalance,
    AccountFilter,
    AccountFilterFlags,
    CreateAccountResult,
    CreateTransferResult,
    LedgerInputError,
    PendingStatus,
    Transfer,
    TransferFlags,
    VerifyReport,
    check_batch,
)
from milletpay.store import create_engine, upgrade
from milletpay.store.engine import WRITE_LOCK, savepoint, write_gate

#: The most expired holds released by one batch; the rest follow in later batches
#: (a post or void that meets a due hold expires it on the spot).
EXPIRE_BATCH_MAX = 8190
#: The most accounts a writer keeps in memory between batches.
ACCOUNT_CACHE_MAX = 200_000


@dataclass
class _Tx:
    connection: sa.Connection
    cursor: Any
    last_timestamp: int
    last_account_ix: int
    next_timestamp: int
    #: Whether this transaction released the holds due already (`Ledger._prepare`).
    swept: bool = False

    def reserve(self, count: int) -> range:
        """`count` unique timestamps, after every one handed out before."""
        start = self.next_timestamp
        self.next_timestamp += count
        return range(start, start + count)


class Ledger:
    """A double-entry ledger on SQLite or PostgreSQL; safe to share between threads."""

    def __init__(self, engine: sa.Engine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock: Clock = clock or SystemClock()
        self._d = S.Dialect(engine.dialect.name)
        self._lock = threading.RLock()
        self._accounts: dict[int, AccountState] = {}  # by id; valid while _cache_timestamp holds
        self._accounts_by_ix: dict[int, AccountState] = {}
        self._cache_timestamp = -1

    @classmethod
    def open(cls, url: str | None = None, *, clock: Clock | None = None) -> Ledger:
        """Open (creating or upgrading the schema as needed) the ledger at `url`."""
        engine = create_engine(url)
        upgrade(engine)
        return cls(engine, clock)

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    @property
    def clock(self) -> Clock:
        return self._clock

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- writing ----------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[_Tx]:
        d = self._d
        with (
            self._lock,
            write_gate(self._engine),
            self._engine.connect().execution_options(**{WRITE_LOCK: True}) as conn,
        ):
            try:
                with conn.begin():
                    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                    cursor.execute(
                        "SELECT last_timestamp, last_account_ix FROM ledger_meta WHERE id = 1"
                        + d.lock_meta
                    )
                    last_timestamp, last_account_ix = cursor.fetchone()
                    if last_timestamp != self._cache_timestamp:
                        self._forget_accounts()
                    tx = _Tx(
                        conn,
                        cursor,
                        last_timestamp,
                        last_account_ix,
                        max(self._clock.now_ns(), last_timestamp + 1),
                    )
                    yield tx
                    assert tx.next_timestamp > last_timestamp
                    cursor.execute(
                        d.sql(
                            "UPDATE ledger_meta SET last_timestamp = ?, last_account_ix = ? "
                            "WHERE id = 1"
                        ),
                        (tx.next_timestamp - 1, tx.last_account_ix),
                    )
                    cursor.close()
            except BaseException:
                self._forget_accounts()
                raise
            self._cache_timestamp = tx.next_timestamp - 1
            if len(self._accounts) > ACCOUNT_CACHE_MAX:
                self._forget_accounts()

    def _forget_accounts(self) -> None:
        self._accounts.clear()
        self._accounts_by_ix.clear()
        self._cache_timestamp = -1

    def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]:
        """Create accounts; one result per account, in order. Linked chains are atomic."""
        events = check_batch(accounts, Account)
        if not events:
            return []
        with self._write() as tx:
            return self._create_accounts(tx, events)

    def create_transfers(self, transfers: Sequence[Transfer]) -> list[CreateTransferResult]:
        """Create transfers; one result per transfer, in order. Linked chains are atomic."""
        events = check_batch(transfers, Transfer)
        if not events:
            return []
        with self._write() as tx:
            return self._create_transfers(tx, events)

    @contextmanager
    def transaction(self) -> Iterator[LedgerTransaction]:
        """One write transaction that the caller fills: ledger events through the
        `LedgerTransaction`, its own statements on `LedgerTransaction.connection`. It
        commits when the block ends and rolls back, all of it, if the block raises."""
        with self._write() as tx:
            yield LedgerTransaction(self, tx)

    def _create_accounts(self, tx: _Tx, events: list[Account]) -> list[CreateAccountResult]:
        self._load_accounts(tx.cursor, ids={a.id for a in events})
        state = BatchState(self._accounts, {})
        results, created = state.apply_accounts(
            events, tx.reserve(len(events)), tx.last_account_ix + 1
        )
        if created:
            tx.last_account_ix = created[-1].ix
            tx.cursor.executemany(
                self._d.sql(S.INSERT_ACCOUNT), [self._account_row(a) for a in created]
            )
            for a in created:
                self._accounts_by_ix[a.ix] = a
        return results

    def _create_transfers(self, tx: _Tx, events: list[Transfer]) -> list[CreateTransferResult]:
        state = self._prepare(tx, events)
        results = state.apply_transfers(events, tx.reserve(len(events)))
        self._store(tx.cursor, state)
        return results

    def expire_pending(self) -> int:
        """Release every hold whose timeout has passed; returns how many expired."""
        total = 0
        while True:
            with self._write() as tx:
                if not self._expiry_due(tx.cursor):
                    return total
                state = self._prepare(tx, [])
                self._store(tx.cursor, state)
                total += state.expired

    def _expiry_due(self, cursor: Any) -> bool:
        cursor.execute(
            self._d.sql(
                "SELECT 1 FROM pending_transfers WHERE expires_at IS NOT NULL "
                "AND expires_at <= ? LIMIT 1"
            ),
            (self._clock.now_ns(),),
        )
        return cursor.fetchone() is not None

    def _prepare(self, tx: _Tx, events: Sequence[Transfer]) -> BatchState:
        """Load the batch's working set and, the first time in the transaction, release
        the holds that are due. Once a transaction suffices: a hold that falls due while
        the transaction runs (milliseconds) is released by the next one, and one posted
        or voided in the meantime expires then (`BatchState`), as a sweep would."""
        d, cur = self._d, tx.cursor
        due: list[int] = []
        if not tx.swept:
            cur.execute(
                d.sql(
                    "SELECT timestamp FROM pending_transfers WHERE expires_at IS NOT NULL "
                    "AND expires_at <= ? ORDER BY expires_at LIMIT ?"
                ),
                (tx.next_timestamp, EXPIRE_BATCH_MAX),
            )
            due = [row[0] for row in cur.fetchall()]
            tx.swept = True
        ids = {t.id for t in events}
        ids.update(t.pending_id for t in events if t.pending_id)
        rows = self._select_transfer_rows(cur, "t.id", [S.encode_id(i) for i in ids])
        due_rows = self._select_transfer_rows(cur, "t.timestamp", due)
        account_ids = {t.debit_account_id for t in events}
        account_ids.update(t.credit_account_id for t in events)
        account_ixs = {r[2] for r in rows} | {r[3] for r in rows}
        account_ixs.update(r[2] for r in due_rows)
        account_ixs.update(r[3] for r in due_rows)
        self._load_accounts(cur, ids=account_ids, ixs=account_ixs)
        loaded = {t.id: t for t in map(self._transfer_state, rows)}
        state = BatchState(self._accounts, loaded)
        for p, ts in zip(
            map(self._transfer_state, due_rows), tx.reserve(len(due_rows)), strict=True
        ):
            p = loaded.setdefault(p.id, p)
            if p.status == PendingStatus.PENDING:
                state.expire(p, ts)
        return state

    def _store(self, cur: Any, state: BatchState) -> None:
        """Write everything the batch produced."""
        d = self._d
        enc = d.encode_u128
        if state.new_transfers:
            cur.executemany(
                d.sql(S.INSERT_TRANSFER),
                [
                    d.transfer_row(
                        t.timestamp,
                        t.id,
                        t.debit.ix,
                        t.credit.ix,
                        t.amount,
                        t.pending_id,
                        t.user_data_128,
                        t.user_data_64,
                        t.user_data_32,
                        t.timeout_s,
                        t.ledger,
                        t.code,
                        t.flags,
                    )
                    for t in state.new_transfers
                ],
            )
            pendings = [
                (t.timestamp, t.status, t.expires_at or None, t.resolved_at or None)
                for t in state.new_transfers
                if t.status
            ]
            if pendings:
                cur.executemany(d.sql(S.INSERT_PENDING), pendings)
        if state.touched_pendings:
            cur.executemany(
                d.sql(S.UPDATE_PENDING),
                [
                    (p.status, p.expires_at or None, p.resolved_at or None, p.timestamp)
                    for p in state.touched_pendings.values()
                ],
            )
        if state.touched_accounts:
            cur.executemany(
                d.sql(S.UPDATE_ACCOUNT),
                [
                    (
                        enc(a.debits_pending),
                        enc(a.debits_posted),
                        enc(a.credits_pending),
                        enc(a.credits_posted),
                        a.flags,
                        a.ix,
                    )
                    for a in state.touched_accounts.values()
                ],
            )
        if state.history:
            cur.executemany(
                d.sql(S.INSERT_BALANCE),
                [
                    (ix, ts, enc(dp), enc(dpo), enc(cp), enc(cpo))
                    for ix, ts, dp, dpo, cp, cpo in state.history
                ],
            )

    # ---- loading ----------------------------------------------------------------

    def _load_accounts(self, cur: Any, ids: set[int], ixs: set[int] | None = None) -> None:
        """Bring the named accounts into the writer's memory (those not there yet)."""
        missing_ids = [S.encode_id(i) for i in ids if i not in self._accounts and i > 0]
        missing_ixs = [ix for ix in ixs or () if ix not in self._accounts_by_ix]
        for column, values in (("id", missing_ids), ("ix", missing_ixs)):
            for chunk in S.chunks(values):
                clause, params = self._d.in_clause(column, chunk)
                cur.execute(f"SELECT {S.ACCOUNT_COLUMNS} FROM accounts WHERE {clause}", params)
                for row in cur.fetchall():
                    a = self._account_state(row)
                    self._accounts[a.id] = a
                    self._accounts_by_ix[a.ix] = a

    def _select_transfer_rows(self, cur: Any, column: str, values: list[Any]) -> list[Any]:
        rows: list[Any] = []
        for chunk in S.chunks(values):
            clause, params = self._d.in_clause(column, chunk)
            cur.execute(
                f"SELECT {S.TRANSFER_COLUMNS}, p.status, p.expires_at, p.resolved_at "
                f"FROM transfers t LEFT JOIN pending_transfers p ON p.timestamp = t.timestamp "
                f"WHERE {clause}",
                params,
            )
            rows.extend(cur.fetchall())
        return rows

    def _account_state(self, row: Sequence[Any]) -> AccountState:
        dec = self._d.decode_u128
        return AccountState(
            row[0], S.decode_id(row[1]), row[2], row[3], row[4], dec(row[5]), dec(row[6]),
            row[7], row[12], dec(row[8]), dec(row[9]), dec(row[10]), dec(row[11]),
        )  # fmt: skip

    def _account_row(self, a: AccountState) -> tuple[Any, ...]:
        enc = self._d.encode_u128
        return (
            a.ix, S.encode_id(a.id), a.ledger, a.code, a.flags, enc(a.user_data_128),
            enc(a.user_data_64), a.user_data_32, enc(a.debits_pending), enc(a.debits_posted),
            enc(a.credits_pending), enc(a.credits_posted), a.timestamp,
        )  # fmt: skip

    def _transfer_state(self, row: Sequence[Any]) -> TransferState:
        dec = self._d.decode_u128
        return TransferState(
            row[0], S.decode_id(row[1]), self._accounts_by_ix[row[2]],
            self._accounts_by_ix[row[3]], dec(row[4]), S.decode_id(row[5]) if row[5] else 0,
            dec(row[6]), dec(row[7]), row[8], row[9], row[10], row[11], row[12],
            row[13] or 0, row[14] or 0, row[15] or 0,
        )  # fmt: skip

    # ---- reading ----------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Any]:
        """A consistent read transaction, after releasing any hold that is already due.

        On PostgreSQL it runs at REPEATABLE READ, so that a reader that issues several
        statements (verify does) sees one snapshot while writers go on.
        """
        options = {} if self._d.sqlite else {"isolation_level": "REPEATABLE READ"}
        for attempt in range(2):
            due = False
            with self._engine.connect().execution_options(**options) as conn, conn.begin():
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    # The check is the transaction's first read, so the snapshot read below
                    # is one in which no hold is due (checked once; a second pass reads).
                    due = attempt == 0 and self._expiry_due(cursor)
                    if not due:
                        yield cursor
                        return
                finally:
                    cursor.close()
            if due:
                self.expire_pending()
        raise AssertionError("unreachable: the second pass always reads")

    def _lookup(
        self, ids: Sequence[int], select: str, column: str, make: Callable[[Any], Any]
    ) -> list[Any]:
        wanted = _check_ids(ids)
        found: dict[int, Any] = {}
        with self._read() as cur:
            for chunk in S.chunks([S.encode_id(i) for i in wanted]):
                clause, params = self._d.in_clause(column, chunk)
                cur.execute(f"{select} WHERE {clause}", params)
                for row in cur.fetchall():
                    value = make(row)
                    found[value.id] = value
        return [found[i] for i in wanted if i in found]

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]:
        """The accounts with these ids that exist, in the order asked."""
        return self._lookup(
            ids,
            f"SELECT {S.ACCOUNT_COLUMNS} FROM accounts",
            "id",
            lambda row: self._account_state(row).to_account(),
        )

    _TRANSFER_SELECT = (
        f"SELECT {S.TRANSFER_COLUMNS}, da.id, ca.id FROM transfers t "
        "JOIN accounts da ON da.ix = t.debit_ix JOIN accounts ca ON ca.ix = t.credit_ix"
    )

    def _transfer(self, row: Sequence[Any]) -> Transfer:
        dec = self._d.decode_u128
        return Transfer(
            S.decode_id(row[1]), S.decode_id(row[13]), S.decode_id(row[14]), dec(row[4]),
            row[10], row[11], TransferFlags(row[12]), S.decode_id(row[5]) if row[5] else 0, row[9],
            dec(row[6]), dec(row[7]), row[8], timestamp=row[0],
        )  # fmt: skip

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]:
        """The transfers with these ids that exist, in the order asked."""
        return self._lookup(ids, self._TRANSFER_SELECT, "t.id", self._transfer)

    def pending_status(self, transfer_id: int) -> PendingStatus | None:
        """What became of a pending transfer; None if it is not a pending transfer."""
        with self._read() as cur:
            cur.execute(
                self._d.sql(
                    "SELECT p.status FROM transfers t JOIN pending_transfers p "
                    "ON p.timestamp = t.timestamp WHERE t.id = ?"
                ),
                (S.encode_id(transfer_id),),
            )
            row = cur.fetchone()
        return PendingStatus(row[0]) if row else None

    def _account_ix(self, cur: Any, account_id: int) -> int | None:
        cur.execute(self._d.sql("SELECT ix FROM accounts WHERE id = ?"), (S.encode_id(account_id),))
        row = cur.fetchone()
        return None if row is None else int(row[0])

    def _filter_where(self, f: AccountFilter, prefix: str) -> tuple[list[str], list[Any]]:
        enc = self._d.encode_u128
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("timestamp >= ?", f.timestamp_min),
            ("timestamp <= ?", f.timestamp_max),
        ):
            if value:
                where.append(prefix + column)
                params.append(value)
        for column, value, encoded in (
            ("code", f.code, f.code),
            ("user_data_128", f.user_data_128, enc(f.user_data_128)),
            ("user_data_64", f.user_data_64, enc(f.user_data_64)),
            ("user_data_32", f.user_data_32, f.user_data_32),
        ):
            if value:
                where.append(f"t.{column} = ?")
                params.append(encoded)
        return where, params

    def get_account_transfers(self, f: AccountFilter) -> list[Transfer]:
        """An account's transfers, by timestamp (newest first with REVERSED), at most f.limit."""
        order = "DESC" if f.flags & AccountFilterFlags.REVERSED else "ASC"
        with self._read() as cur:
            ix = self._account_ix(cur, f.account_id)
            if ix is None:
                return []
            where, params = self._filter_where(f, "t.")
            parts: list[str] = []
            all_params: list[Any] = []
            for side, flag in (
                ("debit_ix", AccountFilterFlags.DEBITS),
                ("credit_ix", AccountFilterFlags.CREDITS),
            ):
                if f.flags & flag:
                    conditions = " AND ".join([f"t.{side} = ?", *where])
                    parts.append(
                        f"SELECT * FROM ({self._TRANSFER_SELECT} WHERE {conditions} "
                        f"ORDER BY t.timestamp {order} LIMIT ?) AS {side[0]}"
                    )
                    all_params.extend([ix, *params, f.limit])
            sql = " UNION ALL ".join(parts) + f" ORDER BY 1 {order} LIMIT ?"
            cur.execute(self._d.sql(sql), [*all_params, f.limit])
            return [self._transfer(row) for row in cur.fetchall()]

    def get_account_balances(self, f: AccountFilter) -> list[AccountBalance]:
        """A HISTORY account's balances after each of its transfers, at most f.limit."""
        order = "DESC" if f.flags & AccountFilterFlags.REVERSED else "ASC"
        dec = self._d.decode_u128
        with self._read() as cur:
            ix = self._account_ix(cur, f.account_id)
            if ix is None:
                return []
            where, params = self._filter_where(f, "b.")
            sides = f.flags & (AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS)
            one_side = sides != AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS
            join = ""
            if one_side or f.code or f.user_data_128 or f.user_data_64 or f.user_data_32:
                # Snapshots left by an expiry have no transfer: only an unfiltered read has them.
                join = " JOIN transfers t ON t.timestamp = b.timestamp"
            if one_side:
                side = "debit_ix" if sides & AccountFilterFlags.DEBITS else "credit_ix"
                where.append(f"t.{side} = ?")
                params.append(ix)
            conditions = " AND ".join(["b.account_ix = ?", *where])
            cur.execute(
                self._d.sql(
                    "SELECT b.debits_pending, b.debits_posted, b.credits_pending, "
                    f"b.credits_posted, b.timestamp FROM account_balances b{join} "
                    f"WHERE {conditions} ORDER BY b.timestamp {order} LIMIT ?"
                ),
                [ix, *params, f.limit],
            )
            return [
                AccountBalance(dec(r[0]), dec(r[1]), dec(r[2]), dec(r[3]), r[4])
                for r in cur.fetchall()
            ]

    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Check the ledger's invariants over everything stored."""
        from milletpay.ledger.verify import verify_ledger

        with self._read() as cur:
            return verify_ledger(cur, self._d, progress)


class LedgerTransaction:
    """A ledger write transaction shared with the caller (`Ledger.transaction`).

    Ledger events go through `create_accounts` / `create_transfers`, the caller's own
    rows through `connection`; they commit together or not at all. `savepoint` undoes
    one part (ledger events included) without the rest.
    """

    def __init__(self, ledger: Ledger, tx: _Tx) -> None:
        self._ledger = ledger
        self._tx = tx
        self._savepoints = 0

    @property
    def connection(self) -> sa.Connection:
        return self._tx.connection

    def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]:
        events = check_batch(accounts, Account)
        return self._ledger._create_accounts(self._tx, events) if events else []

    def create_transfers(self, transfers: Sequence[Transfer]) -> list[CreateTransferResult]:
        events = check_batch(transfers, Transfer)
        return self._ledger._create_transfers(self._tx, events) if events else []

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo what the block wrote, in the ledger and on `connection`, if it raises."""
        self._savepoints += 1
        try:
            with savepoint(self._tx.connection, f"millet_{self._savepoints}"):
                yield
        except BaseException:
            # The accounts in memory may hold balances the savepoint took back.
            self._ledger._forget_accounts()
            raise


def _check_ids(ids: Sequence[int]) -> list[int]:
    if not isinstance(ids, (list, tuple)):
        raise LedgerInputError(
            f"expected a list of ids, got {type(ids).__name__}", code="ledger_invalid_type"
        )
    if len(ids) > BATCH_EVENTS_MAX:
        raise LedgerInputError(
            f"at most {BATCH_EVENTS_MAX} ids per lookup, got {len(ids)}",
            code="ledger_batch_too_large",
        )
    for i in ids:
        if type(i) is not int or not 0 <= i < 1 << 128:
            raise LedgerInputError(f"invalid id {i!r}", code="ledger_invalid_type")
    return list(ids)
