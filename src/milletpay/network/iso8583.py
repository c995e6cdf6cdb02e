"""ISO 8583 (1987 field set) as the Millet Pay card network speaks it: the fields, the
message types, the response codes, and typed messages encoded and decoded through
pyiso8583.

Encoding: the MTI and every numeric or text field in ASCII, the primary and secondary
bitmaps in binary (8 bytes each), variable lengths as ASCII digits (LL or LLL), the
binary fields (52 PIN block, 55 ICC data) as raw bytes. No header. This is pyiso8583's
`specs.default` layout, narrowed to the fields below. `FIELDS` and `MESSAGE_TYPES` are
the protocol; `SPEC`, `validate`, and docs/iso8583.md are read off them.

It owns the bytes and their shape only: what an authorization decides is the switch's.
It must never crash on garbage: `decode` turns any bytes into a `Message` or an
`Iso8583Error` naming the field (and offset) that was wrong, and never echoes a card
number, track 2, PIN block or ICC data in an error or a `repr`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

import iso8583

from milletpay.cards.pan import PAN_DIGITS_MAX, PAN_DIGITS_MIN, mask_pan
from milletpay.core.clock import NS_PER_S
from milletpay.core.errors import MilletError

__all__ = [
    "ACTUAL_AMOUNT_DIGITS",
    "APPROVAL_CODE_MTIS",
    "APPROVED",
    "ECHOED_FIELDS",
    "ECHO_TEST",
    "FIELDS",
    "MESSAGE_BYTES_MAX",
    "MESSAGE_TYPES",
    "NMI_CODES",
    "POS_ENTRY_MODES",
    "RESPONSE_CODES",
    "SIGN_OFF",
    "SIGN_ON",
    "SPEC",
    "FieldDef",
    "FieldValue",
    "Iso8583Error",
    "Kind",
    "Message",
    "MessageType",
    "Prefix",
    "StanSequence",
    "amount_to_post_fen",
    "decode",
    "encode",
    "is_request",
    "match_key",
    "original_data_elements",
    "request_mti",
    "response_mti",
    "response_to",
    "retrieval_reference",
    "transmission_date_time",
    "validate",
]

FieldValue = str | bytes

MTI_CHARS: Final = 4
BITMAP_BYTES: Final = 8  # primary and secondary alike, binary
SECONDARY_FIELD_MIN: Final = 65  # fields 65..128 need the secondary bitmap
STAN_MIN: Final = 1
STAN_MAX: Final = 999_999
STAN_DIGITS: Final = 6
RRN_CHARS: Final = 12


class Iso8583Error(MilletError):
    """A message that is not valid ISO 8583 as Millet Pay speaks it. `field` is the field
    number that was wrong (None for the message as a whole), `offset` where in the bytes
    (None for a message built in code)."""

    code = "iso8583_invalid"

    def __init__(
        self,
        what: str,
        *,
        field: int | None = None,
        offset: int | None = None,
        part: str | None = None,
    ) -> None:
        if field is not None:
            part = f"field {field} ({_field_name(field)})"
        if offset is not None:
            part = f"{part or 'message'} at offset {offset}"
        super().__init__(f"{part}: {what}" if part else what)
        self.field = field
        self.offset = offset


class Kind(enum.StrEnum):
    """ISO 8583 data element formats."""

    N = "n"  # digits
    AN = "an"  # letters and digits
    ANS = "ans"  # printable ASCII, space included
    Z = "z"  # track 2: digits and the separator "=" (or "D")
    B = "b"  # bytes


class Prefix(enum.IntEnum):
    """How many ASCII digits give a field's length (0: fixed length)."""

    FIXED = 0
    LLVAR = 2
    LLLVAR = 3


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One data element: `max_len` is characters, or bytes for `Kind.B`; a fixed field is
    exactly `max_len`, a variable one `min_len`..`max_len`. `codes`, when given, are the
    values its leading characters may take (all keys the same length). What Millet Pay
    puts in each field is docs/iso8583.md's."""

    number: int
    name: str
    kind: Kind
    prefix: Prefix
    max_len: int
    min_len: int = 1
    codes: Mapping[str, str] | None = None
    sensitive: bool = False  # never shown in a repr, a log or an error

    def __post_init__(self) -> None:
        assert 2 <= self.number <= 128, self.number
        assert 1 <= self.min_len <= self.max_len, self.number
        if self.prefix is not Prefix.FIXED:
            assert self.max_len < 10**self.prefix, self.number


