"""ISO/IEC 7816-4 APDUs, short form: command parsing and building, response APDUs, and the
status words as a table with their meanings.

It owns the byte layout of commands and responses only: which commands an application
answers, and how, is the application's (`applet.py`, `milletpay.acquiring.kernel`). It must
never crash on garbage: a malformed command raises `ApduError`, whose `status` is the
status word an application answers it with (6700, 6E00 or 6D00).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Final

from milletpay.core.errors import MilletError
from milletpay.emv import tlv
from milletpay.emv.tlv import Tlv

HEADER_BYTES: Final = 4  # CLA INS P1 P2
SW_BYTES: Final = 2
LC_MAX: Final = 255  # short form: Lc is one byte, 01..FF (00 starts an extended length)
LE_MAX: Final = 256  # short form: Le 00 means 256
COMMAND_BYTES_MAX: Final = HEADER_BYTES + 1 + LC_MAX + 1
RESPONSE_DATA_BYTES_MAX: Final = LE_MAX

CLA_INTERINDUSTRY: Final = 0x00
CLA_PROPRIETARY: Final = 0x80  # EMV's proprietary class (GET PROCESSING OPTIONS)
CLA_INVALID: Final = 0xFF  # ISO/IEC 7816-3 reserves FF for PPS

INS_SELECT: Final = 0xA4
INS_READ_RECORD: Final = 0xB2
INS_GET_PROCESSING_OPTIONS: Final = 0xA8

SELECT_BY_NAME: Final = 0x04  # P1
SELECT_FIRST_OCCURRENCE: Final = 0x00  # P2: first or only occurrence, FCI returned
READ_RECORD_P2_BY_NUMBER: Final = 0x04  # P2 low three bits: P1 is a record number
SFI_MIN: Final = 1
SFI_MAX: Final = 30
RECORD_MIN: Final = 1
RECORD_MAX: Final = 0xFE
TAG_COMMAND_TEMPLATE: Final = "83"  # GPO: the PDOL data travels in tag 83

#: "2PAY.SYS.DDF01", the proximity payment system environment (EMV Book B).
PPSE_NAME: Final = b"2PAY.SYS.DDF01"
AID_BYTES_MIN: Final = 5
AID_BYTES_MAX: Final = 16


class StatusWord(IntEnum):
    """SW1 SW2 (ISO/IEC 7816-4 §5.1.3; EMV Book 1 §11 and Book 3 §6.3.5)."""

    OK = 0x9000
    SELECTED_FILE_INVALIDATED = 0x6283
    WRONG_LENGTH = 0x6700
    REFERENCED_DATA_INVALIDATED = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    INCORRECT_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    INCORRECT_P1_P2 = 0x6A86
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00

    def as_bytes(self) -> bytes:
        return int(self).to_bytes(SW_BYTES, "big")


#: What each status word means, and what Millet Pay's applet answers it for.
MEANINGS: Mapping[StatusWord, str] = MappingProxyType(
    {
        StatusWord.OK: "normal processing",
        StatusWord.SELECTED_FILE_INVALIDATED: "selected file invalidated (application blocked)",
        StatusWord.WRONG_LENGTH: "wrong length (Lc, or the command data's length)",
        StatusWord.REFERENCED_DATA_INVALIDATED: "referenced data invalidated",
        StatusWord.CONDITIONS_NOT_SATISFIED: (
            "conditions of use not satisfied (command out of order; no usable key)"
        ),
        StatusWord.COMMAND_NOT_ALLOWED: (
            "command not allowed: for a payment, the cardholder must verify on the phone"
        ),
        StatusWord.INCORRECT_DATA: "incorrect parameters in the command data",
        StatusWord.FUNCTION_NOT_SUPPORTED: "function not supported",
        StatusWord.FILE_NOT_FOUND: "file or application not found",
        StatusWord.RECORD_NOT_FOUND: "record not found",
        StatusWord.INCORRECT_P1_P2: "incorrect parameters P1 P2",
        StatusWord.INS_NOT_SUPPORTED: "instruction code not supported or invalid",
        StatusWord.CLA_NOT_SUPPORTED: "class not supported",
        StatusWord.NO_PRECISE_DIAGNOSIS: "no precise diagnosis",
    }
)
assert set(MEANINGS) == set(StatusWord), "a status word has no meaning"


def meaning(sw: int) -> str:
    """What status word `sw` means; unknown words are named as such."""
    try:
        return MEANINGS[StatusWord(sw)]
    except ValueError:
        return f"unknown status word {sw:04X}"


class ApduError(MilletError):
    """A malformed APDU; `status` is the status word that answers it, `offset` the byte
    where the problem was found."""

    code = "apdu_invalid"

    def __init__(self, status: StatusWord, offset: int, what: str) -> None:
        super().__init__(f"at offset {offset}: {what}")
        self.status = status
        self.offset = offset


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """A short command APDU. `le` is None when the command carries no Le (cases 1 and
    3), else 1..256 (an Le byte of 00 means 256)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        assert all(0 <= b <= 0xFF for b in (self.cla, self.ins, self.p1, self.p2))
        assert len(self.data) <= LC_MAX
        assert self.le is None or 1 <= self.le <= LE_MAX

    def to_bytes(self) -> bytes:
        out = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            out += bytes((len(self.data),)) + self.data
        if self.le is not None:
            out += bytes((self.le % LE_MAX,))
        return out


