"""The cardholder's mobile number on file, for ID&V of a token request.

- `customers.phone_sealed`: the normalized number (`+86` and 11 digits) sealed with the
  key ring like the name (AAD = bank, kind, row id); null for customers who gave none.
  The token service's step-up code goes to this number, never to the wallet's.

Revision ID: b0002
Revises: b0001
"""

import sqlalchemy as sa
from alembic import op

revision = "b0002"
down_revision = "b0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("phone_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("phone_sealed")
