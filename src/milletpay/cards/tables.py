"""The vault's and the token service's tables as SQLAlchemy Core names, for queries (the
schema itself is the migrations `0007_vault.py` and `0008_tokens.py` in
`store/migrations/versions`)."""

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
tokens = sa.table(
    "tokens",
    sa.column("id", sa.LargeBinary()),
    sa.column("token_number", sa.String()),
    sa.column("expiry", sa.String()),
    sa.column("psn", sa.SmallInteger()),
    sa.column("vault_ref", sa.LargeBinary()),
    sa.column("par", sa.String()),
    sa.column("bank_code", sa.String()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("device_id", sa.String()),
    sa.column("domain", sa.String()),
    sa.column("state", sa.String()),
    sa.column("suspended_by", sa.String()),
    sa.column("created_at", sa.BigInteger()),
    sa.column("updated_at", sa.BigInteger()),
)
token_step_ups = sa.table(
    "token_step_ups",
    sa.column("token_id", sa.LargeBinary()),
    sa.column("code_hash", sa.LargeBinary()),
    sa.column("expires_at", sa.BigInteger()),
    sa.column("attempts", sa.SmallInteger()),
    sa.column("created_at", sa.BigInteger()),
)
token_step_up_sends = sa.table(
    "token_step_up_sends",
    sa.column("id", sa.LargeBinary()),
    sa.column("vault_ref", sa.LargeBinary()),
    sa.column("sent_at", sa.BigInteger()),
)
