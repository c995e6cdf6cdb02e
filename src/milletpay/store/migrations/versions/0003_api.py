"""The HTTP API's idempotency keys.

A POST that moves money carries an `Idempotency-Key`; the first response to it is kept
here (at least `IDEMPOTENCY_RETENTION_S`) and replayed to retries with the same body.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_idempotency_keys",
        # Who the key belongs to (a user, a merchant): keys of different callers never meet.
        sa.Column("scope", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.LargeBinary(32), nullable=False),
        # NULL while the first request is being handled.
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at_ns", sa.BigInteger(), nullable=False),
    )
    op.create_index("api_idempotency_keys_age", "api_idempotency_keys", ["created_at_ns"])


def downgrade() -> None:
    op.drop_table("api_idempotency_keys")
