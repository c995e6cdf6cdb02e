"""EMV cryptography against published known answers.

Every vector names its source. "pyemv" is knovichikhin/pyemv 1.5.0: its doctests (in the
installed package) and its repository's tests/test_cvn_hsm.py, whose values the author
checked against a hardware security module. The expected values are written here as
constants: the tests never compute them with the library they test.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyemv import cvn as pyemv_cvn

from milletpay.emv import crypto
from milletpay.emv.crypto import EmvCryptoError
from milletpay.emv.profiles import PROFILES, KeyDerivation, UnknownProfileError, profile
from milletpay.emv.tags import TAGS

H = bytes.fromhex
IMK = H("0123456789ABCDEFFEDCBA9876543210")


def _data(**overrides: bytes) -> dict[str, bytes]:
    """The transaction of pyemv's tests/test_cvn_hsm.py (Visa CVN 10 and 18)."""
    data = {
        "9F02": H("000000004000"),
        "9F03": H("000000000000"),
        "9F1A": H("0124"),
        "95": H("8000048000"),
        "5F2A": H("0124"),
        "9A": H("191105"),
        "9C": H("01"),
        "9F37": H("52BF4585"),
        "82": H("1800"),
        "9F36": H("001C"),
    }
    data.update(overrides)
    return data


# --- ICC master key and session key ---------------------------------------------------


def test_icc_mk_option_a_pyemv_kd_derive_icc_mk_a_doctest() -> None:
    # pyemv/kd.py, derive_icc_mk_a docstring (also docs REFERENCES.md)
    mk = crypto.derive_icc_mk_a(IMK, "12345678901234567", "01")
    assert mk == H("73AD54688CEF2934B0979857E3C719F1")


def test_icc_mk_option_a_pyemv_kd_module_doctest() -> None:
    # pyemv/kd.py, module docstring
    assert crypto.derive_icc_mk_a(IMK, "99012345678901234", "45") == H(
        "67F8292358083E5EA7AB7FDA58D53B6B"
    )


def test_icc_mk_option_b_pyemv_kd_derive_icc_mk_b_doctest() -> None:
    # pyemv/kd.py, derive_icc_mk_b docstring: a 17-digit PAN takes the SHA-1 path
    mk = crypto.derive_icc_mk_b(IMK, "12345678901234567", "01")
    assert mk == H("AD406D7F6D7570916D75E5DCAB8CF737")


def test_option_b_equals_option_a_up_to_16_digits() -> None:
    # EMV 4.3 Book 2 A1.4.2: option B applies only to PANs over 16 digits
    pan = "1234567890123456"
    assert crypto.derive_icc_mk_b(IMK, pan) == crypto.derive_icc_mk_a(IMK, pan)


def test_common_session_key_pyemv_kd_derive_common_sk_doctest() -> None:
    # pyemv/kd.py, derive_common_sk docstring: R = 001C000000000000 is ATC 001C
    assert crypto.common_session_key(IMK, H("001C")) == H("E9FB384AF807B940FEDCEA613461B0C4")


def test_icc_mk_check_value_pyemv_test_cvn_hsm() -> None:
    # pyemv tests/test_cvn_hsm.py test_visa_cvn10: ICC MK AC key check value BAB0
    mk = crypto.derive_icc_mk_a(IMK, "1234567890123456", "00")
    assert crypto.encrypt_pin_block(mk, bytes(8))[:2] == H("BAB0")  # TDES of zeros


# --- ARQC and ARPC primitives ----------------------------------------------------------


