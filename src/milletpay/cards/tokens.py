"""Payment tokens as values: the domain a token is bound to, the token itself, the token
service's answers, and how a token number is made. Nothing here touches storage.

A token is one device's stand-in for one card in one domain (contactless at a POS, in
an app, or e-commerce): the usual model of HCE wallets, and what lets the network refuse
a token used outside its domain. Its number is drawn at random from the issuer's token
IIN range (`BankSpec.token_iin_range`, which the bank data keeps apart from every card
range), so a token number is never a card number and may be shown and logged in clear.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from stdnum import luhn

from milletpay.banks.data import IinRange
from milletpay.cards.lifecycle import Lifecycle, TokenState
from milletpay.cards.pan import Expiry
from milletpay.cards.vault import VaultRef

#: The PAN sequence number of every token (EMV tag 5F34): one token, one "card".
TOKEN_PSN: Final = 1
#: A token is valid this many years from the month it is provisioned, whatever the card's
#: expiry: a re-issued card keeps its tokens.
TOKEN_VALIDITY_YEARS: Final = 3

#: Picks a number in [0, n): `secrets.randbelow`, or a fixed sequence in tests.
RandBelow = Callable[[int], int]


class TokenDomain(enum.StrEnum):
    """Where a token may pay (EMV token domain restriction controls)."""

    CONTACTLESS = "contactless"  # tap at a POS terminal
    IN_APP = "in_app"  # in-app payments on the phone
    ECOMMERCE = "ecommerce"  # on the web


#: The token's own domain → every domain it may pay in (EMV token domain restriction
#: controls). The phone's wallet token (contactless) also pays in apps on the phone it
#: is bound to: an in-app payment names its device (`DEVICE_BOUND_DOMAINS`), and the
#: network compares it with the token's. Nothing pays on the web but a web token.
DOMAINS_ALLOWED: Final[Mapping[TokenDomain, frozenset[TokenDomain]]] = MappingProxyType(
    {
        TokenDomain.CONTACTLESS: frozenset({TokenDomain.CONTACTLESS, TokenDomain.IN_APP}),
        TokenDomain.IN_APP: frozenset({TokenDomain.IN_APP}),
        TokenDomain.ECOMMERCE: frozenset({TokenDomain.ECOMMERCE}),
    }
)
#: Domains where a payment must come from the token's bound device (its device id).
DEVICE_BOUND_DOMAINS: Final = frozenset({TokenDomain.IN_APP})


def domain_allows(
    token_domain: TokenDomain,
    token_device: str,
    used_in: TokenDomain,
    device_id: str | None,
) -> bool:
    """Whether a token of `token_domain`, bound to `token_device`, may pay in `used_in`
    from `device_id` (None: the payment names no device)."""
    if used_in not in DOMAINS_ALLOWED[token_domain]:
        return False
    return used_in not in DEVICE_BOUND_DOMAINS or device_id == token_device


@dataclass(frozen=True, slots=True)
class Token:
    """A token as the token service keeps it. Holds no card number: the card is
    `vault_ref` (its PAR the same for all of the card's tokens)."""

    id: int
    number: str
    expiry: Expiry
    psn: int
    vault_ref: VaultRef
    par: str
    bank_code: str
    user_id: int
    device_id: str
    domain: TokenDomain
    lifecycle: Lifecycle
    created_at_ns: int
    updated_at_ns: int

    @property
    def state(self) -> TokenState:
        return self.lifecycle.state


class ProvisionOutcome(enum.StrEnum):
    APPROVED = "approved"  # ID&V green: the token is active
    STEP_UP = "step_up"  # ID&V yellow: the token is inactive until the cardholder confirms
    DECLINED = "declined"  # no token


class DeclineCode(enum.StrEnum):
    """Why no token was made; stable codes."""

    ISSUER_NOT_PARTNER = "issuer_not_partner"  # the card's BIN is no partner bank's
    PRODUCT_NOT_TOKENIZABLE = "product_not_tokenizable"  # the bank's, but no product of it
    IDV_DECLINED = "idv_declined"  # the issuer said red; `reason` is the issuer's
    TOKEN_EXISTS = "token_exists"  # a live token for this card, device and domain
    STEP_UP_LIMIT = "step_up_limit_reached"  # too many codes texted for the card today


class StepUpChannel(enum.StrEnum):
    SMS = "sms"  # a code went to the phone on file at the bank
    ISSUER = "issuer"  # no phone on file: the cardholder calls the bank, which activates


@dataclass(frozen=True, slots=True)
class ProvisionAnswer:
    outcome: ProvisionOutcome
    token: Token | None = None
    decline: DeclineCode | None = None
    reason: str = ""  # the issuer's ID&V reason (green, yellow or red)
    step_up: StepUpChannel | None = None
    phone_masked: str = ""  # where the step-up code went

    def __post_init__(self) -> None:
        declined = self.outcome is ProvisionOutcome.DECLINED
        assert declined == (self.token is None) == (self.decline is not None)
        assert (self.outcome is ProvisionOutcome.STEP_UP) == (self.step_up is not None)


class StepUpStatus(enum.StrEnum):
    ACTIVATED = "activated"
    CODE_WRONG = "step_up_code_wrong"  # tries are left
    EXPIRED = "step_up_expired"  # the token is deleted
    ATTEMPTS_EXCEEDED = "step_up_attempts_exceeded"  # the token is deleted
    NOT_PENDING = "step_up_not_pending"  # no such token waiting for a code


@dataclass(frozen=True, slots=True)
class StepUpAnswer:
    status: StepUpStatus
    token: Token | None = None
    attempts_left: int = 0


@dataclass(frozen=True, slots=True)
class TokenRefusal:
    """A token a bulk change left as it was, and the lifecycle rule that said no."""

    token_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class BulkChange:
    """What a device or issuer event did: the tokens it changed, and those it could not."""

    changed: tuple[Token, ...]
    refused: tuple[TokenRefusal, ...] = ()


def new_token_number(token_range: IinRange, digits: int, randbelow: RandBelow) -> str:
    """A random Luhn-valid number of `digits` digits whose IIN lies in `token_range`."""
    first, last = int(token_range.first), int(token_range.last)
    iin = f"{first + randbelow(last - first + 1):06d}"
    body_digits = digits - len(iin) - 1
    assert body_digits > 0, "a token number is longer than its IIN"
    body = iin + f"{randbelow(10**body_digits):0{body_digits}d}"
    number = body + luhn.calc_check_digit(body)
    assert iin in token_range and len(number) == digits
    return number
