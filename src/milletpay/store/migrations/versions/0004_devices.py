"""Devices and their WebAuthn credentials (quick pay), and the challenges they sign.

- `devices`: a phone bound to a user; `status` is `active` or `unbound` (never deleted, so
  an approval can always be traced to the phone that gave it). The partial unique index
  lets a phone be actively bound to one user at a time.
- `webauthn_credentials`: the public half of a key pair made in the phone's secure
  hardware (COSE key), its signature counter, and `status` `active` or `revoked`.
- `webauthn_challenges`: each challenge is single use (`used_at`) and expires
  (`expires_at`); a payment challenge carries the hash of the payment it approves.
- Users are referred to by `user_id` (16 bytes, as `users.id`); ids and instants are
  encoded as in 0001.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("bound_at", sa.BigInteger(), nullable=False),
        sa.Column("unbound_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("devices_user", "devices", ["user_id", "status"])
    op.create_index(
        "devices_active_device_id",
        "devices",
        ["device_id"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "webauthn_credentials",
        sa.Column("credential_id", sa.LargeBinary(1023), primary_key=True),
        sa.Column("device_key", sa.LargeBinary(16), nullable=False),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("webauthn_credentials_device", "webauthn_credentials", ["device_key"])
    op.create_table(
        "webauthn_challenges",
        sa.Column("challenge", sa.LargeBinary(64), primary_key=True),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        # `bind` (a new device's credential) or `payment` (one payment's approval).
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("credential_id", sa.LargeBinary(1023), nullable=True),
        sa.Column("payment_hash", sa.LargeBinary(32), nullable=True),
        # NULL for Millet Pay itself, else the registered partner that asked.
        sa.Column("partner_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("webauthn_challenges_expiry", "webauthn_challenges", ["expires_at"])
    op.create_index("webauthn_challenges_user", "webauthn_challenges", ["user_id", "expires_at"])


def downgrade() -> None:
    op.drop_index("webauthn_challenges_user", table_name="webauthn_challenges")
    op.drop_index("webauthn_challenges_expiry", table_name="webauthn_challenges")
    op.drop_index("webauthn_credentials_device", table_name="webauthn_credentials")
    op.drop_index("devices_active_device_id", table_name="devices")
    op.drop_index("devices_user", table_name="devices")
    for table in ("webauthn_challenges", "webauthn_credentials", "devices"):
        op.drop_table(table)