def test_arpc_method_1_pyemv_ac_generate_arpc_1_doctest() -> None:
    # pyemv/ac.py, generate_arpc_1 docstring
    sk = H("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
    arpc = crypto.arpc_method_1(sk, H("1234567890ABCDEF"), H("0000"))
    assert arpc == H("F5E6F44147E2F1B0")


def test_arpc_method_2_pyemv_ac_generate_arpc_2_doctest() -> None:
    # pyemv/ac.py, generate_arpc_2 docstring
    sk = H("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
    assert crypto.arpc_method_2(sk, H("1234567890ABCDEF"), H("00000000")) == H("9308BEBC")


def test_arpc_module_doctest_pyemv_ac() -> None:
    # pyemv/ac.py, module docstring: ARQC FA624250B008B59A under this key
    sk = H("29B33180E567CE38EA4CBC9D753B0E61")
    arqc = H("FA624250B008B59A")
    assert crypto.arpc_method_1(sk, arqc, H("0000")) == H("45D4255EEF10C920")
    assert crypto.arpc_method_2(sk, arqc, H("00000000")) == H("CB56FA40")


# --- Whole cryptogram versions, profile-driven ----------------------------------------


def test_visa_cvn10_pyemv_test_cvn_hsm() -> None:
    # pyemv tests/test_cvn_hsm.py test_visa_cvn10 (CVR 03A06010 inside a Visa IAD)
    p = profile("visa-cvn10")
    mk = crypto.icc_master_key(p, IMK, "1234567890123456", "00")
    data = _data(**{"9F10": H("06010A03A06010")})
    arqc = crypto.generate_ac(p, mk, data)
    assert arqc == H("29CCA15AE665FA2E")
    assert crypto.generate_arpc(p, mk, data, arqc, H("3030")) == H("28993816AFAE4AEB")


def test_visa_cvn18_pyemv_test_cvn_hsm() -> None:
    # pyemv tests/test_cvn_hsm.py test_visa_cvn18
    p = profile("visa-cvn18")
    mk = crypto.icc_master_key(p, IMK, "1234567890123456", "00")
    data = _data(**{"9F10": H("06011203A0B800")})
    arqc = crypto.generate_ac(p, mk, data)
    assert arqc == H("7A788EA6B8A3E733")
    assert crypto.generate_arpc(p, mk, data, arqc, H("00000000")) == H("9AF514C1")


def test_visa_cvn18_pyemv_cvn_module_doctest() -> None:
    # pyemv/cvn.py, module docstring
    p = profile("visa-cvn18")
    mk = crypto.icc_master_key(p, H("AA" * 16), "1234567890123456", "00")
    data = {
        "9F02": H("000000009999"),
        "9F03": H("000000000000"),
        "9F1A": H("0840"),
        "95": H("8000048000"),
        "5F2A": H("0840"),
        "9A": H("991231"),
        "9C": H("01"),
        "9F37": H("52BF4585"),
        "82": H("1800"),
        "9F36": H("0FFF"),
        "9F10": H("06011203A0B800"),
    }
    arqc = crypto.generate_ac(p, mk, data)
    assert arqc == H("769577B5ABE9FE62")
    assert crypto.generate_arpc(p, mk, data, arqc, H("00000000")) == H("76503F48")


def test_interac_cvn133_pyemv_test_cvn_hsm() -> None:
    # pyemv tests/test_cvn_hsm.py test_interac_cvn133: Mastercard-style session key
    p = profile("interac-cvn133")
    mk = crypto.icc_master_key(p, IMK, "1234567890123456", "00")
    data = _data(
        **{
            "9F02": H("000000009999"),
            "95": H("8000000000"),
            "9A": H("209906"),
            "9C": H("00"),
            "9F37": H("ABCDEF12"),
            "9F10": H("1501850440B100000000B00000000000000000000000"),
        }
    )
    arqc = crypto.generate_ac(p, mk, data)
    assert arqc == H("18932FECA2D84326")
    assert crypto.generate_arpc(p, mk, data, arqc, H("0000")) == H("4DF171A49396C363")


# M/Chip CVN 16 / 20 and the UnionPay-style CVN 01 have no published vector here; they
# are checked against pyemv's own classes for those versions (pyemv/cvn.py).
_MCHIP_IAD = H("0110A00003220000000000000000000000FF")


_PBOC_IAD = H("07010103A00000")


# The UnionPay-style profile computes what pyemv's M/Chip CVN 20 class computes when
# handed the PBOC CVR slice of 9F10 (bytes 3..6) in place of M/Chip's CVR.
@pytest.mark.parametrize(
    ("name", "reference", "iad", "iad_part"),
    [
        ("mchip-cvn16", pyemv_cvn.MasterCardCVN16, _MCHIP_IAD, _MCHIP_IAD[2:8]),
        ("mchip-cvn20", pyemv_cvn.MasterCardCVN20, _MCHIP_IAD, _MCHIP_IAD[2:8]),
        ("unionpay-cvn01", pyemv_cvn.MasterCardCVN20, _PBOC_IAD, _PBOC_IAD[3:7]),
    ],
)
def test_profile_matches_pyemv_class(
    name: str, reference: type, iad: bytes, iad_part: bytes
) -> None:
    p = profile(name)
    mk = crypto.icc_master_key(p, IMK, "6228480000000000017", "01")
    data = _data(**{"9F10": iad})
    card = reference(IMK, IMK, IMK, "6228480000000000017", "01")
    args = {f"tag_{tag.lower()}": value for tag, value in data.items() if tag != "9F10"}
    expected_arqc = card.generate_ac(**args, cvr=iad_part)
    arqc = crypto.generate_ac(p, mk, data)
    assert arqc == expected_arqc
    if name == "mchip-cvn16":
        expected_arpc = card.generate_arpc(tag_9f26=arqc, arpc_rc=H("3030"))
    else:
        expected_arpc = card.generate_arpc(tag_9f26=arqc, tag_9f36=H("001C"), arpc_rc=H("3030"))
    assert crypto.generate_arpc(p, mk, data, arqc, H("3030")) == expected_arpc


# --- Verification and refusals ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_verifies_its_own_cryptograms_and_nothing_else(name: str) -> None:
    p = profile(name)
    mk = crypto.icc_master_key(p, IMK, "6228480000000000017", "01")
    data = _data(**{"9F10": _MCHIP_IAD})
    arqc = crypto.generate_ac(p, mk, data)
    assert crypto.verify_arqc(p, mk, data, arqc)
    assert not crypto.verify_arqc(
        p, mk, _data(**{"9F10": _MCHIP_IAD, "9F02": H("000000004001")}), arqc
    )
    assert not crypto.verify_arqc(p, mk, data, bytes([arqc[0] ^ 1]) + arqc[1:])
    response = bytes(2 if p.arpc_method.value == 1 else 4)
    arpc = crypto.generate_arpc(p, mk, data, arqc, response)
    assert crypto.verify_arpc(p, mk, data, arqc, response, arpc)
    assert not crypto.verify_arpc(p, mk, data, arqc, response, bytes(len(arpc)))


@given(st.integers(0, 7), st.integers(1, 255))
def test_arqc_with_any_byte_changed_is_refused(index: int, flip: int) -> None:
    p = profile("unionpay-cvn01")
    data = _data(**{"9F10": _PBOC_IAD})
    arqc = crypto.generate_ac(p, IMK, data)
    tampered = bytearray(arqc)
    tampered[index] ^= flip
    assert not crypto.verify_arqc(p, IMK, data, bytes(tampered))


def test_missing_tag_is_named() -> None:
    data = _data()
    del data["9F37"]
    with pytest.raises(EmvCryptoError, match=r"tag 9F37 \(Unpredictable Number\) is missing"):
        crypto.generate_ac(profile("visa-cvn10"), IMK, data)


def test_tag_of_the_wrong_length_is_named() -> None:
    with pytest.raises(EmvCryptoError, match=r"tag 9F02 .* is 5 bytes"):
        crypto.generate_ac(profile("visa-cvn18"), IMK, _data(**{"9F02": bytes(5)}))


def test_iad_shorter_than_the_profile_reads_is_refused() -> None:
    with pytest.raises(EmvCryptoError, match="9F10 is 4 bytes; profile visa-cvn10"):
        crypto.generate_ac(profile("visa-cvn10"), IMK, _data(**{"9F10": bytes(4)}))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: crypto.derive_icc_mk_a(IMK[:8], "1234567890123456"), "imk"),
        (lambda: crypto.derive_icc_mk_a(IMK, "12345678901X3456"), "pan"),
        (lambda: crypto.derive_icc_mk_b(IMK, "1234567890123456", "1"), "psn"),
        (lambda: crypto.common_session_key(IMK, H("01")), "9F36"),
        (lambda: crypto.arpc_method_1(IMK, bytes(7), bytes(2)), "arqc"),
        (lambda: crypto.arpc_method_1(IMK, bytes(8), bytes(4)), "arc"),
        (lambda: crypto.arpc_method_2(IMK, bytes(8), bytes(2)), "csu"),
        (lambda: crypto.arpc_method_2(IMK, bytes(8), bytes(4), bytes(9)), "proprietary"),
    ],
)
def test_malformed_inputs_are_refused_naming_the_field(
    call: Callable[[], object], field: str
) -> None:
    with pytest.raises(EmvCryptoError, match=field):
        call()


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(UnknownProfileError, match=r"known: .*unionpay-cvn01"):
        profile("visa-cvn99")


