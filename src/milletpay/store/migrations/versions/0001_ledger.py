"""The ledger: accounts, transfers, pending-transfer state, balance history.

Layout chosen for write throughput (see docs/architecture.md, "Ledger storage"):
- Accounts carry a small integer surrogate `ix`; transfers refer to accounts by it.
- A transfer's primary key is its ledger timestamp, which is unique and increasing,
  so new rows append; on SQLite it is the rowid, and the per-account indexes on
  `debit_ix` / `credit_ix` are ordered by timestamp for free.
- 128-bit ids are 16-byte big-endian binary (byte order = numeric order). 128-bit
  amounts are NUMERIC(39,0) on PostgreSQL; on SQLite an integer while it fits in
  63 bits, else 16 big-endian bytes (the column has no type affinity).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _key() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    # INTEGER PRIMARY KEY is SQLite's rowid alias; BIGINT elsewhere.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.LargeBinary(16)


def _u128() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.LargeBinary().with_variant(sa.Numeric(39, 0), "postgresql")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "ledger_meta",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("last_account_ix", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO ledger_meta (id, last_timestamp, last_account_ix) VALUES (1, 0, 0)")
    op.create_table(
        "accounts",
        sa.Column("ix", _key(), primary_key=True, autoincrement=False),
        sa.Column("id", _id(), nullable=False, unique=True),
        sa.Column("ledger", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("user_data_128", _u128(), nullable=False),
        sa.Column("user_data_64", _u128(), nullable=False),
        sa.Column("user_data_32", sa.BigInteger(), nullable=False),
        sa.Column("debits_pending", _u128(), nullable=False),
        sa.Column("debits_posted", _u128(), nullable=False),
        sa.Column("credits_pending", _u128(), nullable=False),
        sa.Column("credits_posted", _u128(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "transfers",
        sa.Column("timestamp", _key(), primary_key=True, autoincrement=False),
        sa.Column("id", _id(), nullable=False, unique=True),
        sa.Column("debit_ix", sa.BigInteger(), nullable=False),
        sa.Column("credit_ix", sa.BigInteger(), nullable=False),
        sa.Column("amount", _u128(), nullable=False),
        sa.Column("pending_id", _id(), nullable=True),
        sa.Column("user_data_128", _u128(), nullable=False),
        sa.Column("user_data_64", _u128(), nullable=False),
        sa.Column("user_data_32", sa.BigInteger(), nullable=False),
        sa.Column("timeout_s", sa.BigInteger(), nullable=False),
        sa.Column("ledger", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
    )
    if sqlite:
        # The rowid (timestamp) rides along in every index entry.
        op.create_index("transfers_debit", "transfers", ["debit_ix"])
        op.create_index("transfers_credit", "transfers", ["credit_ix"])
    else:
        op.create_index("transfers_debit", "transfers", ["debit_ix", "timestamp"])
        op.create_index("transfers_credit", "transfers", ["credit_ix", "timestamp"])
    op.create_table(
        "pending_transfers",
        sa.Column("timestamp", _key(), primary_key=True, autoincrement=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        # Set while the hold is live and has a timeout; NULL once resolved.
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("pending_transfers_expiry", "pending_transfers", ["expires_at"])
    op.create_table(
        "account_balances",
        sa.Column("account_ix", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("timestamp", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("debits_pending", _u128(), nullable=False),
        sa.Column("debits_posted", _u128(), nullable=False),
        sa.Column("credits_pending", _u128(), nullable=False),
        sa.Column("credits_posted", _u128(), nullable=False),
    )


def downgrade() -> None:
    for table in ("account_balances", "pending_transfers", "transfers", "accounts", "ledger_meta"):
        op.drop_table(table)
