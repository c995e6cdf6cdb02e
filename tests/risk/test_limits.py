"""The limits as pure decisions: each limit at its edge, named when it declines."""

from __future__ import annotations

import pytest

from milletpay.identity.kyc import TIER_BY_LEVEL
from milletpay.risk import (
    LIMITS,
    VELOCITY_OPERATIONS_PER_HOUR_MAX,
    Decision,
    DeclineCode,
    LimitUnit,
    OperationKind,
    Usage,
    decide,
)
from milletpay.risk.limits import counts_toward_limits

CLASS_I, CLASS_II, CLASS_III = (TIER_BY_LEVEL[level] for level in (1, 2, 3))
NOTHING_YET = Usage(today_fen=0, operations_last_window=0, tier_period_fen=0)


def usage(**changes: int) -> Usage:
    fields = {"today_fen": 0, "operations_last_window": 0, "tier_period_fen": 0, **changes}
    return Usage(**fields)


#: The kinds the limits judge (a refund coming back to the wallet is judged by none).
LIMITED_KINDS = [kind for kind in OperationKind if counts_toward_limits(kind)]


def test_every_kind_has_limits_at_every_tier() -> None:
    for kind in LIMITED_KINDS:
        for level in (1, 2, 3):
            limits = LIMITS[(kind, level)]
            assert 0 < limits.per_transaction_fen <= limits.daily_fen


def test_a_refund_counts_toward_no_limit() -> None:
    assert [k for k in OperationKind if k is not OperationKind.MERCHANT_REFUND] == LIMITED_KINDS
    assert not any(kind is OperationKind.MERCHANT_REFUND for kind, _ in LIMITS)


@pytest.mark.parametrize("kind", LIMITED_KINDS)
def test_the_per_transaction_limit_allows_exactly_the_limit(kind: OperationKind) -> None:
    limit = LIMITS[(kind, 2)].per_transaction_fen

    assert decide(kind, CLASS_II, limit, NOTHING_YET).approved
    over = decide(kind, CLASS_II, limit + 1, NOTHING_YET)
    assert over == Decision(False, DeclineCode.PER_TRANSACTION_LIMIT_EXCEEDED, limit, limit)


def test_the_daily_limit_counts_what_was_done_today() -> None:
    daily = LIMITS[(OperationKind.WITHDRAW, 1)].daily_fen

    assert decide(OperationKind.WITHDRAW, CLASS_I, 100, usage(today_fen=daily - 100)).approved
    over = decide(OperationKind.WITHDRAW, CLASS_I, 101, usage(today_fen=daily - 100))
    assert over == Decision(False, DeclineCode.DAILY_LIMIT_EXCEEDED, daily, 100)


def test_velocity_declines_the_operation_after_the_maximum() -> None:
    allowed = usage(operations_last_window=VELOCITY_OPERATIONS_PER_HOUR_MAX - 1)
    full = usage(operations_last_window=VELOCITY_OPERATIONS_PER_HOUR_MAX)

    assert decide(OperationKind.TOP_UP, CLASS_III, 1, allowed).approved
    over = decide(OperationKind.TOP_UP, CLASS_III, 1, full)
    assert over.code is DeclineCode.VELOCITY_EXCEEDED
    assert (over.limit, over.remaining, over.unit) == (
        VELOCITY_OPERATIONS_PER_HOUR_MAX,
        0,
        LimitUnit.OPERATIONS,
    )


def test_class_i_balance_payments_stop_at_1000_cny_over_the_account_life() -> None:
    spent = 100_000 - 30_000

    assert decide(OperationKind.P2P, CLASS_I, 30_000, usage(tier_period_fen=spent)).approved
    over = decide(OperationKind.P2P, CLASS_I, 30_001, usage(tier_period_fen=spent))
    assert over == Decision(False, DeclineCode.TIER_LIMIT_EXCEEDED, 100_000, 30_000)


def test_the_tier_limit_is_checked_before_the_operation_limits() -> None:
    over = decide(OperationKind.P2P, CLASS_I, 100_001, NOTHING_YET)

    assert over.code is DeclineCode.TIER_LIMIT_EXCEEDED


def test_top_ups_and_withdrawals_ignore_the_tier_limit() -> None:
    spent_all = usage(tier_period_fen=CLASS_I.limit_fen)

    assert decide(OperationKind.TOP_UP, CLASS_I, 10_000, spent_all).approved
    assert decide(OperationKind.WITHDRAW, CLASS_I, 10_000, spent_all).approved
    assert not decide(OperationKind.P2P, CLASS_I, 1, spent_all).approved


def test_a_user_below_class_i_may_do_nothing() -> None:
    for kind in OperationKind:
        declined = decide(kind, None, 1, NOTHING_YET)
        assert not declined.approved and declined.limit == 0
    assert decide(OperationKind.P2P, None, 1, NOTHING_YET).code is DeclineCode.TIER_LIMIT_EXCEEDED


def test_card_payments_ignore_the_tier_limit_but_keep_their_own() -> None:
    spent_all = usage(tier_period_fen=CLASS_I.limit_fen)
    limit = LIMITS[(OperationKind.CARD_PAYMENT, 1)].per_transaction_fen

    assert decide(OperationKind.CARD_PAYMENT, CLASS_I, limit, spent_all).approved
    over = decide(OperationKind.CARD_PAYMENT, CLASS_I, limit + 1, spent_all)
    assert over.code is DeclineCode.PER_TRANSACTION_LIMIT_EXCEEDED
