"""Storage: a database URL becomes a configured SQLAlchemy engine with the schema migrated.

SQLite (a file, WAL, synchronous=FULL) is the embedded default; PostgreSQL
(psycopg 3) is the production engine, chosen by `MILLET_DATABASE_URL`.
"""

from milletpay.store.engine import (
    DEFAULT_DATABASE_URL,
    create_engine,
    is_sqlite,
    read_transaction,
    resolve_database_url,
    write_transaction,
)
from milletpay.store.migrate import upgrade

__all__ = [
    "DEFAULT_DATABASE_URL",
    "create_engine",
    "is_sqlite",
    "read_transaction",
    "resolve_database_url",
    "upgrade",
    "write_transaction",
]
