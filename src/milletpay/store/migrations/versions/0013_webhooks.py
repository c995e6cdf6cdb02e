"""Checkout: merchants' webhook endpoints, the event outbox, deliveries and their attempts.

- `webhook_endpoints`: one row per endpoint a merchant registered. `id` (16 bytes);
  `merchant_id` (16 bytes, an opaque id: merchants are another migration's, so no
  foreign key); `slot` (0..15, unique per merchant: the database itself holds a merchant
  to its maximum of endpoints); `url` (at most 2048 characters); `event_types` (the
  subscribed types, sorted and comma-separated, or `*` for all); `secret_sealed` (the
  signing secret sealed with the key ring, the AAD binding the endpoint id: never in
  clear); `status` (`enabled` or `disabled`); `created_at`.
- `webhook_events`: the outbox, written in the same transaction as the change it
  reports. `type` (at most 64 characters); `payload` (the JSON body sent, at most
  65 536 characters); `created_at`. Indexed by merchant and time.
- `webhook_deliveries`: one event to one endpoint (replays add rows). `status`
  (`pending`, `succeeded`, `failed`); `attempts`; `next_attempt_at` (when a worker may
  take it: a worker that takes it moves it forward as a lease); `last_attempt_at`,
  `last_status_code`, `last_error` (at most 200 characters), `delivered_at`;
  `created_at` (the retry window starts here). Indexed on `(status, next_attempt_at)`
  for the worker, and by event. Deleting an endpoint deletes its deliveries.
- `webhook_attempts`: one row per HTTP attempt of a delivery: `number` (1, 2, ...),
  `at`, `status_code` (none when no answer came), `duration_ms`, `error` (at most 200
  characters). Deleted with their delivery.

Instants are nanoseconds since the Unix epoch.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("merchant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("event_types", sa.String(1024), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(128), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("merchant_id", "slot", name="webhook_endpoints_merchant_slot"),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("merchant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("webhook_events_by_merchant", "webhook_events", ["merchant_id", "created_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column(
            "event_id",
            sa.LargeBinary(16),
            sa.ForeignKey("webhook_events.id", name="webhook_deliveries_event"),
            nullable=False,
        ),
        sa.Column(
            "endpoint_id",
            sa.LargeBinary(16),
            sa.ForeignKey(
                "webhook_endpoints.id", name="webhook_deliveries_endpoint", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt_at", sa.BigInteger(), nullable=True),
        sa.Column("last_status_code", sa.SmallInteger(), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("webhook_deliveries_by_event", "webhook_deliveries", ["event_id"])
    op.create_index("webhook_deliveries_by_endpoint", "webhook_deliveries", ["endpoint_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column(
            "delivery_id",
            sa.LargeBinary(16),
            sa.ForeignKey(
                "webhook_deliveries.id", name="webhook_attempts_delivery", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("number", sa.SmallInteger(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(200), nullable=True),
    )
    op.create_index("webhook_attempts_by_delivery", "webhook_attempts", ["delivery_id", "number"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.drop_table("webhook_endpoints")
