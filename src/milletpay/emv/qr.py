"""EMV QR codes (EMV QR Code Specification for Payment Systems, EMV QRCPS): both modes.

It owns the text of a code and nothing else: merchant-presented mode (MPM: two-digit ID,
two-digit length, value, ending with a CRC-16 in tag 63), consumer-presented mode (CPM:
base64 of EMV BER-TLV) and the 18-digit numeric form of a one-time payment code. The MPM
tag table is data (`MPM_TAGS`), walked by generic code; every rule of the spec is checked
on the way in, and any malformed input raises `QrError` naming the tag, never another
exception. It must never touch a database or a clock: a consumer-presented code's
60-second validity and single use belong to the checkout service that issues the code.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from stdnum import luhn

from milletpay.core.errors import MilletError
from milletpay.core.money import CURRENCIES, Money
from milletpay.emv import tags, tlv
from milletpay.emv.tlv import Tlv, TlvError

__all__ = [
    "CPM_APPLICATIONS_MAX",
    "CPM_BYTES_MAX",
    "CURRENCY_UNSUPPORTED",
    "MPM_CHARS_MAX",
    "MPM_TAGS",
    "NUMERIC_CODE",
    "PAYMENT_CODE_INVALID",
    "QR_INVALID",
    "AdditionalField",
    "AlternateLanguage",
    "CpmPayload",
    "CpmTemplate",
    "Field",
    "Initiation",
    "MpmPayload",
    "NumericCodeForm",
    "Presence",
    "QrError",
    "QrFormat",
    "QrTag",
    "Template",
    "TipIndicator",
    "crc16",
    "decode_cpm",
    "decode_mpm",
    "decode_numeric_code",
    "encode_cpm",
    "encode_mpm",
    "encode_numeric_code",
    "is_common_charset",
]

MPM_CHARS_MAX = 512  # EMV QRCPS MPM: a payload is at most 512 characters
CPM_BYTES_MAX = 512  # the BER-TLV of a consumer-presented code; EMVCo's examples are ~150
_ID_CHARS = 2
_LENGTH_CHARS = 2
_VALUE_CHARS_MAX = 99  # a two-digit length
_UNRESERVED_FIRST = 80
_CRC_ID = "63"
_CRC_HEADER = "6304"  # tag 63, length 04: part of what the CRC covers
_CPM_FORMAT = b"CPV01"


# Error codes (`QrError.code`): a code that breaks the spec; a well-formed merchant code in a
# currency the platform does not pay in; mistyped or foreign digits of a payment code.
QR_INVALID = "qr_invalid"
CURRENCY_UNSUPPORTED = "qr_currency_unsupported"
PAYMENT_CODE_INVALID = "payment_code_invalid"


class QrError(MilletError):
    """A QR code (or a payload to encode) that breaks the spec. `tag` is the path of the
    data object at fault ("54", "62.09", "61/4F"), None when the code as a whole is."""

    code = QR_INVALID

    def __init__(
        self, tag: str | None, what: str, *, code: str | None = None, name: str | None = None
    ) -> None:
        if tag is not None:
            what = f"tag {tag} ({name or _name_of(tag)}): {what}"
        super().__init__(what, code=code)
        self.tag = tag


# --- The merchant-presented tag table ---------------------------------------------------


class QrFormat(StrEnum):
    """EMV QRCPS MPM data formats; lengths count characters, not bytes."""

    N = "N"  # digits 0-9
    ANS = "ANS"  # the common character set: printable ASCII, 0x20-0x7E
    S = "S"  # any printable Unicode (the alternate-language template)
    TEMPLATE = "template"  # the value is itself ID-length-value data objects


class Presence(StrEnum):
    MANDATORY = "M"
    OPTIONAL = "O"
    CONDITIONAL = "C"  # the rule is in `_MPM_RULES`


@dataclass(frozen=True, slots=True)
class QrTag:
    """One row of the table: the IDs `first`..`last` (one ID when equal), their name,
    format, length range in characters, presence, an optional `pattern` the whole value
    must match (with `rule`, what it means), and a template's own rows in `contents`."""

    first: int
    last: int
    name: str
    format: QrFormat
    length_min: int
    length_max: int
    presence: Presence
    pattern: str | None = None
    rule: str = ""
    contents: tuple[QrTag, ...] = ()


_N, _ANS, _S, _TEMPLATE = QrFormat.N, QrFormat.ANS, QrFormat.S, QrFormat.TEMPLATE
_M, _O, _C = Presence.MANDATORY, Presence.OPTIONAL, Presence.CONDITIONAL
_AMOUNT = r"\d+(\.\d*)?"
_AMOUNT_RULE = "digits with an optional '.' decimal mark"


def _network_template(name: str, presence: Presence) -> tuple[QrTag, ...]:
    """The shape shared by merchant account, payment-system and unreserved templates."""
    return (
        QrTag(0, 0, "globally unique identifier", _ANS, 1, 32, _M),
        QrTag(1, 99, f"{name} specific data", _ANS, 1, 99, presence),
    )


