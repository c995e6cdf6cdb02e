"""The identity tables as SQLAlchemy Core names, for queries (the schema itself is the
migration `store/migrations/versions/0002_identity.py`)."""

from __future__ import annotations

import sqlalchemy as sa

from milletpay.core.ids import id_to_bytes
from milletpay.identity.errors import UserNotFound

users = sa.table(
    "users",
    sa.column("id", sa.LargeBinary()),
    sa.column("phone", sa.String()),
    sa.column("real_name_sealed", sa.LargeBinary()),
    sa.column("national_id_sealed", sa.LargeBinary()),
    sa.column("national_id_masked", sa.String()),
    sa.column("national_id_fingerprint", sa.LargeBinary()),
    sa.column("class_iii_fingerprint", sa.LargeBinary()),
    sa.column("created_at", sa.BigInteger()),
)
kyc_verifications = sa.table(
    "kyc_verifications",
    sa.column("user_id", sa.LargeBinary()),
    sa.column("channel", sa.String()),
    sa.column("verified_at", sa.BigInteger()),
)
pins = sa.table(
    "pins",
    sa.column("user_id", sa.LargeBinary()),
    sa.column("pin_hash", sa.String()),
    sa.column("failed_attempts", sa.SmallInteger()),
    sa.column("locked_at", sa.BigInteger()),
    sa.column("updated_at", sa.BigInteger()),
)
otps = sa.table(
    "otps",
    sa.column("id", sa.LargeBinary()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("purpose", sa.String()),
    sa.column("code_hash", sa.LargeBinary()),
    sa.column("created_at", sa.BigInteger()),
    sa.column("expires_at", sa.BigInteger()),
    sa.column("attempts", sa.SmallInteger()),
    sa.column("used_at", sa.BigInteger()),
)


def user_key(user_id: int) -> bytes:
    """A user id as the identity tables store it; `UserNotFound` if it cannot be one."""
    if not 0 <= user_id < 1 << 128:
        raise UserNotFound(f"user id {user_id} is not a 128-bit id")
    return id_to_bytes(user_id)
