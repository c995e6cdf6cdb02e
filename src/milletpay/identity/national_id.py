"""Resident Identity Card numbers (GB 11643-1999): validation, masking, fingerprint.

The number itself is sealed at rest (see `users.py`); what is shown is the mask and what
is compared is the keyed fingerprint, so no clear number is ever stored or logged.
Masking shows the first and the last character only: `1****************X`.
"""

from __future__ import annotations

import hashlib
import hmac

from stdnum.cn import ric
from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)

from milletpay.core.keyring import KeyRing
from milletpay.identity.errors import NationalIdInvalid

NATIONAL_ID_LENGTH = 18
FINGERPRINT_PURPOSE = b"milletpay/identity/national-id-fingerprint/v1"
FINGERPRINT_BYTES = 32  # HMAC-SHA256


def validate(number: str) -> str:
    """The compact, upper-case number; `NationalIdInvalid` naming the part that is wrong."""
    compact = ric.compact(number)
    try:
        return str(ric.validate(compact))
    except InvalidLength:
        raise _invalid(
            "length", f"is {len(compact)} characters, not {NATIONAL_ID_LENGTH}"
        ) from None
    except InvalidFormat:
        raise _invalid("format", "must be 17 digits then a digit or X") from None
    except InvalidChecksum:
        raise _invalid("checksum", "check digit does not match (checksum)") from None
    except InvalidComponent:
        if not _birth_date_valid(compact):
            raise _invalid("birth_date", "birth date (digits 7-14) is not a real date") from None
        raise _invalid("birth_place", "region code (digits 1-6) is unknown") from None
    except ValidationError:  # pragma: no cover - stdnum raises only the above for ric
        raise _invalid("format", "is not a resident ID number") from None


def mask(number: str) -> str:
    """First and last character, the rest as `*`: `1****************X`."""
    assert len(number) == NATIONAL_ID_LENGTH
    return number[0] + "*" * (NATIONAL_ID_LENGTH - 2) + number[-1]


def fingerprint(keyring: KeyRing, number: str) -> bytes:
    """HMAC-SHA256 of the validated number, keyed from the key ring: comparable, not reversible
    without the key (a plain hash of an 18-digit number with known structure would be)."""
    key = keyring.derive(FINGERPRINT_PURPOSE)
    return hmac.new(key, number.encode("ascii"), hashlib.sha256).digest()


def _birth_date_valid(compact: str) -> bool:
    try:
        ric.get_birth_date(compact)
    except InvalidComponent:
        return False
    return True


def _invalid(part: str, detail: str) -> NationalIdInvalid:
    # The number is never echoed back: the message names only the part that failed.
    return NationalIdInvalid(f"national ID number: {detail}", part=part)