_ADDITIONAL_DATA = (
    QrTag(1, 1, "bill number", _ANS, 1, 25, _O),
    QrTag(2, 2, "mobile number", _ANS, 1, 25, _O),
    QrTag(3, 3, "store label", _ANS, 1, 25, _O),
    QrTag(4, 4, "loyalty number", _ANS, 1, 25, _O),
    QrTag(5, 5, "reference label", _ANS, 1, 25, _O),
    QrTag(6, 6, "customer label", _ANS, 1, 25, _O),
    QrTag(7, 7, "terminal label", _ANS, 1, 25, _O),
    QrTag(8, 8, "purpose of transaction", _ANS, 1, 25, _O),
    QrTag(
        9, 9, "additional consumer data request", _ANS, 1, 3, _O,
        r"(?!.*(.).*\1)[AME]+", "any of A (address), M (mobile), E (email), each once",
    ),
    QrTag(10, 10, "merchant tax ID", _ANS, 1, 20, _O),
    QrTag(11, 11, "merchant channel", _ANS, 3, 3, _O),
    QrTag(
        50, 99, "payment system specific template", _TEMPLATE, 1, 99, _O,
        contents=_network_template("payment system", _O),
    ),
)  # fmt: skip

_ALTERNATE_LANGUAGE = (
    QrTag(0, 0, "language preference", _ANS, 2, 2, _M, r"[A-Za-z]{2}", "ISO 639 two letters"),
    QrTag(1, 1, "merchant name, alternate language", _S, 1, 25, _M),
    QrTag(2, 2, "merchant city, alternate language", _S, 1, 15, _O),
)

MPM_TAGS: tuple[QrTag, ...] = (
    QrTag(0, 0, "payload format indicator", _N, 2, 2, _M, "01", "01"),
    QrTag(1, 1, "point of initiation method", _N, 2, 2, _O, "1[12]", "11 static or 12 dynamic"),
    # 02-25 are reserved to card networks (15-16 UnionPay), each a plain value.
    QrTag(2, 25, "merchant account information", _ANS, 1, 99, _C),
    QrTag(
        26, 51, "merchant account information template", _TEMPLATE, 1, 99, _C,
        contents=_network_template("payment network", _O),
    ),
    QrTag(52, 52, "merchant category code", _N, 4, 4, _M),
    QrTag(53, 53, "transaction currency", _N, 3, 3, _M),
    QrTag(54, 54, "transaction amount", _ANS, 1, 13, _C, _AMOUNT, _AMOUNT_RULE),
    QrTag(55, 55, "tip or convenience indicator", _N, 2, 2, _O, "0[123]", "01, 02 or 03"),
    QrTag(56, 56, "value of convenience fee fixed", _ANS, 1, 13, _C, _AMOUNT, _AMOUNT_RULE),
    QrTag(
        57, 57, "value of convenience fee percentage", _ANS, 1, 5, _C,
        r"\d{1,2}(\.\d{0,2})?", "a percentage from 00.01 to 99.99",
    ),
    QrTag(58, 58, "country code", _ANS, 2, 2, _M, "[A-Z]{2}", "ISO 3166-1 alpha-2"),
    QrTag(59, 59, "merchant name", _ANS, 1, 25, _M),
    QrTag(60, 60, "merchant city", _ANS, 1, 15, _M),
    QrTag(61, 61, "postal code", _ANS, 1, 10, _O),
    QrTag(
        62, 62, "additional data field template", _TEMPLATE, 1, 99, _O,
        contents=_ADDITIONAL_DATA,
    ),
    QrTag(63, 63, "CRC", _ANS, 4, 4, _M, "[0-9A-F]{4}", "four upper-case hex digits"),
    QrTag(
        64, 64, "merchant information language template", _TEMPLATE, 1, 99, _O,
        contents=_ALTERNATE_LANGUAGE,
    ),
    # 65-79 are reserved for future use by EMVCo: this decoder refuses what it cannot read.
    QrTag(
        80, 99, "unreserved template", _TEMPLATE, 1, 99, _O,
        contents=_network_template("unreserved template", _O),
    ),
)  # fmt: skip

_MERCHANT_ACCOUNTS = range(2, 52)


def _row(table: tuple[QrTag, ...], ident: str) -> QrTag | None:
    number = int(ident)
    return next((row for row in table if row.first <= number <= row.last), None)


def _name_of(path: str) -> str:
    """The table's name for a merchant-presented path such as "62.09"."""
    table: tuple[QrTag, ...] = MPM_TAGS
    row: QrTag | None = None
    for part in path.split("."):
        row = _row(table, part) if _digits(part) else None
        if row is None:
            return "not defined"
        table = row.contents
    assert row is not None
    return row.name


# --- The merchant-presented payload -------------------------------------------------------


class Initiation(StrEnum):
    STATIC = "11"  # printed at the till, reused, no amount
    DYNAMIC = "12"  # shown for one sale, with its amount, used once


class TipIndicator(StrEnum):
    PROMPT = "01"  # the app asks the consumer for a tip
    FIXED_FEE = "02"  # a convenience fee of a fixed amount (tag 56)
    PERCENTAGE_FEE = "03"  # a convenience fee as a percentage (tag 57)


class AdditionalField(StrEnum):
    """Sub-tags of the additional data field template (62)."""

    BILL_NUMBER = "01"
    MOBILE_NUMBER = "02"
    STORE_LABEL = "03"
    LOYALTY_NUMBER = "04"
    REFERENCE_LABEL = "05"
    CUSTOMER_LABEL = "06"
    TERMINAL_LABEL = "07"
    PURPOSE = "08"
    CONSUMER_DATA_REQUEST = "09"
    MERCHANT_TAX_ID = "10"
    MERCHANT_CHANNEL = "11"


