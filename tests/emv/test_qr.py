"""EMV QR codes (EMV QRCPS): merchant-presented text, consumer-presented BER-TLV, numeric
payment codes. Each rule of the spec has a refusal test naming its tag."""

from __future__ import annotations

import base64
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milletpay.core.money import Money
from milletpay.emv import qr, tlv
from milletpay.emv.qr import (
    AdditionalField,
    AlternateLanguage,
    CpmPayload,
    CpmTemplate,
    Field,
    Initiation,
    MpmPayload,
    QrError,
    Template,
    TipIndicator,
)
from milletpay.emv.tlv import Tlv

# The EMVCo specification's own example (EMV QRCPS MPM, appendix), as published with its
# CRC in ericsalim/exemvi test/mpm_test.exs (@official_sample) and dongri/emv-qrcode
# README.md. Note 64 before 54 and an unreserved template 91: order is free but for 00/63.
EMVCO_EXAMPLE = (
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
    "520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京"
    "540523.7253031565502016233030412340603***0708A60086670902ME"
    "91320016A0112233449988770708123456786304A13A"
)

# Hong Kong FPS codes in HKD, from odoo/odoo addons/l10n_hk/tests/test_l10n_hk_emv_qr.py
# (test_emv_qr_vals and test_emv_qr_vals_with_non_integer_amount).
ODOO_HKD_100 = (
    "00020101021226330012hk.com.hkicl0313+852-67891234520400005303344540310058"
    "02HK5914company_1_data6002HK62170513INV/TEST/00016304A154"
)
ODOO_HKD_100_5 = (
    "00020101021226330012hk.com.hkicl0313+852-678912345204000053033445405100.5"
    "5802HK5914company_1_data6002HK62170513INV/TEST/000263049E64"
)

# Cambodian KHQR codes from perfectpanel/bakong-khqr-php README.md: USD 100.0 (generate
# deep link example) and KHR 5000.0 (decode example).
BAKONG_USD = (
    "00020101021229190015john_smith@devb5204599953038405405100.05802KH5910John Smith"
    "6010Phnom Penh6304BF30"
)
BAKONG_KHR = (
    "00020101021229190015john_smith@devb52045999530311654065000.05802KH5910jonh smith"
    "6010Phnom Penh62360109#INV-20030313Coffee Klaing0702#299170013161302797275763049ACF"
)

# From dongri/emv-qrcode README.md (the output of its MPM encode example): JPY with an
# amount of 999.123, three decimals for a currency without minor units.
DONGRI_JPY = (
    "0002010102121313JCB12345678900416MASTER12345678905204531153033925407999.123"
    "5802JP5906DONGRI6005TOKYO62240104hoge0504fuga0704piyo6304C343"
)

# The consumer-presented example of EMV QRCPS CPM, from mvallim/emv-qrcode
# src/test/java/com/emv/qrcode/decoder/cpm/ConsumerPresentedModeDecoderTest.java
# (testSuccessDecode) and dongri/emv-qrcode README.md.
EMVCO_CPM = (
    "hQVDUFYwMWETTwegAAAAVVVVUAhQcm9kdWN0MWETTwegAAAAZmZmUAhQcm9kdWN0MmJJWggSNFZ4kBI0WF8g"
    "DkNBUkRIT0xERVIvRU1WXy0IcnVlc2RlZW5kIZ8QBwYBCgMAAACfJghYT9OF+iNLzJ82AgABnzcEbVjvEw=="
)
# A UnionPay consumer-presented code, same file (testSuccessDecodeUnionPay).
UNIONPAY_CPM = (
    "hQVDUFYwMWFWTwigAAADMwEBAlcRYmNgAQBxNnLSMSIBAAABiAFfNAEAYzOfJghWite85mtxi58nAYCfEBEH"
    "AAEDoAAAAQgwMDAwMDAwMZ82AhEiggIAAJ83BCJgSI4="
)


def _obj(ident: str, value: str) -> str:
    return f"{ident}{len(value):02d}{value}"


def _code(*objects: tuple[str, str]) -> str:
    """Objects in the order given, then tag 63 with the right CRC."""
    covered = "".join(_obj(ident, value) for ident, value in objects) + "6304"
    return covered + f"{qr.crc16(covered.encode()):04X}"


_ACCOUNT = _obj("00", "CN.MILLETPAY") + _obj("01", "M000123")
_STATIC = (
    ("00", "01"),
    ("01", "11"),
    ("26", _ACCOUNT),
    ("52", "5812"),
    ("53", "156"),
    ("58", "CN"),
    ("59", "MILLET NOODLES"),
    ("60", "BEIJING"),
)


def _static(**changes: str | None) -> str:
    """The static noodle-shop code with objects replaced (value) or removed (None);
    new IDs are added before 63."""
    objects = [(i, changes.get(f"t{i}", v)) for i, v in _STATIC]
    objects += [(k[1:], v) for k, v in changes.items() if k[1:] not in dict(_STATIC)]
    return _code(*((i, v) for i, v in objects if v is not None))


