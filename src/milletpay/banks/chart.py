"""A bank's chart of accounts on its own CNY ledger, and how its ids are derived.

Cardholder accounts:
- a deposit account (debit products) is what the bank owes the customer:
  DEBITS_MUST_NOT_EXCEED_CREDITS, so the ledger itself refuses an overdraft;
- a credit account (credit products) holds the credit still available: at opening the
  bank moves the credit limit into it from its credit lines account, and it too is
  DEBITS_MUST_NOT_EXCEED_CREDITS. So the ledger itself refuses spending beyond the limit
  (TigerBeetle's pattern: a limit is a balance), and what the customer owes is the limit
  less the account's balance.

The bank's own accounts: cash (where deposits and repayments come from), credit lines
(credit granted and not yet drawn), network settlement (what the bank owes the card
network for approved card spending) and Millet Pay settlement (what the bank owes Millet
Pay for top-ups, less what it is owed for withdrawals).

Transfer ids are derived from (bank, kind, reference, leg), so a retried request sends
the same transfers and the ledger answers `exists` instead of moving money twice.
"""

from __future__ import annotations

import enum
import hashlib

from milletpay.core.money import CURRENCIES
from milletpay.ledger import U128_MAX, AccountFlags

LEDGER_CNY = CURRENCIES["CNY"][0]


class BankAccountCode(enum.IntEnum):
    DEPOSIT = 1
    CREDIT = 2
    CASH = 10
    CREDIT_LINES = 13
    NETWORK_SETTLEMENT = 11
    MILLET_SETTLEMENT = 12


class BankTransferCode(enum.IntEnum):
    CASH_DEPOSIT = 1
    CARD_PURCHASE = 2  # a hold, then its post or void
    LINKED_DEBIT = 3  # money to Millet Pay: a wallet top-up
    LINKED_CREDIT = 4  # money from Millet Pay: a wallet withdrawal
    REPAYMENT = 5  # a credit account repaid in cash
    CREDIT_LINE = 6  # a credit limit granted (or changed)
    CARD_REFUND = 7  # a merchant's refund to the card, through the network (and its reversal)


ACCOUNT_FLAGS: dict[BankAccountCode, AccountFlags] = {
    BankAccountCode.DEPOSIT: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY,
    BankAccountCode.CREDIT: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY,
    BankAccountCode.CASH: AccountFlags.NONE,
    BankAccountCode.CREDIT_LINES: AccountFlags.NONE,
    BankAccountCode.NETWORK_SETTLEMENT: AccountFlags.NONE,
    BankAccountCode.MILLET_SETTLEMENT: AccountFlags.NONE,
}
#: The bank's own accounts, one of each, created with its books.
OWN_ACCOUNTS = (
    BankAccountCode.CASH,
    BankAccountCode.CREDIT_LINES,
    BankAccountCode.NETWORK_SETTLEMENT,
    BankAccountCode.MILLET_SETTLEMENT,
)


def derive_id(bank_code: str, *parts: bytes) -> int:
    h = hashlib.blake2b(digest_size=16, person=b"millet.banks")
    for part in (bank_code.encode(), *parts):
        h.update(len(part).to_bytes(4, "big"))  # length-prefixed: parts never run together
        h.update(part)
    value = int.from_bytes(h.digest(), "big")
    assert 0 < value < U128_MAX  # 2^-127 odds; must not pass quietly
    return value


def own_account_id(bank_code: str, code: BankAccountCode) -> int:
    assert code in OWN_ACCOUNTS
    return derive_id(bank_code, b"own-account", bytes([code]))


def request_id(bank_code: str, kind: str, reference: str) -> int:
    """The id of the request `kind` under the caller's `reference` (authorization,
    movement): the same reference always names the same request."""
    return derive_id(bank_code, b"request", kind.encode(), reference.encode())


def transfer_id(bank_code: str, kind: str, reference: str, leg: int) -> int:
    assert 0 <= leg < 256
    return derive_id(bank_code, b"transfer", kind.encode(), reference.encode(), bytes([leg]))
