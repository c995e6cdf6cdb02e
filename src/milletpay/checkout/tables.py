"""The checkout tables as SQLAlchemy Core names, for queries (the schema itself is the
migrations `store/migrations/versions/0012_checkout.py` and after)."""

from __future__ import annotations

import sqlalchemy as sa

merchants = sa.table(
    "merchants",
    sa.column("id", sa.LargeBinary()),
    sa.column("legal_name", sa.String()),
    sa.column("display_name", sa.String()),
    sa.column("city", sa.String()),
    sa.column("name_latin", sa.String()),
    sa.column("city_latin", sa.String()),
    sa.column("name_language", sa.String()),
    sa.column("mcc", sa.String()),
    sa.column("settlement_bank_code", sa.String()),
    sa.column("settlement_account_masked", sa.String()),
    sa.column("settlement_account_sealed", sa.LargeBinary()),
    sa.column("status", sa.String()),
    sa.column("created_at", sa.BigInteger()),
    sa.column("updated_at", sa.BigInteger()),
)
merchant_api_keys = sa.table(
    "merchant_api_keys",
    sa.column("id", sa.LargeBinary()),
    sa.column("merchant_id", sa.LargeBinary()),
    sa.column("kind", sa.String()),
    sa.column("key_hash", sa.LargeBinary()),
    sa.column("publishable_key", sa.String()),
    sa.column("hint", sa.String()),
    sa.column("created_at", sa.BigInteger()),
    sa.column("revoked_at", sa.BigInteger()),
)
payment_intents = sa.table(
    "payment_intents",
    sa.column("id", sa.LargeBinary()),
    sa.column("merchant_id", sa.LargeBinary()),
    sa.column("merchant_order_id", sa.String()),
    sa.column("amount_fen", sa.BigInteger()),
    sa.column("currency", sa.String()),
    sa.column("description", sa.String()),
    sa.column("metadata_json", sa.Text()),
    sa.column("capture_method", sa.String()),
    sa.column("status", sa.String()),
    sa.column("client_secret_hash", sa.LargeBinary()),
    sa.column("expires_at", sa.BigInteger()),
    sa.column("payer_user_id", sa.LargeBinary()),
    sa.column("funding", sa.String()),
    sa.column("wallet_operation_id", sa.LargeBinary()),
    sa.column("coin_operation_id", sa.LargeBinary()),
    sa.column("payment_transfer_id", sa.LargeBinary()),
    sa.column("capture_before", sa.BigInteger()),
    sa.column("amount_capturable_fen", sa.BigInteger()),
    sa.column("amount_received_fen", sa.BigInteger()),
    sa.column("fee_fen", sa.BigInteger()),
    sa.column("confirm_attempts", sa.SmallInteger()),
    sa.column("last_error_code", sa.String()),
    sa.column("cancellation_reason", sa.String()),
    sa.column("created_at", sa.BigInteger()),
    sa.column("updated_at", sa.BigInteger()),
)
refunds = sa.table(
    "refunds",
    sa.column("id", sa.LargeBinary()),
    sa.column("intent_id", sa.LargeBinary()),
    sa.column("merchant_id", sa.LargeBinary()),
    sa.column("amount_fen", sa.BigInteger()),
    sa.column("reason", sa.String()),
    sa.column("status", sa.String()),
    sa.column("failure_code", sa.String()),
    sa.column("wallet_operation_id", sa.LargeBinary()),
    sa.column("coin_operation_id", sa.LargeBinary()),
    sa.column("created_at", sa.BigInteger()),
)
payment_codes = sa.table(
    "payment_codes",
    sa.column("id", sa.LargeBinary()),
    sa.column("code_number", sa.BigInteger()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("issued_at", sa.BigInteger()),
    sa.column("expires_at", sa.BigInteger()),
    sa.column("used_at", sa.BigInteger()),
    sa.column("revoked_at", sa.BigInteger()),
    sa.column("intent_id", sa.LargeBinary()),
)
merchant_payouts = sa.table(
    "merchant_payouts",
    sa.column("id", sa.LargeBinary()),
    sa.column("merchant_id", sa.LargeBinary()),
    sa.column("day", sa.Integer()),
    sa.column("amount_fen", sa.BigInteger()),
    sa.column("status", sa.String()),
    sa.column("failure_reason", sa.String()),
    sa.column("created_at", sa.BigInteger()),
    sa.column("updated_at", sa.BigInteger()),
)
