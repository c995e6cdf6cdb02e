"""PAN vault: card numbers sealed at rest, found by a keyed fingerprint.

- `vault_pans`: one row per card. `id` is the vault reference (16 bytes, as every id);
  `fingerprint` is HMAC-SHA256 of the PAN under a key derived from the key ring (unique:
  one row per PAN); `sealed` is the PAN and expiry sealed with AES-256-GCM, the AAD
  binding the row id; `key_version` is the data key that sealed it (what key rotation
  looks for); `masked` is the PAN's first 6 and last 4; `par` is the Payment Account
  Reference (29 characters, indexed; not unique: a card's first PAN, re-issued away and
  vaulted again, derives the card's PAR); instants are nanoseconds in BIGINT, as in 0001.
- `vault_meta`: one row, the check value of the fingerprint key, so that a key ring whose
  derived keys changed is refused instead of fingerprinting the same PAN twice.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_pans",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("key_version", sa.SmallInteger(), nullable=False),
        sa.Column("masked", sa.String(19), nullable=False),
        sa.Column("par", sa.String(29), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("fingerprint", name="vault_pans_fingerprint"),
    )
    op.create_index("vault_pans_par", "vault_pans", ["par"])
    op.create_index("vault_pans_key_version", "vault_pans", ["key_version", "id"])
    op.create_table(
        "vault_meta",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("fingerprint_key_check", sa.LargeBinary(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vault_meta")
    op.drop_index("vault_pans_key_version", table_name="vault_pans")
    op.drop_index("vault_pans_par", table_name="vault_pans")
    op.drop_table("vault_pans")
