"""The transit chart: the accounts that city transit cards keep in the platform's CNY
ledger, and how their ids and the ids of transit transfers are derived.

Per city: the card issuer's prepaid float (what the cards hold: money received for
top-ups, owed to riders until they ride), the deposits account (refundable card deposits),
the issuance fees account (fees the issuer keeps), and one account per transit operator
(one per mode the city's fare table has: metro, bus) that clearing pays.

Ids are derived, never drawn, with a derivation label of their own (`millet.transit`), so
no transit id can meet a wallet or checkout id. Nothing here touches storage.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from milletpay.ledger import U128_MAX, Account, AccountFlags
from milletpay.transit.fares import Mode, fare_table
from milletpay.wallet.accounts import LEDGER_CNY

#: The derivation label of every transit id (the wallet's is `millet.wallet`).
DERIVATION_LABEL = b"millet.transit"


class TransitAccountCode(enum.IntEnum):
    """Ledger account codes; apart from the wallet's (1 to 9) and free for transit."""

    FLOAT = 40  # what the city's cards hold: owed to riders until they ride
    DEPOSITS = 41  # refundable card deposits, paid back when a card is closed
    ISSUANCE_FEES = 42  # issuance fees the card issuer keeps
    OPERATOR = 43  # what clearing owes a transit operator (a city's metro, its buses)


class TransitTransferCode(enum.IntEnum):
    """Transfer codes of the transfers transit writes itself. The wallet's own legs
    (deposit and top-up payments, refunds) carry the wallet's codes."""

    ISSUANCE_FEE = 40  # deposits -> issuance fees: the fee part of an issuance payment
    FARES_CLEARED = 41  # float -> operator: a day's fares cleared
    OVERDRAFT_COVERED = 42  # deposits -> float: a closed card's overdraft taken from its deposit


@dataclass(frozen=True, slots=True)
class TransitAccountKind:
    code: TransitAccountCode
    name: str
    flags: AccountFlags


#: The float has no limit flag on purpose: a card may overdraw (Shanghai), so the fares
#: cleared for it can exceed what was loaded, and clearing must never be refused for it.
#: Deposits, fees and operators are never debited beyond what they were credited.
CHART: dict[TransitAccountCode, TransitAccountKind] = {
    TransitAccountCode.FLOAT: TransitAccountKind(
        TransitAccountCode.FLOAT, "transit card float", AccountFlags.HISTORY
    ),
    TransitAccountCode.DEPOSITS: TransitAccountKind(
        TransitAccountCode.DEPOSITS,
        "transit card deposits",
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    ),
    TransitAccountCode.ISSUANCE_FEES: TransitAccountKind(
        TransitAccountCode.ISSUANCE_FEES,
        "transit issuance fees",
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    ),
    TransitAccountCode.OPERATOR: TransitAccountKind(
        TransitAccountCode.OPERATOR,
        "transit operator",
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY,
    ),
}


def derive_u128(*parts: bytes) -> int:
    """A 128-bit id from length-prefixed parts, under the transit derivation label."""
    h = hashlib.blake2b(digest_size=16, person=DERIVATION_LABEL)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    value = int.from_bytes(h.digest(), "big")
    assert 0 < value < U128_MAX  # 2^-127 odds; a collision with 0 or max must not pass quietly
    return value


def _city_account_id(code: TransitAccountCode, city: str, *more: bytes) -> int:
    fare_table().city(city)  # FareError for a city the platform does not carry
    return derive_u128(b"account", bytes([code]), city.encode(), *more)


def float_account_id(city: str) -> int:
    return _city_account_id(TransitAccountCode.FLOAT, city)


def deposits_account_id(city: str) -> int:
    return _city_account_id(TransitAccountCode.DEPOSITS, city)


def issuance_fees_account_id(city: str) -> int:
    return _city_account_id(TransitAccountCode.ISSUANCE_FEES, city)


def operator_account_id(city: str, mode: Mode) -> int:
    if mode not in fare_table().city(city).modes:
        raise ValueError(f"{city} has no {mode} operator")
    return _city_account_id(TransitAccountCode.OPERATOR, city, mode.value.encode())


def city_accounts(city: str) -> list[Account]:
    """Every account of the city's chart, to create (the ledger answers `exists` for
    those already there)."""
    spec = fare_table().city(city)
    ids = [
        (TransitAccountCode.FLOAT, float_account_id(city)),
        (TransitAccountCode.DEPOSITS, deposits_account_id(city)),
        (TransitAccountCode.ISSUANCE_FEES, issuance_fees_account_id(city)),
    ]
    ids += [(TransitAccountCode.OPERATOR, operator_account_id(city, m)) for m in spec.modes]
    return [Account(i, LEDGER_CNY, code, CHART[code].flags) for code, i in ids]
