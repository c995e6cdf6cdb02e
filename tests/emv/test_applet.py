"""The phone's HCE payment applet: what it answers a terminal, byte by byte; the
cryptogram under the LUK; the consumer device CVM; the LUK's limits; and that no command,
in any order, gets anything but a status word of the table."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.emv import apdu, crypto, tlv
from milletpay.emv.apdu import MEANINGS, parse_response
from milletpay.emv.applet import (
    CDCVM_VALID_S,
    IN_APP_FIELD_55_TAGS,
    PDOL,
    UNIONPAY_AIDS,
    AppletError,
    HceCard,
    HceLuk,
    InAppTransaction,
    PaymentApplet,
)
from milletpay.emv.profiles import profile

#: SELECT PPSE as openemv/emv-utils writes it (tests/emv_ep_select_application_test.c).
SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
DEBIT, CREDIT = UNIONPAY_AIDS["debit"], UNIONPAY_AIDS["credit"]
LUK_KEY = bytes.fromhex("EAC7403DD3C26BC410F72CA1587ABC79")
DEBIT_PAN, CREDIT_PAN = "6299990000000016", "6299990000000024"
HOUR_NS = 3_600 * NS_PER_S

TTQ_NO_CVM = bytes.fromhex("A6004000")  # qPBOC, online PIN, signature, CDCVM supported
TTQ_CVM_REQUIRED = bytes.fromhex("A6404000")  # the same, and byte 2 b7: CVM required
TTQ_PIN_ONLY = bytes.fromhex("A4400000")  # CVM required; online PIN, no CDCVM, no signature
TTQ_NO_CVM_METHOD = bytes.fromhex("A0400000")  # CVM required, and no way to do one


def luk(
    clock: ManualClock, *, index: int = 1, atc: tuple[int, int] = (1, 20), uses: int = 10
) -> HceLuk:
    return HceLuk(LUK_KEY, index, "unionpay-cvn01", *atc, uses, clock.now_ns() + HOUR_NS)


def card(
    clock: ManualClock,
    pan: str = DEBIT_PAN,
    aid: bytes = DEBIT,
    *,
    key: HceLuk | None = None,
    cardholder_name: str | None = None,
) -> HceCard:
    label, priority = ("UnionPay Debit", 1) if aid == DEBIT else ("UnionPay Credit", 2)
    return HceCard(
        pan, "2911", 1, aid, label, priority, key or luk(clock), cardholder_name=cardholder_name
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def applet(clock: ManualClock) -> PaymentApplet:
    return PaymentApplet([card(clock)], clock)


def pdol_data(
    ttq: bytes = TTQ_NO_CVM, amount_fen: int = 4_000, un: bytes = b"\x52\xbf\x45\x85"
) -> bytes:
    values = {
        "9F66": ttq,
        "9F02": bytes.fromhex(f"{amount_fen:012d}"),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex("0156"),
        "95": bytes.fromhex("8000000000"),
        "5F2A": bytes.fromhex("0156"),
        "9A": bytes.fromhex("261126"),
        "9C": b"\x00",
        "9F37": un,
    }
    return b"".join(values[tag] for tag, _ in PDOL)


def gpo(applet: PaymentApplet, ttq: bytes = TTQ_NO_CVM, amount_fen: int = 4_000) -> bytes:
    """SELECT the debit AID, then GET PROCESSING OPTIONS; the GPO's response."""
    assert applet.process(apdu.select_by_name(DEBIT))[-2:] == b"\x90\x00"
    return applet.process(apdu.get_processing_options(pdol_data(ttq, amount_fen)))


def objects(response: bytes) -> dict[str, bytes]:
    answer = parse_response(response)
    assert answer.ok, f"{answer.sw:04X}"
    return tlv.primitives(tlv.decode(answer.data))


