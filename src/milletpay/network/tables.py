"""The card network's own tables (migration chain `network/migrations`), as SQLAlchemy
Core. The migrations (`n0001`, `n0002`) say why each is shaped the way it is."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

network_messages_seen = sa.Table(
    "network_messages_seen",
    metadata,
    sa.Column("acquirer", sa.String(11), primary_key=True),
    sa.Column("terminal", sa.String(8), primary_key=True),
    sa.Column("stan", sa.String(6), primary_key=True),
    sa.Column("transmitted", sa.String(10), primary_key=True),
    sa.Column("mti", sa.String(4), nullable=False),
    sa.Column("seen_at", sa.BigInteger, nullable=False),
)
clearing_records = sa.Table(
    "clearing_records",
    metadata,
    sa.Column("id", sa.LargeBinary(16), primary_key=True),
    sa.Column("acquirer", sa.String(11), nullable=False),
    sa.Column("terminal", sa.String(8), nullable=False),
    sa.Column("stan", sa.String(6), nullable=False),
    sa.Column("transmitted", sa.String(10), nullable=False),
    sa.Column("rrn", sa.String(12), nullable=False),
    sa.Column("mti", sa.String(4), nullable=False),
    sa.Column("processing_code", sa.String(6), nullable=False),
    sa.Column("pan_masked", sa.String(19), nullable=False),
    sa.Column("pan_sealed", sa.LargeBinary, nullable=False),
    sa.Column("token_number", sa.String(19)),
    sa.Column("bank_code", sa.String(8), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("completed_fen", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("approval_code", sa.String(6), nullable=False),
    sa.Column("stand_in", sa.Boolean, nullable=False),
    sa.Column("card_fingerprint", sa.LargeBinary(32), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
stand_in_advices = sa.Table(
    "stand_in_advices",
    metadata,
    sa.Column("id", sa.LargeBinary(16), primary_key=True),
    sa.Column("bank_code", sa.String(8), nullable=False),
    sa.Column("mti", sa.String(4), nullable=False),
    sa.Column("record_id", sa.LargeBinary(16)),
    sa.Column("message_sealed", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("delivered_at", sa.BigInteger),
)