@dataclass(frozen=True, slots=True)
class Field:
    """A plain data object: a two-digit ID and its value."""

    id: str
    value: str


@dataclass(frozen=True, slots=True)
class Template:
    """A template: a two-digit ID whose value is data objects; sub-tag 00 is the globally
    unique identifier of the network or scheme that defines the others."""

    id: str
    fields: tuple[Field, ...]

    @property
    def guid(self) -> str:
        return next((item.value for item in self.fields if item.id == "00"), "")


@dataclass(frozen=True, slots=True)
class AlternateLanguage:
    """Template 64: the merchant's name and city in another language."""

    language: str
    merchant_name: str
    merchant_city: str | None = None


@dataclass(frozen=True, slots=True)
class MpmPayload:
    """A merchant-presented code. Amounts are integer minor units of `currency` (ISO 4217
    alphabetic, as `Money`); `fee_percentage` is a rate, hence a `Decimal`."""

    merchant_accounts: tuple[Field | Template, ...]
    merchant_category_code: str
    currency: str
    country: str
    merchant_name: str
    merchant_city: str
    initiation: Initiation | None = None
    amount_minor: int | None = None
    tip: TipIndicator | None = None
    fee_fixed_minor: int | None = None
    fee_percentage: Decimal | None = None
    postal_code: str | None = None
    additional_data: tuple[Field | Template, ...] = ()
    alternate_language: AlternateLanguage | None = None
    unreserved: tuple[Template, ...] = ()

    @property
    def amount(self) -> Money | None:
        return None if self.amount_minor is None else Money(self.amount_minor, self.currency)

    def additional(self, which: AdditionalField) -> str | None:
        """The value of one additional-data sub-tag, None when absent."""
        found = (item for item in self.additional_data if item.id == which.value)
        item = next(found, None)
        return item.value if isinstance(item, Field) else None


# ISO 4217 numeric code -> alphabetic, from the one currency table. Numeric 000 is not an
# ISO currency (Millet coins are platform-internal) and cannot be in a code.
_CURRENCY_BY_NUMERIC: Mapping[str, str] = MappingProxyType(
    {f"{numeric:03d}": alpha for alpha, (numeric, _) in CURRENCIES.items() if numeric}
)


# --- CRC ------------------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final
    XOR; crc16(b"123456789") == 0x29B1."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _crc_text(covered: str) -> str:
    return f"{crc16(covered.encode('utf-8')):04X}"


# --- MPM decoding -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    path: str  # "62.05"
    id: str
    value: str
    offset: int  # of the ID, in the whole payload
    children: tuple[_Node, ...] = ()  # a template's objects, once checked


def decode_mpm(text: str | bytes) -> MpmPayload:
    """The payload of a merchant-presented code, after checking every rule of the spec;
    anything else raises `QrError` naming the tag. Scanners hand over bytes: UTF-8."""
    text = _text_of(text)
    if len(text) > MPM_CHARS_MAX:
        raise QrError(None, f"{len(text)} characters, over {MPM_CHARS_MAX}")
    nodes = _read_level(text, 0, len(text), "")
    _check_position(nodes, text)
    nodes = _checked(nodes, MPM_TAGS, "")
    by_id = {node.id: node for node in nodes}
    for rule in _MPM_RULES:
        rule(by_id)
    return _payload_from(nodes, by_id)


def _text_of(data: object) -> str:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise QrError(None, f"at offset {exc.start}: not UTF-8") from None
    if not isinstance(data, str):
        raise QrError(None, f"a code is text, got {type(data).__name__}")
    try:
        data.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QrError(None, f"at offset {exc.start}: not a Unicode character") from None
    return data


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _read_level(text: str, start: int, end: int, parent: str) -> tuple[_Node, ...]:
    """The ID-length-value objects between start and end: structure only."""
    nodes: list[_Node] = []
    offset = start
    where = f" in tag {parent}" if parent else ""
    while offset < end:
        if end - offset < _ID_CHARS + _LENGTH_CHARS:
            raise QrError(None, f"at offset {offset}{where}: {end - offset} characters left")
        ident = text[offset : offset + _ID_CHARS]
        length_text = text[offset + _ID_CHARS : offset + _ID_CHARS + _LENGTH_CHARS]
        if not _digits(ident):
            raise QrError(None, f"at offset {offset}{where}: ID {ident!r} is not two digits")
        path = f"{parent}.{ident}" if parent else ident
        if not _digits(length_text):
            raise QrError(path, f"at offset {offset}: length {length_text!r} is not two digits")
        value_start = offset + _ID_CHARS + _LENGTH_CHARS
        length = int(length_text)
        if length > end - value_start:
            raise QrError(path, f"needs {length} characters, {end - value_start} left")
        nodes.append(_Node(path, ident, text[value_start : value_start + length], offset))
        offset = value_start + length
    return tuple(nodes)


