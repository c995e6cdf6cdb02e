"""Mainland mobile numbers are stored in one form, +86 and 11 digits."""

from __future__ import annotations

import re

import pytest

from milletpay.identity import PhoneInvalid
from milletpay.identity.phone import normalize_phone


@pytest.mark.parametrize(
    "text",
    [
        "13812345678",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "008613812345678",
        "8613812345678",
    ],
)
def test_accepted_spellings_normalize_to_plus_86(text: str) -> None:
    assert normalize_phone(text) == "+8613812345678"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1381234567", "10 digits, not 11"),
        ("23812345678", "start with 13 to 19"),
        ("12812345678", "start with 13 to 19"),
        ("138abc45678", "only digits"),
        ("+1 415 555 0100", "a +86 prefix"),
        ("1" * 40, "longer than 32"),
        ("１３８１２３４５６７８", "only digits"),
    ],
)
def test_invalid_numbers_are_refused_naming_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(PhoneInvalid, match=re.escape(problem)):
        normalize_phone(text)
