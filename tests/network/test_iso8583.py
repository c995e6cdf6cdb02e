"""ISO 8583 messages: the library's documented vectors, our SPEC byte for byte, the
validation pass, responses, and decoding that never crashes on garbage."""

from __future__ import annotations

import copy

import iso8583
import iso8583.specs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milletpay.banks.responses import ResponseCode
from milletpay.core.clock import NS_PER_S
from milletpay.network import iso8583 as spec
from milletpay.network.iso8583 import Iso8583Error, Message

from .messages import ICC_DATA, authorization, sign_on, valid_messages

# --- pyiso8583's own documented examples -------------------------------------------------


def test_library_readme_decode_and_answer() -> None:
    # knovichikhin/pyiso8583 README.rst, "Encoding & Decoding": decode a 0200, answer 0210/05.
    decoded, _ = iso8583.decode(b"02004000000000000000101234567890", iso8583.specs.default_ascii)
    assert decoded["t"] == "0200"
    assert decoded["2"] == "1234567890"
    answer = {"t": "0210", "39": "05"}
    raw, _ = iso8583.encode(answer, iso8583.specs.default_ascii)
    assert raw == b"0210000000000200000005"


def test_library_howto_primary_and_secondary_bitmaps() -> None:
    # knovichikhin/pyiso8583 docs/howto.rst, "Create ISO8583 Message" and "Add Secondary
    # Bitmap".
    ascii_spec = iso8583.specs.default_ascii
    document = {"t": "0200", "2": "cardholder PAN", "3": "111111", "21": "021"}
    raw, _ = iso8583.encode(document, ascii_spec)
    assert raw == b"0200600008000000000014cardholder PAN111111021"
    raw, _ = iso8583.encode({"t": "0200", "102": "111111"}, ascii_spec)
    assert raw == b"02008000000000000000000000000400000006111111"


def test_library_howto_icc_data_is_binary_lllvar_with_ascii_length() -> None:
    # knovichikhin/pyiso8583 docs/howto.rst, "Sending Binary Data": field 55 as binary
    # LLLVAR with an ASCII length, the layout our SPEC gives field 55.
    ascii_spec = copy.deepcopy(iso8583.specs.default_ascii)
    ascii_spec["55"] = dict(ascii_spec["55"], data_enc="b", len_enc="ascii", len_type=3)
    ascii_spec["55"]["max_len"] = 999
    raw, _ = iso8583.encode({"t": "0200", "55": "9F02060000000123455F340102"}, ascii_spec)
    assert raw == b"02000000000000000200013\x9f\x02\x06\x00\x00\x00\x01#E_4\x01\x02"
    assert SPEC_55_LAYOUT == {"data_enc": "b", "len_enc": "ascii", "len_type": 3}


SPEC_55_LAYOUT = {key: spec.SPEC["55"][key] for key in ("data_enc", "len_enc", "len_type")}


def test_library_decoder_docstring_example() -> None:
    # pyiso8583 iso8583/decoder.py, `decode` docstring example (fields 2, 12, 20).
    raw = b"02004010100000000000161234567890123456123456111"
    decoded, _ = iso8583.decode(raw, iso8583.specs.default_ascii)
    assert (decoded["2"], decoded["12"], decoded["20"]) == ("1234567890123456", "123456", "111")


def test_empty_input_is_the_library_error_named_by_field_and_offset() -> None:
    # knovichikhin/pyiso8583 tests/test_decode.py, test_DecodeError_exception: b"" fails
    # on the MTI with "Field data is 0 bytes, expecting 4" at pos 0.
    with pytest.raises(Iso8583Error) as caught:
        spec.decode(b"")
    assert caught.value.offset == 0
    assert caught.value.code == "iso8583_invalid"
    assert "Field data is 0 bytes, expecting 4" in caught.value.message


@settings(max_examples=200, deadline=None)
@given(valid_messages())
def test_our_spec_is_the_library_default_layout(message: Message) -> None:
    # SPEC is pyiso8583's `specs.default` narrowed to our fields: same bytes for any message.
    document = {"t": message.mti} | {
        str(n): v.hex().upper() if isinstance(v, bytes) else v for n, v in message.fields.items()
    }
    raw, _ = iso8583.encode(document, iso8583.specs.default)
    assert spec.encode(message) == bytes(raw)


# --- our SPEC, byte for byte ---------------------------------------------------------------


def test_authorization_request_bytes() -> None:
    # Written by hand. Bitmap 72 38 44 81 08 C0 82 00: fields 2 3 4 7 | 11 12 13 |
    # 18 22 | 25 32 | 37 | 41 42 | 49 55.
    expected = (
        b"0100"
        + bytes.fromhex("72384481 08C08200")
        + b"16" + b"6212345678901232"  # 2, LLVAR
        + b"000000"  # 3
        + b"000000001000"  # 4
        + b"1126040000"  # 7
        + b"000001"  # 11
        + b"120000"  # 12
        + b"1126"  # 13
        + b"5411"  # 18
        + b"071"  # 22: contactless chip, terminal takes a PIN
        + b"00"  # 25
        + b"08" + b"12345678"  # 32, LLVAR
        + b"633104000001"  # 37
        + b"TERM0001"  # 41
        + b"MERCHANT0000001"  # 42
        + b"156"  # 49
        + b"025"  # 55, LLLVAR: 25 bytes of BER-TLV
        + bytes.fromhex("9F0206000000001000" "9F26081122334455667788" "9F36020001")
    )  # fmt: skip
    assert ICC_DATA.hex().upper() == "9F02060000000010009F260811223344556677889F36020001"
    assert spec.encode(authorization()) == expected
    assert spec.decode(expected) == authorization()


