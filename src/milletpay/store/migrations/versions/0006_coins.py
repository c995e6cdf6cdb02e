"""Coins: the coin operations and the digital-goods services that have shut down.

- `coin_operations`: every coin purchase (from the wallet balance or a linked bank
  account) and every spend at a digital-goods merchant, approved or declined. The
  idempotency key is unique per user; `kind` is `purchase_balance`, `purchase_card` or
  `spend`; `amount_coins` is whole coins (1 coin = 100 fen); `status` is `pending`,
  `completed`, `declined` or `refunded` (a spend returned when its merchant shut down);
  `fulfilled` is set once the merchant delivered what a spend paid for.
- `coin_merchant_shutdowns`: one row per merchant that has shut down; no spend is
  admitted there afterwards.
- Ids are 16-byte big-endian binary and instants are nanoseconds in BIGINT, as in 0001.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coin_operations",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_coins", sa.BigInteger(), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=True),
        sa.Column("linked_account_id", sa.LargeBinary(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fulfilled", sa.Boolean(), nullable=False),
        sa.Column("decline_code", sa.String(48), nullable=True),
        sa.Column("decline_limit", sa.BigInteger(), nullable=True),
        sa.Column("decline_remaining", sa.BigInteger(), nullable=True),
        sa.Column("decline_reason", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("user_id", "idempotency_key", name="coin_operations_user_key"),
    )
    op.create_index("coin_operations_user_time", "coin_operations", ["user_id", "created_at"])
    op.create_index("coin_operations_merchant", "coin_operations", ["merchant_id", "status"])
    op.create_table(
        "coin_merchant_shutdowns",
        sa.Column("merchant_id", sa.String(32), primary_key=True),
        sa.Column("shut_down_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("coin_merchant_shutdowns")
    op.drop_index("coin_operations_merchant", table_name="coin_operations")
    op.drop_index("coin_operations_user_time", table_name="coin_operations")
    op.drop_table("coin_operations")
