"""The acquirer's merchants and their POS terminals, from `merchants.toml`.

`load_merchants(text)` parses and validates the whole file in one pass and answers an
immutable `MerchantDirectory`, or raises `MerchantDataError` naming the merchant (or
terminal) and the field that is wrong. What an ISO 8583 request says about where a tap
happened (fields 18, 32, 41, 42, 43, 49) and each terminal's contactless limits come from
here and nowhere else. This module never touches storage or the network.

Field 43 (card acceptor name and location, 40 characters) is laid out as docs/iso8583.md
says: the name (25), the city (13), the country (ISO 3166 alpha-2, 2), each left-justified
and space-padded.
"""

from __future__ import annotations

import enum
import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from milletpay.acquiring.kernel import AMOUNT_MINOR_MAX, TerminalConfig
from milletpay.core.errors import MilletError

__all__ = [
    "CITY_CHARS",
    "COUNTRY_CHARS",
    "MERCHANTS_MAX",
    "MERCHANT_ID_CHARS",
    "NAME_CHARS",
    "TERMINALS_PER_MERCHANT_MAX",
    "TERMINAL_ID_CHARS",
    "MerchantDataError",
    "MerchantDirectory",
    "MerchantSpec",
    "MessageStyle",
    "TerminalSpec",
    "load_merchants",
    "merchants",
]

DATA_FILE: Final = "merchants.toml"
#: The most merchants one file may hold, and terminals one merchant may have (bounds on
#: the work of validating a file and on the host's per-terminal state).
MERCHANTS_MAX: Final = 256
TERMINALS_PER_MERCHANT_MAX: Final = 32
MERCHANT_ID_CHARS: Final = 15  # field 42
TERMINAL_ID_CHARS: Final = 8  # field 41
# Field 43: name, city, country code; 25 + 13 + 2 = 40 characters.
NAME_CHARS: Final = 25
CITY_CHARS: Final = 13
COUNTRY_CHARS: Final = 2
INSTITUTION_ID_DIGITS_MAX: Final = 11  # field 32, LLVAR n..11
LIMIT_KEYS: Final = ("contactless_limit_fen", "cvm_limit_fen", "floor_limit_fen")
TERMINAL_FIELDS: Final = frozenset({"terminal_id", *LIMIT_KEYS})
MERCHANT_FIELDS: Final = frozenset({"merchant_id", "name", "city", "mcc", "style", "terminals"})

_ID = re.compile(r"\A[0-9A-Z]+\Z")
_DIGITS = re.compile(r"\A[0-9]+\Z")
_ALPHA2 = re.compile(r"\A[A-Z]{2}\Z")
_PRINTABLE = re.compile(r"\A[\x20-\x7e]+\Z")


class MerchantDataError(MilletError, ValueError):
    """The merchant data file is malformed; the message names the entry and the field."""

    code = "merchant_data_invalid"


class MessageStyle(enum.StrEnum):
    """How a merchant's authorizations reach the network."""

    DUAL = "dual"  # 0100 authorization, then a 0220 completion advice with the final amount
    SINGLE = "single"  # one 0200 financial request: authorized and cleared at once


@dataclass(frozen=True, slots=True)
class TerminalSpec:
    terminal_id: str  # field 41, exactly TERMINAL_ID_CHARS
    config: TerminalConfig


@dataclass(frozen=True, slots=True)
class MerchantSpec:
    merchant_id: str  # field 42, exactly MERCHANT_ID_CHARS
    name: str
    city: str
    country: str  # ISO 3166 alpha-2
    mcc: str  # field 18
    style: MessageStyle
    terminals: tuple[TerminalSpec, ...]

    @property
    def name_location(self) -> str:
        """Field 43: name (25), city (13), country (2), each space-padded."""
        text = self.name.ljust(NAME_CHARS) + self.city.ljust(CITY_CHARS) + self.country
        assert len(text) == NAME_CHARS + CITY_CHARS + COUNTRY_CHARS
        return text


@dataclass(frozen=True, slots=True)
class MerchantDirectory:
    """The acquirer: its institution id, currency, and every merchant with its terminals."""

    institution_id: str  # field 32
    currency_numeric: str  # field 49
    merchants: tuple[MerchantSpec, ...]

    def terminal(self, terminal_id: str) -> tuple[MerchantSpec, TerminalSpec]:
        """The merchant that owns `terminal_id`, and the terminal; `KeyError` if none."""
        for merchant in self.merchants:
            for terminal in merchant.terminals:
                if terminal.terminal_id == terminal_id:
                    return merchant, terminal
        raise KeyError(f"no terminal {terminal_id!r}")

    def terminal_ids(self) -> tuple[str, ...]:
        return tuple(t.terminal_id for m in self.merchants for t in m.terminals)