def _refused(text: str | bytes, tag: str | None, what: str) -> QrError:
    with pytest.raises(QrError, match=what) as caught:
        qr.decode_mpm(text)
    assert caught.value.tag == tag
    if tag is not None:
        assert str(caught.value).startswith(f"{caught.value.code}: tag {tag} (")
    return caught.value


# --- CRC ----------------------------------------------------------------------------------


def test_crc_check_value_of_123456789_is_29b1() -> None:
    assert qr.crc16(b"123456789") == 0x29B1


# --- Public examples ----------------------------------------------------------------------


def test_emvco_example_decodes_field_by_field() -> None:
    payload = qr.decode_mpm(EMVCO_EXAMPLE)
    assert payload.initiation is Initiation.DYNAMIC
    assert payload.merchant_accounts == (
        Template("29", (Field("00", "D15600000000"), Field("05", "A93FO3230Q"))),
        Template("31", (Field("00", "D15600000001"), Field("03", "12345678"))),
    )
    account = payload.merchant_accounts[0]
    assert isinstance(account, Template) and account.guid == "D15600000000"
    assert (payload.merchant_category_code, payload.currency) == ("4111", "CNY")
    assert payload.amount_minor == 2372
    assert str(payload.amount) == "23.72 CNY"
    assert payload.tip is TipIndicator.PROMPT
    assert (payload.country, payload.merchant_name, payload.merchant_city) == (
        "CN",
        "BEST TRANSPORT",
        "BEIJING",
    )
    assert payload.additional(AdditionalField.STORE_LABEL) == "1234"
    assert payload.additional(AdditionalField.CUSTOMER_LABEL) == "***"
    assert payload.additional(AdditionalField.TERMINAL_LABEL) == "A6008667"
    assert payload.additional(AdditionalField.CONSUMER_DATA_REQUEST) == "ME"
    assert payload.additional(AdditionalField.BILL_NUMBER) is None
    assert payload.alternate_language == AlternateLanguage("ZH", "最佳运输", "北京")
    assert payload.unreserved == (
        Template("91", (Field("00", "A011223344998877"), Field("07", "12345678"))),
    )


def test_emvco_example_reencodes_in_canonical_order_and_reads_the_same() -> None:
    payload = qr.decode_mpm(EMVCO_EXAMPLE)
    text = qr.encode_mpm(payload)
    assert text.startswith("000201010212")
    assert text.index("5303156") < text.index("540523.72") < text.index("6420")
    assert qr.decode_mpm(text) == payload


@pytest.mark.parametrize(("text", "amount_minor"), [(ODOO_HKD_100, 10000), (ODOO_HKD_100_5, 10050)])
def test_odoo_hong_kong_codes_decode_and_encode_byte_for_byte(text: str, amount_minor: int) -> None:
    payload = qr.decode_mpm(text)
    assert (payload.currency, payload.amount_minor) == ("HKD", amount_minor)
    assert payload.merchant_accounts[0] == Template(
        "26", (Field("00", "hk.com.hkicl"), Field("03", "+852-67891234"))
    )
    assert payload.additional(AdditionalField.REFERENCE_LABEL) is not None
    assert qr.encode_mpm(payload) == text


def test_bakong_usd_code_decodes() -> None:
    payload = qr.decode_mpm(BAKONG_USD)
    assert payload.amount == Money(10000, "USD")
    assert payload.merchant_accounts == (Template("29", (Field("00", "john_smith@devb"),)),)
    text = qr.encode_mpm(payload)  # "100.0" is written in its shortest form, "100"
    assert text[:-4] == BAKONG_USD[:-4].replace("5405100.0", "5403100")
    assert qr.decode_mpm(text) == payload


def test_code_in_a_currency_the_platform_does_not_pay_in_has_its_own_error_code() -> None:
    error = _refused(BAKONG_KHR, "53", "116 is not a currency Millet Pay pays in")
    assert error.code == "qr_currency_unsupported"


def test_amount_with_more_decimals_than_the_currency_has_is_refused() -> None:
    _refused(DONGRI_JPY, "54", "'999.123' has 3 decimals, JPY has 0")


def test_mvallim_kitchen_sink_example_is_refused_for_its_consumer_data_request() -> None:
    # mvallim/emv-qrcode src/test/java/com/emv/qrcode/decoder/mpm/
    # MerchantPresentedModeDecoderTest.java (testeSuccessToString): a parser test, its
    # CRC right, but 62.09 is "tuvxy" where the spec allows at most "AME".
    text = (
        "00020101021102160004hoge0104abcd520441115303156540523.7255020156035005701558"
        "02CN5914BEST TRANSPORT6007BEIJING610712345676295010512345020567890030509876"
        "0405543210505abcde0605fghij0705klmno0805pqres0905tuvxy5010000110101i64280002"
        "ZH0102北京0204最佳运输0304abcd65020080320016A01122334499887707081234567863044220"
    )
    _refused(text, "62.09", "length 05, must be 01 to 03")


# --- Position and CRC ---------------------------------------------------------------------


def test_payload_format_indicator_must_be_the_first_tag() -> None:
    objects = list(_STATIC)
    objects[0], objects[1] = objects[1], objects[0]
    _refused(_code(*objects), "00", "must be the first data object")


