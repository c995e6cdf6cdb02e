"""Checkout: merchants, their API keys, and payment intents.

- `merchants`: a merchant onboarded through the API (`legal_name`; `display_name` and
  `city`, what a QR code and the wallet show; `mcc`; the settlement bank account: its
  bank code, its number masked, and sealed with the platform key ring, the merchant's id
  bound as associated data; `status` active or suspended), instants in nanoseconds. Its
  balance is a ledger account (`wallet.accounts.merchant_account_id`), not a column.
- `merchant_api_keys`: the merchant's keys. A secret key is kept only as an HMAC
  (`key_hash`, unique), shown once at creation; a publishable key is public and kept as
  is (`publishable_key`). `hint` (prefix and last four characters) is what lists show;
  `revoked_at` is set once, never cleared.
- `payment_intents`: one row per intent; (`merchant_id`, `merchant_order_id`) unique, so
  an order is charged by one intent. `client_secret_hash` is the HMAC of the secret the
  app hands to the wallet. The money is in the ledger: the wallet operation
  (`wallet_operation_id`) and the transfer or hold (`payment_transfer_id`) it moved.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("legal_name", sa.String(100), nullable=False),
        sa.Column("display_name", sa.String(25), nullable=False),
        sa.Column("city", sa.String(15), nullable=False),
        sa.Column("mcc", sa.String(4), nullable=False),
        sa.Column("settlement_bank_code", sa.String(16), nullable=False),
        sa.Column("settlement_account_masked", sa.String(32), nullable=False),
        sa.Column("settlement_account_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "merchant_api_keys",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column(
            "merchant_id",
            sa.LargeBinary(16),
            sa.ForeignKey("merchants.id", name="merchant_api_keys_merchant"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(32), nullable=True, unique=True),
        sa.Column("publishable_key", sa.String(64), nullable=True, unique=True),
        sa.Column("hint", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("merchant_api_keys_by_merchant", "merchant_api_keys", ["merchant_id"])
    op.create_table(
        "payment_intents",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column(
            "merchant_id",
            sa.LargeBinary(16),
            sa.ForeignKey("merchants.id", name="payment_intents_merchant"),
            nullable=False,
        ),
        sa.Column("merchant_order_id", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("capture_method", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("client_secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("payer_user_id", sa.LargeBinary(16), nullable=True),
        sa.Column("funding", sa.String(16), nullable=True),
        sa.Column("wallet_operation_id", sa.LargeBinary(16), nullable=True),
        sa.Column("payment_transfer_id", sa.LargeBinary(16), nullable=True),
        sa.Column("capture_before", sa.BigInteger(), nullable=True),
        sa.Column("amount_capturable_fen", sa.BigInteger(), nullable=False),
        sa.Column("amount_received_fen", sa.BigInteger(), nullable=False),
        sa.Column("fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("confirm_attempts", sa.SmallInteger(), nullable=False),
        sa.Column("last_error_code", sa.String(48), nullable=True),
        sa.Column("cancellation_reason", sa.String(32), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint(
            "merchant_id", "merchant_order_id", name="payment_intents_merchant_order"
        ),
    )
    op.create_index("payment_intents_by_merchant", "payment_intents", ["merchant_id", "created_at"])
    op.create_index("payment_intents_by_status", "payment_intents", ["status", "expires_at"])


def downgrade() -> None:
    op.drop_table("payment_intents")
    op.drop_table("merchant_api_keys")
    op.drop_table("merchants")
