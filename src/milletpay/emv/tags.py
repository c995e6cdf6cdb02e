"""The EMV tag dictionary, as data: tag → name, format, length range in bytes, source.

Sources: EMV 4.3 Book 3 Annex A (data elements dictionary) for the EMV tags; EMV Book C-3
(kernel 3, qVSDC) for 9F66 and 9F6C; the EMV Payment Tokenisation framework for 9F24;
JR/T 0025 (China Financial IC Card Specifications, PBOC 3.0) for the PBOC / UnionPay
electronic-cash tags; the EMV QR Code Specification for Payment Systems, Consumer-Presented
Mode (EMV QRCPS CPM) for the tags of a consumer-presented QR code. `check` is the
validation pass over decoded objects; this module never decides anything about a
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from milletpay.emv.tlv import Tlv, walk


class Format(StrEnum):
    """EMV Book 3 §4.3 data element formats."""

    A = "a"  # alphabetic
    AN = "an"  # alphanumeric
    ANS = "ans"  # alphanumeric and special
    B = "b"  # binary
    CN = "cn"  # compressed numeric: BCD, left-justified, padded with F
    N = "n"  # numeric: BCD, right-justified, padded with 0
    VAR = "var"  # a template: constructed, its contents are objects


class Source(StrEnum):
    ICC = "icc"
    TERMINAL = "terminal"
    ISSUER = "issuer"


@dataclass(frozen=True, slots=True)
class TagInfo:
    tag: str
    name: str
    format: Format
    length_min: int  # bytes
    length_max: int  # bytes
    source: Source


@dataclass(frozen=True, slots=True)
class TagProblem:
    """A decoded object whose length does not fit the dictionary."""

    tag: str
    name: str
    length: int
    expected: str


_I, _T, _S = Source.ICC, Source.TERMINAL, Source.ISSUER
_F = Format

# (tag, name, format, length_min, length_max, source); lengths in bytes.
_TABLE: tuple[tuple[str, str, Format, int, int, Source], ...] = (
    ("42", "Issuer Identification Number (IIN)", _F.N, 3, 3, _I),
    ("4F", "Application Identifier (AID) - card", _F.B, 5, 16, _I),
    ("50", "Application Label", _F.ANS, 1, 16, _I),
    ("57", "Track 2 Equivalent Data", _F.B, 1, 19, _I),
    ("5A", "Application Primary Account Number (PAN)", _F.CN, 1, 10, _I),
    ("5F20", "Cardholder Name", _F.ANS, 2, 26, _I),
    ("5F24", "Application Expiration Date (YYMMDD)", _F.N, 3, 3, _I),
    ("5F25", "Application Effective Date (YYMMDD)", _F.N, 3, 3, _I),
    ("5F28", "Issuer Country Code", _F.N, 2, 2, _I),
    ("5F2A", "Transaction Currency Code", _F.N, 2, 2, _T),
    ("5F2D", "Language Preference", _F.AN, 2, 8, _I),
    ("5F30", "Service Code", _F.N, 2, 2, _I),
    ("5F34", "Application PAN Sequence Number", _F.N, 1, 1, _I),
    ("61", "Application Template", _F.VAR, 0, 252, _I),
    ("6F", "File Control Information (FCI) Template", _F.VAR, 0, 252, _I),
    ("70", "READ RECORD Response Message Template", _F.VAR, 0, 252, _I),
    ("77", "Response Message Template Format 2", _F.VAR, 0, 252, _I),
    ("80", "Response Message Template Format 1", _F.B, 0, 252, _I),
    ("82", "Application Interchange Profile (AIP)", _F.B, 2, 2, _I),
    ("84", "Dedicated File (DF) Name", _F.B, 5, 16, _I),
    ("87", "Application Priority Indicator", _F.B, 1, 1, _I),
    ("88", "Short File Identifier (SFI)", _F.B, 1, 1, _I),
    ("8A", "Authorisation Response Code", _F.AN, 2, 2, _S),
    ("8C", "Card Risk Management Data Object List 1 (CDOL1)", _F.B, 0, 252, _I),
    ("8D", "Card Risk Management Data Object List 2 (CDOL2)", _F.B, 0, 252, _I),
    ("8E", "Cardholder Verification Method (CVM) List", _F.B, 10, 252, _I),
    ("8F", "Certification Authority Public Key Index", _F.B, 1, 1, _I),
    ("91", "Issuer Authentication Data", _F.B, 8, 16, _S),
    ("94", "Application File Locator (AFL)", _F.B, 4, 252, _I),
    ("95", "Terminal Verification Results (TVR)", _F.B, 5, 5, _T),
    ("9A", "Transaction Date (YYMMDD)", _F.N, 3, 3, _T),
    ("9C", "Transaction Type", _F.N, 1, 1, _T),
    ("A5", "File Control Information (FCI) Proprietary Template", _F.VAR, 0, 252, _I),
    ("BF0C", "File Control Information (FCI) Issuer Discretionary Data", _F.VAR, 0, 222, _I),
    ("9F02", "Amount, Authorised (Numeric)", _F.N, 6, 6, _T),
    ("9F03", "Amount, Other (Numeric)", _F.N, 6, 6, _T),
    ("9F06", "Application Identifier (AID) - terminal", _F.B, 5, 16, _T),
    ("9F07", "Application Usage Control", _F.B, 2, 2, _I),
    ("9F08", "Application Version Number - card", _F.B, 2, 2, _I),
    ("9F09", "Application Version Number - terminal", _F.B, 2, 2, _T),
    ("9F0D", "Issuer Action Code - Default", _F.B, 5, 5, _I),
    ("9F0E", "Issuer Action Code - Denial", _F.B, 5, 5, _I),
    ("9F0F", "Issuer Action Code - Online", _F.B, 5, 5, _I),
    ("9F10", "Issuer Application Data (IAD)", _F.B, 1, 32, _I),
    ("9F1A", "Terminal Country Code", _F.N, 2, 2, _T),
    ("9F1E", "Interface Device (IFD) Serial Number", _F.AN, 8, 8, _T),
    ("9F21", "Transaction Time (HHMMSS)", _F.N, 3, 3, _T),
    ("9F24", "Payment Account Reference (PAR)", _F.AN, 29, 29, _I),
    ("9F26", "Application Cryptogram", _F.B, 8, 8, _I),
    ("9F27", "Cryptogram Information Data (CID)", _F.B, 1, 1, _I),
    ("9F33", "Terminal Capabilities", _F.B, 3, 3, _T),
    ("9F34", "Cardholder Verification Method (CVM) Results", _F.B, 3, 3, _T),
    ("9F35", "Terminal Type", _F.N, 1, 1, _T),
    ("9F36", "Application Transaction Counter (ATC)", _F.B, 2, 2, _I),
    ("9F37", "Unpredictable Number", _F.B, 4, 4, _T),
    ("9F38", "Processing Options Data Object List (PDOL)", _F.B, 0, 252, _I),
    ("9F40", "Additional Terminal Capabilities", _F.B, 5, 5, _T),
    ("9F41", "Transaction Sequence Counter", _F.N, 2, 4, _T),
    ("9F4E", "Merchant Name and Location", _F.ANS, 0, 252, _T),
    # PBOC 3.0 (JR/T 0025) electronic cash and qPBOC.
    ("9F51", "Application Currency Code (PBOC)", _F.N, 2, 2, _I),
    ("9F5D", "Available Offline Spending Amount (PBOC)", _F.N, 6, 6, _I),
    ("9F63", "Card Product Identification Information (PBOC)", _F.B, 16, 16, _I),
    ("9F66", "Terminal Transaction Qualifiers (TTQ)", _F.B, 4, 4, _T),
    ("9F6C", "Card Transaction Qualifiers (CTQ)", _F.B, 2, 2, _I),
    # 9F6E is scheme-defined: Visa's Form Factor Indicator (4 bytes), Mastercard's Third
    # Party Data (5 to 32 bytes).
    ("9F6E", "Form Factor Indicator / Third Party Data", _F.B, 4, 32, _I),
    ("9F74", "Electronic Cash Issuer Authorisation Code (PBOC)", _F.A, 6, 6, _I),
    ("9F79", "Electronic Cash Balance (PBOC)", _F.N, 6, 6, _I),
    # EMV QRCPS consumer-presented mode: the QR code's own templates and data.
    ("85", "Payload Format Indicator (QR, consumer-presented)", _F.ANS, 5, 5, _I),
    ("62", "Common Data Template (QR)", _F.VAR, 0, 252, _I),
    ("63", "Application Specific Transparent Template (QR)", _F.VAR, 0, 252, _I),
    ("64", "Common Data Transparent Template (QR)", _F.VAR, 0, 252, _I),
    ("9F19", "Token Requestor ID", _F.N, 6, 6, _I),
    ("9F25", "Last 4 Digits of PAN", _F.N, 2, 2, _I),
)

TAGS: Mapping[str, TagInfo] = MappingProxyType(
    {row[0]: TagInfo(*row) for row in _TABLE},
)
assert len(TAGS) == len(_TABLE), "a tag is listed twice"


def name_of(tag: str) -> str:
    info = TAGS.get(tag)
    return info.name if info else f"unknown tag {tag}"


def check(items: Iterable[Tlv]) -> list[TagProblem]:
    """Objects of known tags whose length is outside the dictionary's range; unknown
    (proprietary) tags pass. An empty list means every known object fits."""
    problems: list[TagProblem] = []
    for item in walk(items):
        info = TAGS.get(item.tag)
        if info is None or isinstance(item.value, tuple):
            continue
        if not info.length_min <= len(item.value) <= info.length_max:
            expected = (
                f"{info.length_min}"
                if info.length_min == info.length_max
                else f"{info.length_min}..{info.length_max}"
            )
            problems.append(TagProblem(item.tag, info.name, len(item.value), expected))
    return problems