def test_sign_on_bytes_use_the_secondary_bitmap_for_field_70() -> None:
    # Written by hand: primary 82 20 00 00 00 00 00 00 (1 secondary, 7, 11); secondary
    # 04 00 .. (70 is bit 6 of the secondary's first byte).
    expected = b"0800" + bytes.fromhex("8220000000000000 0400000000000000") + b"1126040000000001001"
    assert spec.encode(sign_on()) == expected
    assert spec.decode(expected) == sign_on()


@settings(max_examples=300, deadline=None)
@given(valid_messages())
def test_every_valid_message_round_trips(message: Message) -> None:
    data = spec.encode(message)
    assert len(data) <= spec.MESSAGE_BYTES_MAX
    assert spec.decode(data) == message
    assert spec.encode(spec.decode(data)) == data


# --- decoding never crashes ----------------------------------------------------------------


def _decode_or_error(data: bytes) -> None:
    try:
        message = spec.decode(data)
    except Iso8583Error:
        return
    assert spec.encode(message) == data  # whatever decodes is canonical


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_iso8583_error(data: bytes) -> None:
    _decode_or_error(data)


@settings(max_examples=1000, deadline=None)
@given(valid_messages(), st.data())
def test_mutated_messages_decode_or_raise_iso8583_error(
    message: Message, data: st.DataObject
) -> None:
    raw = bytearray(spec.encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert", "cut"]))
        if action == "flip":
            raw[position] = data.draw(st.integers(0, 255))
        elif action == "drop":
            del raw[position]
        elif action == "insert":
            raw.insert(position, data.draw(st.integers(0, 255)))
        else:
            del raw[position:]
        if not raw:
            break
    _decode_or_error(bytes(raw))


@pytest.mark.parametrize(
    ("data", "field", "what"),
    [
        (b"0100" + bytes(8), 2, "missing from a 0100"),
        (b"9999" + bytes(8), None, "not a message type"),
        # bit 5 (amount, settlement) is not a field Millet Pay carries
        (b"0800" + bytes.fromhex("0800000000000000") + b"1", None, "field 5 is not one"),
        # field 2 says "+9" characters and none follow
        (b"0800" + bytes.fromhex("4220000000000000") + b"+9", 2, None),
    ],
)  # fmt: skip
def test_refusals_name_the_field(data: bytes, field: int | None, what: str | None) -> None:
    with pytest.raises(Iso8583Error) as caught:
        spec.decode(data)
    assert caught.value.field == field
    if what is not None:
        assert what in caught.value.message


def test_a_length_prefix_with_a_sign_is_not_canonical() -> None:
    raw = spec.encode(authorization())
    lenient = raw.replace(b"0812345678", b"+812345678")  # field 32's LL prefix
    assert lenient != raw
    with pytest.raises(Iso8583Error, match=r"field 32 .*canonical"):
        spec.decode(lenient)


def test_a_secondary_bitmap_without_a_field_after_64_is_not_canonical() -> None:
    raw = spec.encode(authorization())
    padded = raw[:4] + bytes([raw[4] | 0x80]) + raw[5:12] + bytes(8) + raw[12:]
    with pytest.raises(Iso8583Error, match="primary bitmap: not in canonical form"):
        spec.decode(padded)


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(Iso8583Error, match="over"):
        spec.decode(b"0" * (spec.MESSAGE_BYTES_MAX + 1))


# --- the validation pass -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "what"),
    [
        ({4: "00000000100A"}, 4, "field 4 (amount, transaction): character 12 is not allowed"),
        ({4: "1000"}, 4, "field 4 (amount, transaction): 4 characters, expected 12"),
        ({2: "62123456789"}, 2, "11 characters, expected 12..19"),
        ({22: "991"}, 22, "first 2 digits not a known code"),
        ({41: "TERM\x00001"}, 41, "character 5 is not allowed"),
        ({11: None}, 11, "missing from a 0100"),
        ({70: "001"}, 70, "not carried in a 0100"),
        ({55: bytes(256)}, 55, "256 bytes, expected 1..255"),
        ({60: "1234567890"}, 60, "10 characters, expected 11..11"),
    ],
)
def test_validation_names_the_field(
    changes: dict[int, str | bytes | None], field: int, what: str
) -> None:
    message = authorization().with_fields(changes)
    with pytest.raises(Iso8583Error) as caught:
        spec.encode(message)
    assert caught.value.field == field
    assert what in caught.value.message