def test_every_profile_tag_is_in_the_dictionary() -> None:
    for p in PROFILES.values():
        assert [tag for tag in p.data_tags if tag not in TAGS] == [], p.name


def test_profiles_use_both_key_derivations() -> None:
    assert {p.key_derivation for p in PROFILES.values()} == set(KeyDerivation)


# --- CVV / CVN2 ---------------------------------------------------------------------------


def test_cvv_psec_generate_cvv_doctest() -> None:
    # knovichikhin/psec, psec/cvv.py generate_cvv docstring
    assert crypto.cvv(IMK, "1234567890123456", "9912", "220") == "170"


def test_cvv_psec_test_cvv() -> None:
    # knovichikhin/psec, tests/test_cvv.py test_generate_cvv
    cvk = H("99999999999999998888888888888888")
    assert crypto.cvv(cvk, "2222222222222222", "3333", "111") == "361"


def test_cvv_visa_worked_example() -> None:
    # The Visa CVV worked example reproduced in HSM host-command guides (CVK A
    # 0123456789ABCDEF, CVK B FEDCBA9876543210); the original document was not re-checked.
    assert crypto.cvv(IMK, "4123456789012345", "8701", "101") == "561"


def test_cvn2_is_the_cvv_with_service_code_000() -> None:
    pan, expiry = "6228480000000000017", "2812"
    assert crypto.cvn2(IMK, pan, expiry) == crypto.cvv(IMK, pan, expiry, "000")
    assert crypto.verify_cvn2(IMK, pan, expiry, crypto.cvn2(IMK, pan, expiry))
    wrong = f"{(int(crypto.cvn2(IMK, pan, expiry)) + 1) % 1000:03d}"
    assert not crypto.verify_cvn2(IMK, pan, expiry, wrong)