def sw(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


# -- selection --------------------------------------------------------------------------


def test_ppse_lists_the_cards_by_priority(clock: ManualClock) -> None:
    applet = PaymentApplet([card(clock, CREDIT_PAN, CREDIT), card(clock)], clock)
    answer = parse_response(applet.process(SELECT_PPSE))
    assert answer.ok
    (fci,) = tlv.decode(answer.data)
    assert fci.tag == "6F"
    found = list(tlv.walk((fci,)))
    assert found[1] == tlv.Tlv("84", b"2PAY.SYS.DDF01")
    entries = [
        tlv.primitives(item.value)
        for item in found
        if item.tag == "61" and isinstance(item.value, tuple)
    ]
    assert [(e["4F"], e["50"], e["87"]) for e in entries] == [
        (DEBIT, b"UnionPay Debit", b"\x01"),
        (CREDIT, b"UnionPay Credit", b"\x02"),
    ]


def test_select_aid_answers_the_fci_with_the_pdol(applet: PaymentApplet) -> None:
    response = applet.process(apdu.select_by_name(DEBIT))
    assert response == bytes.fromhex(
        "6F41"
        "8408A000000333010101"
        "A535"
        "500E556E696F6E506179204465626974"
        "870101"
        "9F3818"
        "9F66049F02069F03069F1A0295055F2A029A039C019F3704"
        "5F2D047A68656E"
        "9000"
    )


def test_an_unknown_aid_is_not_found(applet: PaymentApplet) -> None:
    assert sw(applet.process(apdu.select_by_name(CREDIT))) == 0x6A82
    # And nothing is selected: GPO has no application to run.
    assert sw(applet.process(apdu.get_processing_options(pdol_data()))) == 0x6985


def test_select_with_other_p1_p2_is_refused(applet: PaymentApplet) -> None:
    assert sw(applet.process(bytes.fromhex("00A4040208A00000033301010100"))) == 0x6A86
    assert sw(applet.process(bytes.fromhex("00A4000008A00000033301010100"))) == 0x6A86


# -- processing -------------------------------------------------------------------------


def test_gpo_answers_format_2_with_an_arqc_under_the_luk(applet: PaymentApplet) -> None:
    found = objects(gpo(applet))
    assert found["82"] == bytes.fromhex("1800")
    assert found["94"] == bytes.fromhex("08010200")  # SFI 1, records 1..2
    assert found["9F36"] == b"\x00\x01"  # the LUK's first ATC
    assert found["9F27"] == b"\x80"  # ARQC
    assert found["9F6C"] == b"\x00\x00"  # no CVM asked for, none performed
    # 07 | DKI 01 | CVN 01 | 03 CVR A0 00 00 | TDES 01 || 05 | 01 | LUK index 00000001
    assert found["9F10"] == bytes.fromhex("07010103A0000001050100000001")
    terminal = dict(zip([t for t, _ in PDOL], _split(pdol_data()), strict=True))
    data = {**terminal, "82": found["82"], "9F36": found["9F36"], "9F10": found["9F10"]}
    assert crypto.verify_arqc(profile("unionpay-cvn01"), LUK_KEY, data, found["9F26"])
    assert not crypto.verify_arqc(profile("unionpay-cvn01"), bytes(16), data, found["9F26"])


def test_read_record_returns_the_records_the_afl_names(applet: PaymentApplet) -> None:
    gpo(applet)
    first = objects(applet.process(apdu.read_record(1, 1)))
    assert first == {"57": bytes.fromhex("6299990000000016D2911201")}
    second = objects(applet.process(apdu.read_record(1, 2)))
    assert second == {
        "5A": bytes.fromhex("6299990000000016"),
        "5F24": bytes.fromhex("291130"),  # the end of the expiry month
        "5F28": bytes.fromhex("0156"),
        "5F34": b"\x01",
    }
    assert sw(applet.process(apdu.read_record(1, 3))) == 0x6A83
    assert sw(applet.process(apdu.read_record(2, 1))) == 0x6A83
    assert sw(applet.process(bytes.fromhex("00B2010800"))) == 0x6A86  # P2 mode 000


def test_the_cardholder_name_is_in_the_first_record(clock: ManualClock) -> None:
    applet = PaymentApplet([card(clock, cardholder_name="ZHANG/SAN")], clock)
    gpo(applet)
    assert objects(applet.process(apdu.read_record(1, 1)))["5F20"] == b"ZHANG/SAN"


def test_a_19_digit_token_pan_is_padded_with_f(clock: ManualClock) -> None:
    applet = PaymentApplet([card(clock, "6299990000000000018")], clock)
    gpo(applet)
    assert objects(applet.process(apdu.read_record(1, 2)))["5A"] == bytes.fromhex(
        "6299990000000000018F"
    )


def test_each_cryptogram_takes_the_next_atc(applet: PaymentApplet) -> None:
    atcs = [objects(gpo(applet))["9F36"] for _ in range(3)]
    assert atcs == [b"\x00\x01", b"\x00\x02", b"\x00\x03"]
    assert applet.key_status(DEBIT_PAN).uses_left == 7


# -- out of order and malformed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_command", "expected"),
    [
        ("80A800000683040000000000", 0x6985),  # GPO before SELECT
        ("00B2010C00", 0x6985),  # READ RECORD before SELECT
        ("00CA9F3600", 0x6D00),  # GET DATA: not an instruction of this applet
        ("00A80000028300", 0x6E00),  # GPO in the interindustry class
        ("84A404000E325041592E5359532E444446303100", 0x6E00),  # secure messaging CLA
        ("FFA4040000", 0x6E00),
        ("00A404000E325041592E5359532E44444630", 0x6700),  # Lc 14, 13 bytes follow
    ],
)
def test_commands_out_of_order_or_malformed(
    applet: PaymentApplet, hex_command: str, expected: int
) -> None:
    assert applet.process(bytes.fromhex(hex_command)) == expected.to_bytes(2, "big")