def parse_command(raw: bytes) -> CommandApdu:
    """The command in `raw` (ISO/IEC 7816-3 §12.1.2 cases 1 to 4, short form only);
    `ApduError` naming the status word otherwise."""
    if not HEADER_BYTES <= len(raw) <= COMMAND_BYTES_MAX:
        raise ApduError(
            StatusWord.WRONG_LENGTH,
            0,
            f"{len(raw)} bytes; a short APDU has 4 to {COMMAND_BYTES_MAX}",
        )
    cla, ins, p1, p2 = raw[:HEADER_BYTES]
    if cla == CLA_INVALID:
        raise ApduError(StatusWord.CLA_NOT_SUPPORTED, 0, "CLA FF is reserved for PPS")
    if ins & 0xF0 in (0x60, 0x90):
        # 6X and 9X would be read as procedure bytes or status words (ISO/IEC 7816-3).
        raise ApduError(StatusWord.INS_NOT_SUPPORTED, 1, f"INS {ins:02X} is invalid")
    body = raw[HEADER_BYTES:]
    if not body:
        return CommandApdu(cla, ins, p1, p2)  # case 1
    if len(body) == 1:
        return CommandApdu(cla, ins, p1, p2, le=body[0] or LE_MAX)  # case 2
    lc = body[0]
    if lc == 0:
        raise ApduError(StatusWord.WRONG_LENGTH, HEADER_BYTES, "extended lengths are not supported")
    if len(body) == 1 + lc:
        return CommandApdu(cla, ins, p1, p2, body[1:])  # case 3
    if len(body) == 2 + lc:
        return CommandApdu(cla, ins, p1, p2, body[1:-1], body[-1] or LE_MAX)  # case 4
    raise ApduError(
        StatusWord.WRONG_LENGTH, HEADER_BYTES, f"Lc {lc} does not match {len(body) - 1} data bytes"
    )


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    data: bytes
    sw: int  # SW1 SW2; `status` names it when it is one of the table's

    @property
    def ok(self) -> bool:
        return self.sw == StatusWord.OK

    @property
    def status(self) -> StatusWord | None:
        try:
            return StatusWord(self.sw)
        except ValueError:
            return None

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(SW_BYTES, "big")


def respond(status: StatusWord, data: bytes = b"") -> bytes:
    """A response APDU's bytes: `data`, then the status word."""
    assert len(data) <= RESPONSE_DATA_BYTES_MAX, "response data over 256 bytes"
    return data + status.as_bytes()


def parse_response(raw: bytes) -> ResponseApdu:
    """The data and status word of a response; `ApduError` if it is shorter than a
    status word or longer than a short response."""
    if not SW_BYTES <= len(raw) <= RESPONSE_DATA_BYTES_MAX + SW_BYTES:
        raise ApduError(
            StatusWord.WRONG_LENGTH,
            0,
            f"response of {len(raw)} bytes; 2 to {RESPONSE_DATA_BYTES_MAX + SW_BYTES} expected",
        )
    return ResponseApdu(raw[:-SW_BYTES], int.from_bytes(raw[-SW_BYTES:], "big"))


# --- The commands a contactless terminal sends ------------------------------------------


def select_by_name(name: bytes) -> bytes:
    """SELECT by DF name, first occurrence, Le 00 (EMV Book 1 §11.3)."""
    assert 1 <= len(name) <= AID_BYTES_MAX, "a DF name is 1 to 16 bytes"
    return CommandApdu(
        CLA_INTERINDUSTRY, INS_SELECT, SELECT_BY_NAME, SELECT_FIRST_OCCURRENCE, name, LE_MAX
    ).to_bytes()


def select_ppse() -> bytes:
    """SELECT "2PAY.SYS.DDF01": 00 A4 04 00 0E 32 50 41 59 2E 53 59 53 2E 44 44 46 30 31 00."""
    return select_by_name(PPSE_NAME)


def get_processing_options(pdol_data: bytes) -> bytes:
    """GET PROCESSING OPTIONS (EMV Book 3 §6.5.8): 80 A8 00 00 Lc 83 L data 00."""
    template = tlv.encode(Tlv(TAG_COMMAND_TEMPLATE, pdol_data))
    assert len(template) <= LC_MAX, "PDOL data too long for a short APDU"
    return CommandApdu(
        CLA_PROPRIETARY, INS_GET_PROCESSING_OPTIONS, 0x00, 0x00, template, LE_MAX
    ).to_bytes()


def read_record(sfi: int, record: int) -> bytes:
    """READ RECORD (EMV Book 3 §6.5.11): 00 B2 record (SFI << 3 | 4) 00."""
    assert SFI_MIN <= sfi <= SFI_MAX and RECORD_MIN <= record <= RECORD_MAX
    p2 = sfi << 3 | READ_RECORD_P2_BY_NUMBER
    return CommandApdu(CLA_INTERINDUSTRY, INS_READ_RECORD, record, p2, le=LE_MAX).to_bytes()
