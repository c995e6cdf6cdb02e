"""Alembic environment: runs on the connection handed over by `milletpay.store.migrate`."""

from __future__ import annotations

from milletpay.store.migrate import run_migrations_here

run_migrations_here()
