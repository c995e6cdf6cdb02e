"""The values a bank hands out and the small pure rules shared by its services.

Statuses, accounts, cards and balances as immutable values; reference and amount
checks; the China-time day, year and expiry rules. Nothing here touches storage.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from typing import Any

from milletpay.banks.data import ProductType
from milletpay.banks.errors import BankInputError
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.ids import id_from_bytes

#: China Standard Time: days, months and years of limits and expiry turn over at its midnight.
CST = datetime.timezone(datetime.timedelta(hours=8))
REAL_NAME_CHARS_MAX = 64
REFERENCE_CHARS_MAX = 64
#: One movement's amount, at most (10^13 fen is 100 billion CNY).
AMOUNT_FEN_MAX = 10**13


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    LOST = "lost"
    EXPIRED = "expired"


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class BankAccount:
    id: int
    customer_id: int
    number_masked: str
    product: str
    product_type: ProductType
    account_class: int
    credit_limit_fen: int
    status: AccountStatus


@dataclass(frozen=True, slots=True)
class OpenedAccount:
    """A new account and its number: the number is handed to the customer, once."""

    account: BankAccount
    number: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """A new card as the customer receives it: PAN and CVN2 are never shown again."""

    card_id: int
    account_id: int
    pan_masked: str
    expiry_yymm: str
    pan: str = field(repr=False)
    cvn2: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Balance:
    """A cardholder account's balance in fen: `available` is what may still be spent
    (deposit left, or credit left), `held` what live authorizations hold."""

    posted_fen: int
    held_fen: int
    available_fen: int
    owed_fen: int  # credit accounts: what the customer owes; 0 for deposit accounts


def check_reference(reference: str) -> str:
    """1 to `REFERENCE_CHARS_MAX` visible ASCII characters; else `BankInputError`."""
    if not (
        isinstance(reference, str)
        and 1 <= len(reference) <= REFERENCE_CHARS_MAX
        and reference.isascii()
        and reference.isprintable()
        and " " not in reference
    ):
        raise BankInputError(
            f"a reference is 1 to {REFERENCE_CHARS_MAX} visible ASCII characters",
            code="bank_reference_invalid",
        )
    return reference


def check_amount(amount_fen: int) -> int:
    if type(amount_fen) is not int or not 1 <= amount_fen <= AMOUNT_FEN_MAX:
        raise BankInputError(
            f"an amount is a whole number of fen from 1 to {AMOUNT_FEN_MAX}",
            code="bank_amount_invalid",
        )
    return amount_fen


def cst_now(clock: Clock) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(clock.now_ns() // NS_PER_S, CST)


def _cst_start_ns(moment: datetime.datetime) -> int:
    return int(moment.timestamp()) * NS_PER_S


def day_start_ns(clock: Clock) -> int:
    """The China midnight that began today."""
    now = cst_now(clock)
    return _cst_start_ns(now.replace(hour=0, minute=0, second=0, microsecond=0))


def year_start_ns(clock: Clock) -> int:
    now = cst_now(clock)
    return _cst_start_ns(now.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0))


def is_expired(expiry_yymm: str, clock: Clock) -> bool:
    """A card is valid through the last day of its expiry month (China time)."""
    now = cst_now(clock)
    return (now.year % 100, now.month) > (int(expiry_yymm[:2]), int(expiry_yymm[2:]))


def account_from_row(row: dict[str, Any]) -> BankAccount:
    """A `bank_accounts` row (as a dict) as a value."""
    return BankAccount(
        id=id_from_bytes(row["id"]),
        customer_id=id_from_bytes(row["customer_id"]),
        number_masked=str(row["number_masked"]),
        product=str(row["product"]),
        product_type=ProductType(row["product_type"]),
        account_class=int(row["account_class"]),
        credit_limit_fen=int(row["credit_limit_fen"]),
        status=AccountStatus(row["status"]),
    )
