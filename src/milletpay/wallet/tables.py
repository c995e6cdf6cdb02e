"""The wallet tables as SQLAlchemy Core names, for queries (the schema itself is the
migration `store/migrations/versions/0005_wallet.py`)."""

from __future__ import annotations

import sqlalchemy as sa

wallets = sa.table(
    "wallets",
    sa.column("user_id", sa.LargeBinary()),
    sa.column("account_id", sa.LargeBinary()),
    sa.column("created_at", sa.BigInteger()),
)
linked_bank_accounts = sa.table(
    "linked_bank_accounts",
    sa.column("id", sa.LargeBinary()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("bank_code", sa.String()),
    sa.column("account_masked", sa.String()),
    sa.column("agreement", sa.String()),
    sa.column("created_at", sa.BigInteger()),
)
wallet_operations = sa.table(
    "wallet_operations",
    sa.column("id", sa.LargeBinary()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("idempotency_key", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("amount_fen", sa.BigInteger()),
    sa.column("linked_account_id", sa.LargeBinary()),
    sa.column("counterparty_user_id", sa.LargeBinary()),
    sa.column("status", sa.String()),
    sa.column("decline_code", sa.String()),
    sa.column("decline_limit", sa.BigInteger()),
    sa.column("decline_remaining", sa.BigInteger()),
    sa.column("decline_reason", sa.String()),
    sa.column("created_at", sa.BigInteger()),
)