# Field 22's first two digits (PAN entry mode); its third is the PIN entry capability.
POS_ENTRY_MODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "01": "manual key entry",
        "02": "magnetic stripe, track unreliable",
        "05": "chip (contact)",
        "07": "contactless chip (EMV)",
        "81": "e-commerce or in-app (card not present)",
        "90": "magnetic stripe, full track",
        "91": "contactless magnetic stripe",
    }
)

# Field 70, network management information codes.
NMI_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {"001": "sign-on", "002": "sign-off", "301": "echo test"}
)
SIGN_ON: Final = "001"
SIGN_OFF: Final = "002"
ECHO_TEST: Final = "301"

# Field 39: the answers the network carries. ISO 8583:1987's meanings.
RESPONSE_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "00": "approved or completed successfully",
        "05": "do not honour",
        "12": "invalid transaction",
        "13": "invalid amount",
        "14": "invalid card number (no such number)",
        "30": "format error",
        "51": "not sufficient funds",
        "54": "expired card",
        "55": "incorrect PIN",
        "57": "transaction not permitted to cardholder",
        "58": "transaction not permitted to terminal",
        "61": "exceeds withdrawal amount limit",
        "62": "restricted card",
        "68": "response received too late",
        "75": "allowable number of PIN tries exceeded",
        "91": "issuer or switch inoperative",
        "92": "financial institution or intermediate network cannot be found for routing",
        "94": "duplicate transmission",
        "96": "system malfunction",
    }
)
APPROVED: Final = "00"

_N, _AN, _ANS, _Z, _B = Kind.N, Kind.AN, Kind.ANS, Kind.Z, Kind.B
_FIXED, _LL, _LLL = Prefix.FIXED, Prefix.LLVAR, Prefix.LLLVAR

FIELDS: Final[Mapping[int, FieldDef]] = MappingProxyType(
    {
        f.number: f
        for f in (
            FieldDef(2, "primary account number", _N, _LL, 19, min_len=12, sensitive=True),
            FieldDef(3, "processing code", _N, _FIXED, 6),
            FieldDef(4, "amount, transaction", _N, _FIXED, 12),
            FieldDef(7, "transmission date and time", _N, _FIXED, 10),
            FieldDef(11, "system trace audit number", _N, _FIXED, 6),
            FieldDef(12, "time, local transaction", _N, _FIXED, 6),
            FieldDef(13, "date, local transaction", _N, _FIXED, 4),
            FieldDef(14, "date, expiration", _N, _FIXED, 4),
            FieldDef(18, "merchant type", _N, _FIXED, 4),
            FieldDef(22, "point of service entry mode", _N, _FIXED, 3, codes=POS_ENTRY_MODES),
            FieldDef(23, "card sequence number", _N, _FIXED, 3),
            FieldDef(25, "point of service condition code", _N, _FIXED, 2),
            FieldDef(32, "acquiring institution id", _N, _LL, 11),
            FieldDef(33, "forwarding institution id", _N, _LL, 11),
            FieldDef(35, "track 2 data", _Z, _LL, 37, sensitive=True),
            FieldDef(37, "retrieval reference number", _AN, _FIXED, 12),
            FieldDef(38, "authorization id response", _AN, _FIXED, 6),
            FieldDef(39, "response code", _AN, _FIXED, 2),
            FieldDef(41, "card acceptor terminal id", _ANS, _FIXED, 8),
            FieldDef(42, "card acceptor id code", _ANS, _FIXED, 15),
            FieldDef(43, "card acceptor name and location", _ANS, _FIXED, 40),
            FieldDef(49, "currency code, transaction", _N, _FIXED, 3),
            FieldDef(52, "PIN data", _B, _FIXED, 8, sensitive=True),
            FieldDef(55, "ICC data", _B, _LLL, 255, sensitive=True),
            FieldDef(60, "token requestor id", _N, _LLL, 11, min_len=11),
            FieldDef(61, "device id", _ANS, _LLL, 64),
            FieldDef(62, "token domain", _ANS, _LLL, 16),
            FieldDef(63, "token number", _N, _LLL, 19, min_len=12, sensitive=True),
            FieldDef(70, "network management information code", _N, _FIXED, 3, codes=NMI_CODES),
            FieldDef(90, "original data elements", _N, _FIXED, 42),
            FieldDef(95, "replacement amounts", _AN, _FIXED, 42),
            FieldDef(102, "account id 1", _ANS, _LL, 28),
            FieldDef(103, "account id 2", _ANS, _LL, 28),
        )
    }
)


