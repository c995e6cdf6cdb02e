"""PANs, masks, CVN2 and PIN verification values."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn

from milletpay.banks.cardnumbers import (
    cvn2,
    is_pan,
    make_pan,
    mask_pan,
    pin_verification_value,
)

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_cvn2_is_three_digits_deterministic_per_key_and_differs_between_keys() -> None:
    pan = make_pan("622202", 42)
    first = cvn2(KEY, pan, "3011")
    assert first == cvn2(KEY, pan, "3011") and len(first) == 3 and first.isdigit()
    others = {cvn2(os.urandom(16), pan, "3011") for _ in range(20)}
    assert others - {first}  # 20 random keys cannot all give the same three digits


@given(st.sampled_from(["622202", "621700", "623199"]), st.integers(0, 10**12 - 1))
def test_every_pan_made_is_luhn_valid_and_19_digits(iin: str, serial: int) -> None:
    pan = make_pan(iin, serial)
    assert len(pan) == 19 and pan.startswith(iin) and luhn.is_valid(pan) and is_pan(pan)


def test_a_mask_keeps_the_first_six_and_last_four() -> None:
    pan = make_pan("622202", 123)
    assert mask_pan(pan) == pan[:6] + "*" * 9 + pan[-4:]


def test_a_pin_value_depends_on_key_card_and_pin() -> None:
    pvk = os.urandom(32)
    value = pin_verification_value(pvk, 1, "314159")
    assert value == pin_verification_value(pvk, 1, "314159")
    assert value != pin_verification_value(pvk, 2, "314159")
    assert value != pin_verification_value(pvk, 1, "314158")
    assert value != pin_verification_value(os.urandom(32), 1, "314159")
