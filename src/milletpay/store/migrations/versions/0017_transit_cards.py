"""Transit cards in the platform's books: cards, their loads and moves, tap records, clearing.

- `transit_cards`: one row per card number (10 bytes, the purse's file 0x15 serial): its
  `city`, owner (`user_id`), the phone it lives in (`device_id`), `status` (`active`,
  `closed`, `replaced` by a reissue on a move, then `replaced_by`), the key index and
  version personalization used, the `deposit_fen` and `issuance_fee_fen` paid, and the
  shadow balance's parts: `loaded_fen` (loads whose money is in the float), `spent_fen`
  (fares of every accepted or held tap record), `cleared_fen` (of those, paid to the
  operators), `refunded_fen` (paid back at closing), `covered_fen` (an overdraft taken
  from the deposit at closing). (`user_id`, `issue_key`) is unique:
  an issuance retried with its key finds its card.
- `transit_loads`: one online load (top-up) of a card: the load's inputs as the card's
  INITIALIZE FOR LOAD answered them (online counter, old balance, terminal, date, time,
  key version), `status` (`funded`, `authorized`, `confirmed`, `voided`, `refused`,
  `declined`), MAC2 once the host answered, the wallet operation that paid it.
  (`user_id`, `idempotency_key`) is unique.
- `transit_card_moves`: each move of a card to another phone, by year, for the city's
  moves-a-year rule.
- `transit_taps`: every tap record whose TAC verified, keyed by (`card_number`,
  `offline_counter`): the `PurchaseData` the TAC covers, the card's balance after, where
  and when, the clearing `day` (the TAC-covered date, yyyymmdd), `status` (`accepted`,
  `held`, `cleared`), `held_reason`, and the clearing run that cleared it.
- `transit_tap_rejects`: records refused at upload (bad TAC, unknown card, another
  city's card), kept as they came for investigation; never cleared.
- `transit_clearings`: one row per clearing run of a (city, day): a re-run that finds
  records uploaded since gets the next `run`, and transfer ids derived from it.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transit_cards",
        sa.Column("card_number", sa.LargeBinary(10), primary_key=True),
        sa.Column("city", sa.String(16), nullable=False),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("key_index", sa.SmallInteger(), nullable=False),
        sa.Column("key_version", sa.SmallInteger(), nullable=False),
        sa.Column("deposit_fen", sa.BigInteger(), nullable=False),
        sa.Column("issuance_fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("loaded_fen", sa.BigInteger(), nullable=False),
        sa.Column("spent_fen", sa.BigInteger(), nullable=False),
        sa.Column("cleared_fen", sa.BigInteger(), nullable=False),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("covered_fen", sa.BigInteger(), nullable=False),
        sa.Column("issue_key", sa.String(64), nullable=False),
        sa.Column("replaces", sa.LargeBinary(10), nullable=True),
        sa.Column("replaced_by", sa.LargeBinary(10), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("user_id", "issue_key", name="transit_cards_issue_key"),
    )
    op.create_index("transit_cards_by_user", "transit_cards", ["user_id"])
    op.create_table(
        "transit_loads",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("card_number", sa.LargeBinary(10), nullable=False),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("online_counter", sa.Integer(), nullable=False),
        sa.Column("old_balance_fen", sa.BigInteger(), nullable=False),
        sa.Column("terminal_id", sa.LargeBinary(6), nullable=False),
        sa.Column("load_date", sa.LargeBinary(4), nullable=False),
        sa.Column("load_time", sa.LargeBinary(3), nullable=False),
        sa.Column("key_version", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mac2", sa.LargeBinary(4), nullable=True),
        sa.Column("refusal", sa.String(32), nullable=True),
        sa.Column("wallet_operation_id", sa.LargeBinary(16), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("user_id", "idempotency_key", name="transit_loads_key"),
    )
    op.create_index("transit_loads_by_card", "transit_loads", ["card_number", "online_counter"])
    op.create_table(
        "transit_card_moves",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("user_id", sa.LargeBinary(16), nullable=False),
        sa.Column("city", sa.String(16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("card_number", sa.LargeBinary(10), nullable=False),
        sa.Column("new_card_number", sa.LargeBinary(10), nullable=False),
        sa.Column("from_device_id", sa.String(64), nullable=False),
        sa.Column("to_device_id", sa.String(64), nullable=False),
        sa.Column("moved_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("transit_card_moves_by_user", "transit_card_moves", ["user_id", "city", "year"])
    op.create_table(
        "transit_taps",
        sa.Column("card_number", sa.LargeBinary(10), primary_key=True),
        sa.Column("offline_counter", sa.Integer(), primary_key=True),
        sa.Column("city", sa.String(16), nullable=False),
        sa.Column("gate_id", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("tap", sa.String(8), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("transaction_type", sa.SmallInteger(), nullable=False),
        sa.Column("terminal_id", sa.LargeBinary(6), nullable=False),
        sa.Column("terminal_transaction_number", sa.BigInteger(), nullable=False),
        sa.Column("tap_date", sa.LargeBinary(4), nullable=False),
        sa.Column("tap_time", sa.LargeBinary(3), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("balance_after_fen", sa.BigInteger(), nullable=False),
        sa.Column("key_version", sa.SmallInteger(), nullable=False),
        sa.Column("tac", sa.LargeBinary(4), nullable=False),
        sa.Column("tapped_at", sa.BigInteger(), nullable=False),
        sa.Column("resolved_torn", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("held_reason", sa.String(32), nullable=True),
        sa.Column("clearing_id", sa.LargeBinary(16), nullable=True),
        sa.Column("uploaded_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("transit_taps_by_day", "transit_taps", ["city", "day", "status"])
    op.create_index("transit_taps_by_clearing", "transit_taps", ["clearing_id"])
    op.create_table(
        "transit_tap_rejects",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("card_number", sa.LargeBinary(10), nullable=False),
        sa.Column("offline_counter", sa.Integer(), nullable=False),
        sa.Column("city", sa.String(16), nullable=False),
        sa.Column("gate_id", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("transaction_type", sa.SmallInteger(), nullable=False),
        sa.Column("terminal_id", sa.LargeBinary(6), nullable=False),
        sa.Column("terminal_transaction_number", sa.BigInteger(), nullable=False),
        sa.Column("tap_date", sa.LargeBinary(4), nullable=False),
        sa.Column("tap_time", sa.LargeBinary(3), nullable=False),
        sa.Column("key_version", sa.SmallInteger(), nullable=False),
        sa.Column("tac", sa.LargeBinary(4), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("uploaded_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("transit_tap_rejects_by_card", "transit_tap_rejects", ["card_number"])
    op.create_table(
        "transit_clearings",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("city", sa.String(16), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("cleared_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("city", "day", "run", name="transit_clearings_run"),
    )


def downgrade() -> None:
    for table in (
        "transit_clearings",
        "transit_tap_rejects",
        "transit_taps",
        "transit_card_moves",
        "transit_loads",
        "transit_cards",
    ):
        op.drop_table(table)
