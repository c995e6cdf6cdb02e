"""PBOC account classes as one table: the tiers, what reaches them, and their limits (pure)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from milletpay.core.clock import NS_PER_S
from milletpay.identity.kyc import (
    TIERS,
    Channel,
    KycTier,
    LimitPeriod,
    allows,
    limit_period_of,
    tier_for,
    tier_of_channels,
)

CLASS_I, CLASS_II, CLASS_III = TIERS


def test_the_table_holds_the_pboc_classes() -> None:
    assert [(t.level, t.channels_min, t.limit_fen, t.period, t.may_invest) for t in TIERS] == [
        (1, 1, 100_000, LimitPeriod.LIFETIME, False),
        (2, 3, 10_000_000, LimitPeriod.CALENDAR_YEAR, False),
        (3, 5, 20_000_000, LimitPeriod.CALENDAR_YEAR, True),
    ]


@pytest.mark.parametrize(
    ("channels", "face_to_face", "level"),
    [
        (0, False, None),
        (1, False, 1),
        (2, False, 1),
        (3, False, 2),
        (4, False, 2),
        (5, False, 3),
        (8, False, 3),
        (0, True, 3),
        (1, True, 3),
    ],
)
def test_tier_for_counts_channels_and_face_to_face(
    channels: int, face_to_face: bool, level: int | None
) -> None:
    tier = tier_for(channels, face_to_face)
    assert (tier.level if tier else None) == level


def test_face_to_face_is_not_counted_as_a_remote_channel() -> None:
    assert tier_of_channels(frozenset({Channel.BANK_CARD})) is CLASS_I
    assert tier_of_channels(frozenset({Channel.BANK_CARD, Channel.FACE_TO_FACE})) is CLASS_III


def test_class_i_allows_balance_payments_up_to_the_1000_yuan_lifetime_limit() -> None:
    assert allows(CLASS_I, spent_fen=99_999, amount_fen=1)
    assert not allows(CLASS_I, spent_fen=100_000, amount_fen=1)
    assert allows(CLASS_I, spent_fen=0, amount_fen=100_000)
    assert not allows(CLASS_I, spent_fen=0, amount_fen=100_001)


def test_class_ii_and_iii_yearly_limits_at_their_last_fen() -> None:
    assert allows(CLASS_II, spent_fen=9_999_999, amount_fen=1)
    assert not allows(CLASS_II, spent_fen=9_999_999, amount_fen=2)
    assert allows(CLASS_III, spent_fen=19_999_999, amount_fen=1)
    assert not allows(CLASS_III, spent_fen=20_000_000, amount_fen=1)


def test_only_class_iii_may_invest() -> None:
    assert [t.may_invest for t in TIERS] == [False, False, True]


def test_yearly_limits_turn_over_at_midnight_china_standard_time() -> None:
    new_year_cst = datetime.datetime(
        2026, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=8))
    )
    instant_ns = int(new_year_cst.timestamp()) * NS_PER_S
    assert limit_period_of(CLASS_II, instant_ns - 1) == 2025
    assert limit_period_of(CLASS_II, instant_ns) == 2026
    assert limit_period_of(CLASS_I, instant_ns) is None


@given(st.integers(min_value=0, max_value=20), st.booleans())
def test_more_verification_never_lowers_the_tier(channels: int, face_to_face: bool) -> None:
    def level(n: int, f2f: bool) -> int:
        tier = tier_for(n, f2f)
        return tier.level if tier else 0

    assert level(channels + 1, face_to_face) >= level(channels, face_to_face)
    assert level(channels, True) >= level(channels, face_to_face)


@given(st.sampled_from(TIERS), st.integers(min_value=0, max_value=30_000_000))
def test_a_payment_fits_exactly_when_the_total_stays_within_the_limit(
    tier: KycTier, spent_fen: int
) -> None:
    room_fen = tier.limit_fen - spent_fen
    if room_fen > 0:
        assert allows(tier, spent_fen, room_fen)
    assert not allows(tier, spent_fen, max(room_fen, 0) + 1)
