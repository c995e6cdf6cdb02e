"""Card and account numbers, CVN2 and PIN verification values: pure functions.

- A PAN is the product's IIN, account digits and a Luhn check digit (ISO/IEC 7812).
- CVN2 is the card verification value of the Visa/MasterCard/UnionPay algorithm over
  PAN, expiry (YYMM) and service code "000", under the bank's CVK (two-key triple DES).
- The PIN is kept as a PIN verification value: HMAC-SHA256 under the bank's PIN
  verification key of the card id and the PIN. Like a PVV it is useless without the
  key, which is never in the bank's database.

Nothing here stores, logs or prints a PAN; `mask_pan` is what may be shown.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from stdnum import luhn

from milletpay.banks.keys import CVK_BYTES

PAN_DIGITS = 19  # UnionPay debit cards run to 19 digits
CVN2_DIGITS = 3
CVN2_SERVICE_CODE = "000"
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


def _des_ecb(key: bytes, block: bytes) -> bytes:
    # Keys are spelt out as three 8-byte parts: single DES is K1 = K2 = K3, two-key
    # triple DES is K1, K2, K1.
    key24 = key * 3 if len(key) == 8 else key + key[:8]
    encryptor = Cipher(TripleDES(key24), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def card_verification_value(cvk: bytes, pan: str, expiry_yymm: str, service_code: str) -> str:
    """The 3-digit CVV of the standard algorithm (CVN2 with service code "000")."""
    assert len(cvk) == CVK_BYTES, "a CVK is a double-length DES key"
    assert pan.isdigit() and len(pan) <= PAN_DIGITS
    assert len(expiry_yymm) == 4 and expiry_yymm.isdigit()
    assert len(service_code) == 3 and service_code.isdigit()
    data = (pan + expiry_yymm + service_code).ljust(32, "0")
    block1, block2 = bytes.fromhex(data[:16]), bytes.fromhex(data[16:])
    step = _des_ecb(cvk[:8], block1)
    step = bytes(a ^ b for a, b in zip(step, block2, strict=True))
    result = _des_ecb(cvk, step).hex().upper()
    # Decimalize: the decimal digits left to right, then the letters A-F as 0-5.
    digits = [c for c in result if c.isdigit()]
    digits += [str(int(c, 16) - 10) for c in result if not c.isdigit()]
    return "".join(digits[:CVN2_DIGITS])


def cvn2(cvk: bytes, pan: str, expiry_yymm: str) -> str:
    return card_verification_value(cvk, pan, expiry_yymm, CVN2_SERVICE_CODE)


def pin_verification_value(pvk: bytes, card_id: int, pin: str) -> bytes:
    return hmac.new(pvk, card_id.to_bytes(16, "big") + pin.encode(), hashlib.sha256).digest()


def is_pin_format(pin: str) -> bool:
    return len(pin) == PIN_DIGITS and pin.isascii() and pin.isdigit()