def _spec_entry(data_enc: str, len_type: int, max_len: int, desc: str) -> Mapping[str, Any]:
    return MappingProxyType(
        {
            "data_enc": data_enc,
            "len_enc": "ascii",
            "len_type": len_type,
            "max_len": max_len,
            "desc": desc,
        }
    )


# The pyiso8583 spec, read off `FIELDS`.
SPEC: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "h": _spec_entry("ascii", 0, 0, "message header (none)"),
        "t": _spec_entry("ascii", 0, MTI_CHARS, "message type indicator"),
        "p": _spec_entry("b", 0, BITMAP_BYTES, "bitmap, primary"),
        "1": _spec_entry("b", 0, BITMAP_BYTES, "bitmap, secondary"),
        **{
            str(f.number): _spec_entry(
                "b" if f.kind is Kind.B else "ascii", f.prefix, f.max_len, f.name
            )
            for f in FIELDS.values()
        },
    }
)

# The longest message `SPEC` can describe: every field at its longest.
MESSAGE_BYTES_MAX: Final = (
    MTI_CHARS + 2 * BITMAP_BYTES + sum(int(f.prefix) + f.max_len for f in FIELDS.values())
)


@dataclass(frozen=True, slots=True)
class MessageType:
    """One MTI: the fields it must carry, the ones it may, and its response's MTI."""

    mti: str
    name: str
    must: frozenset[int]
    may: frozenset[int]
    response: str | None

    def __post_init__(self) -> None:
        assert not self.must & self.may, self.mti
        assert (self.must | self.may) <= FIELDS.keys(), self.mti


def _fields(*numbers: int | Iterable[int]) -> frozenset[int]:
    out: set[int] = set()
    for item in numbers:
        out.update((item,) if isinstance(item, int) else item)
    return frozenset(out)


_REQUEST_MUST = _fields(2, 3, 4, 7, 11, 12, 13, 18, 22, 25, 32, 37, 41, 42, 49)
_REQUEST_MAY = _fields(14, 23, 33, 35, 43, 52, 55, 60, 61, 62, 63, 102, 103)
_ADVICE_MUST = _REQUEST_MUST | {39}
_ADVICE_MAY = _REQUEST_MAY | {38, 90, 95}
_RESPONSE_MUST = _fields(3, 4, 7, 11, 37, 39, 41, 49)
_RESPONSE_MAY = _fields(2, 12, 13, 32, 33, 38, 42, 55, 102, 103)
_REVERSAL_MUST = _fields(2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 90)
_REVERSAL_MAY = _fields(14, 18, 22, 23, 25, 33, 38, 39, 43, 55, 60, 61, 62, 63, 95, 102, 103)
_REVERSAL_RESPONSE_MAY = _fields(2, 12, 13, 32, 33, 42, 90, 95, 102, 103)
_NETWORK_MUST = _fields(7, 11, 70)
_NETWORK_MAY = _fields(32, 33)

