"""Schema migrations with Alembic, run programmatically (no alembic.ini needed).

`upgrade(engine)` brings a database to the newest schema; it is safe when several
processes open the same new database at once (the upgrade runs under the write
lock on SQLite and an advisory lock on PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from milletpay.store.engine import WRITE_LOCK, is_sqlite

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK_KEY = 0x4D494C4C  # "MILL"


def alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    if is_sqlite(engine):
        with engine.connect().execution_options(**{WRITE_LOCK: True}) as conn, conn.begin():
            command.upgrade(alembic_config(conn), revision)
        return
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
        command.upgrade(alembic_config(conn), revision)
