"""In-app card payments: the platform as acquirer of its own checkout.

- `card_payments`: every ISO 8583 request the platform's checkout sends to the card
  network for a payment intent: the payment itself (`kind` `payment`: a 0200, or a 0100
  for manual capture), its completion on capture (`completion`, a 0220), or a refund to
  the card (`refund`, a 0200 with processing code 20); `mti` says which. Its key on the
  network (`terminal_id`, `stan`, `transmitted`) and RRN, the payer, the token (id,
  number, the device it is bound to), the amount, `status` (`sending` → `approved`,
  `declined`, `not_sent`, `reversed` or `reversal_pending`; a completion unanswered is
  `advice_pending` until resent), the network's response and approval codes. A refund
  names its `refund_id` and the merchant's `refund_key` ((`intent_id`, `refund_key`) is
  unique: a refund asked again with its key is the same refund).
- `acquirer_stans`: the last STAN sent from each of the platform's terminals, taken
  under a row lock so that every server sends each STAN once.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_payments",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("intent_id", sa.LargeBinary(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("refund_id", sa.LargeBinary(16), nullable=True),
        sa.Column("refund_key", sa.String(64), nullable=True),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("token_id", sa.LargeBinary(16), nullable=False),
        sa.Column("token_number", sa.String(19), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("stan", sa.String(6), nullable=False),
        sa.Column("transmitted", sa.String(10), nullable=False),
        sa.Column("rrn", sa.String(12), nullable=False),
        sa.Column("mti", sa.String(4), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response_code", sa.String(2), nullable=True),
        sa.Column("approval_code", sa.String(6), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("terminal_id", "stan", "transmitted", name="uq_card_payments_key"),
        sa.UniqueConstraint("intent_id", "refund_key", name="uq_card_payments_refund_key"),
    )
    op.create_index("ix_card_payments_intent", "card_payments", ["intent_id", "kind"])
    op.create_index("ix_card_payments_user", "card_payments", ["user_id", "created_at"])
    op.create_index("ix_card_payments_status", "card_payments", ["status", "created_at"])
    op.create_table(
        "acquirer_stans",
        sa.Column("terminal_id", sa.String(8), primary_key=True),
        sa.Column("last_stan", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("acquirer_stans")
    op.drop_index("ix_card_payments_status", table_name="card_payments")
    op.drop_index("ix_card_payments_user", table_name="card_payments")
    op.drop_index("ix_card_payments_intent", table_name="card_payments")
    op.drop_table("card_payments")
