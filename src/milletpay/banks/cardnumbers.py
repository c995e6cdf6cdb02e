"""Card and account numbers, CVN2 and PIN verification values: pure functions.

- A PAN is the product's IIN, account digits and a Luhn check digit (ISO/IEC 7812).
- CVN2 is the card verification value of the Visa/MasterCard/UnionPay algorithm over
  PAN, expiry (YYMM) and service code "000", under the bank's CVK (two-key triple DES);
  the algorithm is `milletpay.emv.crypto`'s.
- The PIN is kept as a PIN verification value: HMAC-SHA256 under the bank's PIN
  verification key of the card id and the PIN. Like a PVV it is useless without the
  key, which is never in the bank's database.

Nothing here stores, logs or prints a PAN; `mask_pan` is what may be shown.
"""

from __future__ import annotations

import hashlib
import hmac

from stdnum import luhn

from milletpay.banks.keys import CVK_BYTES
from milletpay.emv import crypto

PAN_DIGITS = 19  # UnionPay debit cards run to 19 digits
PIN_DIGITS = 6
MASK_KEEP_FIRST = 6
MASK_KEEP_LAST = 4


def make_pan(iin: str, serial: int, digits: int = PAN_DIGITS) -> str:
    """The PAN `iin` + `serial` (zero-padded) + Luhn check digit."""
    body_digits = digits - len(iin) - 1
    assert 0 <= serial < 10**body_digits, "serial does not fit the PAN"
    body = iin + str(serial).zfill(body_digits)
    return body + luhn.calc_check_digit(body)


def is_pan(text: str) -> bool:
    """13 to 19 ASCII digits with a valid Luhn check digit."""
    return 13 <= len(text) <= 19 and text.isascii() and text.isdigit() and luhn.is_valid(text)


def mask_pan(pan: str) -> str:
    """First six and last four digits; the rest starred."""
    hidden = len(pan) - MASK_KEEP_FIRST - MASK_KEEP_LAST
    assert hidden > 0
    return pan[:MASK_KEEP_FIRST] + "*" * hidden + pan[-MASK_KEEP_LAST:]


def cvn2(cvk: bytes, pan: str, expiry_yymm: str) -> str:
    """The card's CVN2: the standard CVV under the bank's CVK (`emv.crypto.cvn2`)."""
    assert len(cvk) == CVK_BYTES, "a CVK is a double-length DES key"
    return crypto.cvn2(cvk, pan, expiry_yymm)


def pin_verification_value(pvk: bytes, card_id: int, pin: str) -> bytes:
    return hmac.new(pvk, card_id.to_bytes(16, "big") + pin.encode(), hashlib.sha256).digest()


def is_pin_format(pin: str) -> bool:
    return len(pin) == PIN_DIGITS and pin.isascii() and pin.isdigit()