def test_crc_is_the_last_tag() -> None:
    text = _static()
    _refused(text + "6106100000", "63", "must be the last data object")


def test_missing_crc_is_refused() -> None:
    _refused(_static()[:-8], "63", "is mandatory, missing")


def test_crc_of_another_payload_is_refused() -> None:
    text = _static()
    _refused(text[:-4] + "0000", "63", "is not the payload's CRC")


def test_crc_in_lower_case_hex_is_refused() -> None:
    text = EMVCO_EXAMPLE[:-4] + "a13a"
    _refused(text, "63", "'a13a' is not the payload's CRC A13A")


def test_crc_of_the_wrong_length_is_refused() -> None:
    _refused(_static()[:-8] + "630329B", "63", "length 03, must be 04")


# --- Structure ----------------------------------------------------------------------------


def test_length_that_is_not_two_digits_is_refused() -> None:
    _refused("00A201", "00", "length 'A2' is not two digits")


def test_id_that_is_not_two_digits_is_refused() -> None:
    _refused("000201X10211", None, "at offset 6: ID 'X1' is not two digits")


def test_value_running_past_the_end_is_refused() -> None:
    _refused("000201" + "5999ABC", "59", "needs 99 characters, 3 left")


def test_a_cut_short_object_is_refused() -> None:
    _refused("000201" + "59", None, "at offset 6: 2 characters left")


def test_broken_structure_inside_a_template_names_the_template() -> None:
    _refused(_static(t62="01"), None, "in tag 62: 2 characters left")


def test_duplicate_tag_is_refused() -> None:
    objects = (*_STATIC, ("59", "OTHER NOODLES"))
    _refused(_code(*objects), "59", "occurs more than once")


def test_duplicate_sub_tag_in_a_template_is_refused() -> None:
    _refused(_static(t26=_ACCOUNT + _obj("01", "M000124")), "26.01", "occurs more than once")


@pytest.mark.parametrize("tag", ["52", "53", "58", "59", "60"])
def test_mandatory_tag_missing_is_refused(tag: str) -> None:
    _refused(_static(**{f"t{tag}": None}), tag, "is mandatory, missing")


def test_at_least_one_merchant_account_is_needed() -> None:
    _refused(_static(t26=None), None, "tags 02-51 .merchant account information.")


def test_a_network_reserved_merchant_account_is_a_plain_value() -> None:
    # 15 is UnionPay's: a plain value, no template inside.
    payload = qr.decode_mpm(_static(t26=None, t15="62258800123456789"))
    assert payload.merchant_accounts == (Field("15", "62258800123456789"),)


def test_merchant_account_template_needs_its_globally_unique_identifier() -> None:
    _refused(_static(t26=_obj("01", "M000123")), "26.00", "is mandatory, missing")


def test_globally_unique_identifier_over_32_characters_is_refused() -> None:
    _refused(_static(t26=_obj("00", "X" * 33)), "26.00", "length 33, must be 01 to 32")


def test_reserved_tag_is_refused() -> None:
    _refused(_static(t65="00"), "65", "is reserved")


def test_reserved_sub_tag_of_the_additional_data_is_refused() -> None:
    _refused(_static(t62=_obj("12", "X")), "62.12", "is reserved")


def test_empty_value_is_refused() -> None:
    _refused(_static(t61=""), "61", "length 00, must be 01 to 10")


# --- Formats and values -------------------------------------------------------------------


def test_payload_format_other_than_01_is_refused() -> None:
    _refused(_static(t00="02"), "00", "'02' is not 01")


def test_point_of_initiation_other_than_11_or_12_is_refused() -> None:
    _refused(_static(t01="13"), "01", "'13' is not 11 static or 12 dynamic")


def test_numeric_tag_with_letters_is_refused() -> None:
    _refused(_static(t52="58A2"), "52", "'58A2': format N, digits only")


def test_numeric_tag_with_non_ascii_digits_is_refused() -> None:
    _refused(_static(t52="58١٢"), "52", "format N, digits only")


def test_merchant_category_code_of_three_digits_is_refused() -> None:
    _refused(_static(t52="581"), "52", "length 03, must be 04")


def test_ans_tag_with_characters_outside_ascii_is_refused() -> None:
    _refused(_static(t59="CAFÉ MILLET"), "59", "format ANS, printable ASCII only")


def test_merchant_name_over_25_characters_is_refused() -> None:
    _refused(_static(t59="N" * 26), "59", "length 26, must be 01 to 25")


def test_merchant_city_over_15_characters_is_refused() -> None:
    _refused(_static(t60="C" * 16), "60", "length 16, must be 01 to 15")


def test_postal_code_over_10_characters_is_refused() -> None:
    _refused(_static(t61="1" * 11), "61", "length 11, must be 01 to 10")


def test_country_in_lower_case_is_refused() -> None:
    _refused(_static(t58="cn"), "58", "is not ISO 3166-1 alpha-2")


def test_amount_over_13_characters_is_refused() -> None:
    _refused(_static(t01="12", t54="1" * 14), "54", "length 14, must be 01 to 13")


