"""Where a bank keeps its books, and how its database is brought up to date.

Each bank has a database of its own, so that reconciliation compares independent books:
- SQLite: a file next to the platform's, `<stem>-bank-<code>.db` (`millet.db` →
  `millet-bank-icbc.db`);
- PostgreSQL: a schema in the platform's database, `bank_<code>`, the only schema on
  the bank's connections' search_path.

A bank's database holds the ledger's tables (the platform chain, upgraded only to the
ledger's revision `LEDGER_REVISION`) and the bank's own tables (the chain in
`banks/migrations`, versioned in `BANK_VERSION_TABLE`). Nothing of the wallet,
identity or API chains is ever applied there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from milletpay.store import create_engine, resolve_database_url, upgrade
from milletpay.store.engine import sqlite_path

LEDGER_REVISION = "0001"
BANK_MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BANK_VERSION_TABLE = "bank_alembic_version"
SCHEMA_PREFIX = "bank_"


@dataclass(frozen=True, slots=True)
class BankDatabase:
    url: str
    schema: str | None  # PostgreSQL only


def bank_database(base_url: str | None, bank_code: str) -> BankDatabase:
    """The database of `bank_code`, derived from the platform's database URL."""
    resolved = resolve_database_url(base_url)
    path = sqlite_path(resolved)
    if path is not None:
        name = f"{path.stem}-bank-{bank_code.lower()}{path.suffix or '.db'}"
        return BankDatabase(f"sqlite:///{path.with_name(name)}", None)
    return BankDatabase(resolved, SCHEMA_PREFIX + bank_code.lower())


def open_bank_engine(base_url: str | None, bank_code: str) -> sa.Engine:
    """An engine on the bank's database, its ledger and bank tables migrated."""
    database = bank_database(base_url, bank_code)
    engine = create_engine(database.url, schema=database.schema)
    upgrade(engine, LEDGER_REVISION)
    upgrade(engine, migrations_dir=BANK_MIGRATIONS_DIR, version_table=BANK_VERSION_TABLE)
    return engine
