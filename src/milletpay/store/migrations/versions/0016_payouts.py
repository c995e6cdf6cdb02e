"""Checkout: merchant payouts.

- `merchant_payouts`: one row per merchant and day paid out (`day` as YYYYMMDD, China
  time; unique with the merchant, so a day is paid once), the amount, `pending` while
  the bank is asked, then `paid` or `failed` (with the bank's `failure_reason`); the
  ledger hold (merchant → the platform's settlement account at the merchant's bank) is
  posted or voided with it.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchant_payouts",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("merchant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("merchant_id", "day", name="merchant_payouts_once_a_day"),
    )


def downgrade() -> None:
    op.drop_table("merchant_payouts")
