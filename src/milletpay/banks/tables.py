"""The bank's own tables (migration chain `banks/migrations`), as SQLAlchemy Core."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _id(name: str, **kwargs: bool) -> sa.Column[bytes]:
    return sa.Column(name, sa.LargeBinary(16), **kwargs)  # type: ignore[arg-type]


bank_counters = sa.Table(
    "bank_counters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("last_serial", sa.BigInteger, nullable=False),
)
customers = sa.Table(
    "customers",
    metadata,
    _id("id", primary_key=True),
    sa.Column("real_name_sealed", sa.LargeBinary, nullable=False),
    sa.Column("national_id_sealed", sa.LargeBinary),
    sa.Column("national_id_fingerprint", sa.LargeBinary(32)),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("phone_sealed", sa.LargeBinary),  # b0002
)
bank_accounts = sa.Table(
    "bank_accounts",
    metadata,
    _id("id", primary_key=True),
    _id("customer_id", nullable=False),
    sa.Column("number_sealed", sa.LargeBinary, nullable=False),
    sa.Column("number_fingerprint", sa.LargeBinary(32), nullable=False),
    sa.Column("number_masked", sa.String(32), nullable=False),
    sa.Column("product", sa.String(16), nullable=False),
    sa.Column("product_type", sa.String(8), nullable=False),
    sa.Column("account_class", sa.Integer, nullable=False),
    sa.Column("credit_limit_fen", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("remote_fingerprint", sa.LargeBinary(32)),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
cards = sa.Table(
    "cards",
    metadata,
    _id("id", primary_key=True),
    _id("account_id", nullable=False),
    sa.Column("pan_sealed", sa.LargeBinary, nullable=False),
    sa.Column("pan_fingerprint", sa.LargeBinary(32), nullable=False),
    sa.Column("pan_masked", sa.String(19), nullable=False),
    sa.Column("expiry_yymm", sa.String(4), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("pin_verification_value", sa.LargeBinary(32)),
    sa.Column("pin_failed_tries", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
authorizations = sa.Table(
    "authorizations",
    metadata,
    _id("id", primary_key=True),
    _id("card_id"),
    _id("account_id"),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("response_code", sa.String(2), nullable=False),
    sa.Column("approval_code", sa.String(6), nullable=False),
    _id("hold_id"),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("completed_fen", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("resolved_at", sa.BigInteger),
)
agreements = sa.Table(
    "agreements",
    metadata,
    sa.Column("agreement", sa.String(32), primary_key=True),
    _id("account_id", nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
movements = sa.Table(
    "movements",
    metadata,
    _id("id", primary_key=True),
    _id("account_id"),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("approved", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
