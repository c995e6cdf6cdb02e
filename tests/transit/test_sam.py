"""The purse cryptography against public vectors, the gate's SAM and the load host."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from milletpay.transit import purse_crypto as pc
from milletpay.transit import sam as sam_module
from milletpay.transit.purse import (
    LoadInit,
    PurchaseInit,
    Purse,
    PurseProfile,
    Sw,
    credit_for_load_command,
    initialize_for_load_command,
    select_command,
    split_response,
)
from milletpay.transit.sam import (
    CityMasterKeys,
    LoadHost,
    LoadRefusal,
    LoadRequest,
    LoadStatus,
    PurchaseSam,
    SamError,
    verify_purchase_tac,
)

# FIPS 81 (DES modes of operation), ECB example: key 0123456789ABCDEF, "Now is t".
FIPS81_KEY = bytes.fromhex("0123456789ABCDEF")
FIPS81_PLAINTEXT = b"Now is t"
FIPS81_CIPHERTEXT = bytes.fromhex("3FA40E8A984D4815")
# FIPS 113 (Computer Data Authentication) / ANSI X9.9 example, also in BouncyCastle's
# MacTest and RustCrypto's cbc-mac docs: zero-padded CBC-MAC with single DES.
FIPS113_TEXT = b"7654321 Now is the time for "
FIPS113_MAC = bytes.fromhex("F1D30F6849312CA4")

CARD_NUMBER = bytes.fromhex("31040000000012345678")
TERMINAL_ID = bytes.fromhex("000000100001")
DATE = bytes.fromhex("20261126")
TIME = bytes.fromhex("073015")


@pytest.fixture
def city() -> CityMasterKeys:
    return CityMasterKeys.generate(key_index=1, key_version=3)


# --- Known answers ------------------------------------------------------------------


def test_des_mac_algorithm_1_matches_the_fips_113_example() -> None:
    mac = pc.des_mac(FIPS81_KEY, FIPS113_TEXT, pc.PADDING_METHOD_1)
    assert mac == FIPS113_MAC


def test_padding_method_2_is_80_then_method_1() -> None:
    padded_by_hand = FIPS113_TEXT + b"\x80"
    assert pc.des_mac(FIPS81_KEY, FIPS113_TEXT) == pc.des_mac(
        FIPS81_KEY, padded_by_hand, pc.PADDING_METHOD_1
    )
    # A block-aligned input still gets a whole block of 80 00 .. 00.
    assert pc.des_mac(FIPS81_KEY, FIPS81_PLAINTEXT) == pc.des_mac(
        FIPS81_KEY, FIPS81_PLAINTEXT + bytes.fromhex("8000000000000000"), pc.PADDING_METHOD_1
    )


def test_a_one_block_mac_is_the_des_encryption_of_the_block() -> None:
    # "Now is t" is one block; with method 1 nothing is added, so CBC-MAC = DES(K)[block].
    assert pc.des_mac(FIPS81_KEY, FIPS81_PLAINTEXT, pc.PADDING_METHOD_1) == FIPS81_CIPHERTEXT


def test_the_purchase_session_key_example_checked_by_hand() -> None:
    # With DPK = K || K, TDES(DPK) is DES(K). Choose random 4E6F7720, offline counter
    # 0x6973 and a terminal transaction number ending 2074: the input block is
    # 4E6F7720 6973 2074 = "Now is t", so SESPK is FIPS 81's ciphertext.
    dpk = FIPS81_KEY + FIPS81_KEY
    sk = pc.purchase_session_key(dpk, bytes.fromhex("4E6F7720"), 0x6973, 0x1234_2074)
    assert sk == FIPS81_CIPHERTEXT


def test_the_load_session_key_ends_its_input_with_8000() -> None:
    # Input block: random 4 || online counter 2 || 80 00.
    dpk = FIPS81_KEY + FIPS81_KEY
    block = bytes.fromhex("4E6F7720") + (0x6973).to_bytes(2, "big") + b"\x80\x00"
    expected = pc.purchase_session_key(dpk, block[:4], 0x6973, 0x8000)
    assert pc.load_session_key(dpk, bytes.fromhex("4E6F7720"), 0x6973) == expected


def test_the_tac_key_is_the_dtk_halves_xored() -> None:
    dtk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert pc.tac_key(dtk) == bytes.fromhex("FFFFFFFFFFFFFFFF")


def test_card_keys_are_diversified_from_the_last_8_bytes_of_the_card_number() -> None:
    # Master key K || K and a card number ending "Now is t": the left half is FIPS 81's
    # ciphertext; the right half is the same computation over the complement.
    master = FIPS81_KEY + FIPS81_KEY
    card_number = b"\x31\x04" + FIPS81_PLAINTEXT
    key = pc.diversify(master, card_number)
    assert key[:8] == FIPS81_CIPHERTEXT
    complement = b"\x31\x04" + bytes(b ^ 0xFF for b in FIPS81_PLAINTEXT)
    assert key[8:] == pc.diversify(master, complement)[:8]


def test_purchase_mac_and_tac_inputs_follow_the_pboc_layouts() -> None:
    data = pc.PurchaseData(300, 0x06, TERMINAL_ID, 0x0102_0304, DATE, TIME)
    assert data.mac1_input().hex().upper() == "0000012C0600000010000120261126073015"
    assert data.mac2_input() == bytes.fromhex("0000012C")
    assert data.tac_input().hex().upper() == ("0000012C060000001000010102030420261126073015")


def test_load_mac_and_tac_inputs_follow_the_pboc_layouts() -> None:
    data = pc.LoadData(-100, 1_000, 7, TERMINAL_ID, DATE, TIME)
    assert data.mac1_input().hex().upper() == "FFFFFF9C000003E802000000100001"
    assert data.mac2_input().hex().upper() == "000003E80200000010000120261126073015"
    assert data.tac_input().hex().upper() == ("000003840007000003E80200000010000120261126073015")


def test_malformed_crypto_inputs_name_the_field() -> None:
    with pytest.raises(pc.PurseCryptoError, match="dpk"):
        pc.purchase_session_key(b"short", bytes(4), 0, 0)
    with pytest.raises(pc.PurseCryptoError, match="offline_counter"):
        pc.purchase_session_key(bytes(16), bytes(4), 1 << 16, 0)
    with pytest.raises(pc.PurseCryptoError, match="padding"):
        pc.des_mac(bytes(8), b"", 3)


# --- Key material -------------------------------------------------------------------


def test_reprs_hide_keys(city: CityMasterKeys) -> None:
    card_keys = city.card_keys(CARD_NUMBER)
    sam = PurchaseSam([city], TERMINAL_ID)
    texts = [repr(city), repr(card_keys), repr(sam), repr(LoadHost([city]))]
    secrets = [
        city.purchase_master_key,
        city.load_master_key,
        city.tac_master_key,
        card_keys.dpk,
        card_keys.dlk,
        card_keys.dtk,
    ]
    for text in texts:
        assert "hidden" in text
        for secret in secrets:
            assert secret.hex() not in text.lower()


def test_master_keys_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(SamError, match="tac_master_key"):
        CityMasterKeys(1, 1, os.urandom(16), os.urandom(16), os.urandom(8))


# --- The gate's SAM -----------------------------------------------------------------


def _purse(city: CityMasterKeys, balance_fen: int = 5_000) -> Purse:
    profile = PurseProfile(
        card_number=CARD_NUMBER,
        issuer_id=bytes(8),
        start_date=bytes.fromhex("20260101"),
        expiry_date=bytes.fromhex("20360101"),
        keys=(city.card_keys(CARD_NUMBER),),
    )
    card = Purse(profile, balance_fen=balance_fen)
    _ok(card.process(select_command()))
    return card


def _ok(response: bytes) -> bytes:
    data, sw = split_response(response)
    assert sw == Sw.OK, f"{sw:04X}"
    return data


_INIT = PurchaseInit(
    balance_fen=5_000,
    offline_counter=4,
    overdraft_limit_fen=0,
    key_version=3,
    algorithm=0x00,
    card_random=bytes.fromhex("01020304"),
)


def _init(key_version: int = 3, algorithm: int = 0x00) -> PurchaseInit:
    return replace(_INIT, key_version=key_version, algorithm=algorithm)


def test_each_authorized_purchase_takes_the_next_terminal_transaction_number(
    city: CityMasterKeys,
) -> None:
    sam = PurchaseSam([city], TERMINAL_ID, terminal_transaction_number=9)
    first = sam.authorize(CARD_NUMBER, _init(), 300, 0x06, DATE, TIME)
    second = sam.authorize(CARD_NUMBER, _init(), 300, 0x06, DATE, TIME)
    assert (first.data.terminal_transaction_number, second.data.terminal_transaction_number) == (
        9,
        10,
    )
    assert first.mac1 != second.mac1  # the number is part of the session key
    assert sam.terminal_transaction_number == 11
    assert "session_key" not in repr(first)


def test_an_exhausted_terminal_transaction_number_is_refused(city: CityMasterKeys) -> None:
    sam = PurchaseSam([city], TERMINAL_ID, terminal_transaction_number=2**32 - 1)
    sam.authorize(CARD_NUMBER, _init(), 300, 0x06, DATE, TIME)
    with pytest.raises(SamError, match="exhausted"):
        sam.authorize(CARD_NUMBER, _init(), 300, 0x06, DATE, TIME)


def test_a_card_key_version_the_module_lacks_is_refused(city: CityMasterKeys) -> None:
    sam = PurchaseSam([city], TERMINAL_ID)
    with pytest.raises(SamError, match="key version 4"):
        sam.authorize(CARD_NUMBER, _init(key_version=4), 300, 0x06, DATE, TIME)
    with pytest.raises(SamError, match="algorithm"):
        sam.authorize(CARD_NUMBER, _init(algorithm=0x04), 300, 0x06, DATE, TIME)


def test_a_module_with_two_key_versions_serves_cards_of_either(city: CityMasterKeys) -> None:
    older = CityMasterKeys.generate(key_index=1, key_version=2)
    sam = PurchaseSam([older, city], TERMINAL_ID)
    session = sam.authorize(CARD_NUMBER, _init(key_version=2), 300, 0x06, DATE, TIME)
    assert session.key_version == 2


def test_clearing_verifies_a_tac_with_the_city_tac_master_key(city: CityMasterKeys) -> None:
    data = pc.PurchaseData(300, 0x09, TERMINAL_ID, 77, DATE, TIME)
    dtk = city.card_keys(CARD_NUMBER).dtk
    tac = pc.purse_mac(pc.tac_key(dtk), data.tac_input())
    assert verify_purchase_tac(city, CARD_NUMBER, data, tac)
    other = pc.PurchaseData(301, 0x09, TERMINAL_ID, 77, DATE, TIME)
    assert not verify_purchase_tac(city, CARD_NUMBER, other, tac)
    other_card = bytes.fromhex("31040000000012345679")
    assert not verify_purchase_tac(city, other_card, data, tac)


# --- The load host ------------------------------------------------------------------


def _load_request(card: Purse, amount_fen: int) -> LoadRequest:
    command = initialize_for_load_command(1, amount_fen, TERMINAL_ID)
    init = LoadInit.decode(_ok(card.process(command)))
    return LoadRequest(CARD_NUMBER, init, amount_fen, TERMINAL_ID, DATE, TIME)


def test_the_host_refuses_a_second_request_for_the_same_card_and_online_counter(
    city: CityMasterKeys,
) -> None:
    card = _purse(city)
    host = LoadHost([city])
    request = _load_request(card, 1_000)
    assert host.authorize_load(request).approved
    replay = host.authorize_load(request)
    assert (replay.approved, replay.refusal) == (False, LoadRefusal.ONLINE_COUNTER_USED)
    # A fresh INITIALIZE at the same counter (the first load never reached the card) is
    # refused too until an operator voids the first approval.
    fresh = _load_request(card, 1_000)
    assert host.authorize_load(fresh).refusal is LoadRefusal.ONLINE_COUNTER_USED
    assert host.void(CARD_NUMBER, 0)
    decision = host.authorize_load(fresh)
    assert decision.mac2 is not None
    tac = _ok(card.process(credit_for_load_command(DATE, TIME, decision.mac2)))
    assert host.confirm(CARD_NUMBER, 0, tac)
    assert host.status(CARD_NUMBER, 0) is LoadStatus.CONFIRMED
    assert card.balance_fen == 6_000


def test_the_host_refuses_a_wrong_load_mac1(city: CityMasterKeys) -> None:
    card = _purse(city)
    host = LoadHost([city])
    request = _load_request(card, 1_000)
    inflated = LoadRequest(CARD_NUMBER, request.init, 100_000, TERMINAL_ID, DATE, TIME)
    assert host.authorize_load(inflated).refusal is LoadRefusal.MAC1_INVALID
    assert host.status(CARD_NUMBER, 0) is None


def test_the_host_refuses_an_unknown_key_version(city: CityMasterKeys) -> None:
    card = _purse(city)
    host = LoadHost([CityMasterKeys.generate(key_index=1, key_version=9)])
    assert host.authorize_load(_load_request(card, 1_000)).refusal is (
        LoadRefusal.KEY_VERSION_UNKNOWN
    )


def test_a_wrong_load_tac_does_not_confirm(city: CityMasterKeys) -> None:
    card = _purse(city)
    host = LoadHost([city])
    assert host.authorize_load(_load_request(card, 1_000)).approved
    assert not host.confirm(CARD_NUMBER, 0, b"\x00\x00\x00\x00")
    assert host.status(CARD_NUMBER, 0) is LoadStatus.APPROVED


def test_a_full_host_refuses_new_loads(
    city: CityMasterKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sam_module, "LOAD_RECORDS_MAX", 1)
    host = LoadHost([city])
    card = _purse(city)
    assert host.authorize_load(_load_request(card, 1_000)).approved
    other = Purse(
        PurseProfile(
            card_number=bytes.fromhex("31040000000099999999"),
            issuer_id=bytes(8),
            start_date=bytes(4),
            expiry_date=bytes(4),
            keys=(city.card_keys(bytes.fromhex("31040000000099999999")),),
        )
    )
    _ok(other.process(select_command()))
    command = initialize_for_load_command(1, 1_000, TERMINAL_ID)
    init = LoadInit.decode(_ok(other.process(command)))
    request = LoadRequest(
        bytes.fromhex("31040000000099999999"), init, 1_000, TERMINAL_ID, DATE, TIME
    )
    assert host.authorize_load(request).refusal is LoadRefusal.CAPACITY