def test_amount_with_a_comma_is_refused() -> None:
    _refused(_static(t01="12", t54="23,72"), "54", "is not digits with an optional '.'")


def test_amount_of_zero_is_refused() -> None:
    _refused(_static(t01="12", t54="0.00"), "54", "must not be zero")


def test_additional_consumer_data_request_letter_twice_is_refused() -> None:
    _refused(_static(t62=_obj("09", "AA")), "62.09", "'AA' is not any of A")


def test_alternate_language_template_needs_the_merchant_name() -> None:
    _refused(_static(t64=_obj("00", "ZH")), "64.01", "is mandatory, missing")


def test_alternate_language_name_with_a_control_character_is_refused() -> None:
    template = _obj("00", "ZH") + _obj("01", "小米\n面馆")
    _refused(_static(t64=template), "64.01", "format S, printable characters only")


def test_alternate_language_must_be_two_letters() -> None:
    _refused(_static(t64=_obj("00", "Z1") + _obj("01", "面馆")), "64.00", "ISO 639")


# EMV QRCPS MPM, Merchant Information—Language Template (ID "64"): 00 language preference
# (mandatory), 01 name (mandatory, up to 25 characters), 02 city (optional, up to 15);
# 03-99 are reserved for EMVCo. Lengths count characters, not UTF-8 bytes.


def test_alternate_language_template_needs_the_language_preference() -> None:
    _refused(_static(t64=_obj("01", "兰亭茶馆")), "64.00", "is mandatory, missing")


def test_alternate_language_name_of_25_characters_is_read() -> None:
    name = "兰" * 25  # 75 UTF-8 bytes: the length counts characters
    payload = qr.decode_mpm(_static(t64=_obj("00", "ZH") + _obj("01", name)))
    assert payload.alternate_language == AlternateLanguage("ZH", name)


def test_alternate_language_name_over_25_characters_is_refused() -> None:
    template = _obj("00", "ZH") + _obj("01", "兰" * 26)
    _refused(_static(t64=template), "64.01", "length 26, must be 01 to 25")


def test_alternate_language_city_over_15_characters_is_refused() -> None:
    template = _obj("00", "ZH") + _obj("01", "兰亭茶馆") + _obj("02", "杭" * 16)
    _refused(_static(t64=template), "64.02", "length 16, must be 01 to 15")


def test_alternate_language_sub_tag_reserved_for_emvco_is_refused() -> None:
    template = _obj("00", "ZH") + _obj("01", "兰亭茶馆") + _obj("03", "X")
    _refused(_static(t64=template), "64.03", "is reserved")


def test_alternate_language_template_twice_is_refused() -> None:
    template = _obj("00", "ZH") + _obj("01", "兰亭茶馆")
    objects = [*_STATIC, ("64", template), ("64", template)]
    _refused(_code(*objects), "64", "occurs more than once")


def test_unreserved_template_needs_its_globally_unique_identifier() -> None:
    _refused(_static(t80=_obj("01", "X")), "80.00", "is mandatory, missing")


def test_currency_must_be_three_digits() -> None:
    _refused(_static(t53="CNY"), "53", "format N, digits only")


# --- Rules across tags --------------------------------------------------------------------


def test_static_code_with_an_amount_is_refused() -> None:
    _refused(_static(t54="10"), "54", "a static code .01 = 11. must not carry an amount")


def test_dynamic_code_without_an_amount_is_refused() -> None:
    _refused(_static(t01="12"), "54", "a dynamic code .01 = 12. must carry its amount")


def test_code_without_point_of_initiation_may_carry_an_amount_or_not() -> None:
    assert qr.decode_mpm(_static(t01=None)).amount_minor is None
    assert qr.decode_mpm(_static(t01=None, t54="8")).amount_minor == 800


def test_tip_indicator_other_than_01_to_03_is_refused() -> None:
    _refused(_static(t55="04"), "55", "'04' is not 01, 02 or 03")


def test_fixed_fee_indicator_without_its_fee_is_refused() -> None:
    _refused(_static(t55="02"), "56", "mandatory when tag 55 is 02")


def test_percentage_fee_indicator_without_its_percentage_is_refused() -> None:
    _refused(_static(t55="03"), "57", "mandatory when tag 55 is 03")


def test_fixed_fee_without_its_indicator_is_refused() -> None:
    _refused(_static(t56="1.00"), "56", "must be absent when tag 55 is absent")


def test_percentage_with_the_fixed_fee_indicator_is_refused() -> None:
    _refused(_static(t55="02", t56="1", t57="3"), "57", "must be absent when tag 55 is 02")


def test_fee_with_the_tip_prompt_is_refused() -> None:
    _refused(_static(t55="01", t56="1"), "56", "must be absent when tag 55 is 01")


def test_percentage_of_zero_is_refused() -> None:
    _refused(_static(t55="03", t57="0.00"), "57", "is not from 00.01 to 99.99")


def test_percentage_with_three_decimals_is_refused() -> None:
    _refused(_static(t55="03", t57="1.125"), "57", "is not a percentage")


