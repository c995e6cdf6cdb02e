"""Fixtures shared by the API tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .wallet_world import World, make_world


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    yield from make_world(database_url)
