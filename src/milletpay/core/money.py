"""Money: an integer number of minor units with its ISO 4217 currency.

There are no floats in money. Rates are `Decimal`s, applied by `Money.apply_rate`
with an explicit rounding rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

# ISO 4217: alphabetic code -> (numeric code, minor unit exponent). One table, used everywhere.
CURRENCIES: dict[str, tuple[int, int]] = {
    "CNY": (156, 2),
    "HKD": (344, 2),
    "USD": (840, 2),
    "EUR": (978, 2),
    "JPY": (392, 0),
    "XCN": (0, 0),  # Millet coins: a platform-internal unit, 1 coin = 1 CNY, no minor unit
}


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int:
            raise TypeError(f"amount_minor must be an int, got {type(self.amount_minor).__name__}")
        if self.currency not in CURRENCIES:
            raise ValueError(f"unknown currency {self.currency!r}")

    @property
    def exponent(self) -> int:
        return CURRENCIES[self.currency][1]

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """'12.34' CNY -> 1234 fen; refuses more decimals than the currency has."""
        value = Decimal(text)
        exponent = CURRENCIES[currency][1]
        scaled = value.scaleb(exponent)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{text!r} has more than {exponent} decimals for {currency}")
        return cls(int(scaled), currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot mix {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def apply_rate(self, rate: Decimal, rounding: str = ROUND_HALF_EVEN) -> Money:
        """This amount times `rate`, rounded to a whole minor unit by `rounding`."""
        result = (Decimal(self.amount_minor) * rate).to_integral_value(rounding=rounding)
        return Money(int(result), self.currency)

    @property
    def decimal_text(self) -> str:
        """The amount in major units, exactly: 1234 fen -> "12.34", 7 coins -> "7"."""
        exponent = self.exponent
        if exponent == 0:
            return str(self.amount_minor)
        sign = "-" if self.amount_minor < 0 else ""
        whole, frac = divmod(abs(self.amount_minor), 10**exponent)
        return f"{sign}{whole}.{frac:0{exponent}d}"

    def __str__(self) -> str:
        return f"{self.decimal_text} {self.currency}"