def test_fixed_fee_with_too_many_decimals_is_refused() -> None:
    _refused(_static(t55="02", t56="0.125"), "56", "'0.125' has 3 decimals, CNY has 2")


def test_fees_decode_as_minor_units_and_a_decimal_rate() -> None:
    fixed = qr.decode_mpm(_static(t55="02", t56="1.5"))
    assert (fixed.tip, fixed.fee_fixed_minor) == (TipIndicator.FIXED_FEE, 150)
    percentage = qr.decode_mpm(_static(t55="03", t57="3.25"))
    assert percentage.fee_percentage == Decimal("3.25")


# --- Input limits -------------------------------------------------------------------------


def test_payload_over_512_characters_is_refused() -> None:
    _refused("0" * (qr.MPM_CHARS_MAX + 1), None, "513 characters, over 512")


def test_input_that_is_neither_text_nor_bytes_is_refused() -> None:
    _refused(12345, None, "a code is text, got int")  # type: ignore[arg-type]


def test_bytes_are_read_as_utf8() -> None:
    assert qr.decode_mpm(EMVCO_EXAMPLE.encode()) == qr.decode_mpm(EMVCO_EXAMPLE)


def test_bytes_that_are_not_utf8_are_refused() -> None:
    _refused(b"000201\xff", None, "at offset 6: not UTF-8")


def test_a_lone_surrogate_is_refused() -> None:
    _refused("000201\ud800", None, "at offset 6: not a Unicode character")


# --- Encoding -----------------------------------------------------------------------------

NOODLES = MpmPayload(
    merchant_accounts=(Template("26", (Field("00", "CN.MILLETPAY"), Field("01", "M000123"))),),
    merchant_category_code="5812",
    currency="CNY",
    country="CN",
    merchant_name="MILLET NOODLES",
    merchant_city="BEIJING",
    initiation=Initiation.STATIC,
)


def test_encode_writes_the_canonical_static_code() -> None:
    assert qr.encode_mpm(NOODLES) == _static()


def test_encode_a_dynamic_code_with_everything_and_read_it_back() -> None:
    payload = replace(
        NOODLES,
        initiation=Initiation.DYNAMIC,
        amount_minor=2370,
        tip=TipIndicator.PERCENTAGE_FEE,
        fee_percentage=Decimal("3.5"),
        postal_code="100080",
        additional_data=(
            Field("01", "B-77"),
            Field("07", "TILL 2"),
            Template("50", (Field("00", "CN.MILLETPAY.LOYALTY"), Field("01", "GOLD"))),
        ),
        alternate_language=AlternateLanguage("ZH", "小米面馆", "北京"),
        unreserved=(Template("80", (Field("00", "CN.MILLETPAY"), Field("01", "ORDER-9"))),),
    )
    text = qr.encode_mpm(payload)
    assert "540423.7" in text  # the shortest exact decimal text of 2370 fen
    assert qr.decode_mpm(text) == payload


@pytest.mark.parametrize(
    ("currency", "amount_minor", "text"),
    [("CNY", 2372, "23.72"), ("CNY", 2370, "23.7"), ("HKD", 10000, "100"), ("JPY", 500, "500")],
)
def test_amount_is_written_in_its_shortest_exact_form(
    currency: str, amount_minor: int, text: str
) -> None:
    payload = replace(
        NOODLES, initiation=Initiation.DYNAMIC, currency=currency, amount_minor=amount_minor
    )
    assert _obj("54", text) in qr.encode_mpm(payload)


def test_encode_refuses_what_decode_would_refuse_naming_the_tag() -> None:
    with pytest.raises(QrError, match=r"tag 59 \(merchant name\): length 26"):
        qr.encode_mpm(replace(NOODLES, merchant_name="N" * 26))
    with pytest.raises(QrError, match=r"tag 54 .* a static code"):
        qr.encode_mpm(replace(NOODLES, amount_minor=100))


def test_encode_refuses_an_amount_that_is_not_integer_minor_units() -> None:
    payload = replace(NOODLES, initiation=Initiation.DYNAMIC, amount_minor=23.72)  # type: ignore[arg-type]
    with pytest.raises(QrError, match=r"tag 54 .*integer minor units"):
        qr.encode_mpm(payload)


def test_encode_refuses_a_currency_the_platform_does_not_pay_in() -> None:
    for currency in ("GBP", "XCN"):
        with pytest.raises(QrError, match="tag 53") as caught:
            qr.encode_mpm(replace(NOODLES, currency=currency))
        assert caught.value.code == "qr_currency_unsupported"


def test_encode_refuses_a_template_given_as_a_plain_value() -> None:
    with pytest.raises(QrError, match=r"tag 26 .*is a template"):
        qr.encode_mpm(replace(NOODLES, merchant_accounts=(Field("26", "0004ABCD"),)))


def test_encode_refuses_a_merchant_account_outside_02_to_51() -> None:
    with pytest.raises(QrError, match=r"tag 59 .*not an ID allowed here"):
        qr.encode_mpm(replace(NOODLES, merchant_accounts=(Field("59", "X"),)))


