"""Wallet: wallets, linked bank accounts and the wallet's operations.

- `wallets`: one per user; `account_id` is the user's account on the CNY ledger.
- `linked_bank_accounts`: the bank code, the masked account number and the bank's
  agreement number; the full account number is never stored.
- `wallet_operations`: every top-up, withdrawal and P2P transfer, approved or declined.
  The idempotency key is unique per user; `status` is `pending`, `completed` or
  `declined` (with `decline_code`; for a limit, the limit and what remained of it; for a
  bank decline, the bank's reason). The limits sum `amount_fen` over these rows.
- Ids are 16-byte big-endian binary and instants are nanoseconds in BIGINT, as in 0001.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallets",
        sa.Column("user_id", sa.LargeBinary(16), primary_key=True),
        sa.Column("account_id", sa.LargeBinary(16), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "linked_bank_accounts",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("bank_code", sa.String(16), nullable=False),
        sa.Column("account_masked", sa.String(32), nullable=False),
        sa.Column("agreement", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("linked_bank_accounts_user", "linked_bank_accounts", ["user_id"])
    op.create_table(
        "wallet_operations",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("linked_account_id", sa.LargeBinary(16), nullable=True),
        sa.Column("counterparty_user_id", sa.LargeBinary(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decline_code", sa.String(48), nullable=True),
        sa.Column("decline_limit", sa.BigInteger(), nullable=True),
        sa.Column("decline_remaining", sa.BigInteger(), nullable=True),
        sa.Column("decline_reason", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("user_id", "idempotency_key", name="wallet_operations_user_key"),
    )
    op.create_index("wallet_operations_user_time", "wallet_operations", ["user_id", "created_at"])
    op.create_index("wallet_operations_counterparty", "wallet_operations", ["counterparty_user_id"])


def downgrade() -> None:
    op.drop_index("wallet_operations_counterparty", table_name="wallet_operations")
    op.drop_index("wallet_operations_user_time", table_name="wallet_operations")
    op.drop_index("linked_bank_accounts_user", table_name="linked_bank_accounts")
    for table in ("wallet_operations", "linked_bank_accounts", "wallets"):
        op.drop_table(table)
