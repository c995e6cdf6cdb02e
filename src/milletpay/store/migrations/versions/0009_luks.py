"""Limited-use keys: the LUKs the token service handed to phones, and the ATCs used.

- `token_luks`: one row per LUK a token was given. (`token_id` → `tokens.id`,
  `luk_index`) is the key: indexes start at 1 and only grow. The key itself is never
  stored: the token service derives it again from the token, `luk_index` and
  `imk_version` (the version of the issuer's IMK-AC it was derived under). `atc_first`
  and `atc_last` bound the ATCs the phone may use with it (windows of one token follow
  each other and never overlap); `uses_max` and `used_count` (cryptograms verified);
  `issued_at`, `expires_at` and `retired_at` (null while current; set when the next LUK
  is issued) in nanoseconds. At most one current LUK per token: a partial unique index.
- `token_luk_atcs`: the ATCs of the current LUK that verified, one row each, so a
  cryptogram is never counted twice (the primary key refuses a second insert). The
  rows of a LUK go when it is retired.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CURRENT = "retired_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "token_luks",
        sa.Column(
            "token_id",
            sa.LargeBinary(16),
            sa.ForeignKey("tokens.id", name="token_luks_token"),
            primary_key=True,
        ),
        sa.Column("luk_index", sa.Integer(), primary_key=True),
        sa.Column("imk_version", sa.SmallInteger(), nullable=False),
        sa.Column("atc_first", sa.Integer(), nullable=False),
        sa.Column("atc_last", sa.Integer(), nullable=False),
        sa.Column("uses_max", sa.SmallInteger(), nullable=False),
        sa.Column("used_count", sa.SmallInteger(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("retired_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("atc_first <= atc_last", name="token_luks_atc_window"),
        sa.CheckConstraint("used_count <= uses_max", name="token_luks_uses"),
    )
    op.create_index(
        "token_luks_current",
        "token_luks",
        ["token_id"],
        unique=True,
        sqlite_where=sa.text(_CURRENT),
        postgresql_where=sa.text(_CURRENT),
    )
    op.create_table(
        "token_luk_atcs",
        sa.Column("token_id", sa.LargeBinary(16), primary_key=True),
        sa.Column("atc", sa.Integer(), primary_key=True),
        sa.Column("luk_index", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id", "luk_index"],
            ["token_luks.token_id", "token_luks.luk_index"],
            name="token_luk_atcs_luk",
        ),
    )


def downgrade() -> None:
    op.drop_table("token_luk_atcs")
    op.drop_index("token_luks_current", table_name="token_luks")
    op.drop_table("token_luks")
