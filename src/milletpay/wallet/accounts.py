"""The wallet's chart of accounts on the CNY and coin ledgers, and how ids are derived.

Every id is derived, never drawn: an account's id from (account code, owner), a
transfer's id from (user, operation kind, idempotency key, leg). So a retry of an
operation sends exactly the transfers of the first attempt, and the ledger answers
`exists` instead of moving money twice. Nothing here touches storage.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from milletpay.banks.data import bank_codes
from milletpay.core.money import CURRENCIES
from milletpay.ledger import U128_MAX, AccountFlags

#: The CNY ledger is numbered by the currency's ISO 4217 numeric code (156).
LEDGER_CNY = CURRENCIES["CNY"][0]
#: Millet coins have a ledger of their own (the demo's number): a transfer never crosses
#: ledgers, so a coin purchase is one linked batch with a leg on each.
LEDGER_COINS = 900_001
#: What one coin costs: 1 coin = 1 CNY = 100 fen; coins have no minor unit.
FEN_PER_COIN = 100

#: The partner banks Millet Pay settles with (the bank data file's codes, the online bank
#: PRB among them): one settlement account each.
PARTNER_BANKS: tuple[str, ...] = bank_codes()


class AccountCode(enum.IntEnum):
    WALLET = 1  # what Millet Pay owes a user: their stored-value balance
    SETTLEMENT = 2  # Millet Pay's money at a partner bank
    COIN_SALES = 5  # what Millet Pay has taken for coins sold (CNY)
    COINS_ISSUED = 6  # coins outstanding: Millet Pay's coin liability (debit side)
    COIN_PURSE = 7  # a user's coins
    MERCHANT = 8  # what Millet Pay owes a merchant: its takings, less fees and payouts
    FEE_REVENUE = 9  # the merchant discount Millet Pay has earned
    CARD_NETWORK = 10  # what the card network owes Millet Pay: card payments less refunds


class TransferCode(enum.IntEnum):
    TOP_UP = 1
    P2P = 2
    COIN_PURCHASE = 6  # CNY leg of a coin purchase (6 and 7 are the demo's codes too)
    COIN_ISSUE = 7  # coin leg of a coin purchase
    WITHDRAWAL = 8
    COIN_SPEND = 9  # coins back to the issuer for digital goods
    COIN_SHUTDOWN_REFUND = 10  # coins re-issued for an unfulfilled spend at a closed service
    MERCHANT_PAYMENT = 11  # wallet -> merchant; a hold's post and void keep the code
    MERCHANT_FEE = 12  # merchant -> fee revenue: the merchant discount on what was taken
    MERCHANT_REFUND = 13  # merchant -> wallet: a refund of a payment
    MERCHANT_PAYOUT = 14  # merchant -> settlement at its bank: what it was owed, paid out
    # A checkout merchant paid in coins: the coins are retired (purse -> coins issued; a
    # hold's post and void keep the code) and the merchant is owed their CNY value, which
    # the platform took when the coins were sold (coin sales -> merchant).
    COIN_MERCHANT_PAYMENT = 15
    COIN_MERCHANT_VALUE = 16
    # Its refund: the coins re-issued (coins issued -> purse), the CNY value back
    # (merchant -> coin sales).
    COIN_MERCHANT_REFUND = 17
    COIN_MERCHANT_VALUE_BACK = 18
    CARD_PAYMENT = 19  # card network -> merchant: a card payment the network approved
    CARD_REFUND = 20  # merchant -> card network: a refund the network took to the card


@dataclass(frozen=True, slots=True)
class AccountKind:
    code: AccountCode
    name: str
    flags: AccountFlags
    ledger: int = LEDGER_CNY


#: The chart: one row per account code. Wallets keep balance history for statements.
CHART: dict[AccountCode, AccountKind] = {
    AccountCode.WALLET: AccountKind(
        AccountCode.WALLET,
        "wallet",
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY,
    ),
    AccountCode.SETTLEMENT: AccountKind(
        AccountCode.SETTLEMENT, "settlement at bank", AccountFlags.NONE
    ),
    AccountCode.COIN_SALES: AccountKind(AccountCode.COIN_SALES, "coin sales", AccountFlags.NONE),
    AccountCode.COINS_ISSUED: AccountKind(
        AccountCode.COINS_ISSUED, "coins issued", AccountFlags.NONE, LEDGER_COINS
    ),
    AccountCode.COIN_PURSE: AccountKind(
        AccountCode.COIN_PURSE,
        "coin purse",
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY,
        LEDGER_COINS,
    ),
    # A merchant is never paid out more than it is owed: refunds and payouts debit it.
    AccountCode.MERCHANT: AccountKind(
        AccountCode.MERCHANT, "merchant", AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    ),
    AccountCode.FEE_REVENUE: AccountKind(AccountCode.FEE_REVENUE, "fee revenue", AccountFlags.NONE),
    # A receivable: debited by the card payments the network approved, credited by the
    # refunds it took back to the cards (and, later, by its settlement).
    AccountCode.CARD_NETWORK: AccountKind(
        AccountCode.CARD_NETWORK, "card network receivable", AccountFlags.NONE
    ),
}


def _derive_u128(*parts: bytes) -> int:
    h = hashlib.blake2b(digest_size=16, person=b"millet.wallet")
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))  # length-prefixed: parts never run together
        h.update(part)
    value = int.from_bytes(h.digest(), "big")
    assert 0 < value < U128_MAX  # 2^-127 odds; a collision with 0 or max must not pass quietly
    return value


def wallet_account_id(user_id: int) -> int:
    return _derive_u128(b"account", bytes([AccountCode.WALLET]), user_id.to_bytes(16, "big"))


def settlement_account_id(bank_code: str) -> int:
    assert bank_code in PARTNER_BANKS
    return _derive_u128(b"account", bytes([AccountCode.SETTLEMENT]), bank_code.encode())


def coin_purse_account_id(user_id: int) -> int:
    return _derive_u128(b"account", bytes([AccountCode.COIN_PURSE]), user_id.to_bytes(16, "big"))


def merchant_account_id(merchant_id: int) -> int:
    return _derive_u128(b"account", bytes([AccountCode.MERCHANT]), merchant_id.to_bytes(16, "big"))


def platform_account_id(code: AccountCode) -> int:
    """The one account of `code` Millet Pay keeps for itself (coin sales, coins issued,
    fee revenue, the card network receivable)."""
    assert code in (
        AccountCode.COIN_SALES,
        AccountCode.COINS_ISSUED,
        AccountCode.FEE_REVENUE,
        AccountCode.CARD_NETWORK,
    )
    return _derive_u128(b"account", bytes([code]), b"millet-pay")


def transfer_id(user_id: int, kind: str, idempotency_key: str, leg: int) -> int:
    """The id of leg `leg` of the user's operation `kind` under `idempotency_key`."""
    assert 0 <= leg < 256
    key = idempotency_key.encode()
    return _derive_u128(b"transfer", user_id.to_bytes(16, "big"), kind.encode(), key, bytes([leg]))
