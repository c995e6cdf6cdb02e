"""The bank table: every issuing bank, its IIN ranges and card products, from `banks.toml`.

`load_banks(text)` parses and validates the whole file in one pass and answers immutable
`BankSpec`s, or raises `BankDataError` naming the bank and field that is wrong. Nothing
else in the package names a bank: what differs between banks is in the file. This
module never touches storage.
"""

from __future__ import annotations

import enum
import functools
import itertools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from milletpay.core.errors import MilletError

DATA_FILE = "banks.toml"
#: Every card IIN and token IIN lies in the UnionPay range: it starts with these digits.
IIN_PREFIX = "62"
IIN_DIGITS = 6
BANK_CODE_CHARS_MAX = 8
#: The most banks one file may hold (a bound on the work of validating it).
BANKS_MAX = 256
PRODUCTS_PER_BANK_MAX = 16


class BankDataError(MilletError, ValueError):
    """The bank data file is malformed; the message names the bank and the field."""

    code = "bank_data_invalid"


class ProductType(enum.StrEnum):
    DEBIT = "debit"  # a deposit account: spends what it holds
    CREDIT = "credit"  # a credit account: spends up to its credit limit


@dataclass(frozen=True, slots=True, order=True)
class IinRange:
    """IINs `first` to `last` inclusive, both 6 digits."""

    first: str
    last: str

    def __contains__(self, iin: object) -> bool:
        return isinstance(iin, str) and self.first <= iin <= self.last

    def overlaps(self, other: IinRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return self.first if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class ProductSpec:
    code: str
    type: ProductType
    iin: str
    per_transaction_limit_fen: int
    daily_limit_fen: int
    expiry_years: int
    credit_limit_fen: int = 0  # credit products only: a new account's limit


@dataclass(frozen=True, slots=True)
class RemoteOpeningSpec:
    """Accounts a bank opens remotely in-app, and the limits of their class on spending
    and transfers to unlinked accounts (per China day and calendar year)."""

    account_class: int
    product: str
    daily_limit_fen: int
    yearly_limit_fen: int


@dataclass(frozen=True, slots=True)
class BankSpec:
    code: str
    name: str
    iin_ranges: tuple[IinRange, ...]
    token_iin_range: IinRange
    products: tuple[ProductSpec, ...]
    remote_opening: RemoteOpeningSpec | None = None

    def product(self, code: str) -> ProductSpec:
        for product in self.products:
            if product.code == code:
                return product
        raise KeyError(f"{self.code} has no product {code!r}")

    def issues_iin(self, iin: str) -> bool:
        return any(iin in r for r in self.iin_ranges)


def _require(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BankDataError(f"{where} must be a {kind.__name__}, got {value!r}")
    return value


def _fen(table: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> int:
    if key not in table and not required:
        return 0
    value = _require(table.get(key), int, f"{where}.{key}")
    if value <= 0:
        raise BankDataError(f"{where}.{key} must be a positive number of fen, got {value}")
    return int(value)


def _iin(text: Any, where: str) -> str:
    _require(text, str, where)
    if len(text) != IIN_DIGITS or not (text.isascii() and text.isdigit()):
        raise BankDataError(f"{where} must be {IIN_DIGITS} digits, got {text!r}")
    if not text.startswith(IIN_PREFIX):
        raise BankDataError(f"{where} {text} is outside the UnionPay {IIN_PREFIX} range")
    return str(text)


def _range(text: Any, where: str) -> IinRange:
    _require(text, str, where)
    first, _, last = text.partition("-")
    iin_range = IinRange(_iin(first, where), _iin(last or first, where))
    if iin_range.first > iin_range.last:
        raise BankDataError(f"{where} {text!r} runs backwards")
    return iin_range


def _product(raw: Any, where: str, ranges: tuple[IinRange, ...]) -> ProductSpec:
    _require(raw, dict, where)
    try:
        product_type = ProductType(raw.get("type"))
    except ValueError:
        raise BankDataError(
            f"{where}.type must be debit or credit, got {raw.get('type')!r}"
        ) from None
    iin = _iin(raw.get("iin"), f"{where}.iin")
    if not any(iin in r for r in ranges):
        raise BankDataError(f"{where}.iin {iin} is outside the bank's IIN ranges")
    credit = product_type is ProductType.CREDIT
    if not credit and "credit_limit_fen" in raw:
        raise BankDataError(f"{where}.credit_limit_fen is for credit products only")
    expiry_years = _require(raw.get("expiry_years"), int, f"{where}.expiry_years")
    if not 1 <= expiry_years <= 20:
        raise BankDataError(f"{where}.expiry_years must be 1 to 20, got {expiry_years}")
    return ProductSpec(
        code=_require(raw.get("code"), str, f"{where}.code"),
        type=product_type,
        iin=iin,
        per_transaction_limit_fen=_fen(raw, "per_transaction_limit_fen", where),
        daily_limit_fen=_fen(raw, "daily_limit_fen", where),
        expiry_years=expiry_years,
        credit_limit_fen=_fen(raw, "credit_limit_fen", where, required=credit),
    )


def _remote_opening(raw: Any, where: str, products: tuple[ProductSpec, ...]) -> RemoteOpeningSpec:
    _require(raw, dict, where)
    account_class = _require(raw.get("account_class"), int, f"{where}.account_class")
    if account_class not in (2, 3):
        raise BankDataError(f"{where}.account_class must be 2 or 3, got {account_class}")
    product = _require(raw.get("product"), str, f"{where}.product")
    if not any(p.code == product and p.type is ProductType.DEBIT for p in products):
        raise BankDataError(f"{where}.product {product!r} is not one of the bank's debit products")
    spec = RemoteOpeningSpec(
        account_class,
        product,
        _fen(raw, "daily_limit_fen", where),
        _fen(raw, "yearly_limit_fen", where),
    )
    if spec.daily_limit_fen > spec.yearly_limit_fen:
        raise BankDataError(f"{where}.daily_limit_fen is above yearly_limit_fen")
    return spec


def _bank(raw: Any, index: int) -> BankSpec:
    where = f"bank[{index}]"
    _require(raw, dict, where)
    code = _require(raw.get("code"), str, f"{where}.code")
    well_formed = code.isascii() and code.isalnum() and code.isupper()
    if not well_formed or len(code) > BANK_CODE_CHARS_MAX:
        raise BankDataError(
            f"{where}.code must be 1 to {BANK_CODE_CHARS_MAX} upper-case letters or digits, "
            f"got {code!r}"
        )
    where = f"bank {code}"
    name = _require(raw.get("name"), str, f"{where}.name")
    ranges_raw = _require(raw.get("iin_ranges"), list, f"{where}.iin_ranges")
    if not ranges_raw:
        raise BankDataError(f"{where}.iin_ranges is empty")
    ranges = tuple(_range(r, f"{where}.iin_ranges[{i}]") for i, r in enumerate(ranges_raw))
    token_range = _range(raw.get("token_iin_range"), f"{where}.token_iin_range")
    products_raw = _require(raw.get("products"), list, f"{where}.products")
    if not 1 <= len(products_raw) <= PRODUCTS_PER_BANK_MAX:
        raise BankDataError(f"{where}.products must hold 1 to {PRODUCTS_PER_BANK_MAX} products")
    products = tuple(
        _product(p, f"{where}.products[{i}]", ranges) for i, p in enumerate(products_raw)
    )
    if len({p.code for p in products}) != len(products):
        raise BankDataError(f"{where}.products: two products share a code")
    remote = raw.get("remote_opening")
    return BankSpec(
        code=code,
        name=name,
        iin_ranges=ranges,
        token_iin_range=token_range,
        products=products,
        remote_opening=None
        if remote is None
        else _remote_opening(remote, f"{where}.remote_opening", products),
    )


def _check_no_overlap(banks: tuple[BankSpec, ...]) -> None:
    owned = sorted(
        (r, f"{b.code} {label}")
        for b in banks
        for r, label in [*((r, "iin_ranges") for r in b.iin_ranges), (b.token_iin_range, "token")]
    )
    for (left, left_owner), (right, right_owner) in itertools.pairwise(owned):
        if left.overlaps(right):
            raise BankDataError(f"IIN range {left} ({left_owner}) overlaps {right} ({right_owner})")


def load_banks(text: str) -> tuple[BankSpec, ...]:
    """Every bank in the TOML `text`, validated; `BankDataError` names the first fault."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BankDataError(f"the bank data is not TOML: {exc}") from None
    raw_banks = _require(document.get("bank"), list, "bank")
    if not 1 <= len(raw_banks) <= BANKS_MAX:
        raise BankDataError(f"the bank data must hold 1 to {BANKS_MAX} banks")
    banks = tuple(_bank(raw, i) for i, raw in enumerate(raw_banks))
    codes = [b.code for b in banks]
    if len(set(codes)) != len(codes):
        duplicate = next(c for c in codes if codes.count(c) > 1)
        raise BankDataError(f"bank {duplicate} appears twice")
    _check_no_overlap(banks)
    return banks


@functools.cache
def banks() -> tuple[BankSpec, ...]:
    """The banks of the packaged data file, loaded once."""
    text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return load_banks(text)


def bank_codes() -> tuple[str, ...]:
    return tuple(b.code for b in banks())


def bank_spec(code: str) -> BankSpec:
    """The bank with `code`; `KeyError` if there is none."""
    for spec in banks():
        if spec.code == code:
            return spec
    raise KeyError(f"no bank {code!r}")


def bank_for_pan(pan: str) -> BankSpec | None:
    """The bank whose IIN ranges hold the PAN's first six digits, if any."""
    iin = pan[:IIN_DIGITS]
    return next((b for b in banks() if b.issues_iin(iin)), None)
