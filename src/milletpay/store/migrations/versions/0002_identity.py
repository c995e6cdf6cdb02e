"""Identity: users, their KYC verifications, payment PINs and one-time codes.

- Secrets are never in clear: the real name and the national ID number are sealed
  (AES-256-GCM, `core.keyring`); the ID number is compared through a keyed fingerprint.
- `users.class_iii_fingerprint` is set only while the user holds Class III; its unique
  index enforces one Class III account per ID number (NULLs do not collide).
- Ids are 16-byte big-endian binary and instants are nanoseconds in BIGINT, as in 0001.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("phone", sa.String(16), nullable=False, unique=True),
        sa.Column("real_name_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("national_id_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("national_id_masked", sa.String(18), nullable=False),
        sa.Column("national_id_fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("class_iii_fingerprint", sa.LargeBinary(32), nullable=True, unique=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("users_national_id_fingerprint", "users", ["national_id_fingerprint"])
    op.create_table(
        "kyc_verifications",
        sa.Column("user_id", sa.LargeBinary(16), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("verified_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "pins",
        sa.Column("user_id", sa.LargeBinary(16), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("pin_hash", sa.String(255), nullable=False),
        sa.Column("failed_attempts", sa.SmallInteger(), nullable=False),
        sa.Column("locked_at", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "otps",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("user_id", sa.LargeBinary(16), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("otps_user_purpose", "otps", ["user_id", "purpose", "created_at"])


def downgrade() -> None:
    op.drop_index("otps_user_purpose", table_name="otps")
    op.drop_index("users_national_id_fingerprint", table_name="users")
    for table in ("otps", "pins", "kyc_verifications", "users"):
        op.drop_table(table)
