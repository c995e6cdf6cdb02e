"""Card numbers (PAN) and expiry dates as values that cannot be logged in clear.

A `Pan` holds the digits of a validated, Luhn-valid number; its `repr` and `str` are the
mask (first 6, asterisks, last 4), so a `Pan` in a log line, an f-string or an error
shows only the mask. The clear digits come out only through `Pan.clear_digits()`, which
the vault and the card network call and nothing else should.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from stdnum import luhn
from stdnum.exceptions import InvalidChecksum, InvalidFormat

from milletpay.cards.errors import ExpiryInvalid, PanInvalid

PAN_DIGITS_MIN: Final = 12  # ISO/IEC 7812-1: up to 19 digits; no scheme issues fewer than 12
PAN_DIGITS_MAX: Final = 19
MASK_HEAD_DIGITS: Final = 6  # the BIN / IIN
MASK_TAIL_DIGITS: Final = 4
MASK_CHAR: Final = "*"
_SEPARATORS: Final = " -"
EXPIRY_YEAR_MIN: Final = 2000
EXPIRY_YEAR_MAX: Final = 2099  # two-digit years on the card, so one century


class Pan:
    """A validated card number. Compare with `==`; read the digits with `clear_digits()`."""

    __slots__ = ("_digits",)

    def __init__(self, number: str) -> None:
        self._digits = validate_pan(number)

    def clear_digits(self) -> str:
        """The number in clear. Only the vault and the card network may ask for it."""
        return self._digits

    @property
    def masked(self) -> str:
        return mask_pan(self._digits)

    @property
    def length(self) -> int:
        return len(self._digits)

    def __repr__(self) -> str:
        return f"Pan({self.masked!r})"

    def __str__(self) -> str:
        return self.masked

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pan):
            return NotImplemented
        return hmac.compare_digest(self._digits, other._digits)

    def __hash__(self) -> int:
        return hash(("Pan", self._digits))

    def __reduce__(self) -> tuple[object, ...]:
        # A pickled Pan would hold the clear digits wherever the bytes end up.
        raise TypeError("a Pan is not pickled: vault it and pass the reference")


@dataclass(frozen=True, slots=True, order=True)
class Expiry:
    """A card's expiry month: valid through the last day of `month` of `year`."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not EXPIRY_YEAR_MIN <= self.year <= EXPIRY_YEAR_MAX:
            raise ExpiryInvalid(
                f"expiry year {self.year} is outside {EXPIRY_YEAR_MIN}..{EXPIRY_YEAR_MAX}"
            )
        if not 1 <= self.month <= 12:
            raise ExpiryInvalid(f"expiry month {self.month} is outside 1..12")

    @classmethod
    def parse(cls, text: str) -> Expiry:
        """`MM/YY` as printed on the card."""
        month_text, slash, year_text = text.strip().partition("/")
        if not (slash and month_text.isdigit() and year_text.isdigit() and len(year_text) == 2):
            raise ExpiryInvalid(f"expiry {text!r} is not MM/YY")
        return cls(EXPIRY_YEAR_MIN + int(year_text), int(month_text))

    def __str__(self) -> str:
        return f"{self.month:02d}/{self.year % 100:02d}"


def validate_pan(number: str) -> str:
    """The digits of `number` (spaces and hyphens removed); `PanInvalid` naming the part
    that is wrong and never the number."""
    compact = "".join(c for c in number if c not in _SEPARATORS)
    for offset, char in enumerate(compact):
        if not ("0" <= char <= "9"):
            raise PanInvalid(
                f"card number: character {offset + 1} is not a digit", part="characters"
            )
    if not PAN_DIGITS_MIN <= len(compact) <= PAN_DIGITS_MAX:
        raise PanInvalid(
            f"card number is {len(compact)} digits, not {PAN_DIGITS_MIN}..{PAN_DIGITS_MAX}",
            part="length",
        )
    try:
        luhn.validate(compact)
    except (InvalidChecksum, InvalidFormat):
        raise PanInvalid(
            f"card number {mask_pan(compact)} fails the Luhn check (a digit is wrong)",
            part="checksum",
        ) from None
    return compact


def mask_pan(digits: str) -> str:
    """First 6 and last 4 digits, asterisks between: `411111******1111`."""
    assert PAN_DIGITS_MIN <= len(digits) <= PAN_DIGITS_MAX, "mask only a validated number"
    hidden = len(digits) - MASK_HEAD_DIGITS - MASK_TAIL_DIGITS
    return digits[:MASK_HEAD_DIGITS] + MASK_CHAR * hidden + digits[-MASK_TAIL_DIGITS:]