def _check_position(nodes: tuple[_Node, ...], text: str) -> None:
    """ID 00 first; 63 last, of length 04, and the CRC of everything before it."""
    if not nodes or nodes[0].id != "00":
        raise QrError("00", "must be the first data object")
    last = nodes[-1]
    if last.id != _CRC_ID:
        if any(node.id == _CRC_ID for node in nodes):
            raise QrError(_CRC_ID, "must be the last data object")
        raise QrError(_CRC_ID, "is mandatory, missing")
    if len(last.value) != len(_CRC_HEADER):
        raise QrError(_CRC_ID, f"length {len(last.value):02d}, must be 04")
    expected = _crc_text(text[: last.offset + len(_CRC_HEADER)])
    if last.value != expected:
        raise QrError(_CRC_ID, f"{last.value!r} is not the payload's CRC {expected}")


def _checked(nodes: tuple[_Node, ...], table: tuple[QrTag, ...], parent: str) -> tuple[_Node, ...]:
    """Every object checked against its row, templates read and checked recursively;
    duplicates, reserved IDs and missing mandatory objects refused."""
    seen: set[str] = set()
    checked: list[_Node] = []
    for node in nodes:
        if node.id in seen:
            raise QrError(node.path, "occurs more than once")
        seen.add(node.id)
        row = _row(table, node.id)
        if row is None:
            raise QrError(node.path, "is reserved, not defined by EMV QRCPS here")
        _check_value(node, row)
        if row.format is QrFormat.TEMPLATE:
            start = node.offset + _ID_CHARS + _LENGTH_CHARS
            inner = _read_level(node.value, 0, len(node.value), node.path)
            inner = tuple(replace(child, offset=start + child.offset) for child in inner)
            node = replace(node, children=_checked(inner, row.contents, node.path))
        checked.append(node)
    for row in table:
        ident = f"{row.first:02d}"
        if row.presence is Presence.MANDATORY and row.first == row.last and ident not in seen:
            raise QrError(f"{parent}.{ident}" if parent else ident, "is mandatory, missing")
    return tuple(checked)


def is_common_charset(text: str) -> bool:
    """Whether `text` is in the common character set of format ANS (printable ASCII,
    0x20-0x7E): what tags 59 (merchant name) and 60 (city) may carry."""
    return all(" " <= c <= "~" for c in text)


_FORMAT_CHECKS: Mapping[QrFormat, tuple[Callable[[str], bool], str]] = MappingProxyType(
    {
        QrFormat.N: (_digits, "digits only"),
        QrFormat.ANS: (is_common_charset, "printable ASCII only"),
        QrFormat.S: (str.isprintable, "printable characters only"),
        QrFormat.TEMPLATE: (lambda v: True, ""),
    }
)


def _check_value(node: _Node, row: QrTag) -> None:
    length = len(node.value)
    if not row.length_min <= length <= row.length_max:
        bounds = (
            f"{row.length_min:02d}"
            if row.length_min == row.length_max
            else f"{row.length_min:02d} to {row.length_max:02d}"
        )
        raise QrError(node.path, f"length {length:02d}, must be {bounds}")
    check, what = _FORMAT_CHECKS[row.format]
    if not check(node.value):
        raise QrError(node.path, f"{node.value!r}: format {row.format.value}, {what}")
    if row.pattern is not None and re.fullmatch(row.pattern, node.value) is None:
        raise QrError(node.path, f"{node.value!r} is not {row.rule}")


# --- MPM rules across tags: each reads the checked root objects by ID ----------------------

_Rule = Callable[[Mapping[str, _Node]], None]
# Tip or convenience indicator (55) -> the fee tag it needs; the other fee tag is refused.
_FEE_TAG_BY_TIP: Mapping[str, str | None] = MappingProxyType({"01": None, "02": "56", "03": "57"})
_FEE_TAGS = ("56", "57")
_PERCENTAGE_MIN = Decimal("0.01")
_PERCENTAGE_MAX = Decimal("99.99")


def _rule_merchant_account(by_id: Mapping[str, _Node]) -> None:
    if not any(int(ident) in _MERCHANT_ACCOUNTS for ident in by_id):
        raise QrError(None, "tags 02-51 (merchant account information): at least one needed")


def _rule_initiation(by_id: Mapping[str, _Node]) -> None:
    initiation = by_id.get("01")
    if initiation is None:
        return
    if initiation.value == Initiation.STATIC and "54" in by_id:
        raise QrError("54", "a static code (01 = 11) must not carry an amount")
    if initiation.value == Initiation.DYNAMIC and "54" not in by_id:
        raise QrError("54", "a dynamic code (01 = 12) must carry its amount")


def _rule_tip(by_id: Mapping[str, _Node]) -> None:
    tip = by_id.get("55")
    needed = None if tip is None else _FEE_TAG_BY_TIP[tip.value]
    for fee in _FEE_TAGS:
        if fee == needed and fee not in by_id:
            assert tip is not None, "only an indicator asks for a fee"
            raise QrError(fee, f"mandatory when tag 55 is {tip.value}")
        if fee != needed and fee in by_id:
            because = "absent" if tip is None else tip.value
            raise QrError(fee, f"must be absent when tag 55 is {because}")


def _rule_currency(by_id: Mapping[str, _Node]) -> None:
    numeric = by_id["53"].value
    currency = _CURRENCY_BY_NUMERIC.get(numeric)
    if currency is None:
        raise QrError(
            "53", f"{numeric} is not a currency Millet Pay pays in", code=CURRENCY_UNSUPPORTED
        )
    for ident in ("54", "56"):
        if ident in by_id:
            _minor_units(by_id[ident].value, currency, ident)
    if "54" in by_id and _minor_units(by_id["54"].value, currency, "54") == 0:
        raise QrError("54", "must not be zero")


