"""BER-TLV (EMV Book 3 Annex B): layout, canonical form, refusals, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milletpay.emv import tags, tlv
from milletpay.emv.tlv import Tlv, TlvError

# Byte strings below are written by hand from EMV Book 3 Annex B's rules.


def test_primitive_one_byte_tag_short_length() -> None:
    assert tlv.decode(bytes.fromhex("9A03251126")) == (Tlv("9A", bytes.fromhex("251126")),)


def test_two_byte_tag() -> None:
    assert tlv.decode(bytes.fromhex("9F36020001")) == (Tlv("9F36", b"\x00\x01"),)


def test_three_byte_tag_uses_the_continuation_bit() -> None:
    assert tlv.decode(bytes.fromhex("DF810101AA")) == (Tlv("DF8101", b"\xaa"),)


def test_constructed_objects_decode_recursively() -> None:
    # 6F FCI > 84 DF name "2PAY.SYS.DDF01", A5 > BF0C > 61 > 4F AID (UnionPay debit), 50 label
    data = bytes.fromhex(
        "6F28840E325041592E5359532E4444463031A516BF0C1361114F08A00000033301010150054445424954"
    )
    application = Tlv("61", (Tlv("4F", bytes.fromhex("A000000333010101")), Tlv("50", b"DEBIT")))
    expected = Tlv(
        "6F",
        (Tlv("84", b"2PAY.SYS.DDF01"), Tlv("A5", (Tlv("BF0C", (application,)),))),
    )
    assert tlv.decode(data) == (expected,)
    assert tlv.encode(expected) == data


def test_several_objects_in_sequence() -> None:
    data = bytes.fromhex("9F2701809F360200015F340101")
    assert [item.tag for item in tlv.decode(data)] == ["9F27", "9F36", "5F34"]


def test_long_form_lengths_81_and_82() -> None:
    value_200 = bytes(200)
    value_300 = bytes(300)
    assert tlv.encode(Tlv("9F4E", value_200))[:4] == bytes.fromhex("9F4E81C8")
    assert tlv.encode(Tlv("80", value_300))[:4] == bytes.fromhex("8082012C")
    assert tlv.decode(tlv.encode(Tlv("80", value_300))) == (Tlv("80", value_300),)


def test_empty_value() -> None:
    assert tlv.decode(bytes.fromhex("9F3800")) == (Tlv("9F38", b""),)


@pytest.mark.parametrize(
    ("hex_data", "offset", "what"),
    [
        ("9F", 1, "tag is cut short"),
        ("9F36", 2, "length is missing"),
        ("9F360301", 3, "needs 3 bytes, 1 left"),
        ("9F3680", 2, "indefinite length"),
        ("9F3683000001", 2, "length of 3 bytes"),
        ("9F36817F" + "00" * 127, 2, "not in its shortest form"),
        ("9F368200FF" + "00" * 255, 2, "not in its shortest form"),
        ("9F3681", 2, "length is cut short"),
        ("DF81818101AA", 0, "longer than 3 bytes"),
        ("00", 0, "padding"),
        ("6F039F3601", 5, "tag 9F36 needs 1 bytes, 0 left"),
    ],
)
def test_malformed_input_names_offset_and_problem(hex_data: str, offset: int, what: str) -> None:
    with pytest.raises(TlvError, match=what) as caught:
        tlv.decode(bytes.fromhex(hex_data))
    assert caught.value.offset == offset
    assert caught.value.code == "tlv_invalid"
    assert f"at offset {offset}" in str(caught.value)


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    item = Tlv("9F36", b"\x00\x01")
    for _ in range(tlv.DEPTH_MAX + 1):
        item = Tlv("70", (item,))
    raw = bytes.fromhex("9F36020001")
    for _ in range(tlv.DEPTH_MAX + 1):
        raw = b"\x70" + bytes([len(raw)]) + raw
    with pytest.raises(TlvError, match="nested deeper"):
        tlv.decode(raw)
    with pytest.raises(TlvError, match="nested deeper"):
        tlv.encode(item)


def test_nesting_at_the_limit_is_accepted() -> None:
    raw = bytes.fromhex("9F36020001")
    for _ in range(tlv.DEPTH_MAX):
        raw = b"\x70" + bytes([len(raw)]) + raw
    assert tlv.encode(tlv.decode(raw)) == raw


def test_input_over_the_size_limit_is_refused() -> None:
    with pytest.raises(TlvError, match="over 65535"):
        tlv.decode(bytes(tlv.DATA_BYTES_MAX + 1))


def test_a_value_of_the_wrong_shape_for_its_tag_is_refused() -> None:
    with pytest.raises(TlvError, match="tag 70 is constructed"):
        Tlv("70", b"\x01")
    with pytest.raises(TlvError, match="tag 9F36 is primitive"):
        Tlv("9F36", ())


@pytest.mark.parametrize("tag", ["9f36", "9F", "9F8181", "XX", "", "9F3601"])
def test_a_tag_that_is_not_canonical_hex_is_refused(tag: str) -> None:
    with pytest.raises(TlvError):
        Tlv(tag, b"")


def test_primitives_flattens_templates() -> None:
    data = tlv.encode(Tlv("77", (Tlv("9F27", b"\x80"), Tlv("9F36", b"\x00\x01"))))
    assert tlv.primitives(tlv.decode(data)) == {"9F27": b"\x80", "9F36": b"\x00\x01"}


def test_primitives_refuses_a_tag_seen_twice() -> None:
    items = (Tlv("9F36", b"\x00\x01"), Tlv("70", (Tlv("9F36", b"\x00\x02"),)))
    with pytest.raises(TlvError, match="9F36 occurs more than once"):
        tlv.primitives(items)


def test_dictionary_check_names_objects_of_the_wrong_length() -> None:
    items = tlv.decode(bytes.fromhex("9F260412345678" + "9F2701809F24021234"))
    problems = tags.check(items)
    assert [(p.tag, p.length, p.expected) for p in problems] == [
        ("9F26", 4, "8"),
        ("9F24", 2, "29"),
    ]
    assert problems[0].name == "Application Cryptogram"


def test_dictionary_covers_the_cryptogram_tags() -> None:
    needed = "9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36 9F10 9F26 9F27 57 5A 5F24 5F34"
    needed += " 9F66 9F6E 9F24 84 4F 50 87 9F38 8C 8D 94"
    assert [tag for tag in needed.split() if tag not in tags.TAGS] == []


def test_every_dictionary_tag_is_canonical_and_its_shape_matches_its_format() -> None:
    for tag, info in tags.TAGS.items():
        constructed = tlv.is_constructed(bytes.fromhex(tag))
        assert constructed == (info.format is tags.Format.VAR), tag
        assert info.length_min <= info.length_max


# Property tests: encode→decode is the identity, and decode never fails but with TlvError.

_primitive_tags = st.sampled_from(["5A", "82", "9F36", "9F10", "DF8101", "9F4E", "80"])
_constructed_tags = st.sampled_from(["70", "77", "A5", "BF0C", "FF8101"])
_values = st.binary(max_size=300)


def _objects() -> st.SearchStrategy[Tlv]:
    leaf = st.builds(Tlv, _primitive_tags, _values)
    return st.recursive(
        leaf,
        lambda children: st.builds(
            Tlv, _constructed_tags, st.lists(children, max_size=4).map(tuple)
        ),
        max_leaves=12,
    )


@given(st.lists(_objects(), max_size=5))
@settings(max_examples=300)
def test_encode_then_decode_is_the_identity(items: list[Tlv]) -> None:
    try:
        data = tlv.encode(items)
    except TlvError as exc:
        assert "nested deeper" in exc.message
        return
    assert tlv.decode(data) == tuple(items)


@given(st.binary(max_size=600))
@settings(max_examples=1000)
def test_decode_of_any_bytes_raises_tlv_error_or_round_trips(data: bytes) -> None:
    try:
        items = tlv.decode(data)
    except TlvError:
        return
    assert tlv.encode(items) == data
