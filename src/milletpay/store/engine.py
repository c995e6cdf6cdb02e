"""Database URL -> SQLAlchemy engine, with each dialect set up for money.

SQLite: WAL journal, synchronous=FULL (a committed transfer survives power loss),
a 64 MiB page cache, a generous busy timeout so that concurrent writers wait
rather than fail, and explicit transaction control so that a write transaction
takes the write lock at BEGIN (BEGIN IMMEDIATE) instead of failing on upgrade.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: the gate holds for the writers of one process only
    fcntl = None  # type: ignore[assignment]

import sqlalchemy as sa
from sqlalchemy import event

ENV_DATABASE_URL = "MILLET_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///millet.db"
SQLITE_BUSY_TIMEOUT_MS = 60_000
SQLITE_CACHE_KIB = 65_536
SQLITE_POOL_SIZE = 40
SQLITE_POOL_OVERFLOW = 40
#: A PostgreSQL schema name `create_engine` accepts: lower case, digits and underscores.
SCHEMA_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
#: Execution option: begin this connection's transactions with BEGIN IMMEDIATE.
WRITE_LOCK = "millet_write_lock"


def resolve_database_url(url: str | None = None) -> str:
    """The URL given, else `MILLET_DATABASE_URL`, else a SQLite file in the working directory."""
    chosen = url or os.environ.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL
    if chosen.startswith("postgresql://") or chosen.startswith("postgres://"):
        chosen = "postgresql+psycopg://" + chosen.split("://", 1)[1]
    return chosen


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names; None for other databases."""
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() != "sqlite" or not sa_url.database:
        return None
    return Path(sa_url.database)


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str | None = None, *, schema: str | None = None) -> sa.Engine:
    """An engine for `url`. On PostgreSQL, `schema` (created if missing) is the only
    schema on the connections' search_path, so one database holds several institutions'
    books side by side, each under unqualified table names. SQLite has no schemas: an
    institution there gets a file of its own instead, and `schema` must be None."""
    resolved = resolve_database_url(url)
    sa_url = sa.make_url(resolved)
    if sa_url.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("SQLite has no schemas: give each institution its own file")
        return _sqlite_engine(sa_url)
    if sa_url.get_backend_name() == "postgresql":
        if schema is None:
            return sa.create_engine(sa_url, pool_pre_ping=True)
        return _postgresql_schema_engine(sa_url, schema)
    raise ValueError(
        f"unsupported database {sa_url.get_backend_name()!r}: use sqlite or postgresql"
    )


def _postgresql_schema_engine(url: sa.URL, schema: str) -> sa.Engine:
    if not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema name {schema!r} must match {SCHEMA_NAME.pattern}")
    with sa.create_engine(url).connect() as conn, conn.begin():
        conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return sa.create_engine(
        url, pool_pre_ping=True, connect_args={"options": f"-c search_path={schema}"}
    )


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.database in (None, "", ":memory:"):
        raise ValueError("the ledger needs a SQLite file, not an in-memory database")
    engine = sa.create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        # Opening a connection runs the PRAGMAs below: keep enough of them open for a
        # server's worker threads rather than open and close one per request.
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=SQLITE_POOL_OVERFLOW,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: SQLAlchemy's "begin" event
        # below emits BEGIN itself, so BEGIN IMMEDIATE is possible.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get(WRITE_LOCK):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


class WriteGateTimeout(TimeoutError):
    """A writer held the SQLite file longer than the busy timeout."""


