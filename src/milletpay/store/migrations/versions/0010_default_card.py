"""Wallet API: the card a user pays with unless told otherwise.

- `default_cards`: one row per user (`user_id`, 16 bytes) naming one of the user's
  tokens (`token_id`, `tokens.id`); `updated_at` in nanoseconds. A deleted token is
  never shown as the default; the API drops the row when the cardholder deletes it.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "default_cards",
        sa.Column("user_id", sa.LargeBinary(16), primary_key=True),
        sa.Column(
            "token_id",
            sa.LargeBinary(16),
            sa.ForeignKey("tokens.id", name="default_cards_token"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("default_cards")