MESSAGE_TYPES: Final[Mapping[str, MessageType]] = MappingProxyType(
    {
        t.mti: t
        for t in (
            MessageType("0100", "authorization request", _REQUEST_MUST, _REQUEST_MAY, "0110"),
            MessageType("0110", "authorization response", _RESPONSE_MUST, _RESPONSE_MAY, None),
            MessageType("0120", "authorization advice", _ADVICE_MUST, _ADVICE_MAY, "0130"),
            MessageType(
                "0130", "authorization advice response", _RESPONSE_MUST, _RESPONSE_MAY, None
            ),
            MessageType("0200", "financial request", _REQUEST_MUST, _REQUEST_MAY, "0210"),
            MessageType("0210", "financial response", _RESPONSE_MUST, _RESPONSE_MAY, None),
            MessageType("0220", "financial advice", _ADVICE_MUST, _ADVICE_MAY, "0230"),
            MessageType("0230", "financial advice response", _RESPONSE_MUST, _RESPONSE_MAY, None),
            MessageType("0400", "reversal request", _REVERSAL_MUST, _REVERSAL_MAY, "0410"),
            MessageType("0410", "reversal response", _RESPONSE_MUST, _REVERSAL_RESPONSE_MAY, None),
            MessageType("0420", "reversal advice", _REVERSAL_MUST, _REVERSAL_MAY, "0430"),
            MessageType(
                "0430", "reversal advice response", _RESPONSE_MUST, _REVERSAL_RESPONSE_MAY, None
            ),
            MessageType("0800", "network management request", _NETWORK_MUST, _NETWORK_MAY, "0810"),
            MessageType(
                "0810", "network management response", _NETWORK_MUST | {39}, _NETWORK_MAY, None
            ),
        )
    }
)

# A response carries these of its request's fields back unchanged, where its MTI allows.
ECHOED_FIELDS: Final = _fields(2, 3, 4, 7, 11, 12, 13, 32, 33, 37, 41, 42, 49, 70, 90, 95, 102, 103)
# An approved answer to these carries the issuer's approval code (field 38).
APPROVAL_CODE_MTIS: Final = frozenset({"0110", "0210"})


@dataclass(frozen=True, slots=True, repr=False)
class Message:
    """One ISO 8583 message: `fields` maps field number → value, `bytes` for the binary
    fields (52, 55), `str` for the others. Immutable; its `repr` masks card data. Being a
    `Message` says only that every field is one `FIELDS` knows, holding the right type;
    `validate` says whether it is a valid message of its MTI."""

    mti: str
    fields: Mapping[int, FieldValue]

    def __post_init__(self) -> None:
        if not isinstance(self.mti, str):
            raise Iso8583Error("MTI must be text")
        for number, value in self.fields.items():
            definition = FIELDS.get(number) if isinstance(number, int) else None
            if definition is None:
                raise Iso8583Error(f"field {number!r} is not one Millet Pay carries")
            expected = bytes if definition.kind is Kind.B else str
            if not isinstance(value, expected):
                raise Iso8583Error(f"value must be {expected.__name__}", field=number)
        frozen = MappingProxyType(dict(sorted(self.fields.items())))
        object.__setattr__(self, "fields", frozen)

    def __hash__(self) -> int:
        return hash((self.mti, tuple(self.fields.items())))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}: {_shown(n, v)}" for n, v in self.fields.items())
        return f"Message({self.mti!r}, {{{shown}}})"

    def text(self, number: int) -> str:
        """The value of a text field; `KeyError` when absent."""
        value = self.fields[number]
        assert isinstance(value, str), f"field {number} is binary"
        return value

    def binary(self, number: int) -> bytes:
        """The value of a binary field; `KeyError` when absent."""
        value = self.fields[number]
        assert isinstance(value, bytes), f"field {number} is text"
        return value

    def with_fields(self, changes: Mapping[int, FieldValue | None]) -> Message:
        """A copy with `changes` applied: a value sets a field, None removes it."""
        merged = dict(self.fields)
        for number, value in changes.items():
            if value is None:
                merged.pop(number, None)
            else:
                merged[number] = value
        return Message(self.mti, merged)


