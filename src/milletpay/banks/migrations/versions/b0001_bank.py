"""A bank's own tables, next to its ledger's (platform revision 0001) in its database.

- Secrets are sealed (AES-256-GCM, `core.keyring`): the PAN, the account number, the
  cardholder's name and ID number; what is looked up is a keyed fingerprint, what is
  shown is the mask.
- An authorization's and a movement's id is derived from the request's reference, so a
  retry finds the first answer by primary key.
- Ids are 16-byte big-endian binary and instants nanoseconds in BIGINT, as in 0001.

Revision ID: b0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "b0001"
down_revision = None
branch_labels = None
depends_on = None


def _id(name: str, **kwargs: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.LargeBinary(16), **kwargs)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "bank_counters",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_serial", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO bank_counters (id, last_serial) VALUES (1, 0)")
    op.create_table(
        "customers",
        _id("id", primary_key=True),
        sa.Column("real_name_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("national_id_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("national_id_fingerprint", sa.LargeBinary(32), nullable=True, index=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "bank_accounts",
        _id("id", primary_key=True),
        _id("customer_id", nullable=False, index=True),
        sa.Column("number_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("number_fingerprint", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("number_masked", sa.String(32), nullable=False),
        sa.Column("product", sa.String(16), nullable=False),
        sa.Column("product_type", sa.String(8), nullable=False),
        sa.Column("account_class", sa.Integer(), nullable=False),
        sa.Column("credit_limit_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        # Set on an account opened remotely: one such account per ID number per bank.
        sa.Column("remote_fingerprint", sa.LargeBinary(32), nullable=True, unique=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "cards",
        _id("id", primary_key=True),
        _id("account_id", nullable=False, index=True),
        sa.Column("pan_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("pan_fingerprint", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("pan_masked", sa.String(19), nullable=False),
        sa.Column("expiry_yymm", sa.String(4), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("pin_verification_value", sa.LargeBinary(32), nullable=True),
        sa.Column("pin_failed_tries", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "authorizations",
        _id("id", primary_key=True),
        _id("card_id", nullable=True),
        _id("account_id", nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("response_code", sa.String(2), nullable=False),
        sa.Column("approval_code", sa.String(6), nullable=False),
        _id("hold_id", nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("completed_fen", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("authorizations_card", "authorizations", ["card_id", "created_at"])
    op.create_index("authorizations_account", "authorizations", ["account_id", "created_at"])
    op.create_table(
        "agreements",
        sa.Column("agreement", sa.String(32), primary_key=True),
        _id("account_id", nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "movements",
        _id("id", primary_key=True),
        _id("account_id", nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("movements_account", "movements", ["account_id", "created_at"])
