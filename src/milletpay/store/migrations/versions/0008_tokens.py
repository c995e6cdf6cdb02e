"""Token service: payment tokens bound to a device and a domain, and pending step-ups.

- `tokens`: one row per token. `id` (16 bytes); `token_number` (the token PAN, from the
  issuer's token IIN range, Luhn-valid, unique, in clear: it is not a card number);
  `expiry` (`YYYYMM`) and `psn` (PAN sequence number): with the token number, what an
  ICC master key for the token is derived from; `vault_ref` (the card in `vault_pans`;
  a re-issue changes the vault row, not this one); `par` (the card's PAR, the same for
  all its tokens); `bank_code`; `user_id` and `device_id` (the wallet user and the phone
  it is bound to); `domain` (one of `contactless`, `in_app`, `ecommerce`: a token for one
  device and one domain); `state` and `suspended_by` (the lifecycle: sorted parties,
  comma-separated, empty unless suspended); instants in nanoseconds.
  One live (not deleted) token per card, device and domain: a partial unique index.
- `token_step_ups`: the one-time code of a token waiting for ID&V step-up (inactive):
  HMAC of the code under a key derived from the key ring, its expiry and wrong tries.
  The row goes when the step-up ends (activated, or the token deleted).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LIVE = "state <> 'deleted'"


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("token_number", sa.String(19), nullable=False),
        sa.Column("expiry", sa.String(6), nullable=False),
        sa.Column("psn", sa.SmallInteger(), nullable=False),
        sa.Column(
            "vault_ref",
            sa.LargeBinary(16),
            sa.ForeignKey("vault_pans.id", name="tokens_vault_ref"),
            nullable=False,
        ),
        sa.Column("par", sa.String(29), nullable=False),
        sa.Column("bank_code", sa.String(8), nullable=False),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(16), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("suspended_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("token_number", name="tokens_token_number"),
    )
    op.create_index(
        "tokens_live_card_device_domain",
        "tokens",
        ["vault_ref", "device_id", "domain"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    op.create_index("tokens_user_device", "tokens", ["user_id", "device_id"])
    op.create_index("tokens_par", "tokens", ["par"])
    op.create_table(
        "token_step_ups",
        sa.Column(
            "token_id",
            sa.LargeBinary(16),
            sa.ForeignKey("tokens.id", name="token_step_ups_token"),
            primary_key=True,
        ),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("token_step_ups")
    op.drop_index("tokens_par", table_name="tokens")
    op.drop_index("tokens_user_device", table_name="tokens")
    op.drop_index("tokens_live_card_device_domain", table_name="tokens")
    op.drop_table("tokens")
