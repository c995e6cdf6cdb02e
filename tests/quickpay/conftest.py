"""Quick-pay fixtures: a migrated database (SQLite and PostgreSQL), a user, a phone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.identity import IdentityService, SimulatedSms
from milletpay.identity.devices import DeviceRegistry
from milletpay.identity.quickpay import QuickPay
from milletpay.store import create_engine, upgrade

from .world import World


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    engine = create_engine(database_url)
    upgrade(engine)
    clock = ManualClock()
    identity = IdentityService(engine, KeyRing.generate(), clock, SimulatedSms())
    user = identity.register("13800138000", "Zhang San", "11010519491231002X")
    yield World(
        engine,
        clock,
        identity,
        DeviceRegistry(engine, clock),
        QuickPay(engine, clock),
        user.id,
    )
    engine.dispose()
