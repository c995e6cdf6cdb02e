"""Fixtures for the vault and token service tests: a vault on each database engine,
scanned after each test; the banks and a token service on the same database.

When a test ends, its database is read back through SQL (every table, every column) and,
on SQLite, its files are read byte by byte while the WAL still exists; a test card number
found in clear fails the test that wrote it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from milletpay.banks import Banks, GeneratedBankKeys, IssuedCard, load_banks
from milletpay.banks import banks as bank_data
from milletpay.cards import (
    Detokenizer,
    Expiry,
    PanVault,
    ProvisionAnswer,
    ProvisionOutcome,
    ProvisionRequest,
    Token,
    TokenDomain,
    TokenService,
    seal_card_for_tsp,
)
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.identity.otp import SimulatedSms
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


# -- the token service ----------------------------------------------------------------

USER_ID = 0x0123_4567_89AB_CDEF
WALLET_PHONE = "+8613800138000"
OTHER_PHONE = "+8613900139000"
DEVICE = "phone-1"
CARD_PIN = "314159"
#: A bank of the tests' own: its range holds an IIN (629991) that is no product's.
TEST_BANK_TOML = """
[[bank]]
code = "TST"
name = "Test Bank"
iin_ranges = ["629990-629991"]
token_iin_range = "629999"

[[bank.products]]
code = "debit"
type = "debit"
iin = "629990"
per_transaction_limit_fen = 5_000_000
daily_limit_fen = 20_000_000
expiry_years = 10
"""


def card_expiry(card: IssuedCard) -> Expiry:
    return Expiry(2000 + int(card.expiry_yymm[:2]), int(card.expiry_yymm[2:]))


@dataclass
class TspWorld:
    engine: sa.Engine
    clock: ManualClock
    keyring: KeyRing
    vault: PanVault
    banks: Banks
    sms: SimulatedSms
    tsp: TokenService
    detokenizer: Detokenizer
    people: int = 0

    def card(
        self, code: str = "ICBC", *, product: str = "debit", phone: str | None = WALLET_PHONE
    ) -> IssuedCard:
        """A new cardholder of bank `code` (with `phone` on file) and their card."""
        self.people += 1
        bank = self.banks.bank(code)
        customer = bank.open_customer(f"Holder {self.people}", phone=phone)
        account = bank.open_account(customer, product)
        return bank.issue_card(account.account.id, pin=CARD_PIN)

    def envelope(self, card: IssuedCard, *, cvn2: str | None = None) -> str:
        given = card.cvn2 if cvn2 is None else cvn2
        return seal_card_for_tsp(self.tsp.public_key(), card.pan, card_expiry(card), given)

    def provision(
        self,
        card: IssuedCard,
        *,
        device: str = DEVICE,
        domain: TokenDomain = TokenDomain.CONTACTLESS,
        phone: str = WALLET_PHONE,
        user_id: int = USER_ID,
        cvn2: str | None = None,
    ) -> ProvisionAnswer:
        envelope = self.envelope(card, cvn2=cvn2)
        return self.tsp.provision(ProvisionRequest(user_id, device, domain, phone, envelope))

    def active_token(self, card: IssuedCard, **kw: Any) -> Token:
        answer = self.provision(card, **kw)
        assert answer.outcome is ProvisionOutcome.APPROVED, answer
        assert answer.token is not None
        return answer.token

    def last_code(self, phone: str = WALLET_PHONE) -> str:
        """The step-up code in the newest SMS to `phone`."""
        text = self.sms.messages_to(phone)[-1].text
        return next(word for word in text.split() if word.isdigit() and len(word) == 6)


@pytest.fixture
def tsp_world(
    engine: sa.Engine, database_url: str, keyring: KeyRing, clock: ManualClock
) -> Iterator[TspWorld]:
    specs = (*bank_data(), *load_banks(TEST_BANK_TOML))
    banks = Banks(database_url, keyring, GeneratedBankKeys(), clock, specs=specs)
    vault = PanVault(engine, keyring, clock)
    sms = SimulatedSms()
    tsp = TokenService(engine, vault, keyring, banks, sms, clock)
    yield TspWorld(
        engine, clock, keyring, vault, banks, sms, tsp, Detokenizer(engine, vault, clock)
    )
    banks.close()