def _rule_percentage(by_id: Mapping[str, _Node]) -> None:
    if "57" in by_id and not _PERCENTAGE_MIN <= Decimal(by_id["57"].value) <= _PERCENTAGE_MAX:
        raise QrError("57", f"{by_id['57'].value!r} is not from 00.01 to 99.99")


_MPM_RULES: tuple[_Rule, ...] = (
    _rule_merchant_account,
    _rule_initiation,
    _rule_tip,
    _rule_currency,
    _rule_percentage,
)


def _minor_units(text: str, currency: str, tag: str) -> int:
    """'23.72' CNY -> 2372; more decimals than the currency has is refused. `text` has
    already matched `_AMOUNT`."""
    exponent = CURRENCIES[currency][1]
    whole, _, fraction = text.partition(".")
    if len(fraction) > exponent:
        raise QrError(tag, f"{text!r} has {len(fraction)} decimals, {currency} has {exponent}")
    scale: int = 10**exponent
    return int(whole) * scale + int(fraction.ljust(exponent, "0") or "0")


def _entry(node: _Node) -> Field | Template:
    if node.children:
        return Template(node.id, tuple(Field(child.id, child.value) for child in node.children))
    return Field(node.id, node.value)


def _payload_from(nodes: tuple[_Node, ...], by_id: Mapping[str, _Node]) -> MpmPayload:
    def value(ident: str) -> str | None:
        node = by_id.get(ident)
        return None if node is None else node.value

    currency = _CURRENCY_BY_NUMERIC[by_id["53"].value]
    amount, fee, percentage = value("54"), value("56"), value("57")
    initiation, tip = value("01"), value("55")
    language = by_id.get("64")
    return MpmPayload(
        merchant_accounts=tuple(_entry(n) for n in nodes if int(n.id) in _MERCHANT_ACCOUNTS),
        merchant_category_code=by_id["52"].value,
        currency=currency,
        country=by_id["58"].value,
        merchant_name=by_id["59"].value,
        merchant_city=by_id["60"].value,
        initiation=None if initiation is None else Initiation(initiation),
        amount_minor=None if amount is None else _minor_units(amount, currency, "54"),
        tip=None if tip is None else TipIndicator(tip),
        fee_fixed_minor=None if fee is None else _minor_units(fee, currency, "56"),
        fee_percentage=None if percentage is None else Decimal(percentage),
        postal_code=value("61"),
        additional_data=tuple(_entry(n) for n in by_id["62"].children) if "62" in by_id else (),
        alternate_language=None if language is None else _language_from(language),
        unreserved=tuple(
            Template(n.id, tuple(Field(c.id, c.value) for c in n.children))
            for n in nodes
            if int(n.id) >= _UNRESERVED_FIRST
        ),
    )


def _language_from(node: _Node) -> AlternateLanguage:
    values = {child.id: child.value for child in node.children}
    return AlternateLanguage(values["00"], values["01"], values.get("02"))


# --- MPM encoding -------------------------------------------------------------------------


def encode_mpm(payload: MpmPayload) -> str:
    """The canonical text of `payload`, CRC last. The text is decoded again before it is
    returned: a payload that breaks a rule of the spec raises the same `QrError` as a
    scanned code would."""
    currency = payload.currency
    if currency not in _CURRENCY_BY_NUMERIC.values():
        raise QrError(
            "53", f"{currency!r} is not a currency Millet Pay pays in", code=CURRENCY_UNSUPPORTED
        )
    numeric = f"{CURRENCIES[currency][0]:03d}"
    root: list[tuple[str, str | None]] = [
        ("00", "01"),
        ("01", None if payload.initiation is None else payload.initiation.value),
    ]
    parts = [_object_text(ident, text) for ident, text in root if text is not None]
    parts += [_entry_text(entry, _MERCHANT_ACCOUNT_ROWS, "") for entry in payload.merchant_accounts]
    tail: list[tuple[str, str | None]] = [
        ("52", payload.merchant_category_code),
        ("53", numeric),
        ("54", _amount_text(payload.amount_minor, currency, "54")),
        ("55", None if payload.tip is None else payload.tip.value),
        ("56", _amount_text(payload.fee_fixed_minor, currency, "56")),
        ("57", _percentage_text(payload.fee_percentage)),
        ("58", payload.country),
        ("59", payload.merchant_name),
        ("60", payload.merchant_city),
        ("61", payload.postal_code),
        ("62", _template_text(payload.additional_data, _row_of("62"), "62")),
        ("64", _language_text(payload.alternate_language)),
    ]
    parts += [_object_text(ident, text) for ident, text in tail if text is not None]
    parts += [_entry_text(entry, _UNRESERVED_ROWS, "") for entry in payload.unreserved]
    covered = "".join(parts) + _CRC_HEADER
    text = covered + _crc_text(covered)
    decoded = decode_mpm(text)
    assert decoded == payload, f"{payload} encodes to {text!r}, which reads as {decoded}"
    return text


def _row_of(ident: str) -> QrTag:
    row = _row(MPM_TAGS, ident)
    assert row is not None
    return row


_MERCHANT_ACCOUNT_ROWS = (_row_of("02"), _row_of("26"))
_UNRESERVED_ROWS = (_row_of("80"),)