def validate(message: Message) -> None:
    """The explicit validity pass: the MTI is one of `MESSAGE_TYPES`, it carries every
    field it must and none it may not, and every value is in its field's format."""
    message_type = MESSAGE_TYPES.get(message.mti)
    if message_type is None:
        raise Iso8583Error(f"MTI {message.mti!r} is not a message type Millet Pay carries")
    allowed = message_type.must | message_type.may
    for number in message.fields:
        if number not in allowed:
            raise Iso8583Error(f"not carried in a {message.mti}", field=number)
    for number in sorted(message_type.must):
        if number not in message.fields:
            raise Iso8583Error(f"missing from a {message.mti}", field=number)
    for number, value in message.fields.items():
        problem = _value_problem(FIELDS[number], value)
        if problem is not None:
            raise Iso8583Error(problem, field=number)
    if (
        message.mti in APPROVAL_CODE_MTIS
        and message.fields.get(39) == APPROVED
        and 38 not in message.fields
    ):
        raise Iso8583Error(f"missing from an approved {message.mti}", field=38)


def encode(message: Message) -> bytes:
    """The wire bytes of a valid message (see the module docstring for the layout)."""
    validate(message)
    try:
        raw, _ = iso8583.encode(_document(message), SPEC)
    except iso8583.EncodeError as exc:  # validate() admits nothing the encoder refuses
        raise AssertionError(f"field {exc.field}: {exc.msg}") from exc
    assert len(raw) <= MESSAGE_BYTES_MAX
    return bytes(raw)


def decode(data: bytes) -> Message:
    """The valid message in `data`; `Iso8583Error` for anything else. Only the canonical
    encoding is accepted (length prefixes as `encode` writes them, no secondary bitmap
    without a field that needs it), so `encode(decode(data)) == data`."""
    if len(data) > MESSAGE_BYTES_MAX:
        raise Iso8583Error(f"{len(data)} bytes, over {MESSAGE_BYTES_MAX}", offset=0)
    try:
        decoded, encoded = iso8583.decode(bytes(data), SPEC)
    except iso8583.DecodeError as exc:
        number = _field_number(exc.field)
        part = _PART_NAMES.get(exc.field) if number is None else None
        raise Iso8583Error(exc.msg, field=number, offset=exc.pos, part=part) from None
    except KeyError as exc:  # the bitmap names a field SPEC does not have
        raise Iso8583Error(f"field {exc.args[0]} is not one Millet Pay carries") from None
    fields: dict[int, FieldValue] = {}
    for key, value in decoded.items():
        number = _field_number(key)
        if number is None:
            continue
        fields[number] = bytes.fromhex(value) if FIELDS[number].kind is Kind.B else value
    message = Message(decoded["t"], fields)
    validate(message)
    _check_canonical(message, encoded)
    return message


def response_mti(mti: str) -> str:
    """The MTI that answers the request MTI `mti` (0100 → 0110)."""
    message_type = MESSAGE_TYPES.get(mti)
    if message_type is None or message_type.response is None:
        raise Iso8583Error(f"MTI {mti!r} is not a request Millet Pay answers")
    return message_type.response


def request_mti(mti: str) -> str:
    """The request MTI a response answers (0110 → 0100)."""
    for message_type in MESSAGE_TYPES.values():
        if message_type.response == mti:
            return message_type.mti
    raise Iso8583Error(f"MTI {mti!r} is not a response Millet Pay carries")


def is_request(mti: str) -> bool:
    message_type = MESSAGE_TYPES.get(mti)
    return message_type is not None and message_type.response is not None


