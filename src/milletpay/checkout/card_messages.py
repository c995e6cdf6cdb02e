"""The ISO 8583 messages the Millet Pay checkout sends as the acquirer of its own in-app
card payments: pure functions from the merchant, the token and the amounts to messages.
No storage, no clock, no network: `card_funding.py` gives them the STAN and the time.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from milletpay.banks.model import CST
from milletpay.cards.tokens import Token, TokenDomain
from milletpay.checkout.intents import CaptureMethod
from milletpay.checkout.merchants import Merchant
from milletpay.core.clock import NS_PER_S
from milletpay.network.iso8583 import (
    APPROVED,
    MESSAGE_TYPES,
    FieldValue,
    Message,
    original_data_elements,
    retrieval_reference,
    transmission_date_time,
    validate,
)

__all__ = [
    "CONDITION_IN_APP",
    "CURRENCY_NUMERIC",
    "ENTRY_IN_APP",
    "PLATFORM_ACQUIRER_ID",
    "PLATFORM_TERMINAL_ID",
    "PROCESSING_PURCHASE",
    "PROCESSING_REFUND",
    "REQUEST_MTIS",
    "card_merchant_id",
    "completion",
    "name_location",
    "request",
    "reversal",
]

#: Field 32: Millet Pay's acquiring institution id for its own checkout.
PLATFORM_ACQUIRER_ID: Final = "88880001"
#: Field 41: the checkout's one virtual terminal (8 characters).
PLATFORM_TERMINAL_ID: Final = "MPAYAPP1"
#: Field 22: 81 PAN entry via e-commerce / in-app with chip (remote) credentials, then
#: 2: no PIN entry capability.
ENTRY_IN_APP: Final = "812"
#: Field 25: 59 e-commerce or in-app (docs/iso8583.md).
CONDITION_IN_APP: Final = "59"
PROCESSING_PURCHASE: Final = "000000"
PROCESSING_REFUND: Final = "200000"  # 20: returns
CURRENCY_NUMERIC: Final = 156
REVERSAL_REASON_NO_ANSWER: Final = "68"
FEE_ZEROS: Final = "0" * 9  # field 95's two fees: none in-band
#: The authorization request by capture method: a single message posts at once; a
#: manual-capture intent holds with an 0100, completed (0220) on capture or reversed
#: (0400) on cancel.
REQUEST_MTIS: Final[Mapping[CaptureMethod, str]] = MappingProxyType(
    {CaptureMethod.AUTOMATIC: "0200", CaptureMethod.MANUAL: "0100"}
)


def card_merchant_id(merchant_id: int) -> str:
    """Field 42 for a Millet Pay merchant: the last 15 hex digits of its id (the random
    part of a time-ordered id; the full id stays in the platform's books)."""
    return f"{merchant_id:032x}"[-15:].upper()


def request(
    merchant: Merchant,
    token: Token,
    amount_fen: int,
    processing: str,
    mti: str,
    stan: str,
    now_ns: int,
) -> Message:
    """A request from the checkout's terminal for `token`, without field 55."""
    local = datetime.datetime.fromtimestamp(now_ns // NS_PER_S, CST)
    fields: dict[int, FieldValue] = {
        2: token.number,
        3: processing,
        4: f"{amount_fen:012d}",
        7: transmission_date_time(now_ns),
        11: stan,
        12: local.strftime("%H%M%S"),
        13: local.strftime("%m%d"),
        14: f"{token.expiry.year % 100:02d}{token.expiry.month:02d}",
        18: merchant.mcc,
        22: ENTRY_IN_APP,
        23: f"{token.psn:03d}",
        25: CONDITION_IN_APP,
        32: PLATFORM_ACQUIRER_ID,
        37: retrieval_reference(now_ns, stan),
        41: PLATFORM_TERMINAL_ID,
        42: card_merchant_id(merchant.id),
        43: name_location(merchant),
        49: f"{CURRENCY_NUMERIC:03d}",
        61: token.device_id,
        62: TokenDomain.IN_APP.value,
    }
    return Message(mti, fields)


def name_location(merchant: Merchant) -> str:
    """Field 43: name (25), city (13), country (2), each space-padded ASCII."""
    name = merchant.display_name.encode("ascii", "replace").decode()[:25]
    city = merchant.city.encode("ascii", "replace").decode()[:13]
    return f"{name:<25}{city:<13}CN"


def reversal(original: Message, *, stan: str, now_ns: int) -> Message:
    """The 0400 undoing `original`: its fields but the cryptogram, a new STAN and field
    7, 39 = 68 (no answer in time), and field 90 naming it."""
    fields = {n: v for n, v in original.fields.items() if n != 55}
    fields |= {
        7: transmission_date_time(now_ns),
        11: stan,
        39: REVERSAL_REASON_NO_ANSWER,
        90: original_data_elements(original),
    }
    message = Message("0400", fields)
    validate(message)
    return message


def completion(
    original: Message, approval_code: str, taken: int, *, stan: str, transmitted: str
) -> Message:
    """The 0220 completing `original` for `taken`: field 4 the amount taken, and field 95
    with it when it is less than authorized (the switch and the issuer post field 95's
    actual amount when present, else field 4: both say `taken`)."""
    allowed = MESSAGE_TYPES["0220"].must | MESSAGE_TYPES["0220"].may
    fields = {n: v for n, v in original.fields.items() if n in allowed and n != 55}
    fields |= {
        4: f"{taken:012d}",
        7: transmitted,
        11: stan,
        38: approval_code,
        39: APPROVED,
        90: original_data_elements(original),
    }
    if taken != int(original.text(4)):
        fields[95] = f"{taken:012d}{taken:012d}{FEE_ZEROS}{FEE_ZEROS}"
    advice = Message("0220", fields)
    validate(advice)
    return advice
