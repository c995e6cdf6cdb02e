"""ISO 8583 response codes (field 39) a bank answers, and what each means here.

The meaning of each code is ISO 8583's; the column "here" says which check of the bank
gives it. Lost cards: ISO's 41 is not among the codes the card network carries, so a
lost card answers 62 (restricted card), like a blocked one.
"""

from __future__ import annotations

import enum


class ResponseCode(enum.StrEnum):
    APPROVED = "00"
    DO_NOT_HONOUR = "05"  # CVN2 wrong (card-not-present)
    INVALID_CARD = "14"  # no such PAN at this bank, or not a valid PAN
    INSUFFICIENT_FUNDS = "51"  # deposit balance or credit left below the amount
    EXPIRED_CARD = "54"  # past its expiry, or the expiry given is not the card's
    INCORRECT_PIN = "55"
    NOT_PERMITTED_TO_CARDHOLDER = "57"  # currency or channel the product does not allow
    EXCEEDS_AMOUNT_LIMIT = "61"  # per-transaction, daily, or account-class limit
    RESTRICTED_CARD = "62"  # card blocked or lost, account frozen or closed
    PIN_TRIES_EXCEEDED = "75"
    ISSUER_INOPERATIVE = "91"  # the bank is offline
    DUPLICATE_TRANSMISSION = "94"  # a reference already used for another request
    SYSTEM_MALFUNCTION = "96"  # an unexpected error inside the bank

    @property
    def approved(self) -> bool:
        return self is ResponseCode.APPROVED