def response_to(
    request: Message, code: str, extra: Mapping[int, FieldValue] | None = None
) -> Message:
    """The response to `request` with response code `code`: its MTI + 10, the request's
    `ECHOED_FIELDS` the response may carry, field 39, then `extra` (e.g. 38, 55)."""
    if code not in RESPONSE_CODES:
        raise Iso8583Error(f"{code!r} is not a response code the network carries", field=39)
    mti = response_mti(request.mti)
    response_type = MESSAGE_TYPES[mti]
    allowed = response_type.must | response_type.may
    echoed = {n: v for n, v in request.fields.items() if n in ECHOED_FIELDS and n in allowed}
    return Message(mti, echoed | {39: code} | dict(extra or {}))


def match_key(message: Message) -> tuple[str, str, str]:
    """What pairs a response with its request: the request's MTI, the STAN (11) and the
    terminal id (41), or the transmission date and time (7) where there is no terminal."""
    pair = message.mti if is_request(message.mti) else request_mti(message.mti)
    stan = message.fields.get(11)
    if not isinstance(stan, str):
        raise Iso8583Error("needed to match a response to its request", field=11)
    other = message.fields.get(41, message.fields.get(7))
    if not isinstance(other, str):
        raise Iso8583Error("needed to match a response to its request (or field 7)", field=41)
    return (pair, stan, other)


def original_data_elements(original: Message) -> str:
    """Field 90 for a reversal or advice of `original`: its MTI, STAN (11), transmission
    date and time (7), acquiring (32) and forwarding (33) institution ids, the ids right
    justified in 11 zero-padded digits."""
    acquirer = original.fields.get(32, "")
    forwarder = original.fields.get(33, "")
    assert isinstance(acquirer, str) and isinstance(forwarder, str)
    return (
        original.mti
        + original.text(11)
        + original.text(7)
        + acquirer.zfill(11)
        + forwarder.zfill(11)
    )


#: Field 95 (replacement amounts): the actual transaction amount is its first 12 digits.
ACTUAL_AMOUNT_DIGITS: Final = 12


def amount_to_post_fen(message: Message) -> int:
    """What a completion advice (0220) posts: the actual amount of field 95 (replacement
    amounts, its first 12 digits) when the message has one, else field 4. An acquirer
    may keep field 4 the authorized amount and give the final amount only in field 95,
    so field 4 alone may be more than was taken. An actual amount that is not 12 digits
    is an `Iso8583Error` naming field 95; whether the amount may be posted (more than
    zero, at most what was authorized) is the caller's to judge."""
    if 95 not in message.fields:
        return int(message.text(4))
    actual = message.text(95)[:ACTUAL_AMOUNT_DIGITS]
    if len(actual) != ACTUAL_AMOUNT_DIGITS or not (actual.isascii() and actual.isdigit()):
        raise Iso8583Error("the actual amount is not 12 digits", field=95)
    return int(actual)


class StanSequence:
    """System trace audit numbers for one sender: 000001..999999, then 000001 again."""

    def __init__(self, last: int = 0) -> None:
        assert 0 <= last <= STAN_MAX
        self._last = last

    @property
    def last(self) -> int:
        """The last number given (0: none yet): what a sender keeps across restarts."""
        return self._last

    def next(self) -> str:
        self._last = self._last + 1 if self._last < STAN_MAX else STAN_MIN
        return f"{self._last:0{STAN_DIGITS}d}"


def transmission_date_time(now_ns: int) -> str:
    """Field 7: MMDDhhmmss in UTC."""
    return _utc(now_ns).strftime("%m%d%H%M%S")


def retrieval_reference(now_ns: int, stan: str) -> str:
    """Field 37: the last digit of the year, the day of the year (3), the hour (2), all
    UTC, then the STAN (6). Unique for a sender as long as its STANs do not wrap within
    an hour."""
    assert len(stan) == STAN_DIGITS and stan.isdigit(), "a STAN from StanSequence"
    when = _utc(now_ns)
    rrn = f"{when.year % 10}{when.timetuple().tm_yday:03d}{when.hour:02d}{stan}"
    assert len(rrn) == RRN_CHARS
    return rrn