def _object_text(ident: str, value: str, parent: str = "") -> str:
    path = f"{parent}.{ident}" if parent else ident
    if not isinstance(value, str):
        raise QrError(path, f"a value is text, got {type(value).__name__}")
    if len(value) > _VALUE_CHARS_MAX:
        raise QrError(path, f"{len(value)} characters, over {_VALUE_CHARS_MAX}")
    return f"{ident}{len(value):02d}{value}"


def _entry_text(entry: Field | Template, rows: tuple[QrTag, ...], parent: str) -> str:
    """One plain object or template, against the rows it may come from."""
    ident = entry.id
    path = f"{parent}.{ident}" if parent else ident
    row = _row(rows, ident) if len(ident) == _ID_CHARS and _digits(ident) else None
    if row is None:
        raise QrError(path, "is not an ID allowed here")
    if row.format is QrFormat.TEMPLATE:
        if not isinstance(entry, Template):
            raise QrError(path, "is a template: give it as a Template")
        return _object_text(ident, _template_text(entry.fields, row, path) or "", parent)
    if not isinstance(entry, Field):
        raise QrError(path, "is a plain value: give it as a Field")
    return _object_text(ident, entry.value, parent)


def _template_text(entries: tuple[Field | Template, ...], row: QrTag, path: str) -> str | None:
    if not entries:
        return None
    return "".join(_entry_text(entry, row.contents, path) for entry in entries)


def _language_text(language: AlternateLanguage | None) -> str | None:
    if language is None:
        return None
    fields_ = [("00", language.language), ("01", language.merchant_name)]
    if language.merchant_city is not None:
        fields_.append(("02", language.merchant_city))
    return "".join(_object_text(ident, text, "64") for ident, text in fields_)


def _amount_text(amount_minor: int | None, currency: str, tag: str) -> str | None:
    """2372 CNY -> '23.72', 10000 HKD -> '100': the shortest exact decimal text."""
    if amount_minor is None:
        return None
    if type(amount_minor) is not int or amount_minor < 0:
        raise QrError(tag, f"{amount_minor!r}: an amount is integer minor units, 0 or more")
    exponent = CURRENCIES[currency][1]
    whole, fraction = divmod(amount_minor, 10**exponent)
    decimals = f"{fraction:0{exponent}d}".rstrip("0") if exponent else ""
    return f"{whole}.{decimals}" if decimals else str(whole)


def _percentage_text(percentage: Decimal | None) -> str | None:
    if percentage is None:
        return None
    if not isinstance(percentage, Decimal) or not percentage.is_finite():
        raise QrError("57", f"{percentage!r}: a percentage is a finite Decimal")
    return format(percentage, "f")


# --- Consumer-presented mode --------------------------------------------------------------


class _Kind(StrEnum):
    BINARY = "binary"  # kept as bytes
    TEXT = "text"  # printable ASCII, kept as str
    DIGITS = "digits"  # BCD (cn: padded with F), kept as a str of digits


@dataclass(frozen=True, slots=True)
class _CpmField:
    tag: str
    attribute: str
    kind: _Kind
    in_application: bool  # may be in an application template (61)
    in_common: bool  # may be in the common data template (62)
    pattern: str = ""  # what the value's upper-case hex must match, when set
    rule: str = ""


# EMV QRCPS CPM data objects of the application (61) and common data (62) templates.
# Lengths come from the tag dictionary (tags.py).
_CPM_FIELDS: tuple[_CpmField, ...] = (
    _CpmField("4F", "aid", _Kind.BINARY, True, False),
    _CpmField("50", "label", _Kind.TEXT, True, False),
    _CpmField(
        "57", "track2", _Kind.BINARY, True, True,
        r"\d{1,19}D\d{7}\d*F?", "PAN, D, expiry YYMM, service code, discretionary data",
    ),
    _CpmField("5A", "pan", _Kind.DIGITS, True, True, r"\d{1,19}F?", "digits padded with F"),
    _CpmField("5F20", "cardholder_name", _Kind.TEXT, True, True),
    _CpmField("5F2D", "language", _Kind.TEXT, True, True),
    _CpmField("5F34", "pan_sequence", _Kind.DIGITS, True, True, r"\d{2}", "two digits"),
    _CpmField("9F08", "app_version", _Kind.BINARY, True, False),
    _CpmField("9F19", "token_requestor_id", _Kind.DIGITS, True, True, r"\d{12}", "11 digits"),
    _CpmField("9F24", "payment_account_reference", _Kind.TEXT, True, True),
    _CpmField("9F25", "pan_last4", _Kind.DIGITS, True, True, r"\d{4}", "four digits"),
)  # fmt: skip
_CPM_FIELD_BY_TAG: Mapping[str, _CpmField] = MappingProxyType({f.tag: f for f in _CPM_FIELDS})


@dataclass(frozen=True, slots=True)
class _CpmTemplateKind:
    tag: str
    name: str
    transparent_tag: str  # the template carrying the transaction's cryptogram data
    count_min: int
    count_max: int


CPM_APPLICATIONS_MAX = 4  # application templates in one code: one per card shown
_CPM_TEMPLATES: Mapping[str, _CpmTemplateKind] = MappingProxyType(
    {
        "61": _CpmTemplateKind("61", "application template", "63", 1, CPM_APPLICATIONS_MAX),
        "62": _CpmTemplateKind("62", "common data template", "64", 0, 1),
    }
)


