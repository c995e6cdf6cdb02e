"""Fixtures for the vault tests: a vault on each database engine, scanned after each test.

When a test ends, its database is read back through SQL (every table, every column) and,
on SQLite, its files are read byte by byte while the WAL still exists; a test card number
found in clear fails the test that wrote it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from milletpay.cards import PanVault
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.store import create_engine, upgrade
from milletpay.store.engine import sqlite_path

from .leakscan import describe, scan_database, scan_sqlite_files
from .pans import TEST_PANS


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    upgrade(engine)
    yield engine
    leaks = scan_database(engine, TEST_PANS)
    database = sqlite_path(database_url)
    if database is not None:
        leaks += scan_sqlite_files(database, TEST_PANS)
    engine.dispose()
    assert not leaks, describe(leaks)


@pytest.fixture
def vault(engine: sa.Engine, keyring: KeyRing, clock: ManualClock) -> PanVault:
    return PanVault(engine, keyring, clock)
