"""Alembic environment of the card network's own tables: runs on the connection handed
over by `milletpay.store.migrate.upgrade`, with the version table
`milletpay.network.storage` names."""

from __future__ import annotations

from milletpay.store.migrate import run_migrations_here

run_migrations_here()