def test_errors_and_repr_never_show_card_data() -> None:
    message = authorization().with_fields({2: "621234567890123X"})
    with pytest.raises(Iso8583Error) as caught:
        spec.validate(message)
    assert "621234567890123" not in str(caught.value)
    shown = repr(authorization().with_fields({35: "6212345678901232=2512201"}))
    assert "6212345678901232" not in shown
    assert "621234******1232" in shown
    assert ICC_DATA.hex() not in shown.lower()


def test_a_field_of_the_wrong_type_is_refused_when_built() -> None:
    with pytest.raises(Iso8583Error, match=r"field 55 .*must be bytes"):
        Message("0100", {55: "9F26"})
    with pytest.raises(Iso8583Error, match="not one Millet Pay carries"):
        Message("0100", {5: "000000001000"})


def test_an_approval_needs_an_approval_code() -> None:
    approved = spec.response_to(authorization(), "00")
    with pytest.raises(Iso8583Error, match=r"field 38 .*missing from an approved 0110"):
        spec.encode(approved)
    spec.encode(spec.response_to(authorization(), "00", {38: "A1B2C3"}))
    spec.encode(spec.response_to(authorization(), "51"))


def test_messages_are_immutable_and_hashable() -> None:
    message = authorization()
    with pytest.raises(TypeError):
        message.fields[4] = "000000000001"  # type: ignore[index]
    assert hash(message) == hash(authorization())
    assert message.with_fields({4: "000000000001"}).text(4) == "000000000001"
    assert message.text(4) == "000000001000"


# --- responses, matching, tables -----------------------------------------------------------


def test_response_echoes_the_request_fields_its_mti_carries() -> None:
    request = authorization()
    response = spec.response_to(request, "51")
    assert response.mti == "0110"
    assert response.text(39) == "51"
    for number in (2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49):
        assert response.fields[number] == request.fields[number]
    assert 18 not in response.fields and 22 not in response.fields and 55 not in response.fields
    assert spec.match_key(response) == spec.match_key(request) == ("0100", "000001", "TERM0001")


def test_network_management_is_matched_by_stan_and_transmission_time() -> None:
    response = spec.response_to(sign_on("000042"), "00")
    assert response.mti == "0810"
    assert response.text(70) == "001"
    assert spec.match_key(response) == ("0800", "000042", "1126040000")
    spec.encode(response)


def test_response_to_refuses_an_unknown_code_and_a_response() -> None:
    with pytest.raises(Iso8583Error, match="field 39"):
        spec.response_to(authorization(), "XX")
    with pytest.raises(Iso8583Error, match="not a request"):
        spec.response_to(spec.response_to(authorization(), "05"), "00")


def test_every_request_mti_is_answered_by_its_mti_plus_ten() -> None:
    for message_type in spec.MESSAGE_TYPES.values():
        if message_type.response is not None:
            assert int(message_type.response) == int(message_type.mti) + 10
            assert spec.request_mti(message_type.response) == message_type.mti


def test_every_response_code_a_bank_gives_is_one_the_network_carries() -> None:
    assert {code.value for code in ResponseCode} <= spec.RESPONSE_CODES.keys()


def test_spec_describes_exactly_the_fields_table() -> None:
    numbered = {key for key in spec.SPEC if key.isdigit() and key != "1"}
    assert numbered == {str(n) for n in spec.FIELDS}
    assert spec.SPEC["p"]["data_enc"] == "b" and spec.SPEC["t"]["data_enc"] == "ascii"


def test_original_data_elements_for_a_reversal() -> None:
    value = spec.original_data_elements(authorization())
    assert value == "0100" + "000001" + "1126040000" + "00012345678" + "00000000000"
    reversal = Message(
        "0400",
        {n: v for n, v in authorization().fields.items() if n in spec.MESSAGE_TYPES["0400"].may
         or n in spec.MESSAGE_TYPES["0400"].must} | {90: value},
    )  # fmt: skip
    assert spec.decode(spec.encode(reversal)) == reversal


# --- STAN and RRN --------------------------------------------------------------------------


def test_stan_runs_from_one_and_wraps_after_999999() -> None:
    stans = spec.StanSequence()
    assert stans.next() == "000001"
    near_end = spec.StanSequence(last=999_998)
    assert [near_end.next() for _ in range(3)] == ["999999", "000001", "000002"]


def test_rrn_is_year_digit_day_hour_and_stan() -> None:
    now_ns = 1_795_651_200 * NS_PER_S  # 2026-11-26 00:00:00 UTC, day 330
    assert spec.retrieval_reference(now_ns + 3600 * 4 * NS_PER_S, "000123") == "633004000123"
    assert spec.transmission_date_time(now_ns + 65 * NS_PER_S) == "1126000105"


def test_a_completion_posts_field_95s_actual_amount_when_it_has_one() -> None:
    advice = Message("0220", {4: "000000004200"})
    assert spec.amount_to_post_fen(advice) == 4_200  # no field 95: field 4
    partial = advice.with_fields({95: "000000003150" * 2 + "0" * 18})
    assert spec.amount_to_post_fen(partial) == 3_150  # the actual amount, first 12 digits
    with pytest.raises(Iso8583Error, match="field 95"):
        spec.amount_to_post_fen(advice.with_fields({95: "00000000315X" + "0" * 30}))