@dataclass(frozen=True, slots=True)
class CpmTemplate:
    """An application template (61; `aid` mandatory) or the common data template (62; no
    `aid`, `label` or `app_version`). `transparent` is the content of its transparent
    template (63 in 61, 64 in 62): the transaction's 9F26 cryptogram, 9F27 CID, 9F10
    issuer application data, 9F36 ATC, 9F37 unpredictable number, as BER-TLV objects."""

    aid: bytes | None = None
    label: str | None = None
    track2: bytes | None = None
    pan: str | None = None
    cardholder_name: str | None = None
    language: str | None = None
    pan_sequence: str | None = None
    app_version: bytes | None = None
    token_requestor_id: str | None = None
    payment_account_reference: str | None = None
    pan_last4: str | None = None
    transparent: tuple[Tlv, ...] = ()

    def transaction_data(self) -> dict[str, bytes]:
        """Tag -> value of the transparent template's primitive objects."""
        return tlv.primitives(self.transparent)


@dataclass(frozen=True, slots=True)
class CpmPayload:
    """A consumer-presented code: payload format "CPV01" (tag 85, implied), one or more
    application templates, and optionally the data common to them."""

    applications: tuple[CpmTemplate, ...]
    common: CpmTemplate | None = None


def _cpm_refusal(path: str, what: str) -> QrError:
    """An error naming a consumer-presented path ("61/63/9F26") by the tag dictionary."""
    return QrError(path, what, name=tags.name_of(path.rsplit("/", 1)[-1]))


def decode_cpm(text: str | bytes) -> CpmPayload:
    """The payload of a consumer-presented code (base64 of BER-TLV). Only decoding: a
    code's validity (60 seconds) and its single use are the checkout service's to check."""
    raw = _cpm_bytes(_text_of(text))
    try:
        items = tlv.decode(raw)
    except TlvError as exc:
        raise QrError(None, exc.message) from None
    if not items or items[0].tag != "85":
        raise _cpm_refusal("85", "must be the first data object")
    if items[0].value != _CPM_FORMAT:
        raise _cpm_refusal("85", f"{items[0].value!r}, must be {_CPM_FORMAT.decode()}")
    templates: dict[str, list[CpmTemplate]] = {tag: [] for tag in _CPM_TEMPLATES}
    for item in items[1:]:
        kind = _CPM_TEMPLATES.get(item.tag)
        if item.tag == "85":
            raise _cpm_refusal("85", "occurs more than once")
        if kind is None:
            raise _cpm_refusal(item.tag, "is not allowed at the top of a consumer-presented code")
        templates[item.tag].append(_cpm_template(item, kind))
    for tag, kind in _CPM_TEMPLATES.items():
        if not kind.count_min <= len(templates[tag]) <= kind.count_max:
            allowed = f"{kind.count_min} to {kind.count_max} allowed"
            raise _cpm_refusal(tag, f"{len(templates[tag])} present, {allowed}")
    common = templates["62"][0] if templates["62"] else None
    payload = CpmPayload(tuple(templates["61"]), common)
    _check_account_number(payload)
    return payload


_CPM_TEXT_CHARS_MAX = (CPM_BYTES_MAX + 2) // 3 * 4


