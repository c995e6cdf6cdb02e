"""Card numbers and expiry dates as values: validation, masking, no clear text by accident."""

from __future__ import annotations

import logging
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn

from milletpay.cards import (
    PAN_DIGITS_MAX,
    PAN_DIGITS_MIN,
    Expiry,
    ExpiryInvalid,
    Pan,
    PanInvalid,
    mask_pan,
)

from .pans import AMEX, LONGEST, LUHN_INVALID, SHORTEST, UNIONPAY_19, VISA


def test_mask_shows_the_first_six_and_the_last_four() -> None:
    assert Pan(VISA).masked == "411111******1111"
    assert Pan(AMEX).masked == "378282*****0005"
    assert Pan(UNIONPAY_19).masked == "620550*********0004"
    assert Pan(SHORTEST).masked == SHORTEST[:6] + "**" + SHORTEST[-4:]


def test_repr_str_and_format_are_masked() -> None:
    pan = Pan(VISA)
    logged = logging.LogRecord("t", logging.INFO, "", 0, "%s %r", (pan, pan), None)
    for shown in (repr(pan), str(pan), f"{pan}", f"{pan!r}", logged.getMessage(), repr([pan])):
        assert VISA not in shown
        assert "411111******1111" in shown


def test_the_clear_digits_come_only_from_the_explicit_accessor() -> None:
    assert Pan(VISA).clear_digits() == VISA
    assert not hasattr(Pan(VISA), "__dict__")


def test_a_pan_is_not_pickled() -> None:
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(Pan(VISA))


def test_a_logged_pan_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="milletpay.test"):
        logging.getLogger("milletpay.test").info("card %s / %r", Pan(VISA), Pan(VISA))
    assert VISA not in caplog.text
    assert "411111******1111" in caplog.text


def test_separators_are_removed_and_equal_numbers_compare_equal() -> None:
    assert Pan("4111 1111 1111 1111") == Pan("4111-1111-1111-1111") == Pan(VISA)
    assert Pan(VISA) != Pan(AMEX)
    assert len({Pan(VISA), Pan("4111 1111 1111 1111")}) == 1


def test_length_limits_are_12_and_19_digits() -> None:
    assert Pan(SHORTEST).length == PAN_DIGITS_MIN
    assert Pan(LONGEST).length == PAN_DIGITS_MAX
    too_short = SHORTEST[:-2] + luhn.calc_check_digit(SHORTEST[:-2])
    too_long = LONGEST + "0"
    too_long = too_long[:-1] + luhn.calc_check_digit(too_long[:-1])
    for number, length in ((too_short, 11), (too_long, 20)):
        with pytest.raises(PanInvalid) as refused:
            Pan(number)
        assert refused.value.part == "length"
        assert refused.value.code == "pan_invalid"
        assert f"is {length} digits, not 12..19" in refused.value.message
        assert number not in str(refused.value)


def test_luhn_failure_is_refused_with_the_number_masked() -> None:
    with pytest.raises(PanInvalid) as refused:
        Pan(LUHN_INVALID)
    assert refused.value.part == "checksum"
    assert LUHN_INVALID not in str(refused.value)
    assert "411111******1112" in str(refused.value)


def test_a_non_digit_is_named_by_position_not_echoed() -> None:
    with pytest.raises(PanInvalid) as refused:
        Pan("4111111111111x11")
    assert refused.value.part == "characters"
    assert str(refused.value) == "pan_invalid: card number: character 14 is not a digit"


def test_unicode_digits_are_not_digits() -> None:
    with pytest.raises(PanInvalid):
        Pan("４１１１１１１１１１１１１１１１")  # full-width


@given(st.text(alphabet="0123456789", min_size=PAN_DIGITS_MIN - 1, max_size=PAN_DIGITS_MAX))
def test_a_valid_number_masks_to_its_bin_and_last_four(body: str) -> None:
    number = body + luhn.calc_check_digit(body)
    if len(number) > PAN_DIGITS_MAX:
        return
    masked = Pan(number).masked
    assert masked == mask_pan(number)
    assert len(masked) == len(number)
    assert masked[:6] == number[:6] and masked[-4:] == number[-4:]
    assert set(masked[6:-4]) == {"*"}


@given(st.text(alphabet="0123456789", min_size=PAN_DIGITS_MIN, max_size=PAN_DIGITS_MAX))
def test_a_refusal_never_shows_the_number(number: str) -> None:
    try:
        Pan(number)
    except PanInvalid as refused:
        assert number not in str(refused)


def test_expiry_parses_mm_yy_and_refuses_impossible_months() -> None:
    assert Expiry.parse("09/31") == Expiry(2031, 9)
    assert str(Expiry(2031, 9)) == "09/31"
    assert Expiry(2030, 12) < Expiry(2031, 1)
    for text in ("13/30", "00/30", "9/2031", "0931", ""):
        with pytest.raises(ExpiryInvalid):
            Expiry.parse(text)
    with pytest.raises(ExpiryInvalid, match=r"outside 2000\.\.2099"):
        Expiry(2100, 1)