def test_gpo_twice_in_one_selection_is_refused(applet: PaymentApplet) -> None:
    gpo(applet)
    assert sw(applet.process(apdu.get_processing_options(pdol_data()))) == 0x6985
    assert applet.key_status(DEBIT_PAN).atc_next == 2  # only the first spent an ATC


def test_gpo_after_select_ppse_alone_is_refused(applet: PaymentApplet) -> None:
    applet.process(SELECT_PPSE)
    assert sw(applet.process(apdu.get_processing_options(pdol_data()))) == 0x6985


def test_gpo_data_of_the_wrong_length_or_shape(applet: PaymentApplet) -> None:
    applet.process(apdu.select_by_name(DEBIT))
    assert sw(applet.process(apdu.get_processing_options(pdol_data()[:-1]))) == 0x6700
    not_83 = bytes.fromhex("80A80000048402AABB00")
    assert sw(applet.process(not_83)) == 0x6A80
    assert sw(applet.process(bytes.fromhex("80A800000283FF00"))) == 0x6A80  # cut-short TLV
    assert sw(applet.process(bytes.fromhex("80A8010000"))) == 0x6A86
    assert applet.key_status(DEBIT_PAN).atc_next == 1  # no cryptogram made


def test_deactivation_forgets_the_selection(applet: PaymentApplet) -> None:
    applet.process(apdu.select_by_name(DEBIT))
    applet.deactivate()
    assert sw(applet.process(apdu.read_record(1, 1))) == 0x6985


# -- consumer device CVM ------------------------------------------------------------


def test_cvm_required_without_a_fingerprint_answers_see_phone(applet: PaymentApplet) -> None:
    assert gpo(applet, TTQ_CVM_REQUIRED, 150_000) == bytes.fromhex("6986")
    status = applet.key_status(DEBIT_PAN)
    assert (status.atc_next, status.uses_left) == (1, 10)  # nothing spent


def test_after_a_fingerprint_the_card_says_cdcvm_performed(
    applet: PaymentApplet, clock: ManualClock
) -> None:
    applet.confirm_cdcvm(clock.now_ns())
    clock.advance(seconds=CDCVM_VALID_S - 1)
    found = objects(gpo(applet, TTQ_CVM_REQUIRED, 150_000))
    assert found["9F6C"] == bytes.fromhex("0080")
    assert found["9F10"][4:7] == bytes.fromhex("A00001")  # and under the cryptogram
    # One fingerprint, one payment.
    assert gpo(applet, TTQ_CVM_REQUIRED, 150_000) == bytes.fromhex("6986")


def test_a_fingerprint_older_than_the_window_does_not_count(
    applet: PaymentApplet, clock: ManualClock
) -> None:
    applet.confirm_cdcvm(clock.now_ns())
    clock.advance(seconds=CDCVM_VALID_S)
    assert gpo(applet, TTQ_CVM_REQUIRED, 150_000) == bytes.fromhex("6986")


def test_a_fingerprint_on_a_small_tap_is_reported_and_spent(
    applet: PaymentApplet, clock: ManualClock
) -> None:
    applet.confirm_cdcvm(clock.now_ns())
    assert objects(gpo(applet))["9F6C"] == bytes.fromhex("0080")
    assert objects(gpo(applet))["9F6C"] == bytes.fromhex("0000")