def _cpm_bytes(text: str) -> bytes:
    if len(text) > _CPM_TEXT_CHARS_MAX:
        raise QrError(None, f"{len(text)} characters, over {_CPM_TEXT_CHARS_MAX}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise QrError(None, "not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise QrError(None, "base64 is not in its canonical form")
    return raw


def _cpm_template(item: Tlv, kind: _CpmTemplateKind) -> CpmTemplate:
    assert isinstance(item.value, tuple), "61 and 62 are constructed tags"
    values: dict[str, Any] = {}
    seen: set[str] = set()
    for child in item.value:
        path = f"{kind.tag}/{child.tag}"
        if child.tag in seen:
            raise _cpm_refusal(path, "occurs more than once")
        seen.add(child.tag)
        if child.tag == kind.transparent_tag:
            values["transparent"] = _transparent(child, path)
            continue
        field = _CPM_FIELD_BY_TAG.get(child.tag)
        allowed = field is not None and (
            field.in_application if kind.tag == "61" else field.in_common
        )
        if field is None or not allowed or not isinstance(child.value, bytes):
            raise _cpm_refusal(path, f"is not allowed in the {kind.name}")
        values[field.attribute] = _cpm_value(child.value, field, path)
    if kind.tag == "61" and "aid" not in values:
        raise _cpm_refusal(f"{kind.tag}/4F", "is mandatory in an application template")
    return CpmTemplate(**values)


def _cpm_value(value: bytes, field: _CpmField, path: str) -> bytes | str:
    info = tags.TAGS[field.tag]
    if not info.length_min <= len(value) <= info.length_max:
        bounds = f"{info.length_min} to {info.length_max}"
        raise _cpm_refusal(path, f"{len(value)} bytes, must be {bounds}")
    if field.pattern and re.fullmatch(field.pattern, value.hex().upper()) is None:
        raise _cpm_refusal(path, f"{value.hex().upper()} is not {field.rule}")
    if field.kind is _Kind.TEXT:
        if not all(0x20 <= byte <= 0x7E for byte in value):
            raise _cpm_refusal(path, "printable ASCII only")
        return value.decode("ascii")
    if field.kind is _Kind.DIGITS:
        return value.hex().upper().rstrip("F")
    return value


def _transparent(item: Tlv, path: str) -> tuple[Tlv, ...]:
    assert isinstance(item.value, tuple), "63 and 64 are constructed tags"
    for problem in tags.check(item.value):
        raise _cpm_refusal(
            f"{path}/{problem.tag}", f"{problem.length} bytes, must be {problem.expected}"
        )
    try:
        tlv.primitives(item.value)
    except TlvError as exc:
        raise _cpm_refusal(path, exc.message) from None
    return item.value


def _check_account_number(payload: CpmPayload) -> None:
    """Each application needs a track 2 (57) or a PAN (5A), its own or the common one."""
    common = payload.common or CpmTemplate()
    for index, application in enumerate(payload.applications):
        numbers = (application.track2, application.pan, common.track2, common.pan)
        if all(number is None for number in numbers):
            raise _cpm_refusal("61", f"application {index + 1} has no track 2 (57) nor PAN (5A)")


def encode_cpm(payload: CpmPayload) -> str:
    """The base64 text of `payload`; decoded again before it is returned, so a payload
    that breaks a rule raises the same `QrError` as a scanned code would."""
    items = [Tlv("85", _CPM_FORMAT)]
    items += [_cpm_tlv(application, _CPM_TEMPLATES["61"]) for application in payload.applications]
    if payload.common is not None:
        items.append(_cpm_tlv(payload.common, _CPM_TEMPLATES["62"]))
    try:
        raw = tlv.encode(items)
    except TlvError as exc:
        raise QrError(None, exc.message) from None
    if len(raw) > CPM_BYTES_MAX:
        raise QrError(None, f"{len(raw)} bytes, over {CPM_BYTES_MAX}")
    text = base64.b64encode(raw).decode("ascii")
    decoded = decode_cpm(text)
    assert decoded == payload, f"{payload} encodes to {text!r}, which reads as {decoded}"
    return text


def _cpm_tlv(template: CpmTemplate, kind: _CpmTemplateKind) -> Tlv:
    children: list[Tlv] = []
    for field in _CPM_FIELDS:
        value = getattr(template, field.attribute)
        if value is not None:
            children.append(Tlv(field.tag, _cpm_raw(value, field, f"{kind.tag}/{field.tag}")))
    if template.transparent:
        children.append(Tlv(kind.transparent_tag, tuple(template.transparent)))
    return Tlv(kind.tag, tuple(children))


def _cpm_raw(value: object, field: _CpmField, path: str) -> bytes:
    if field.kind is _Kind.BINARY and isinstance(value, bytes):
        return value
    if field.kind is _Kind.TEXT and isinstance(value, str) and value.isascii():
        return value.encode("ascii")
    if field.kind is _Kind.DIGITS and isinstance(value, str) and _digits(value):
        return bytes.fromhex(value + "F" * (len(value) % 2))
    raise _cpm_refusal(path, f"{value!r} is not {field.kind.value}")


# --- The numeric form of a one-time payment code ------------------------------------------


@dataclass(frozen=True, slots=True)
class NumericCodeForm:
    """A payment code as digits a cashier can type: `prefix` (the wallet's, as card
    networks have BIN ranges), the code id zero-padded to `id_digits`, a Luhn check digit
    (catches every single mistyped digit and most swaps of neighbours)."""

    prefix: str
    id_digits: int

    @property
    def digits(self) -> int:
        return len(self.prefix) + self.id_digits + 1


NUMERIC_CODE = NumericCodeForm(prefix="28", id_digits=15)  # 18 digits


def encode_numeric_code(code_id: int, form: NumericCodeForm = NUMERIC_CODE) -> str:
    """The digits of the server-side code id `code_id` (0 <= code_id < 10**id_digits)."""
    if type(code_id) is not int or not 0 <= code_id < 10**form.id_digits:
        what = f"code id {code_id!r} is not an integer from 0 to {10**form.id_digits - 1}"
        raise QrError(None, what, code=PAYMENT_CODE_INVALID)
    body = f"{form.prefix}{code_id:0{form.id_digits}d}"
    return body + luhn.calc_check_digit(body)


def decode_numeric_code(text: str, form: NumericCodeForm = NUMERIC_CODE) -> int:
    """The code id in typed or scanned digits; spaces between groups are ignored."""
    if not isinstance(text, str):
        raise QrError(None, f"a code is text, got {type(text).__name__}", code=PAYMENT_CODE_INVALID)
    digits = text.replace(" ", "")
    if len(digits) != form.digits or not _digits(digits):
        what = f"{len(digits)} characters, a payment code is {form.digits} digits"
        raise QrError(None, what, code=PAYMENT_CODE_INVALID)
    if not digits.startswith(form.prefix):
        what = f"starts with {digits[: len(form.prefix)]}, a payment code with {form.prefix}"
        raise QrError(None, what, code=PAYMENT_CODE_INVALID)
    if not luhn.is_valid(digits):
        raise QrError(
            None, "check digit does not match: a digit is mistyped", code=PAYMENT_CODE_INVALID
        )
    return int(digits[len(form.prefix) : -1])