def test_encode_refuses_an_id_that_is_not_two_digits() -> None:
    with pytest.raises(QrError, match=r"tag 2A \(not defined\): is not an ID allowed here"):
        qr.encode_mpm(replace(NOODLES, merchant_accounts=(Field("2A", "X"),)))


def test_encode_refuses_a_value_over_99_characters() -> None:
    long_account = Template("26", (Field("00", "CN.MILLETPAY"), Field("01", "M" * 99)))
    with pytest.raises(QrError, match=r"tag 26 .*over 99"):
        qr.encode_mpm(replace(NOODLES, merchant_accounts=(long_account,)))


def test_the_tag_table_is_data_covering_every_root_id_once() -> None:
    covered = [n for row in qr.MPM_TAGS for n in range(row.first, row.last + 1)]
    assert len(covered) == len(set(covered))
    assert set(range(100)) - set(covered) == set(range(65, 80))  # reserved for EMVCo


# --- Property tests: garbage in, QrError or a payload out ---------------------------------


@given(st.text(max_size=600))
@settings(max_examples=500)
def test_decode_of_any_text_raises_qr_error_or_returns_a_payload(text: str) -> None:
    try:
        payload = qr.decode_mpm(text)
    except QrError:
        return
    assert qr.decode_mpm(qr.encode_mpm(payload)) == payload


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_decode_of_any_bytes_raises_qr_error_or_returns_a_payload(data: bytes) -> None:
    try:
        qr.decode_mpm(data)
    except QrError:
        return


@given(
    st.integers(min_value=0, max_value=len(EMVCO_EXAMPLE) - 8),
    st.integers(min_value=0, max_value=12),
    st.text(alphabet="0123456789.AZ *", max_size=12),
)
@settings(max_examples=500)
def test_a_damaged_code_with_a_recomputed_crc_raises_qr_error_or_reads_back(
    start: int, cut: int, insert: str
) -> None:
    body = EMVCO_EXAMPLE[:-4]
    damaged = body[:start] + insert + body[start + cut :]
    damaged = damaged[:-4] + "6304"
    text = damaged + f"{qr.crc16(damaged.encode()):04X}"
    try:
        payload = qr.decode_mpm(text)
    except QrError:
        return
    assert qr.decode_mpm(qr.encode_mpm(payload)) == payload


_ans = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)


@given(
    amount_minor=st.integers(min_value=1, max_value=10**11),
    name=_ans.filter(lambda s: len(s) <= 25),
    city=_ans.filter(lambda s: len(s) <= 15),
    label=_ans.filter(lambda s: len(s) <= 25),
    currency=st.sampled_from(["CNY", "HKD", "USD", "EUR", "JPY"]),
)
@settings(max_examples=200)
def test_encode_then_decode_is_the_identity(
    amount_minor: int, name: str, city: str, label: str, currency: str
) -> None:
    payload = replace(
        NOODLES,
        initiation=Initiation.DYNAMIC,
        amount_minor=amount_minor,
        currency=currency,
        merchant_name=name,
        merchant_city=city,
        additional_data=(Field("05", label),),
    )
    assert qr.decode_mpm(qr.encode_mpm(payload)) == payload


# --- Consumer-presented mode --------------------------------------------------------------


def test_emvco_cpm_example_decodes() -> None:
    payload = qr.decode_cpm(EMVCO_CPM)
    assert [(a.aid, a.label) for a in payload.applications] == [
        (bytes.fromhex("A0000000555555"), "Product1"),
        (bytes.fromhex("A0000000666666"), "Product2"),
    ]
    common = payload.common
    assert common is not None
    assert (common.pan, common.cardholder_name, common.language) == (
        "1234567890123458",
        "CARDHOLDER/EMV",
        "ruesdeen",
    )
    assert common.transaction_data() == {
        "9F10": bytes.fromhex("06010A03000000"),
        "9F26": bytes.fromhex("584FD385FA234BCC"),
        "9F36": bytes.fromhex("0001"),
        "9F37": bytes.fromhex("6D58EF13"),
    }


def test_unionpay_cpm_example_carries_its_cryptogram_in_the_application_template() -> None:
    (application,) = qr.decode_cpm(UNIONPAY_CPM).applications
    assert application.aid == bytes.fromhex("A000000333010102")
    assert application.track2 == bytes.fromhex("6263600100713672D23122010000018801")
    assert application.pan_sequence == "00"
    data = application.transaction_data()
    assert (data["9F26"].hex().upper(), data["9F27"], data["9F36"]) == (
        "568AD7BCE66B718B",
        b"\x80",
        b"\x11\x22",
    )


@pytest.mark.parametrize("text", [EMVCO_CPM, UNIONPAY_CPM])
def test_cpm_examples_encode_byte_for_byte(text: str) -> None:
    assert qr.encode_cpm(qr.decode_cpm(text)) == text


def _cpm(*items: Tlv) -> str:
    return base64.b64encode(tlv.encode(items)).decode()


_FORMAT = Tlv("85", b"CPV01")
_APP_DATA = (
    Tlv("4F", bytes.fromhex("A000000333010101")),
    Tlv("5A", bytes.fromhex("6212345678901234")),
)
_APP = Tlv("61", _APP_DATA)


