"""Cards: the step-up codes sent for each card, so that a card's holder is not texted
without end by someone adding the card again and again.

- `token_step_up_sends`: one row per code texted (`vault_ref`, the card's vault row;
  `sent_at` in nanoseconds). The token service counts a card's rows of the last 24
  hours before it sends another code, and its sweep drops older rows.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_step_up_sends",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("vault_ref", sa.LargeBinary(16), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("token_step_up_sends_by_card", "token_step_up_sends", ["vault_ref", "sent_at"])
    op.create_index("token_step_up_sends_by_time", "token_step_up_sends", ["sent_at"])


def downgrade() -> None:
    op.drop_table("token_step_up_sends")
