"""Test fixtures: every storage test runs on a SQLite file and on a real PostgreSQL.

PostgreSQL comes from `MILLET_TEST_POSTGRES_URL` when it is set (a server the
caller runs), otherwise from a throw-away server started here with `pgserver`
(PostgreSQL from a wheel; no system install). If neither works the PostgreSQL
tests fail: they are never skipped silently.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

ENGINES = ("sqlite", "postgresql")
_counter = itertools.count()


def _sqlalchemy_pg_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database."""
    url = os.environ.get("MILLET_TEST_POSTGRES_URL")
    if url:
        yield _sqlalchemy_pg_url(url)
        return
    import pgserver

    data_dir = tempfile.mkdtemp(prefix="millet-pg-")
    server = pgserver.get_server(data_dir, cleanup_mode="delete")
    try:
        yield _sqlalchemy_pg_url(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def _pg_admin(postgres_server_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _new_pg_database(admin: sa.Engine, base_url: str) -> str:
    name = f"millet_test_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return sa.make_url(base_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=ENGINES)
def database_url_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Returns a function that makes a new, empty database and gives its URL."""
    if request.param == "sqlite":

        def make_sqlite() -> str:
            return f"sqlite:///{tmp_path / f'millet-{next(_counter)}.db'}"

        return make_sqlite
    admin = request.getfixturevalue("_pg_admin")
    base = request.getfixturevalue("postgres_server_url")
    return lambda: _new_pg_database(admin, base)


@pytest.fixture
def database_url(database_url_factory: Callable[[], str]) -> str:
    """A new, empty database on each engine in turn."""
    return database_url_factory()


# -- PAN leak scan ------------------------------------------------------------------
# Every log record goes to a file; when the session ends, that file and every file the
# tests wrote are scanned for the test card numbers of tests/cards/pans.py, and one
# found in clear fails the session. The scan itself is tests/cards/leakscan.py.

pytest_plugins = ("pytester",)  # the scan's own tests run a session that leaks


def pytest_configure(config: pytest.Config) -> None:
    from cards.leakscan import PLUGIN_NAME, PanLeakScan
    from cards.pans import TEST_PANS

    log_dir = Path(tempfile.mkdtemp(prefix="millet-test-logs-"))
    config.pluginmanager.register(PanLeakScan(TEST_PANS, log_dir), PLUGIN_NAME)


@pytest.fixture(scope="session", autouse=True)
def _pan_leak_scan_basetemp(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from cards.leakscan import plugin_of

    plugin_of(request.config).basetemp = tmp_path_factory.getbasetemp()
