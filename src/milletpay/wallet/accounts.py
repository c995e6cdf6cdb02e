"""The wallet's chart of accounts on the CNY ledger, and how ids are derived.

Every id is derived, never drawn: an account's id from (account code, owner), a
transfer's id from (user, operation kind, idempotency key, leg). So a retry of an
operation sends exactly the transfers of the first attempt, and the ledger answers
`exists` instead of moving money twice. Nothing here touches storage.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from milletpay.core.money import CURRENCIES
from milletpay.ledger import U128_MAX, AccountFlags

#: The CNY ledger is numbered by the currency's ISO 4217 numeric code (156).
LEDGER_CNY = CURRENCIES["CNY"][0]

#: The partner banks Millet Pay settles with: one settlement account each.
PARTNER_BANKS: tuple[str, ...] = ("ICBC", "CCB", "ABC", "BOC", "CMB", "PRB")


class AccountCode(enum.IntEnum):
    WALLET = 1  # what Millet Pay owes a user: their stored-value balance
    SETTLEMENT = 2  # Millet Pay's money at a partner bank


class TransferCode(enum.IntEnum):
    TOP_UP = 1
    P2P = 2
    WITHDRAWAL = 8


@dataclass(frozen=True, slots=True)
class AccountKind:
    code: AccountCode
    name: str
    flags: AccountFlags


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


def transfer_id(user_id: int, kind: str, idempotency_key: str, leg: int) -> int:
    """The id of leg `leg` of the user's operation `kind` under `idempotency_key`."""
    assert 0 <= leg < 256
    key = idempotency_key.encode()
    return _derive_u128(b"transfer", user_id.to_bytes(16, "big"), kind.encode(), key, bytes([leg]))
