"""Bank fixtures: the banks of the data file on a fresh platform database (SQLite files
or PostgreSQL schemas), random issuer keys, a manual clock, and cardholders."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from stdnum.cn import ric

from milletpay.banks import (
    AuthorizationRequest,
    Bank,
    Banks,
    Channel,
    GeneratedBankKeys,
    IssuedCard,
    OpenedAccount,
)
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing

PIN = "314159"


def yuan(amount_yuan: int) -> int:
    return amount_yuan * 100


@dataclass
class Holder:
    bank: Bank
    name: str
    account: OpenedAccount
    card: IssuedCard

    @property
    def account_id(self) -> int:
        return self.account.account.id


@dataclass
class BankWorld:
    base_url: str
    clock: ManualClock
    keys: GeneratedBankKeys
    banks: Banks
    people: int = 0

    def holder(
        self,
        code: str = "ICBC",
        *,
        product: str = "debit",
        deposit_fen: int = yuan(10_000),
        credit_limit_fen: int | None = None,
        phone: str | None = None,
    ) -> Holder:
        """A customer of bank `code` with an account of `product` and a card on it (and
        `phone` on file, if given)."""
        self.people += 1
        bank = self.banks.bank(code)
        name = f"Holder {self.people}"
        customer_id = bank.open_customer(name, phone=phone)
        account = bank.open_account(customer_id, product, credit_limit_fen=credit_limit_fen)
        if deposit_fen and product == "debit":
            assert bank.deposit(account.account.id, deposit_fen, f"opening-{self.people}")
        card = bank.issue_card(account.account.id, pin=PIN)
        return Holder(bank, name, account, card)


def national_id(n: int) -> str:
    """A valid resident ID number, distinct for each `n`."""
    body = f"11010519900101{n:03d}"
    return body + ric.calc_check_digit(body + "0")


def pin_request(
    holder: Holder, amount_fen: int, reference: str, **kw: object
) -> AuthorizationRequest:
    fields: dict[str, object] = {
        "reference": reference,
        "pan": holder.card.pan,
        "amount_fen": amount_fen,
        "channel": Channel.CARD_PRESENT_PIN,
        "expiry_yymm": holder.card.expiry_yymm,
        "pin": PIN,
    }
    fields.update(kw)
    return AuthorizationRequest(**fields)  # type: ignore[arg-type]


def cnp_request(
    holder: Holder, amount_fen: int, reference: str, **kw: object
) -> AuthorizationRequest:
    fields: dict[str, object] = {
        "reference": reference,
        "pan": holder.card.pan,
        "amount_fen": amount_fen,
        "channel": Channel.CARD_NOT_PRESENT,
        "expiry_yymm": holder.card.expiry_yymm,
        "cvn2": holder.card.cvn2,
    }
    fields.update(kw)
    return AuthorizationRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture
def world(database_url: str) -> Iterator[BankWorld]:
    clock = ManualClock()
    keys = GeneratedBankKeys()
    banks = Banks(database_url, KeyRing.generate(), keys, clock)
    yield BankWorld(database_url, clock, keys, banks)
    banks.close()
