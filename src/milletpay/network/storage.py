"""Where the card network keeps its own books, and how that database is brought up to
date.

Like each bank, the network has a database of its own, so that settlement and
reconciliation compare independent books:
- SQLite: a file next to the platform's, `<stem>-network.db` (`millet.db` →
  `millet-network.db`);
- PostgreSQL: the schema `network` in the platform's database, the only schema on the
  network's connections' search_path.

It holds only the network's tables (the chain in `network/migrations`, versioned in
`NETWORK_VERSION_TABLE`); nothing of the platform's chains is ever applied there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlalchemy as sa

from milletpay.store import create_engine, resolve_database_url, upgrade
from milletpay.store.engine import sqlite_path

NETWORK_MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
NETWORK_VERSION_TABLE: Final = "network_alembic_version"
NETWORK_SCHEMA: Final = "network"
NETWORK_FILE_SUFFIX: Final = "-network"


@dataclass(frozen=True, slots=True)
class NetworkDatabase:
    url: str
    schema: str | None  # PostgreSQL only


def network_database(base_url: str | None) -> NetworkDatabase:
    """The network's database, derived from the platform's database URL."""
    resolved = resolve_database_url(base_url)
    path = sqlite_path(resolved)
    if path is not None:
        name = f"{path.stem}{NETWORK_FILE_SUFFIX}{path.suffix or '.db'}"
        return NetworkDatabase(f"sqlite:///{path.with_name(name)}", None)
    return NetworkDatabase(resolved, NETWORK_SCHEMA)


def open_network_engine(base_url: str | None) -> sa.Engine:
    """An engine on the network's database, its tables migrated."""
    database = network_database(base_url)
    engine = create_engine(database.url, schema=database.schema)
    upgrade(engine, migrations_dir=NETWORK_MIGRATIONS_DIR, version_table=NETWORK_VERSION_TABLE)
    return engine
