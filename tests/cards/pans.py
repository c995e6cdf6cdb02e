"""Every card number the tests use: the registry the PAN leak scan looks for.

A test that needs a card number takes it from here, so that the scan at the end of the
session (tests/conftest.py, `leakscan.py`) knows to look for it. They are the public
test numbers of the card schemes (Stripe's and the schemes' published test cards) and
two made here for the length limits, and the numbers the simulated banks issue in the
token service tests; none is a real card.
"""

from __future__ import annotations

from typing import Final

from stdnum import luhn

from milletpay.banks.cardnumbers import make_pan


def _with_check_digit(body: str) -> str:
    return body + luhn.calc_check_digit(body)


VISA: Final = "4111111111111111"
MASTERCARD: Final = "5555555555554444"
UNIONPAY: Final = "6200000000000005"
UNIONPAY_19: Final = "6205500000000000004"
AMEX: Final = "378282246310005"
JCB: Final = "3530111333300000"
REISSUED: Final = "5200828282828210"  # the number a re-issued card gets
SHORTEST: Final = _with_check_digit("62123456789")  # 12 digits
LONGEST: Final = _with_check_digit("621234567890123456")  # 19 digits
#: One digit off VISA: fails the Luhn check (refused, and must not leak either).
LUHN_INVALID: Final = "4111111111111112"
#: Extra numbers for the rotation tests.
MORE: Final = tuple(_with_check_digit(f"62270000{n:07d}") for n in range(1, 9))

#: What the banks issue in the token service and card API tests and in `millet demo`:
#: account and card numbers share a bank's serials, so a fresh bank's first numbers of
#: the product IINs they use (ICBC debit and credit, CCB debit, BOC debit).
BANK_ISSUED_IINS: Final = ("622202", "622203", "621700", "621661")
BANK_ISSUED_SERIALS_MAX: Final = 40
BANK_ISSUED: Final = tuple(
    make_pan(iin, serial)
    for iin in BANK_ISSUED_IINS
    for serial in range(1, BANK_ISSUED_SERIALS_MAX + 1)
)
#: In a test bank's range (629990-629991) but no product's IIN: not tokenizable.
NOT_TOKENIZABLE: Final = _with_check_digit("629991000000000001")

VALID_PANS: Final = (VISA, MASTERCARD, UNIONPAY, UNIONPAY_19, AMEX, JCB, REISSUED, SHORTEST)
TEST_PANS: Final = (*VALID_PANS, LONGEST, LUHN_INVALID, *MORE, *BANK_ISSUED, NOT_TOKENIZABLE)
