"""The card network's own books: the duplicate keys it has seen, a clearing record per
approved transaction, and the advices it owes the issuers.

- `network_messages_seen`: one row per authorization key (acquirer 32, terminal 41,
  STAN 11, transmission date and time 7); the primary key is the duplicate check.
- `clearing_records`: an approved 0100 / 0200 (stand-in too) and what became of it. The
  card number is sealed with the key ring (AAD = the record's id); only its mask is in
  clear. The token number, when the payment used one, is in clear (it is not a card).
- `stand_in_advices`: 0120 / 0220 / 0420 messages waiting for an issuer that did not
  answer, sealed whole (they carry the card number), sent in id order.
- Ids are 16-byte big-endian binary (time-ordered), instants nanoseconds in BIGINT.

Revision ID: n0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "n0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_messages_seen",
        sa.Column("acquirer", sa.String(11), primary_key=True),
        sa.Column("terminal", sa.String(8), primary_key=True),
        sa.Column("stan", sa.String(6), primary_key=True),
        sa.Column("transmitted", sa.String(10), primary_key=True),
        sa.Column("mti", sa.String(4), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("network_messages_seen_at", "network_messages_seen", ["seen_at"])
    op.create_table(
        "clearing_records",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("acquirer", sa.String(11), nullable=False),
        sa.Column("terminal", sa.String(8), nullable=False),
        sa.Column("stan", sa.String(6), nullable=False),
        sa.Column("transmitted", sa.String(10), nullable=False),
        sa.Column("rrn", sa.String(12), nullable=False),
        sa.Column("mti", sa.String(4), nullable=False),
        sa.Column("pan_masked", sa.String(19), nullable=False),
        sa.Column("pan_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("token_number", sa.String(19), nullable=True),
        sa.Column("bank_code", sa.String(8), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("completed_fen", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("approval_code", sa.String(6), nullable=False),
        sa.Column("stand_in", sa.Boolean(), nullable=False),
        sa.Column("card_fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint(
            "acquirer", "terminal", "stan", "transmitted", name="clearing_records_key"
        ),
    )
    op.create_index(
        "clearing_records_card_stand_in",
        "clearing_records",
        ["card_fingerprint", "stand_in", "created_at"],
    )
    op.create_index("clearing_records_created", "clearing_records", ["created_at"])
    op.create_table(
        "stand_in_advices",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("bank_code", sa.String(8), nullable=False),
        sa.Column("mti", sa.String(4), nullable=False),
        sa.Column("record_id", sa.LargeBinary(16), nullable=True),
        sa.Column("message_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("stand_in_advices_pending", "stand_in_advices", ["status", "bank_code", "id"])


def downgrade() -> None:
    op.drop_table("stand_in_advices")
    op.drop_table("clearing_records")
    op.drop_table("network_messages_seen")
