"""Mainland China mobile numbers: validation and the one stored form, `+86` + 11 digits.

Accepted input: `13812345678`, `138 1234 5678`, `138-1234-5678`, `+86 138...`, `0086138...`,
`86138...`. A mainland mobile number has 11 digits and starts with 1 then 3-9.
"""

from __future__ import annotations

import re

from milletpay.identity.errors import PhoneInvalid

COUNTRY_PREFIX = "+86"
MOBILE_DIGITS = 11
PHONE_INPUT_CHARS_MAX = 32
_SEPARATORS = re.compile(r"[\s\-().]")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_INTERNATIONAL_PREFIXES = ("+86", "0086", "86")


def normalize_phone(text: str) -> str:
    """`+86` and the 11-digit mobile number; `PhoneInvalid` naming what is wrong."""
    if len(text) > PHONE_INPUT_CHARS_MAX:
        raise PhoneInvalid(f"phone number is longer than {PHONE_INPUT_CHARS_MAX} characters")
    digits = _SEPARATORS.sub("", text)
    for prefix in _INTERNATIONAL_PREFIXES:
        if digits.startswith(prefix) and len(digits) == len(prefix) + MOBILE_DIGITS:
            digits = digits[len(prefix) :]
            break
    if not digits.isdigit() or not digits.isascii():
        raise PhoneInvalid("phone number may hold only digits, spaces, '-' and a +86 prefix")
    if len(digits) != MOBILE_DIGITS:
        raise PhoneInvalid(f"mobile number has {len(digits)} digits, not {MOBILE_DIGITS}")
    if not _MOBILE.fullmatch(digits):
        raise PhoneInvalid("mainland mobile numbers start with 13 to 19")
    return COUNTRY_PREFIX + digits


def mask_phone(phone: str) -> str:
    """A normalized number as shown to others: +86138****8000."""
    return phone[:6] + "****" + phone[-4:]
