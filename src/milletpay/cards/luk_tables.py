"""The limited-use key tables as SQLAlchemy Core names, for queries (the schema itself is
the migration `0009_luks.py` in `store/migrations/versions`)."""

from __future__ import annotations

import sqlalchemy as sa

token_luks = sa.table(
    "token_luks",
    sa.column("token_id", sa.LargeBinary()),
    sa.column("luk_index", sa.Integer()),
    sa.column("imk_version", sa.SmallInteger()),
    sa.column("atc_first", sa.Integer()),
    sa.column("atc_last", sa.Integer()),
    sa.column("uses_max", sa.SmallInteger()),
    sa.column("used_count", sa.SmallInteger()),
    sa.column("issued_at", sa.BigInteger()),
    sa.column("expires_at", sa.BigInteger()),
    sa.column("retired_at", sa.BigInteger()),
)
token_luk_atcs = sa.table(
    "token_luk_atcs",
    sa.column("token_id", sa.LargeBinary()),
    sa.column("atc", sa.Integer()),
    sa.column("luk_index", sa.Integer()),
    sa.column("used_at", sa.BigInteger()),
)
