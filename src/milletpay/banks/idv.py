"""The issuer's ID&V decision on a token request (EMV Payment Tokenisation: token
assurance): green, yellow (step-up) or red.

The token service asks before it creates a token for a card: is this card ours and good,
did the requester know its expiry and CVN2, and is the wallet's user the cardholder?

- red: the bank is offline, the card is unknown, blocked, lost or expired, its account is
  frozen or closed, or the expiry or CVN2 given is not the card's;
- yellow: all of that is right, but the wallet user's phone is not the phone on file (or
  there is none on file): the cardholder confirms with a one-time code sent to the phone
  on file, which the decision carries (unmasked only for the token service to send to);
- green: all right, and the wallet user's phone is the one on file.

The checks run in that order; the first that fails names the reason. Nothing here logs
or returns the PAN; nothing is written (a decision is not recorded).
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from milletpay.banks.cardnumbers import is_pan
from milletpay.banks.model import AccountStatus, CardStatus, is_expired
from milletpay.banks.tables import bank_accounts, cards, customers
from milletpay.core.ids import id_from_bytes
from milletpay.identity.phone import mask_phone

if TYPE_CHECKING:
    from milletpay.banks.bank import Bank


class IdvOutcome(enum.StrEnum):
    GREEN = "green"  # approve: the token is active at once
    YELLOW = "yellow"  # step-up: a one-time code to the phone on file
    RED = "red"  # decline: no token


class IdvReason(enum.StrEnum):
    """Why the decision is what it is; stable codes."""

    VERIFIED = "verified"  # green
    PHONE_MISMATCH = "phone_mismatch"  # yellow
    NO_PHONE_ON_FILE = "no_phone_on_file"  # yellow
    ISSUER_UNAVAILABLE = "issuer_unavailable"
    CARD_UNKNOWN = "card_unknown"
    CARD_BLOCKED = "card_blocked"
    CARD_LOST = "card_lost"
    CARD_EXPIRED = "card_expired"
    ACCOUNT_FROZEN = "account_frozen"
    ACCOUNT_CLOSED = "account_closed"
    EXPIRY_MISMATCH = "expiry_mismatch"
    CVN2_MISMATCH = "cvn2_mismatch"


@dataclass(frozen=True, slots=True)
class IdvDecision:
    outcome: IdvOutcome
    reason: IdvReason
    #: Yellow only: where the step-up code goes. The full number is for the token
    #: service's SMS only; the wallet shows `phone_masked`.
    phone_on_file: str = field(default="", repr=False)
    phone_masked: str = ""

    def __post_init__(self) -> None:
        yellow = self.outcome is IdvOutcome.YELLOW
        assert not self.phone_on_file or yellow, "only a step-up carries the phone on file"


def _red(reason: IdvReason) -> IdvDecision:
    return IdvDecision(IdvOutcome.RED, reason)


_CARD_STATUS_REASONS = {
    CardStatus.BLOCKED: IdvReason.CARD_BLOCKED,
    CardStatus.LOST: IdvReason.CARD_LOST,
    CardStatus.EXPIRED: IdvReason.CARD_EXPIRED,
}
_ACCOUNT_STATUS_REASONS = {
    AccountStatus.FROZEN: IdvReason.ACCOUNT_FROZEN,
    AccountStatus.CLOSED: IdvReason.ACCOUNT_CLOSED,
}


def decide(bank: Bank, pan: str, expiry_yymm: str, cvn2: str, wallet_phone: str) -> IdvDecision:
    """The decision for a token request (see the module docstring); reads only."""
    if not bank.online:
        return _red(IdvReason.ISSUER_UNAVAILABLE)
    if not (is_pan(pan) and bank.spec.issues_iin(pan[:6])):
        return _red(IdvReason.CARD_UNKNOWN)
    with bank.engine.connect() as conn:
        card = conn.execute(
            sa.select(cards).where(cards.c.pan_fingerprint == bank.fingerprint(pan))
        ).first()
        if card is None:
            return _red(IdvReason.CARD_UNKNOWN)
        row = conn.execute(
            sa.select(bank_accounts.c.status, customers.c.id, customers.c.phone_sealed)
            .join(customers, customers.c.id == bank_accounts.c.customer_id)
            .where(bank_accounts.c.id == card.account_id)
        ).one()
    card_reason = _CARD_STATUS_REASONS.get(CardStatus(card.status))
    if card_reason is not None:
        return _red(card_reason)
    if is_expired(card.expiry_yymm, bank.clock):
        return _red(IdvReason.CARD_EXPIRED)
    account_reason = _ACCOUNT_STATUS_REASONS.get(AccountStatus(row.status))
    if account_reason is not None:
        return _red(account_reason)
    if not hmac.compare_digest(expiry_yymm.encode(), card.expiry_yymm.encode()):
        return _red(IdvReason.EXPIRY_MISMATCH)
    expected = bank.card_cvn2(pan, card.expiry_yymm)
    if not hmac.compare_digest(cvn2.encode(), expected.encode()):
        return _red(IdvReason.CVN2_MISMATCH)
    if row.phone_sealed is None:
        return IdvDecision(IdvOutcome.YELLOW, IdvReason.NO_PHONE_ON_FILE)
    on_file = bank.unseal(b"phone", id_from_bytes(row.id), row.phone_sealed)
    if hmac.compare_digest(on_file.encode(), wallet_phone.encode()):
        return IdvDecision(IdvOutcome.GREEN, IdvReason.VERIFIED)
    return IdvDecision(IdvOutcome.YELLOW, IdvReason.PHONE_MISMATCH, on_file, mask_phone(on_file))
