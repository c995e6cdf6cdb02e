"""Checkout: refunds of payment intents.

- `refunds`: one row per refund asked for (`intent_id` → `payment_intents.id`, the
  merchant, `amount_fen`, the merchant's `reason`), `succeeded` or `failed` (with
  `failure_code`, e.g. the merchant is owed less than the refund); the payer's wallet
  operation it credited (`wallet_operation_id`). The refunds that succeeded never add
  up to more than the intent received: the intent's row is locked while one is made.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column(
            "intent_id",
            sa.LargeBinary(16),
            sa.ForeignKey("payment_intents.id", name="refunds_intent"),
            nullable=False,
        ),
        sa.Column("merchant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_code", sa.String(48), nullable=True),
        sa.Column("wallet_operation_id", sa.LargeBinary(16), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("refunds_by_intent", "refunds", ["intent_id", "created_at"])


def downgrade() -> None:
    op.drop_table("refunds")