def _cpm_refused(text: str | bytes, tag: str | None, what: str) -> None:
    with pytest.raises(QrError, match=what) as caught:
        qr.decode_cpm(text)
    assert caught.value.tag == tag
    assert caught.value.code == "qr_invalid"


def test_cpm_payload_format_indicator_must_come_first() -> None:
    _cpm_refused(_cpm(_APP, _FORMAT), "85", "must be the first data object")


def test_cpm_errors_name_the_tag_from_the_tag_dictionary() -> None:
    app = Tlv("61", (*_APP_DATA, Tlv("63", (Tlv("9F26", bytes(4)),))))
    with pytest.raises(QrError) as caught:
        qr.decode_cpm(_cpm(_FORMAT, app))
    assert caught.value.message.startswith("tag 61/63/9F26 (Application Cryptogram): ")


def test_cpm_payload_format_indicator_must_be_cpv01() -> None:
    _cpm_refused(_cpm(Tlv("85", b"CPV02"), _APP), "85", "must be CPV01")


def test_cpm_payload_format_indicator_twice_is_refused() -> None:
    # mvallim/emv-qrcode ConsumerPresentedModeDecoderTest.java: "8505435056303185054350563031"
    text = base64.b64encode(bytes.fromhex("8505435056303185054350563031")).decode()
    _cpm_refused(text, "85", "occurs more than once")


def test_cpm_needs_an_application_template() -> None:
    _cpm_refused(_cpm(_FORMAT), "61", "0 present, 1 to 4 allowed")


def test_cpm_common_data_template_twice_is_refused() -> None:
    common = Tlv("62", (Tlv("5F20", b"MILLET/USER"),))
    _cpm_refused(_cpm(_FORMAT, _APP, common, common), "62", "2 present, 0 to 1 allowed")


def test_cpm_application_template_needs_an_aid() -> None:
    _cpm_refused(_cpm(_FORMAT, Tlv("61", (Tlv("50", b"CARD"),))), "61/4F", "is mandatory")


def test_cpm_application_needs_a_track2_or_a_pan() -> None:
    app = Tlv("61", (Tlv("4F", bytes.fromhex("A000000333010101")),))
    _cpm_refused(_cpm(_FORMAT, app), "61", "no track 2 .57. nor PAN .5A.")


def test_cpm_pan_in_the_common_template_serves_every_application() -> None:
    app = Tlv("61", (Tlv("4F", bytes.fromhex("A000000333010101")),))
    common = Tlv("62", (Tlv("5A", bytes.fromhex("6212345678901234")),))
    assert qr.decode_cpm(_cpm(_FORMAT, app, common)).common == CpmTemplate(pan="6212345678901234")


def test_cpm_tag_not_allowed_in_the_common_template_is_refused() -> None:
    common = Tlv("62", (Tlv("9F08", b"\x00\x30"),))
    _cpm_refused(_cpm(_FORMAT, _APP, common), "62/9F08", "not allowed in the common data")


def test_cpm_unknown_top_level_tag_is_refused() -> None:
    _cpm_refused(_cpm(_FORMAT, _APP, Tlv("9F26", bytes(8))), "9F26", "is not allowed at the top")


def test_cpm_duplicate_tag_in_a_template_is_refused() -> None:
    app = Tlv("61", (*_APP_DATA, Tlv("50", b"A"), Tlv("50", b"B")))
    _cpm_refused(_cpm(_FORMAT, app), "61/50", "occurs more than once")


def test_cpm_cryptogram_of_the_wrong_length_is_refused() -> None:
    app = Tlv("61", (*_APP_DATA, Tlv("63", (Tlv("9F26", bytes(4)),))))
    _cpm_refused(_cpm(_FORMAT, app), "61/63/9F26", "4 bytes, must be 8")


def test_cpm_transparent_template_with_a_tag_twice_is_refused() -> None:
    atc = Tlv("9F36", b"\x00\x01")
    app = Tlv("61", (*_APP_DATA, Tlv("63", (atc, atc))))
    _cpm_refused(_cpm(_FORMAT, app), "61/63", "tag 9F36 occurs more than once")


def test_cpm_aid_of_the_wrong_length_is_refused() -> None:
    app = Tlv("61", (Tlv("4F", b"\xa0\x00"), Tlv("5A", bytes.fromhex("6212345678901234"))))
    _cpm_refused(_cpm(_FORMAT, app), "61/4F", "2 bytes, must be 5 to 16")


def test_cpm_pan_with_hex_letters_is_refused() -> None:
    app = Tlv("61", (Tlv("4F", bytes.fromhex("A000000333010101")), Tlv("5A", b"\x62\x1a")))
    _cpm_refused(_cpm(_FORMAT, app), "61/5A", "621A is not digits padded with F")


def test_cpm_label_outside_ascii_is_refused() -> None:
    app = Tlv("61", (*_APP_DATA, Tlv("50", "卡".encode())))
    _cpm_refused(_cpm(_FORMAT, app), "61/50", "printable ASCII only")


