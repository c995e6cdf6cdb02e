"""Clearing records say what kind of transaction they clear: `processing_code`, field 3
of the approved request (`000000` a purchase, `200000` a refund to the card), so that
settlement can tell a debit of the cardholder from a credit. Records written before it
were all purchases.

Revision ID: n0002
Revises: n0001
"""

import sqlalchemy as sa
from alembic import op

revision = "n0002"
down_revision = "n0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clearing_records") as batch:
        batch.add_column(
            sa.Column("processing_code", sa.String(6), nullable=False, server_default="000000")
        )


def downgrade() -> None:
    with op.batch_alter_table("clearing_records") as batch:
        batch.drop_column("processing_code")
