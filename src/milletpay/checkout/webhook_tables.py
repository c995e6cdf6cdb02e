"""The webhook tables as SQLAlchemy Core names, for queries (the schema itself is the
migration `0012_webhooks.py` in `store/migrations/versions`, which states each column's
bound; `webhooks.py` holds the same bounds as named limits and checks them)."""

from __future__ import annotations

import sqlalchemy as sa

webhook_endpoints = sa.table(
    "webhook_endpoints",
    sa.column("id", sa.LargeBinary()),
    sa.column("merchant_id", sa.LargeBinary()),
    sa.column("slot", sa.SmallInteger()),
    sa.column("url", sa.String()),
    sa.column("event_types", sa.String()),
    sa.column("secret_sealed", sa.LargeBinary()),
    sa.column("status", sa.String()),
    sa.column("created_at", sa.BigInteger()),
)
webhook_events = sa.table(
    "webhook_events",
    sa.column("id", sa.LargeBinary()),
    sa.column("merchant_id", sa.LargeBinary()),
    sa.column("type", sa.String()),
    sa.column("payload", sa.Text()),
    sa.column("created_at", sa.BigInteger()),
)
webhook_deliveries = sa.table(
    "webhook_deliveries",
    sa.column("id", sa.LargeBinary()),
    sa.column("event_id", sa.LargeBinary()),
    sa.column("endpoint_id", sa.LargeBinary()),
    sa.column("status", sa.String()),
    sa.column("attempts", sa.SmallInteger()),
    sa.column("next_attempt_at", sa.BigInteger()),
    sa.column("last_attempt_at", sa.BigInteger()),
    sa.column("last_status_code", sa.SmallInteger()),
    sa.column("last_error", sa.String()),
    sa.column("delivered_at", sa.BigInteger()),
    sa.column("created_at", sa.BigInteger()),
)
webhook_attempts = sa.table(
    "webhook_attempts",
    sa.column("id", sa.LargeBinary()),
    sa.column("delivery_id", sa.LargeBinary()),
    sa.column("number", sa.SmallInteger()),
    sa.column("at", sa.BigInteger()),
    sa.column("status_code", sa.SmallInteger()),
    sa.column("duration_ms", sa.Integer()),
    sa.column("error", sa.String()),
)
