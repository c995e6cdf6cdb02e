"""Checkout: the one-time payment codes the wallet shows (consumer-presented mode).

- `payment_codes`: one row per code issued (`code_number`, the 15 digits inside the
  18-digit code, unique), whose it is (`user_id`), `issued_at` and `expires_at` (60 s
  later), and `used_at` with the payment intent it paid (`intent_id`) once a merchant
  collected with it, or `revoked_at` when a newer code replaced it. A code is used at
  most once: the update that marks it used is a compare-and-set on `used_at IS NULL`.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_codes",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("code_number", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("intent_id", sa.LargeBinary(16), nullable=True),
    )
    op.create_index("payment_codes_by_user", "payment_codes", ["user_id", "issued_at"])


def downgrade() -> None:
    op.drop_table("payment_codes")
