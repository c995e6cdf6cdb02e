"""Checkout: payment intents funded by coins.

- `payment_intents.coin_operation_id`: the payer's coin operation that paid (or holds)
  an intent funded by coins (`funding` = `coins`), as `wallet_operation_id` is for the
  wallet balance; null otherwise.
- `refunds.coin_operation_id`: the coin operation that returned a coin payment's refund
  to the payer's purse; null for a refund to the wallet balance.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "payment_intents", sa.Column("coin_operation_id", sa.LargeBinary(16), nullable=True)
    )
    op.add_column("refunds", sa.Column("coin_operation_id", sa.LargeBinary(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("coin_operation_id")
    with op.batch_alter_table("payment_intents") as batch:
        batch.drop_column("coin_operation_id")