def test_a_terminal_without_cdcvm_gets_online_pin_or_nothing(applet: PaymentApplet) -> None:
    assert objects(gpo(applet, TTQ_PIN_ONLY, 150_000))["9F6C"] == bytes.fromhex("8000")
    assert gpo(applet, TTQ_NO_CVM_METHOD, 150_000) == bytes.fromhex("6985")


# -- the LUK's limits -------------------------------------------------------------------


def test_an_exhausted_luk_is_refused_until_replenished(clock: ManualClock) -> None:
    applet = PaymentApplet([card(clock, key=luk(clock, uses=2))], clock)
    assert [sw(gpo(applet)) for _ in range(3)] == [0x9000, 0x9000, 0x6985]
    assert not applet.key_status(DEBIT_PAN).usable
    applet.load_keys(DEBIT_PAN, luk(clock, index=2, atc=(21, 40)))
    assert objects(gpo(applet))["9F36"] == (21).to_bytes(2, "big")


def test_an_expired_luk_is_refused(applet: PaymentApplet, clock: ManualClock) -> None:
    clock.advance(nanoseconds=HOUR_NS - 1)
    assert sw(gpo(applet)) == 0x9000
    clock.advance(nanoseconds=1)
    assert sw(gpo(applet)) == 0x6985


def test_a_used_up_atc_window_is_refused(clock: ManualClock) -> None:
    applet = PaymentApplet([card(clock, key=luk(clock, atc=(1, 2), uses=5))], clock)
    assert [sw(gpo(applet)) for _ in range(3)] == [0x9000, 0x9000, 0x6985]


def test_the_atc_never_goes_back(applet: PaymentApplet, clock: ManualClock) -> None:
    for _ in range(3):
        gpo(applet)
    applet.load_keys(DEBIT_PAN, luk(clock, index=2, atc=(1, 20)))  # an overlapping window
    assert objects(gpo(applet))["9F36"] == b"\x00\x04"
    with pytest.raises(AppletError, match="not newer"):
        applet.load_keys(DEBIT_PAN, luk(clock, index=2, atc=(21, 40)))
    with pytest.raises(AppletError, match="behind"):
        applet.load_keys(DEBIT_PAN, luk(clock, index=3, atc=(1, 3)))
    with pytest.raises(AppletError, match="no card"):
        applet.load_keys(CREDIT_PAN, luk(clock, index=3))


def test_the_luk_repr_hides_the_key(clock: ManualClock) -> None:
    shown = repr(luk(clock)) + repr(card(clock))
    assert LUK_KEY.hex() not in shown.lower() and "index=1" in shown


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"token_pan": "62999900000A0016"}, "token PAN"),
        ({"expiry_yymm": "2913"}, "YYMM"),
        ({"aid": b"2PAY.SYS.DDF01"}, "PPSE"),
        ({"label": ""}, "label"),
        ({"priority": 0}, "priority"),
        ({"cardholder_name": "X"}, "name"),
    ],
)
def test_a_malformed_card_is_refused(
    clock: ManualClock, change: dict[str, object], what: str
) -> None:
    fields = {name: getattr(card(clock), name) for name in HceCard.__dataclass_fields__}
    with pytest.raises(AppletError, match=what):
        HceCard(**{**fields, **change})


def test_a_luk_of_a_profile_without_an_iad_layout_is_refused(clock: ManualClock) -> None:
    with pytest.raises(AppletError, match="visa-cvn18"):
        HceLuk(LUK_KEY, 1, "visa-cvn18", 1, 20, 10, clock.now_ns() + HOUR_NS)
    with pytest.raises(AppletError, match="ATC window"):
        HceLuk(LUK_KEY, 1, "unionpay-cvn01", 5, 4, 10, clock.now_ns() + HOUR_NS)


def test_two_cards_with_one_aid_are_refused(clock: ManualClock) -> None:
    with pytest.raises(AppletError, match="AID"):
        PaymentApplet([card(clock), card(clock, CREDIT_PAN)], clock)
    with pytest.raises(AppletError, match="1 to 6"):
        PaymentApplet([], clock)


# -- no command gets an exception ------------------------------------------------------