class _Gate:
    """The write gate of one SQLite file in this process: a thread lock for this
    process's writers, then an exclusive `flock` on the file's `-writer` lock file for
    the writers of every process. The lock file is opened once per process (a child
    made by fork opens its own: a descriptor shared with the parent would share its
    lock).

    The `flock` wait blocks, with no timeout of its own: the kernel wakes the waiter the
    moment the other process's writer lets go, where polling finds the file taken again
    by a writer that commits batch after batch. The holder holds it for one
    transaction, and a transaction is bounded by SQLite's busy timeout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.threads = threading.Lock()
        #: When (`time.monotonic()`) a writer of this process last found the gate held
        #: by another process's writer; None if none has.
        self.contended_at: float | None = None
        self._fd = -1
        self._pid = -1

    def _lock_file(self) -> int:
        if self._pid != os.getpid():
            self._fd = os.open(f"{self.path}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        if not self.threads.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise WriteGateTimeout(f"{self.path.name}: another writer held it for too long")
        try:
            if fcntl is None:
                yield
                return
            fd = self._lock_file()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process's writer has it: wait for it
                self.contended_at = time.monotonic()
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self.threads.release()


#: The write gate of each SQLite file this process writes (see `write_gate`).
_WRITE_GATES: dict[Path, _Gate] = {}
_WRITE_GATES_LOCK = threading.Lock()


def write_gate_contended(engine: sa.Engine, within_s: float = 1.0) -> bool:
    """Whether a writer of this process to `engine`'s SQLite file found the write gate
    held by another process's writer in the last `within_s` seconds: other processes
    write too (false on PostgreSQL)."""
    gate = _gate_of(engine)
    since = None if gate is None else gate.contended_at
    return since is not None and time.monotonic() - since <= within_s


def write_gate(engine: sa.Engine) -> AbstractContextManager[None]:
    """Hold around a write transaction. On SQLite, writers take turns at a gate of
    their own before BEGIN IMMEDIATE: a thread lock for the writers of this process and
    an exclusive `flock` on `<database>-writer` for those of other processes. One
    waiting on SQLite's busy handler instead sleeps in steps of up to 100 ms and is not
    woken when the lock frees; one waiting at the gate starts the moment the writer
    before it commits, in this process or another. A no-op on
    PostgreSQL, whose writers wait on row locks only."""
    gate = _gate_of(engine)
    return nullcontext() if gate is None else gate.held()


def _gate_of(engine: sa.Engine) -> _Gate | None:
    """The write gate of `engine`'s SQLite file in this process (made on first use);
    None on PostgreSQL."""
    database = engine.url.database
    if not is_sqlite(engine) or not database:
        return None
    path = _gate_path(database)
    gate = _WRITE_GATES.get(path)
    if gate is None:
        with _WRITE_GATES_LOCK:
            gate = _WRITE_GATES.setdefault(path, _Gate(path))
    return gate


@functools.lru_cache(maxsize=256)
def _gate_path(database: str) -> Path:
    return Path(database).resolve()


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One write transaction. On SQLite it begins with BEGIN IMMEDIATE after the
    process's own `write_gate`, so concurrent writers queue for the lock (up to the
    busy timeout) instead of failing mid-way."""
    with (
        write_gate(engine),
        engine.connect().execution_options(**{WRITE_LOCK: True}) as conn,
        conn.begin(),
    ):
        yield conn


@contextmanager
def read_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One read transaction: a consistent snapshot on SQLite (WAL)."""
    with engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def savepoint(conn: sa.Connection, name: str) -> Iterator[None]:
    """Undo what the block wrote on `conn` if it raises, and nothing else of the
    transaction. Plain SAVEPOINT statements: the same on both databases, and lighter
    than SQLAlchemy's nested transactions on paths every payment takes. They go
    to the driver's cursor directly, as `Sql` statements do: each unit of a group commit
    takes one or two, and SQLAlchemy's execution machinery around a statement costs more
    than the statement."""
    assert conn.in_transaction(), "a savepoint lies inside a transaction"
    _run_on_driver(conn, f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        _run_on_driver(conn, f"ROLLBACK TO SAVEPOINT {name}")
        _run_on_driver(conn, f"RELEASE SAVEPOINT {name}")
        raise
    _run_on_driver(conn, f"RELEASE SAVEPOINT {name}")


def _run_on_driver(conn: sa.Connection, statement: str) -> None:
    """Run `statement` (no parameters, no rows) on the DBAPI connection under `conn`, in
    its transaction."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


class ConnectionTransaction:
    """A write transaction on `connection` whose parts can be undone one by one."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self._savepoints = 0

    def savepoint(self) -> AbstractContextManager[None]:
        self._savepoints += 1
        return savepoint(self.connection, f"millet_{self._savepoints}")


class EngineTransactions:
    """Write transactions on an engine's database, for a `GroupCommitter` of units that
    write their own rows (no ledger)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    @contextmanager
    def transaction(self) -> Iterator[ConnectionTransaction]:
        with write_transaction(self._engine) as conn:
            yield ConnectionTransaction(conn)