def _require(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MerchantDataError(f"{where} must be a {kind.__name__}, got {value!r}")
    return value


def _known_fields(raw: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MerchantDataError(f"{where} has unknown fields: {', '.join(unknown)}")


def _matching(value: Any, pattern: re.Pattern[str], what: str, where: str) -> str:
    text = _require(value, str, where)
    if pattern.match(text) is None:
        raise MerchantDataError(f"{where} must be {what}, got {text!r}")
    return str(text)


def _text(value: Any, chars_max: int, where: str) -> str:
    text = _matching(value, _PRINTABLE, "printable ASCII", where)
    if text != text.strip() or len(text) > chars_max:
        raise MerchantDataError(
            f"{where} must be 1 to {chars_max} characters with no outer spaces, got {text!r}"
        )
    return text


def _exact_id(value: Any, chars: int, where: str) -> str:
    text = _matching(value, _ID, "upper-case letters or digits", where)
    if len(text) != chars:
        raise MerchantDataError(f"{where} must be {chars} characters, got {text!r}")
    return text


def _limits(raw: Mapping[str, Any], defaults: Mapping[str, int], where: str) -> dict[str, int]:
    limits: dict[str, int] = {}
    for key in LIMIT_KEYS:
        value = _require(raw.get(key, defaults.get(key)), int, f"{where}.{key}")
        if not 0 <= value <= AMOUNT_MINOR_MAX:
            raise MerchantDataError(f"{where}.{key} must be 0 to {AMOUNT_MINOR_MAX} fen")
        limits[key] = int(value)
    floor, cvm = limits["floor_limit_fen"], limits["cvm_limit_fen"]
    if not floor <= cvm <= limits["contactless_limit_fen"]:
        raise MerchantDataError(
            f"{where}: limits must keep floor_limit_fen <= cvm_limit_fen <= contactless_limit_fen"
        )
    return limits


def _terminal(
    raw: Any, where: str, defaults: Mapping[str, int], country: bytes, currency: bytes
) -> TerminalSpec:
    _require(raw, dict, where)
    _known_fields(raw, TERMINAL_FIELDS, where)
    terminal_id = _exact_id(raw.get("terminal_id"), TERMINAL_ID_CHARS, f"{where}.terminal_id")
    limits = _limits(raw, defaults, f"terminal {terminal_id}")
    config = TerminalConfig(
        contactless_limit_minor=limits["contactless_limit_fen"],
        cvm_limit_minor=limits["cvm_limit_fen"],
        floor_limit_minor=limits["floor_limit_fen"],
        country=country,
        currency=currency,
    )
    return TerminalSpec(terminal_id, config)


def _merchant(
    raw: Any,
    index: int,
    country: str,
    defaults: Mapping[str, int],
    codes: tuple[bytes, bytes],
) -> MerchantSpec:
    where = f"merchant[{index}]"
    _require(raw, dict, where)
    _known_fields(raw, MERCHANT_FIELDS, where)
    merchant_id = _exact_id(raw.get("merchant_id"), MERCHANT_ID_CHARS, f"{where}.merchant_id")
    where = f"merchant {merchant_id}"
    try:
        style = MessageStyle(raw.get("style"))
    except ValueError:
        raise MerchantDataError(
            f"{where}.style must be dual or single, got {raw.get('style')!r}"
        ) from None
    terminals_raw = _require(raw.get("terminals"), list, f"{where}.terminals")
    if not 1 <= len(terminals_raw) <= TERMINALS_PER_MERCHANT_MAX:
        raise MerchantDataError(
            f"{where}.terminals must hold 1 to {TERMINALS_PER_MERCHANT_MAX} terminals"
        )
    return MerchantSpec(
        merchant_id=merchant_id,
        name=_text(raw.get("name"), NAME_CHARS, f"{where}.name"),
        city=_text(raw.get("city"), CITY_CHARS, f"{where}.city"),
        country=country,
        mcc=_matching(raw.get("mcc"), re.compile(r"\A[0-9]{4}\Z"), "4 digits", f"{where}.mcc"),
        style=style,
        terminals=tuple(
            _terminal(t, f"{where}.terminals[{i}]", defaults, *codes)
            for i, t in enumerate(terminals_raw)
        ),
    )


def _numeric_code(value: Any, where: str) -> bytes:
    """An ISO numeric code (3 digits) as the 2 BCD bytes of 9F1A / 5F2A."""
    text = _matching(value, re.compile(r"\A[0-9]{3}\Z"), "3 digits", where)
    return bytes.fromhex("0" + text)


def _first_duplicate(values: list[str]) -> str | None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


def load_merchants(text: str) -> MerchantDirectory:
    """The acquirer and every merchant in the TOML `text`, validated;
    `MerchantDataError` names the first fault."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MerchantDataError(f"the merchant data is not TOML: {exc}") from None
    acquirer = _require(document.get("acquirer"), dict, "acquirer")
    institution_id = _matching(
        acquirer.get("institution_id"), _DIGITS, "digits", "acquirer.institution_id"
    )
    if len(institution_id) > INSTITUTION_ID_DIGITS_MAX:
        raise MerchantDataError(
            f"acquirer.institution_id must be 1 to {INSTITUTION_ID_DIGITS_MAX} digits"
        )
    country = _matching(acquirer.get("country"), _ALPHA2, "2 capital letters", "acquirer.country")
    codes = (
        _numeric_code(acquirer.get("country_numeric"), "acquirer.country_numeric"),
        _numeric_code(acquirer.get("currency_numeric"), "acquirer.currency_numeric"),
    )
    defaults = _require(document.get("terminal_defaults", {}), dict, "terminal_defaults")
    _known_fields(defaults, frozenset(LIMIT_KEYS), "terminal_defaults")
    raw_merchants = _require(document.get("merchant"), list, "merchant")
    if not 1 <= len(raw_merchants) <= MERCHANTS_MAX:
        raise MerchantDataError(f"the merchant data must hold 1 to {MERCHANTS_MAX} merchants")
    merchants = tuple(
        _merchant(raw, i, country, defaults, codes) for i, raw in enumerate(raw_merchants)
    )
    duplicate = _first_duplicate([m.merchant_id for m in merchants])
    if duplicate is not None:
        raise MerchantDataError(f"merchant {duplicate} appears twice")
    duplicate = _first_duplicate([t.terminal_id for m in merchants for t in m.terminals])
    if duplicate is not None:
        raise MerchantDataError(f"terminal {duplicate} appears twice")
    return MerchantDirectory(institution_id, codes[1].hex()[1:], merchants)


@functools.cache
def merchants() -> MerchantDirectory:
    """The merchants of the packaged data file, loaded once."""
    package = __package__
    assert package is not None
    text = resources.files(package).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return load_merchants(text)