_commands = st.one_of(
    st.binary(max_size=270),
    st.just(SELECT_PPSE),
    st.sampled_from([DEBIT, CREDIT, b"\xa0\x00\x00\x03\x33"]).map(apdu.select_by_name),
    st.binary(max_size=40).map(apdu.get_processing_options),
    st.sampled_from([TTQ_NO_CVM, TTQ_CVM_REQUIRED, TTQ_PIN_ONLY, TTQ_NO_CVM_METHOD]).map(
        lambda ttq: apdu.get_processing_options(pdol_data(ttq))
    ),
    st.tuples(st.integers(1, 30), st.integers(1, 0xFE)).map(lambda sr: apdu.read_record(*sr)),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=6)).map(
        lambda c: bytes((0x00 | (c[0] & 0x80), c[1], 0, 0)) + c[2]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_commands, max_size=12), st.booleans())
def test_every_command_sequence_gets_a_known_status_word(
    commands: list[bytes], cdcvm: bool
) -> None:
    clock = ManualClock()
    applet = PaymentApplet([card(clock), card(clock, CREDIT_PAN, CREDIT)], clock)
    if cdcvm:
        applet.confirm_cdcvm(clock.now_ns())
    atc_before = applet.key_status(DEBIT_PAN).atc_next + applet.key_status(CREDIT_PAN).atc_next
    arqcs = 0
    for command in commands:
        response = applet.process(command)
        assert isinstance(response, bytes) and len(response) >= 2
        assert sw(response) in MEANINGS, f"{command.hex()} -> {response.hex()}"
        if sw(response) == 0x9000 and response[:1] == b"\x77":
            arqcs += 1
    atc_after = applet.key_status(DEBIT_PAN).atc_next + applet.key_status(CREDIT_PAN).atc_next
    assert atc_after - atc_before == arqcs  # an ATC moves only with a cryptogram


def _split(values: bytes) -> list[bytes]:
    out, offset = [], 0
    for _, length in PDOL:
        out.append(values[offset : offset + length])
        offset += length
    return out


# -- in-app payments ----------------------------------------------------------------------


def in_app(amount_fen: int = 12_300, un: bytes = b"\x0a\x1b\x2c\x3d") -> InAppTransaction:
    return InAppTransaction(amount_fen, 156, datetime.date(2026, 11, 26), un)


def test_an_in_app_cryptogram_is_the_taps_arqc_over_the_platforms_data(
    applet: PaymentApplet,
) -> None:
    field_55 = applet.in_app_cryptogram(DEBIT_PAN, in_app())
    items = tlv.decode(field_55)
    assert [item.tag for item in items] == list(IN_APP_FIELD_55_TAGS)
    data = tlv.primitives(items)
    assert data["9F02"] == bytes.fromhex("000000012300") and data["9F37"] == bytes.fromhex(
        "0A1B2C3D"
    )
    assert (data["9A"], data["9C"], data["5F2A"]) == (bytes.fromhex("261126"), b"\x00", b"\x01\x56")
    assert data["9F36"] == b"\x00\x01" and data["9F27"] == b"\x80"
    expected = crypto.generate_ac(profile("unionpay-cvn01"), LUK_KEY, data)
    assert data["9F26"] == expected
    again = tlv.primitives(tlv.decode(applet.in_app_cryptogram(DEBIT_PAN, in_app())))
    assert again["9F36"] == b"\x00\x02"  # each cryptogram spends an ATC


def test_an_in_app_cryptogram_needs_a_usable_key(clock: ManualClock) -> None:
    applet = PaymentApplet([card(clock, key=luk(clock, uses=1))], clock)
    applet.in_app_cryptogram(DEBIT_PAN, in_app())
    with pytest.raises(AppletError, match="replenish"):
        applet.in_app_cryptogram(DEBIT_PAN, in_app())
    with pytest.raises(AppletError, match="no card"):
        applet.in_app_cryptogram(CREDIT_PAN, in_app())


@pytest.mark.parametrize(
    ("amount_fen", "un"), [(0, b"\x00" * 4), (100, b"\x00" * 3), (10**12, b"\x00" * 4)]
)
def test_in_app_data_out_of_range_is_refused(amount_fen: int, un: bytes) -> None:
    with pytest.raises(AppletError):
        in_app(amount_fen, un)
