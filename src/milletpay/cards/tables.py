"""The vault tables as SQLAlchemy Core names, for queries (the schema itself is the
migration `store/migrations/versions/0007_vault.py`)."""

from __future__ import annotations

import sqlalchemy as sa

vault_pans = sa.table(
    "vault_pans",
    sa.column("id", sa.LargeBinary()),
    sa.column("fingerprint", sa.LargeBinary()),
    sa.column("sealed", sa.LargeBinary()),
    sa.column("key_version", sa.SmallInteger()),
    sa.column("masked", sa.String()),
    sa.column("par", sa.String()),
    sa.column("created_at", sa.BigInteger()),
    sa.column("updated_at", sa.BigInteger()),
)
vault_meta = sa.table(
    "vault_meta",
    sa.column("id", sa.SmallInteger()),
    sa.column("fingerprint_key_check", sa.LargeBinary()),
)
