"""Sample messages and hypothesis strategies shared by the network tests."""

from __future__ import annotations

from hypothesis import strategies as st

from milletpay.emv import tlv
from milletpay.emv.tlv import Tlv
from milletpay.network.iso8583 import (
    APPROVAL_CODE_MTIS,
    FIELDS,
    MESSAGE_TYPES,
    FieldDef,
    FieldValue,
    Kind,
    Message,
    Prefix,
)

# 9F02 amount authorised 10.00, 9F26 application cryptogram, 9F36 ATC: 25 bytes.
ICC_DATA = tlv.encode(
    [
        Tlv("9F02", bytes.fromhex("000000001000")),
        Tlv("9F26", bytes.fromhex("1122334455667788")),
        Tlv("9F36", bytes.fromhex("0001")),
    ]
)

AUTHORIZATION_FIELDS: dict[int, FieldValue] = {
    2: "6212345678901232",
    3: "000000",
    4: "000000001000",
    7: "1126040000",
    11: "000001",
    12: "120000",
    13: "1126",
    18: "5411",
    22: "071",
    25: "00",
    32: "12345678",
    37: "633104000001",
    41: "TERM0001",
    42: "MERCHANT0000001",
    49: "156",
    55: ICC_DATA,
}


def authorization(stan: str = "000001", terminal: str = "TERM0001") -> Message:
    """A contactless 0100: a UnionPay-style card, 10.00 CNY, chip data in field 55."""
    return Message("0100", AUTHORIZATION_FIELDS | {11: stan, 41: terminal})


def sign_on(stan: str = "000001") -> Message:
    return Message("0800", {7: "1126040000", 11: stan, 70: "001"})


_CHARSETS = {
    Kind.N: "0123456789",
    Kind.AN: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    Kind.ANS: "".join(chr(c) for c in range(0x20, 0x7F)),
    Kind.Z: "0123456789=D",
}


def field_values(definition: FieldDef) -> st.SearchStrategy[FieldValue]:
    """Values valid for one field."""
    low = definition.max_len if definition.prefix is Prefix.FIXED else definition.min_len
    high = definition.max_len
    if definition.kind is Kind.B:
        return st.binary(min_size=low, max_size=high)
    text = st.text(alphabet=_CHARSETS[definition.kind], min_size=low, max_size=high)
    if definition.codes is None:
        return text
    width = len(next(iter(definition.codes)))
    return st.tuples(st.sampled_from(sorted(definition.codes)), text).map(
        lambda pair: pair[0] + pair[1][width:]
    )


@st.composite
def valid_messages(draw: st.DrawFn) -> Message:
    """Any valid message of any MTI in the table."""
    message_type = draw(st.sampled_from(sorted(MESSAGE_TYPES.values(), key=lambda t: t.mti)))
    numbers = set(message_type.must) | draw(st.sets(st.sampled_from(sorted(message_type.may))))
    if message_type.mti in APPROVAL_CODE_MTIS:
        numbers.add(38)
    fields = {n: draw(field_values(FIELDS[n])) for n in sorted(numbers)}
    return Message(message_type.mti, fields)
