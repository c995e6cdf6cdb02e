"""How ledger values are stored on each database, and the SQL that moves them.

Ids are 16-byte big-endian binary everywhere. Amounts (128-bit) are NUMERIC(39,0)
on PostgreSQL; SQLite has no 128-bit integer, so there an amount is an INTEGER
while it fits in 63 bits and 16 big-endian bytes beyond that (the column has no
type affinity, so both are kept exactly). SQL is written once with `?`
placeholders and rewritten for psycopg's `%s`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from milletpay.core.ids import id_from_bytes, id_to_bytes

_I63 = 1 << 63


encode_id = id_to_bytes
decode_id = id_from_bytes


def _encode_u128_sqlite(value: int) -> int | bytes:
    return value if value < _I63 else value.to_bytes(16, "big")


def _decode_u128_sqlite(value: Any) -> int:
    return value if type(value) is int else int.from_bytes(value, "big")


def _identity(value: int) -> int:
    return value


def _decode_u128_pg(value: Any) -> int:
    return int(value)


class Dialect:
    """The few places where SQLite and PostgreSQL differ for the ledger."""

    def __init__(self, name: str) -> None:
        assert name in ("sqlite", "postgresql"), name
        self.name = name
        self.sqlite = name == "sqlite"
        self.encode_u128 = _encode_u128_sqlite if self.sqlite else _identity
        self.decode_u128 = _decode_u128_sqlite if self.sqlite else _decode_u128_pg

    def sql(self, text: str) -> str:
        return text if self.sqlite else text.replace("?", "%s")

    def in_clause(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column IN (...)` for SQLite, `column = ANY(%s)` for PostgreSQL."""
        if self.sqlite:
            return f"{column} IN ({','.join('?' * len(values))})", list(values)
        return f"{column} = ANY(%s)", [list(values)]

    def transfer_row(
        self, timestamp: int, id: int, debit_ix: int, credit_ix: int, amount: int,
        pending_id: int, user_data_128: int, user_data_64: int, user_data_32: int,
        timeout_s: int, ledger: int, code: int, flags: int,
    ) -> tuple[Any, ...]:  # fmt: skip
        """The parameters of `INSERT_TRANSFER` for one transfer."""
        enc = self.encode_u128
        return (
            timestamp, encode_id(id), debit_ix, credit_ix, enc(amount),
            encode_id(pending_id) if pending_id else None, enc(user_data_128),
            enc(user_data_64), user_data_32, timeout_s, ledger, code, flags,
        )  # fmt: skip

    @property
    def lock_meta(self) -> str:
        # SQLite already holds the write lock (BEGIN IMMEDIATE); PostgreSQL locks the row,
        # which serializes writers without deadlocks: every writer takes this lock first.
        return "" if self.sqlite else " FOR UPDATE"


#: Largest number of values in one IN list; larger sets are queried in chunks.
IN_CHUNK_MAX = 16_000


def chunks(values: Sequence[Any], size: int = IN_CHUNK_MAX) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


ACCOUNT_COLUMNS = (
    "ix, id, ledger, code, flags, user_data_128, user_data_64, user_data_32, "
    "debits_pending, debits_posted, credits_pending, credits_posted, timestamp"
)
TRANSFER_COLUMNS = (
    "t.timestamp, t.id, t.debit_ix, t.credit_ix, t.amount, t.pending_id, t.user_data_128, "
    "t.user_data_64, t.user_data_32, t.timeout_s, t.ledger, t.code, t.flags"
)
INSERT_ACCOUNT = (
    "INSERT INTO accounts (ix, id, ledger, code, flags, user_data_128, user_data_64, "
    "user_data_32, debits_pending, debits_posted, credits_pending, credits_posted, timestamp) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_TRANSFER = (
    "INSERT INTO transfers (timestamp, id, debit_ix, credit_ix, amount, pending_id, "
    "user_data_128, user_data_64, user_data_32, timeout_s, ledger, code, flags) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_PENDING = (
    "INSERT INTO pending_transfers (timestamp, status, expires_at, resolved_at) VALUES (?, ?, ?, ?)"
)
UPDATE_PENDING = (
    "UPDATE pending_transfers SET status = ?, expires_at = ?, resolved_at = ? WHERE timestamp = ?"
)
UPDATE_ACCOUNT = (
    "UPDATE accounts SET debits_pending = ?, debits_posted = ?, credits_pending = ?, "
    "credits_posted = ?, flags = ? WHERE ix = ?"
)
INSERT_BALANCE = (
    "INSERT INTO account_balances (account_ix, timestamp, debits_pending, debits_posted, "
    "credits_pending, credits_posted) VALUES (?, ?, ?, ?, ?, ?)"
)
