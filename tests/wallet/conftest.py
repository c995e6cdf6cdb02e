"""Wallet fixtures: a migrated database (SQLite and PostgreSQL), the ledger, identity, a
simulated bank and the wallet service over them, and users at a chosen KYC tier."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from stdnum.cn import ric

from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.identity import Channel, IdentityService, SimulatedSms
from milletpay.ledger import Ledger
from milletpay.store import create_engine, upgrade
from milletpay.wallet import SimulatedBankGateway, WalletService

#: The remote channels verified to reach each tier (Class I: one; Class II: three).
CHANNELS_FOR_LEVEL = {
    1: (Channel.BANK_CARD,),
    2: (Channel.BANK_CARD, Channel.PUBLIC_SECURITY_ID, Channel.TELECOM),
}
BANK = "ICBC"


def yuan(amount_yuan: int) -> int:
    return amount_yuan * 100


@dataclass(frozen=True)
class Person:
    user_id: int
    phone: str
    account_number: str
    linked_account_id: int


@dataclass
class World:
    engine: sa.Engine
    clock: ManualClock
    ledger: Ledger
    identity: IdentityService
    bank: SimulatedBankGateway
    wallet: WalletService
    people: int = 0

    def person(self, level: int, bank_balance_fen: int = yuan(100_000)) -> Person:
        """A registered user at KYC `level` with one linked bank account at `BANK`."""
        self.people += 1
        n = self.people
        phone = f"1380013{n:04d}"
        body = f"11010519900101{n:03d}"
        national_id = body + ric.calc_check_digit(body + "0")
        name = f"Tester {n}"
        user = self.identity.register(phone, name, national_id)
        for channel in CHANNELS_FOR_LEVEL[level]:
            self.identity.verify_channel(user.id, channel)
        account_number = f"62220200{n:08d}"
        self.bank.open_account(BANK, account_number, name, bank_balance_fen)
        linked = self.wallet.link_bank_account(user.id, BANK, account_number)
        return Person(user.id, phone, account_number, linked.id)

    def balance_fen(self, person: Person) -> int:
        return self.wallet.balance(person.user_id).posted_fen


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    engine = create_engine(database_url)
    upgrade(engine)
    clock = ManualClock()
    ledger = Ledger(engine, clock)
    identity = IdentityService(engine, KeyRing.generate(), clock, SimulatedSms())
    bank = SimulatedBankGateway()
    yield World(
        engine, clock, ledger, identity, bank, WalletService(ledger, identity, engine, clock, bank)
    )
    engine.dispose()
