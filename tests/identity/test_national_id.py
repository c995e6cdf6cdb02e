"""Resident ID numbers: validation naming the wrong part, masking, keyed fingerprint."""

from __future__ import annotations

import pytest

from milletpay.core.keyring import KeyRing
from milletpay.identity import NationalIdInvalid
from milletpay.identity.national_id import fingerprint, mask, validate

from .conftest import GB_11643_EXAMPLE, STDNUM_EXAMPLE, make_national_id


@pytest.mark.parametrize(
    "number", [GB_11643_EXAMPLE, STDNUM_EXAMPLE, make_national_id("19900101", 123)]
)
def test_valid_numbers_pass(number: str) -> None:
    assert validate(number) == number


def test_lower_case_x_and_spaces_are_accepted_in_the_stored_form() -> None:
    assert validate(" 11010519491231002x ") == GB_11643_EXAMPLE


def _refusal(number: str) -> NationalIdInvalid:
    with pytest.raises(NationalIdInvalid) as refused:
        validate(number)
    return refused.value


def test_wrong_length_is_named() -> None:
    refusal = _refusal(GB_11643_EXAMPLE[:-1])
    assert refusal.part == "length" and "17 characters, not 18" in refusal.message


def test_wrong_check_digit_names_the_checksum() -> None:
    refusal = _refusal(GB_11643_EXAMPLE[:-1] + "3")
    assert refusal.part == "checksum" and "checksum" in str(refusal)
    assert refusal.code == "national_id_invalid"


def test_impossible_birth_date_is_named() -> None:
    refusal = _refusal(make_national_id("19900231", 1))
    assert refusal.part == "birth_date"


def test_letters_are_a_format_error() -> None:
    assert _refusal("11010519491231A02X").part == "format"


def test_unknown_region_is_named() -> None:
    assert _refusal(make_national_id("19900101", 1, region="990000")).part == "birth_place"


def test_refusals_never_echo_the_number() -> None:
    number = GB_11643_EXAMPLE[:-1] + "3"
    assert number not in str(_refusal(number))


def test_mask_shows_only_the_first_and_last_character() -> None:
    assert mask(GB_11643_EXAMPLE) == "1" + "*" * 16 + "X"


def test_fingerprint_is_stable_per_key_and_differs_between_keys_and_numbers() -> None:
    ring, other = KeyRing.generate(), KeyRing.generate()
    assert fingerprint(ring, GB_11643_EXAMPLE) == fingerprint(ring, GB_11643_EXAMPLE)
    assert fingerprint(ring, GB_11643_EXAMPLE) != fingerprint(other, GB_11643_EXAMPLE)
    assert fingerprint(ring, GB_11643_EXAMPLE) != fingerprint(ring, STDNUM_EXAMPLE)
    assert len(fingerprint(ring, GB_11643_EXAMPLE)) == 32
