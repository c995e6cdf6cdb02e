"""Money, clocks and ids: the foundations every other package relies on."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest

from milletpay.core import IdGenerator, ManualClock, Money


def test_money_is_integer_minor_units() -> None:
    assert Money.parse("12.34", "CNY") == Money(1234, "CNY")
    assert str(Money(1234, "CNY")) == "12.34 CNY"
    assert str(Money(-5, "CNY")) == "-0.05 CNY"
    assert str(Money(7, "XCN")) == "7 XCN"


def test_money_refuses_floats_and_extra_decimals() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "CNY")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decimals"):
        Money.parse("1.234", "CNY")
    with pytest.raises(ValueError, match="unknown currency"):
        Money(1, "ABC")


def test_money_does_not_mix_currencies() -> None:
    with pytest.raises(ValueError, match="mix"):
        Money(1, "CNY") + Money(1, "USD")


def test_rates_round_by_an_explicit_rule() -> None:
    assert Money(1001, "CNY").apply_rate(Decimal("0.006")) == Money(6, "CNY")
    assert Money(1250, "CNY").apply_rate(Decimal("0.002")) == Money(2, "CNY")  # half-even
    assert Money(1999, "CNY").apply_rate(Decimal("0.5"), ROUND_DOWN) == Money(999, "CNY")


def test_manual_clock_moves_only_forwards() -> None:
    clock = ManualClock(start_ns=1_000)
    assert clock.advance(seconds=1) == 1_000_001_000
    with pytest.raises(ValueError):
        clock.advance(seconds=-1)


def test_ids_are_unique_and_time_ordered_even_within_a_millisecond() -> None:
    clock = ManualClock(start_ns=1_700_000_000_000_000_000)
    ids = IdGenerator(clock)
    first = [ids.next_id() for _ in range(1000)]
    clock.advance(nanoseconds=1_000_000)
    later = ids.next_id()
    assert first == sorted(set(first))
    assert later > first[-1]
    assert all(0 < i < 1 << 128 for i in first)
