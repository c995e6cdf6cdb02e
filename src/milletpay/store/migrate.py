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

from milletpay.store.engine import WRITE_LOCK, is_sqlite, write_gate

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK_KEY = 0x4D494C4C  # "MILL"


VERSION_TABLE = "alembic_version"


def alembic_config(
    connection: sa.Connection,
    migrations_dir: Path = MIGRATIONS_DIR,
    version_table: str = VERSION_TABLE,
) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = version_table
    return config


def upgrade(
    engine: sa.Engine,
    revision: str = "head",
    *,
    migrations_dir: Path = MIGRATIONS_DIR,
    version_table: str = VERSION_TABLE,
) -> None:
    """Upgrade to `revision` the chain in `migrations_dir`, whose state is kept in
    `version_table`: the platform's chain by default; another chain (a bank's own tables)
    keeps its own version table, so two chains live in one database side by side."""
    if is_sqlite(engine):
        with (
            write_gate(engine),
            engine.connect().execution_options(**{WRITE_LOCK: True}) as conn,
            conn.begin(),
        ):
            command.upgrade(alembic_config(conn, migrations_dir, version_table), revision)
        return
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
        command.upgrade(alembic_config(conn, migrations_dir, version_table), revision)


def run_migrations_here() -> None:
    """The body of every chain's `env.py`: run on the connection `upgrade` handed over,
    recording the state in the version table it named."""
    from alembic import context

    attributes = context.config.attributes
    context.configure(
        connection=attributes["connection"],
        transactional_ddl=True,
        version_table=attributes.get("version_table", VERSION_TABLE),
    )
    with context.begin_transaction():
        context.run_migrations()
