"""Wallet limits: per-transaction, daily, velocity and the PBOC tier limit, as one table.

`LIMITS` holds every amount limit, by operation kind and KYC tier level; `decide` is a
pure function over it and over `Usage`, the figures the caller has summed. A decline is
a `Decision` value naming the limit that was hit, never an exception. Amounts are
integer fen. This module reads no storage and knows no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from milletpay.identity.kyc import KycTier, allows

#: The rolling window of the velocity check, and the most operations it lets through.
VELOCITY_WINDOW_S = 3600
VELOCITY_OPERATIONS_PER_HOUR_MAX = 20


class OperationKind(StrEnum):
    TOP_UP = "top_up"  # bank account -> wallet
    WITHDRAW = "withdraw"  # wallet -> bank account
    P2P = "p2p"  # wallet -> another user's wallet: a balance payment
    MERCHANT_PAYMENT = "merchant_payment"  # wallet -> a merchant: a balance payment
    MERCHANT_REFUND = "merchant_refund"  # a merchant -> wallet: money back, never limited
    # coins -> a checkout merchant: the platform pays the merchant their CNY value. Not a
    # balance payment: the coins were counted once already, when they were bought.
    COIN_PAYMENT = "coin_payment"
    CARD_PAYMENT = "card_payment"  # a tokenized bank card -> a merchant, in-app


class DeclineCode(StrEnum):
    """Which limit declined an operation; stable, shown to callers as is."""

    TIER_LIMIT_EXCEEDED = "tier_limit_exceeded"
    PER_TRANSACTION_LIMIT_EXCEEDED = "per_transaction_limit_exceeded"
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded"
    VELOCITY_EXCEEDED = "velocity_exceeded"


class LimitUnit(StrEnum):
    FEN = "fen"
    OPERATIONS = "operations"


@dataclass(frozen=True, slots=True)
class OperationLimits:
    per_transaction_fen: int
    daily_fen: int  # per China Standard Time calendar day


def _yuan(amount_yuan: int) -> int:
    return amount_yuan * 100


#: (operation kind, KYC tier level) -> limits. A user below Class I has no row: nothing
#: is allowed (every limit is zero for them).
# fmt: off
LIMITS: dict[tuple[OperationKind, int], OperationLimits] = {
    (OperationKind.TOP_UP,   1): OperationLimits(_yuan(2_000),  _yuan(5_000)),
    (OperationKind.TOP_UP,   2): OperationLimits(_yuan(50_000), _yuan(50_000)),
    (OperationKind.TOP_UP,   3): OperationLimits(_yuan(50_000), _yuan(100_000)),
    (OperationKind.WITHDRAW, 1): OperationLimits(_yuan(2_000),  _yuan(5_000)),
    (OperationKind.WITHDRAW, 2): OperationLimits(_yuan(50_000), _yuan(50_000)),
    (OperationKind.WITHDRAW, 3): OperationLimits(_yuan(50_000), _yuan(100_000)),
    (OperationKind.P2P,      1): OperationLimits(_yuan(1_000),  _yuan(1_000)),
    (OperationKind.P2P,      2): OperationLimits(_yuan(10_000), _yuan(20_000)),
    (OperationKind.P2P,      3): OperationLimits(_yuan(50_000), _yuan(100_000)),
    (OperationKind.MERCHANT_PAYMENT, 1): OperationLimits(_yuan(1_000),  _yuan(1_000)),
    (OperationKind.MERCHANT_PAYMENT, 2): OperationLimits(_yuan(20_000), _yuan(50_000)),
    (OperationKind.MERCHANT_PAYMENT, 3): OperationLimits(_yuan(50_000), _yuan(100_000)),
    (OperationKind.COIN_PAYMENT, 1): OperationLimits(_yuan(500),   _yuan(1_000)),
    (OperationKind.COIN_PAYMENT, 2): OperationLimits(_yuan(2_000), _yuan(5_000)),
    (OperationKind.COIN_PAYMENT, 3): OperationLimits(_yuan(5_000), _yuan(10_000)),
    # Card payments are the bank's money, not a balance payment: no PBOC tier limit,
    # but the platform's own ceiling on what one in-app card payment may be.
    (OperationKind.CARD_PAYMENT, 1): OperationLimits(_yuan(2_000),  _yuan(5_000)),
    (OperationKind.CARD_PAYMENT, 2): OperationLimits(_yuan(20_000), _yuan(50_000)),
    (OperationKind.CARD_PAYMENT, 3): OperationLimits(_yuan(50_000), _yuan(100_000)),
}
# fmt: on
_NOTHING_ALLOWED = OperationLimits(0, 0)

#: Only balance payments count toward the PBOC tier limit: money leaving the wallet to
#: pay someone. Moving one's own money in or out (top-up, withdrawal) does not.
_BALANCE_PAYMENTS = frozenset({OperationKind.P2P, OperationKind.MERCHANT_PAYMENT})


#: Money that comes back to the user by someone else's act: recorded in the history, but
#: neither limited nor counted toward any limit (velocity included).
_NOT_COUNTED = frozenset({OperationKind.MERCHANT_REFUND})


def counts_as_balance_payment(kind: OperationKind) -> bool:
    return kind in _BALANCE_PAYMENTS


def counts_toward_limits(kind: OperationKind) -> bool:
    return kind not in _NOT_COUNTED


@dataclass(frozen=True, slots=True)
class Usage:
    """What the user has already done, as the caller counted it."""

    today_fen: int  # this kind of operation, today (CST)
    operations_last_window: int  # every kind, over the last `VELOCITY_WINDOW_S`
    tier_period_fen: int  # balance payments in the tier's period (lifetime or CST year)

    def __post_init__(self) -> None:
        assert self.today_fen >= 0
        assert self.operations_last_window >= 0
        assert self.tier_period_fen >= 0


@dataclass(frozen=True, slots=True)
class Decision:
    """Approved, or declined with the limit that was hit and what of it remains."""

    approved: bool
    code: DeclineCode | None = None
    limit: int = 0
    remaining: int = 0
    unit: LimitUnit = LimitUnit.FEN

    def __post_init__(self) -> None:
        assert self.approved == (self.code is None)
        assert 0 <= self.remaining <= self.limit or self.approved


APPROVED = Decision(True)


def _declined(code: DeclineCode, limit: int, used: int, unit: LimitUnit) -> Decision:
    return Decision(False, code, limit, max(limit - used, 0), unit)


def decide(kind: OperationKind, tier: KycTier | None, amount_fen: int, usage: Usage) -> Decision:
    """Whether `amount_fen` of `kind` may go ahead; checks the regulatory tier limit first,
    then the per-transaction, daily and velocity limits, and names the first one hit."""
    assert isinstance(amount_fen, int) and not isinstance(amount_fen, bool)
    assert amount_fen > 0
    fen, ops = LimitUnit.FEN, LimitUnit.OPERATIONS
    if counts_as_balance_payment(kind):
        tier_limit_fen = tier.limit_fen if tier is not None else 0
        if tier is None or not allows(tier, usage.tier_period_fen, amount_fen):
            used = usage.tier_period_fen
            return _declined(DeclineCode.TIER_LIMIT_EXCEEDED, tier_limit_fen, used, fen)
    limits = LIMITS.get((kind, tier.level), _NOTHING_ALLOWED) if tier else _NOTHING_ALLOWED
    if amount_fen > limits.per_transaction_fen:
        code = DeclineCode.PER_TRANSACTION_LIMIT_EXCEEDED
        return Decision(False, code, limits.per_transaction_fen, limits.per_transaction_fen, fen)
    if usage.today_fen + amount_fen > limits.daily_fen:
        return _declined(DeclineCode.DAILY_LIMIT_EXCEEDED, limits.daily_fen, usage.today_fen, fen)
    if usage.operations_last_window + 1 > VELOCITY_OPERATIONS_PER_HOUR_MAX:
        limit, used = VELOCITY_OPERATIONS_PER_HOUR_MAX, usage.operations_last_window
        return _declined(DeclineCode.VELOCITY_EXCEEDED, limit, used, ops)
    return APPROVED