@given(st.binary(min_size=16, max_size=16), st.from_regex(r"\A[0-9]{13,19}\Z"))
def test_cvv_is_always_three_digits(cvk: bytes, pan: str) -> None:
    value = crypto.cvv(cvk, pan, "3012", "000")
    assert len(value) == 3 and value.isdigit()


# --- PIN blocks ---------------------------------------------------------------------------


def test_pin_block_iso0_psec_doctest() -> None:
    # knovichikhin/psec, psec/pinblock.py encode_pinblock_iso_0 docstring
    assert crypto.pin_block_iso0("1234", "5544332211009966") == H("041277CDDEEFF669")


def test_pin_block_iso0_hand_computed() -> None:
    # ISO 9564-1 format 0 by hand: 041234FFFFFFFFFF XOR 0000987654321098
    assert crypto.pin_block_iso0("1234", "43219876543210987") == H("0412AC89ABCDEF67")


@given(st.from_regex(r"\A[0-9]{4,12}\Z"), st.from_regex(r"\A[0-9]{13,19}\Z"))
def test_pin_block_round_trips(pin: str, pan: str) -> None:
    assert crypto.pin_from_block_iso0(crypto.pin_block_iso0(pin, pan), pan) == pin


@pytest.mark.parametrize("block", ["141234FFFFFFFFFF", "031234FFFFFFFFFF", "04123AFFFFFFFFFF"])
def test_a_block_that_is_not_format_0_is_refused(block: str) -> None:
    pan = "4000000000000002"  # its PAN field is all zeros: the block is read as written
    with pytest.raises(EmvCryptoError, match="not an ISO 9564 format 0 block"):
        crypto.pin_from_block_iso0(H(block), pan)


def test_encrypt_pin_block_pyemv_tools_encrypt_tdes_ecb_doctest() -> None:
    # pyemv/tools.py, encrypt_tdes_ecb docstring: TDES-ECB of b"12345678"
    assert crypto.encrypt_pin_block(IMK, b"12345678") == H("41D2FFBA3CDC15FE")


def test_verify_pin_accepts_the_right_pin_only() -> None:
    pin_key = H("89ABCDEF0123456776543210FEDCBA98")
    pan = "6228480000000000017"
    received = crypto.encrypt_pin_block(pin_key, crypto.pin_block_iso0("246810", pan))
    assert crypto.verify_pin(pin_key, received, pan, "246810")
    assert not crypto.verify_pin(pin_key, received, pan, "246811")
    assert not crypto.verify_pin(pin_key, received, "6228480000000000025", "246810")


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4", "١٢٣٤"])
def test_pin_outside_iso_9564_is_refused(pin: str) -> None:
    with pytest.raises(EmvCryptoError, match="pin must be 4 to 12 ASCII digits"):
        crypto.pin_block_iso0(pin, "4000000000000002")
