"""The wallet tables as SQLAlchemy Core names, for queries (the schema itself is the
migration `store/migrations/versions/0005_wallet.py`)."""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

wallets = sa.table(
    "wallets",
    sa.column("user_id", sa.LargeBinary()),
    sa.column("account_id", sa.LargeBinary()),
    sa.column("created_at", sa.BigInteger()),
)
linked_bank_accounts = sa.table(
    "linked_bank_accounts",
    sa.column("id", sa.LargeBinary()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("bank_code", sa.String()),
    sa.column("account_masked", sa.String()),
    sa.column("agreement", sa.String()),
    sa.column("created_at", sa.BigInteger()),
)
wallet_operations = sa.table(
    "wallet_operations",
    sa.column("id", sa.LargeBinary()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("idempotency_key", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("amount_fen", sa.BigInteger()),
    sa.column("linked_account_id", sa.LargeBinary()),
    sa.column("counterparty_user_id", sa.LargeBinary()),
    sa.column("status", sa.String()),
    sa.column("decline_code", sa.String()),
    sa.column("decline_limit", sa.BigInteger()),
    sa.column("decline_remaining", sa.BigInteger()),
    sa.column("decline_reason", sa.String()),
    sa.column("created_at", sa.BigInteger()),
)

coin_operations = sa.table(
    "coin_operations",
    sa.column("id", sa.LargeBinary()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("idempotency_key", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("amount_coins", sa.BigInteger()),
    sa.column("merchant_id", sa.String()),
    sa.column("linked_account_id", sa.LargeBinary()),
    sa.column("status", sa.String()),
    sa.column("fulfilled", sa.Boolean()),
    sa.column("decline_code", sa.String()),
    sa.column("decline_limit", sa.BigInteger()),
    sa.column("decline_remaining", sa.BigInteger()),
    sa.column("decline_reason", sa.String()),
    sa.column("created_at", sa.BigInteger()),
)
coin_merchant_shutdowns = sa.table(
    "coin_merchant_shutdowns",
    sa.column("merchant_id", sa.String()),
    sa.column("shut_down_at", sa.BigInteger()),
)


class CoinOperationKind(StrEnum):
    PURCHASE_FROM_BALANCE = "purchase_balance"
    PURCHASE_BY_CARD = "purchase_card"
    SPEND = "spend"  # at a coin merchant of `coins.MERCHANTS`
    MERCHANT_PAYMENT = "merchant_payment"  # a checkout merchant's payment intent, in coins
    MERCHANT_REFUND = "merchant_refund"  # a refund of such a payment, back into the purse


class CoinOperationStatus(StrEnum):
    PENDING = "pending"  # recorded, not yet moved: a retry finishes it
    COMPLETED = "completed"
    DECLINED = "declined"
    REFUNDED = "refunded"  # a spend returned to the purse when its merchant shut down
    CANCELED = "canceled"  # a merchant payment's hold released with nothing taken