def test_cpm_malformed_ber_tlv_is_refused_with_its_offset() -> None:
    text = base64.b64encode(bytes.fromhex("85054350563031" + "6105")).decode()
    _cpm_refused(text, None, "at offset 9: tag 61 needs 5 bytes, 0 left")


def test_cpm_text_that_is_not_base64_is_refused() -> None:
    _cpm_refused("hQVDUFYwMW!!", None, "not base64")


def test_cpm_base64_not_in_canonical_form_is_refused() -> None:
    _cpm_refused(EMVCO_CPM[:-3] + "F==", None, "not in its canonical form")


def test_cpm_over_the_size_limit_is_refused() -> None:
    _cpm_refused("A" * 800, None, "800 characters, over 684")


def test_encode_cpm_writes_a_wallet_code_and_reads_it_back() -> None:
    payload = CpmPayload(
        applications=(
            CpmTemplate(
                aid=bytes.fromhex("A000000333010101"),
                label="MILLET PAY",
                pan="6212345678901234567",
                pan_last4="4567",
                transparent=(
                    Tlv("9F26", bytes.fromhex("1122334455667788")),
                    Tlv("9F27", b"\x80"),
                    Tlv("9F10", bytes.fromhex("07010103A00000")),
                    Tlv("9F36", b"\x00\x2a"),
                    Tlv("9F37", bytes.fromhex("CAFEBABE")),
                ),
            ),
        ),
    )
    text = qr.encode_cpm(payload)
    assert base64.b64decode(text).startswith(bytes.fromhex("85054350563031"))
    assert qr.decode_cpm(text) == payload


def test_encode_cpm_refuses_a_pan_with_letters() -> None:
    bad = CpmPayload((CpmTemplate(aid=bytes.fromhex("A000000333010101"), pan="62AB"),))
    with pytest.raises(QrError, match=r"tag 61/5A .*'62AB' is not digits"):
        qr.encode_cpm(bad)


def test_encode_cpm_refuses_an_aid_in_the_common_template() -> None:
    app = CpmTemplate(aid=bytes.fromhex("A000000333010101"), pan="6212")
    bad = CpmPayload((app,), common=CpmTemplate(aid=bytes.fromhex("A000000333010101")))
    with pytest.raises(QrError, match=r"tag 62/4F .*not allowed in the common data template"):
        qr.encode_cpm(bad)


@given(st.text(max_size=800))
@settings(max_examples=300)
def test_decode_cpm_of_any_text_raises_qr_error_or_returns_a_payload(text: str) -> None:
    try:
        qr.decode_cpm(text)
    except QrError:
        return


@given(st.binary(max_size=400))
@settings(max_examples=500)
def test_decode_cpm_of_any_base64_raises_qr_error_or_round_trips(data: bytes) -> None:
    for raw in (data, bytes.fromhex("85054350563031") + data):
        text = base64.b64encode(raw).decode()
        try:
            payload = qr.decode_cpm(text)
        except QrError:
            continue
        assert qr.decode_cpm(qr.encode_cpm(payload)) == payload


# --- The numeric form of a payment code ---------------------------------------------------


def test_numeric_code_is_18_digits_with_the_wallet_prefix_and_a_luhn_digit() -> None:
    code = qr.encode_numeric_code(123456789)
    assert code == "280000001234567895"
    assert len(code) == qr.NUMERIC_CODE.digits == 18
    assert qr.decode_numeric_code(code) == 123456789


@pytest.mark.parametrize("code_id", [0, 1, 10**15 - 1])
def test_numeric_code_round_trips_at_its_edges(code_id: int) -> None:
    assert qr.decode_numeric_code(qr.encode_numeric_code(code_id)) == code_id


@pytest.mark.parametrize("code_id", [-1, 10**15, True])
def test_code_id_outside_the_form_is_refused(code_id: int) -> None:
    with pytest.raises(QrError, match="code id") as caught:
        qr.encode_numeric_code(code_id)
    assert caught.value.code == "payment_code_invalid"


def test_spaces_between_groups_are_ignored() -> None:
    assert qr.decode_numeric_code("2800 0000 1234 5678 95") == 123456789


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("28000000123456789", "17 characters, a payment code is 18 digits"),
        ("2800000012345678950", "19 characters"),
        ("28000000123456789X", "18 characters, a payment code is 18 digits"),
        ("250000001234567895", "starts with 25, a payment code with 28"),
        ("280000001234567896", "check digit does not match"),
    ],
)
def test_malformed_numeric_code_is_refused(text: str, what: str) -> None:
    with pytest.raises(QrError, match=what) as caught:
        qr.decode_numeric_code(text)
    assert caught.value.code == "payment_code_invalid"


@given(
    st.integers(min_value=0, max_value=10**15 - 1),
    st.integers(min_value=2, max_value=17),
    st.integers(min_value=1, max_value=9),
)
def test_any_single_mistyped_digit_is_refused(code_id: int, position: int, shift: int) -> None:
    code = qr.encode_numeric_code(code_id)
    digit = str((int(code[position]) + shift) % 10)
    mistyped = code[:position] + digit + code[position + 1 :]
    with pytest.raises(QrError, match="check digit does not match"):
        qr.decode_numeric_code(mistyped)