def _utc(now_ns: int) -> datetime:
    return datetime.fromtimestamp(now_ns // NS_PER_S, tz=UTC)


def _value_problem(definition: FieldDef, value: FieldValue) -> str | None:
    size = len(value)
    unit = "bytes" if definition.kind is Kind.B else "characters"
    if definition.prefix is Prefix.FIXED and size != definition.max_len:
        return f"{size} {unit}, expected {definition.max_len}"
    if not definition.min_len <= size <= definition.max_len:
        return f"{size} {unit}, expected {definition.min_len}..{definition.max_len}"
    if isinstance(value, str) and not _CHARSETS[definition.kind].issuperset(value):
        allowed = _CHARSETS[definition.kind]
        offset = next(n for n, char in enumerate(value) if char not in allowed)
        return f"character {offset + 1} is not allowed in an {definition.kind} field"
    if definition.codes is not None:
        width = len(next(iter(definition.codes)))
        if not isinstance(value, str) or value[:width] not in definition.codes:
            return f"{'value' if width == size else f'first {width} digits'} not a known code"
    return None


_DIGITS = frozenset("0123456789")
_ALNUM = _DIGITS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_CHARSETS: Final[Mapping[Kind, frozenset[str]]] = MappingProxyType(
    {
        Kind.N: _DIGITS,
        Kind.AN: _ALNUM,
        Kind.ANS: frozenset(chr(c) for c in range(0x20, 0x7F)),
        Kind.Z: _DIGITS | frozenset("=D"),
        Kind.B: frozenset(),
    }
)


def _check_canonical(message: Message, encoded: Mapping[str, Mapping[str, bytes]]) -> None:
    """Refuses what pyiso8583 reads leniently: "+5" or " 5" as a length, a secondary
    bitmap with no field after 64. What `encode` would write is known without writing
    it: a length prefix is the data's length in bytes, zero-padded to its digits (every
    prefix of `SPEC` is ASCII), and the secondary bitmap is there exactly when a field
    after 64 is."""
    if ("1" in encoded) != any(number > PRIMARY_FIELDS_MAX for number in message.fields):
        raise Iso8583Error("not in canonical form", part=_PART_NAMES["p"])  # its bit 1
    for number in message.fields:
        digits = FIELDS[number].prefix
        if digits:
            part = encoded[str(number)]
            if part["len"] != b"%0*d" % (digits, len(part["data"])):
                raise Iso8583Error("length is not in canonical form", field=number)


#: Fields 2 to 64 are in the primary bitmap; a field after it needs the secondary one.
PRIMARY_FIELDS_MAX: Final = 64

# pyiso8583's names for the parts of a message that are not numbered fields.
_PART_NAMES: Final = {"t": "MTI", "p": "primary bitmap", "1": "secondary bitmap"}


def _document(message: Message) -> dict[str, str]:
    return {"t": message.mti} | {
        str(number): value.hex().upper() if isinstance(value, bytes) else value
        for number, value in message.fields.items()
    }


def _field_number(key: str) -> int | None:
    return int(key) if key.isdigit() and int(key) in FIELDS else None


def _field_name(number: int) -> str:
    definition = FIELDS.get(number)
    return definition.name if definition is not None else "unknown"


def _shown(number: int, value: FieldValue) -> str:
    if not FIELDS[number].sensitive:
        return repr(value)
    if (
        FIELDS[number].kind is Kind.N
        and isinstance(value, str)
        and value.isdigit()
        and PAN_DIGITS_MIN <= len(value) <= PAN_DIGITS_MAX
    ):
        return repr(mask_pan(value))
    return f"<{len(value)} {'bytes' if isinstance(value, bytes) else 'characters'}>"
