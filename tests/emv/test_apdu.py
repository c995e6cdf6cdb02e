"""ISO/IEC 7816-4 short APDUs: the four command cases, the refusals and their status
words, the response layout, and the builders for what a contactless terminal sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from milletpay.emv import apdu
from milletpay.emv.apdu import (
    MEANINGS,
    ApduError,
    CommandApdu,
    ResponseApdu,
    StatusWord,
    parse_command,
    parse_response,
)

#: SELECT PPSE as openemv/emv-utils writes it (tests/emv_ep_select_application_test.c).
SELECT_PPSE_EMV_UTILS = bytes.fromhex("00A404000E325041592E5359532E444446303100")


def test_select_ppse_is_the_public_vector() -> None:
    assert apdu.select_ppse() == SELECT_PPSE_EMV_UTILS
    parsed = parse_command(SELECT_PPSE_EMV_UTILS)
    assert parsed == CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", 256)


def test_select_by_name_of_a_unionpay_aid() -> None:
    command = apdu.select_by_name(bytes.fromhex("A000000333010101"))
    assert command == bytes.fromhex("00A4040008A00000033301010100")


def test_get_processing_options_wraps_the_pdol_data_in_tag_83() -> None:
    command = apdu.get_processing_options(bytes.fromhex("A6000000"))
    assert command == bytes.fromhex("80A80000068304A600000000")
    assert parse_command(command).data == bytes.fromhex("8304A6000000")


def test_read_record_puts_the_sfi_in_p2() -> None:
    # EMV Book 3 §6.5.11: P2 = SFI << 3 | 100b; SFI 1 record 1 is the classic 00 B2 01 0C 00.
    assert apdu.read_record(1, 1) == bytes.fromhex("00B2010C00")
    assert apdu.read_record(2, 3) == bytes.fromhex("00B2031400")


@pytest.mark.parametrize(
    ("hex_command", "expected"),
    [
        ("00A40400", CommandApdu(0, 0xA4, 4, 0)),  # case 1
        ("00B2010C00", CommandApdu(0, 0xB2, 1, 0x0C, le=256)),  # case 2, Le 00 is 256
        ("00B2010C10", CommandApdu(0, 0xB2, 1, 0x0C, le=16)),
        ("00A4040002AABB", CommandApdu(0, 0xA4, 4, 0, b"\xaa\xbb")),  # case 3
        ("00A4040002AABB00", CommandApdu(0, 0xA4, 4, 0, b"\xaa\xbb", 256)),  # case 4
    ],
)
def test_the_four_cases_parse(hex_command: str, expected: CommandApdu) -> None:
    assert parse_command(bytes.fromhex(hex_command)) == expected
    assert expected.to_bytes() == bytes.fromhex(hex_command)


@pytest.mark.parametrize(
    ("hex_command", "status"),
    [
        ("", StatusWord.WRONG_LENGTH),
        ("00A404", StatusWord.WRONG_LENGTH),  # shorter than a header
        ("00A4040005AABB", StatusWord.WRONG_LENGTH),  # Lc 5, two data bytes
        ("00A4040001AABBCC00", StatusWord.WRONG_LENGTH),  # Lc 1, three bytes follow
        ("00A4040000AABB", StatusWord.WRONG_LENGTH),  # Lc 00: an extended length
        ("FFA40400", StatusWord.CLA_NOT_SUPPORTED),  # CLA FF is for PPS
        ("00600000", StatusWord.INS_NOT_SUPPORTED),  # 6X is a procedure byte
        ("00900000", StatusWord.INS_NOT_SUPPORTED),  # 9X too
    ],
)
def test_malformed_commands_name_their_status_word(hex_command: str, status: StatusWord) -> None:
    with pytest.raises(ApduError) as raised:
        parse_command(bytes.fromhex(hex_command))
    assert raised.value.status is status


def test_a_command_over_the_short_form_is_refused() -> None:
    with pytest.raises(ApduError) as raised:
        parse_command(bytes(4) + b"\xff" + bytes(255) + b"\x00\x00")
    assert raised.value.status is StatusWord.WRONG_LENGTH


@given(st.integers(0, 0xFF), st.integers(0, 0xFF), st.binary(max_size=255), st.integers(1, 256))
def test_built_commands_parse_back(cla: int, ins: int, data: bytes, le: int) -> None:
    if cla == 0xFF or ins & 0xF0 in (0x60, 0x90):
        return
    for command in (CommandApdu(cla, ins, 1, 2, data), CommandApdu(cla, ins, 1, 2, data, le)):
        assert parse_command(command.to_bytes()) == command


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_name_a_known_status_word(raw: bytes) -> None:
    try:
        parse_command(raw)
    except ApduError as exc:
        assert exc.status in MEANINGS


def test_responses_carry_data_then_the_status_word() -> None:
    assert apdu.respond(StatusWord.OK, b"\x6f\x00") == bytes.fromhex("6F009000")
    assert apdu.respond(StatusWord.COMMAND_NOT_ALLOWED) == bytes.fromhex("6986")
    response = parse_response(bytes.fromhex("6F009000"))
    assert response == ResponseApdu(b"\x6f\x00", 0x9000) and response.ok
    assert response.status is StatusWord.OK
    assert parse_response(bytes.fromhex("6283")).status is StatusWord.SELECTED_FILE_INVALIDATED
    assert parse_response(bytes.fromhex("6C10")).status is None  # not in the table
    with pytest.raises(ApduError):
        parse_response(b"\x90")


def test_every_status_word_has_a_meaning() -> None:
    assert set(MEANINGS) == set(StatusWord)
    assert apdu.meaning(0x6985).startswith("conditions of use not satisfied")
    assert apdu.meaning(0x6A82) == "file or application not found"
    assert apdu.meaning(0x1234) == "unknown status word 1234"
    assert StatusWord.CONDITIONS_NOT_SATISFIED.as_bytes() == b"\x69\x85"
