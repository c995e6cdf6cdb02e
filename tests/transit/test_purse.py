"""The purse applet as a gate and a load terminal see it: APDUs in, data and SW out."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milletpay.emv import tlv
from milletpay.transit import purse as purse_module
from milletpay.transit import purse_crypto as pc
from milletpay.transit.purse import (
    AID,
    BALANCE_MAX_FEN,
    MAC_FAILURES_MAX,
    SFI_TRANSACTIONS,
    SFI_TRIPS,
    TRANSACTION_RECORDS_MAX,
    TRIP_RECORDS_MAX,
    LoadInit,
    PurchaseInit,
    Purse,
    PurseProfile,
    Sw,
    TearPoint,
    TransactionRecord,
    TransitMode,
    TripRecord,
    credit_for_load_command,
    debit_for_purchase_command,
    get_balance_command,
    get_transaction_prove_command,
    initialize_for_load_command,
    initialize_for_purchase_command,
    read_record_command,
    select_command,
    split_response,
    update_capp_data_cache_command,
)
from milletpay.transit.sam import (
    CityMasterKeys,
    LoadHost,
    LoadRequest,
    PurchaseSam,
    PurchaseSession,
)

CARD_NUMBER = bytes.fromhex("31040000000012345678")  # 20 BCD digits
ISSUER_ID = bytes.fromhex("0310000000000000")
TERMINAL_ID = bytes.fromhex("000000100001")
LOAD_TERMINAL_ID = bytes.fromhex("990000000001")
DATE = bytes.fromhex("20261126")
TIME = bytes.fromhex("073015")
KEY_INDEX = 1
OVERDRAFT_LIMIT_FEN = 1_000
FARE_FEN = 300
KNOWN_SWS = frozenset(int(sw) for sw in Sw)


def make_purse(
    keys: CityMasterKeys, balance_fen: int = 5_000, overdraft_limit_fen: int = OVERDRAFT_LIMIT_FEN
) -> Purse:
    profile = PurseProfile(
        card_number=CARD_NUMBER,
        issuer_id=ISSUER_ID,
        start_date=bytes.fromhex("20260101"),
        expiry_date=bytes.fromhex("20360101"),
        keys=(keys.card_keys(CARD_NUMBER),),
        overdraft_limit_fen=overdraft_limit_fen,
    )
    return Purse(profile, balance_fen=balance_fen)


@pytest.fixture
def city() -> CityMasterKeys:
    return CityMasterKeys(KEY_INDEX, 1, os.urandom(16), os.urandom(16), os.urandom(16))


@pytest.fixture
def purse(city: CityMasterKeys) -> Purse:
    card = make_purse(city)
    assert_sw(card.process(select_command()), Sw.OK)
    return card


@pytest.fixture
def sam(city: CityMasterKeys) -> PurchaseSam:
    return PurchaseSam([city], TERMINAL_ID, terminal_transaction_number=41)


def assert_sw(response: bytes, sw: Sw) -> bytes:
    data, got = split_response(response)
    assert got == sw, f"{got:04X} != {sw:04X}"
    return data


def initialize(
    card: Purse, amount_fen: int = FARE_FEN, *, composite: bool = False, key_index: int = KEY_INDEX
) -> PurchaseInit:
    command = initialize_for_purchase_command(
        key_index, amount_fen, TERMINAL_ID, composite=composite
    )
    return PurchaseInit.decode(assert_sw(card.process(command), Sw.OK))


def authorize(
    card: Purse, sam: PurchaseSam, amount_fen: int = FARE_FEN, *, composite: bool = False
) -> PurchaseSession:
    init = initialize(card, amount_fen, composite=composite)
    kind = pc.TRANSACTION_TYPE_COMPOSITE if composite else pc.TRANSACTION_TYPE_PURCHASE
    return sam.authorize(CARD_NUMBER, init, amount_fen, kind, DATE, TIME)


def debit(session: PurchaseSession, mac1: bytes | None = None) -> bytes:
    data = session.data
    return debit_for_purchase_command(
        data.terminal_transaction_number, data.date, data.time, mac1 or session.mac1
    )


def purchase(card: Purse, sam: PurchaseSam, amount_fen: int = FARE_FEN) -> tuple[bytes, bytes]:
    session = authorize(card, sam, amount_fen)
    answer = assert_sw(card.process(debit(session)), Sw.OK)
    tac, mac2 = answer[:4], answer[4:]
    assert sam.verify_mac2(session, mac2)
    assert sam.verify_tac(session, tac)
    return tac, mac2


def trip(amount_fen: int = FARE_FEN, station: int = 0x0101_0203) -> bytes:
    return TripRecord(TransitMode.METRO, station, DATE, TIME, amount_fen).encode()


def money_state(card: Purse) -> tuple[int, int, int, tuple[bytes, ...], tuple[bytes, ...]]:
    s = card.state
    return s.balance_fen, s.offline_counter, s.online_counter, s.transactions, s.trips


# --- Selection and reading ----------------------------------------------------------


def test_select_answers_the_fci_with_the_card_number_in_the_proprietary_template(
    city: CityMasterKeys,
) -> None:
    card = make_purse(city)
    fci = tlv.decode(assert_sw(card.process(select_command()), Sw.OK))
    values = tlv.primitives(fci)
    assert values["84"] == AID
    public = values["9F0C"]
    assert len(public) == 30
    assert public[:8] == ISSUER_ID
    assert public[10:20] == CARD_NUMBER


def test_select_of_another_aid_is_file_not_found(city: CityMasterKeys) -> None:
    card = make_purse(city)
    other = bytes.fromhex("00A4040008A000000333010101")
    assert_sw(card.process(other), Sw.FILE_NOT_FOUND)
    assert_sw(card.process(get_balance_command()), Sw.CONDITIONS_NOT_SATISFIED)


def test_commands_before_select_are_refused(city: CityMasterKeys) -> None:
    card = make_purse(city)
    assert_sw(card.process(get_balance_command()), Sw.CONDITIONS_NOT_SATISFIED)
    command = initialize_for_purchase_command(KEY_INDEX, FARE_FEN, TERMINAL_ID)
    assert_sw(card.process(command), Sw.CONDITIONS_NOT_SATISFIED)


def test_get_balance_answers_four_bytes_in_fen(purse: Purse) -> None:
    assert assert_sw(purse.process(get_balance_command()), Sw.OK) == (5_000).to_bytes(4, "big")


def test_an_overdrawn_balance_reads_as_a_negative_twos_complement_number(
    city: CityMasterKeys,
) -> None:
    card = make_purse(city, balance_fen=-250)
    assert_sw(card.process(select_command()), Sw.OK)
    assert assert_sw(card.process(get_balance_command()), Sw.OK) == bytes.fromhex("FFFFFF06")


def test_read_binary_returns_the_public_application_data(purse: Purse) -> None:
    public = assert_sw(purse.process(bytes.fromhex("00B095001E")), Sw.OK)
    assert public[10:20] == CARD_NUMBER
    assert_sw(purse.process(bytes.fromhex("00B0960000")), Sw.FILE_NOT_FOUND)


@pytest.mark.parametrize(
    ("command", "sw"),
    [
        (b"\x80\x5c", Sw.WRONG_LENGTH),
        (bytes.fromhex("805C000204AA"), Sw.WRONG_LENGTH),  # Lc 04 but one byte of data
        (bytes.fromhex("805C000208"), Sw.WRONG_LENGTH),  # Le 08 for a 4-byte balance
        (bytes.fromhex("805C000104"), Sw.WRONG_P1P2),  # P2 01: the e-deposit, not kept
        (bytes.fromhex("80CA000000"), Sw.INS_NOT_SUPPORTED),
        (bytes.fromhex("9050010200"), Sw.CLA_NOT_SUPPORTED),
        (bytes.fromhex("00B201C500"), Sw.WRONG_P1P2),  # P2 mode 101 is not "record number"
        (bytes.fromhex("00B2010C00"), Sw.FILE_NOT_FOUND),  # SFI 01
        (bytes.fromhex("00B201C400"), Sw.RECORD_NOT_FOUND),  # no transaction yet
        (bytes.fromhex("00B200C400"), Sw.WRONG_P1P2),  # record 0
        (bytes(300), Sw.WRONG_LENGTH),
    ],
)
def test_malformed_commands_answer_their_status_word(purse: Purse, command: bytes, sw: Sw) -> None:
    before = money_state(purse)
    assert_sw(purse.process(command), sw)
    assert money_state(purse) == before


# --- Purchase -----------------------------------------------------------------------


def test_a_purchase_debits_the_fare_and_its_mac2_and_tac_verify(
    purse: Purse, sam: PurchaseSam
) -> None:
    purchase(purse, sam)
    assert purse.balance_fen == 5_000 - FARE_FEN
    assert purse.offline_counter == 1
    record = TransactionRecord.decode(
        assert_sw(purse.process(read_record_command(SFI_TRANSACTIONS, 1)), Sw.OK)
    )
    assert record == TransactionRecord(
        0, OVERDRAFT_LIMIT_FEN, FARE_FEN, pc.TRANSACTION_TYPE_PURCHASE, TERMINAL_ID, DATE, TIME
    )


def test_initialize_for_purchase_answers_balance_counter_limit_version_algorithm_random(
    purse: Purse,
) -> None:
    init = initialize(purse)
    assert (init.balance_fen, init.offline_counter, init.overdraft_limit_fen) == (
        5_000,
        0,
        OVERDRAFT_LIMIT_FEN,
    )
    assert (init.key_version, init.algorithm, len(init.card_random)) == (1, 0x00, 4)


def test_a_wrong_mac1_is_refused_and_changes_nothing(purse: Purse, sam: PurchaseSam) -> None:
    before = money_state(purse)
    session = authorize(purse, sam)
    wrong = bytes(b ^ 0x01 for b in session.mac1)
    assert_sw(purse.process(debit(session, wrong)), Sw.MAC1_WRONG)
    assert money_state(purse) == before
    # The session is spent: the right MAC1 sent afterwards finds no INITIALIZE.
    assert_sw(purse.process(debit(session)), Sw.CONDITIONS_NOT_SATISFIED)
    assert money_state(purse) == before


def test_consecutive_wrong_macs_lock_the_purse(purse: Purse, sam: PurchaseSam) -> None:
    for _ in range(MAC_FAILURES_MAX):
        session = authorize(purse, sam)
        assert_sw(purse.process(debit(session, b"\x00\x00\x00\x00")), Sw.MAC1_WRONG)
    command = initialize_for_purchase_command(KEY_INDEX, FARE_FEN, TERMINAL_ID)
    assert_sw(purse.process(command), Sw.APPLICATION_LOCKED)
    assert purse.balance_fen == 5_000


def test_a_good_debit_resets_the_wrong_mac_count(purse: Purse, sam: PurchaseSam) -> None:
    for _ in range(MAC_FAILURES_MAX - 1):
        session = authorize(purse, sam)
        assert_sw(purse.process(debit(session, b"\x00\x00\x00\x00")), Sw.MAC1_WRONG)
    purchase(purse, sam)
    assert purse.state.mac_failures == 0


def test_the_overdraft_limit_allows_the_balance_down_to_minus_the_limit(
    city: CityMasterKeys, sam: PurchaseSam
) -> None:
    card = make_purse(city, balance_fen=200)
    assert_sw(card.process(select_command()), Sw.OK)
    purchase(card, sam, 200 + OVERDRAFT_LIMIT_FEN)
    assert card.balance_fen == -OVERDRAFT_LIMIT_FEN
    assert_sw(card.process(get_balance_command()), Sw.OK)


def test_a_fare_above_the_overdraft_limit_is_refused(
    city: CityMasterKeys, sam: PurchaseSam
) -> None:
    card = make_purse(city, balance_fen=200)
    assert_sw(card.process(select_command()), Sw.OK)
    command = initialize_for_purchase_command(KEY_INDEX, 200 + OVERDRAFT_LIMIT_FEN + 1, TERMINAL_ID)
    assert_sw(card.process(command), Sw.BALANCE_TOO_LOW)
    assert card.balance_fen == 200


def test_without_overdraft_a_fare_above_the_balance_is_refused(city: CityMasterKeys) -> None:
    card = make_purse(city, balance_fen=299, overdraft_limit_fen=0)
    assert_sw(card.process(select_command()), Sw.OK)
    command = initialize_for_purchase_command(KEY_INDEX, 300, TERMINAL_ID)
    assert_sw(card.process(command), Sw.BALANCE_TOO_LOW)


def test_an_unknown_key_index_is_not_supported(purse: Purse) -> None:
    command = initialize_for_purchase_command(KEY_INDEX + 1, FARE_FEN, TERMINAL_ID)
    assert_sw(purse.process(command), Sw.KEY_NOT_SUPPORTED)
    load = initialize_for_load_command(7, 1_000, LOAD_TERMINAL_ID)
    assert_sw(purse.process(load), Sw.KEY_NOT_SUPPORTED)


def test_debit_without_initialize_is_refused(purse: Purse) -> None:
    command = debit_for_purchase_command(1, DATE, TIME, b"\x01\x02\x03\x04")
    assert_sw(purse.process(command), Sw.CONDITIONS_NOT_SATISFIED)
    assert purse.balance_fen == 5_000


def test_any_command_between_initialize_and_debit_cancels_the_purchase(
    purse: Purse, sam: PurchaseSam
) -> None:
    session = authorize(purse, sam)
    assert_sw(purse.process(get_balance_command()), Sw.OK)
    assert_sw(purse.process(debit(session)), Sw.CONDITIONS_NOT_SATISFIED)
    assert purse.offline_counter == 0


def test_the_offline_counter_moves_by_exactly_one_per_debit(purse: Purse, sam: PurchaseSam) -> None:
    for expected in range(1, 6):
        purchase(purse, sam, 100)
        assert purse.offline_counter == expected
        assert purse.online_counter == 0
    assert purse.balance_fen == 5_000 - 500


def test_the_transaction_file_keeps_the_last_records_newest_first(
    city: CityMasterKeys, sam: PurchaseSam
) -> None:
    card = make_purse(city, balance_fen=BALANCE_MAX_FEN)
    assert_sw(card.process(select_command()), Sw.OK)
    for amount in range(1, TRANSACTION_RECORDS_MAX + 3):
        purchase(card, sam, amount)
    newest = TransactionRecord.decode(
        assert_sw(card.process(read_record_command(SFI_TRANSACTIONS, 1)), Sw.OK)
    )
    oldest = TransactionRecord.decode(
        assert_sw(
            card.process(read_record_command(SFI_TRANSACTIONS, TRANSACTION_RECORDS_MAX)), Sw.OK
        )
    )
    assert (newest.amount_fen, newest.counter) == (TRANSACTION_RECORDS_MAX + 2, 11)
    assert oldest.amount_fen == 3
    beyond = read_record_command(SFI_TRANSACTIONS, TRANSACTION_RECORDS_MAX + 1)
    assert_sw(card.process(beyond), Sw.RECORD_NOT_FOUND)


# --- Composite purchase (transit) ---------------------------------------------------


def test_a_composite_purchase_writes_the_trip_record_with_the_debit(
    purse: Purse, sam: PurchaseSam
) -> None:
    session = authorize(purse, sam, composite=True)
    assert_sw(purse.process(update_capp_data_cache_command(trip())), Sw.OK)
    assert purse.state.trips == ()  # cached, not yet written
    answer = assert_sw(purse.process(debit(session)), Sw.OK)
    assert sam.verify_tac(session, answer[:4])
    assert sam.verify_mac2(session, answer[4:])
    record = TripRecord.decode(assert_sw(purse.process(read_record_command(SFI_TRIPS, 1)), Sw.OK))
    assert record == TripRecord(TransitMode.METRO, 0x0101_0203, DATE, TIME, FARE_FEN)
    detail = TransactionRecord.decode(
        assert_sw(purse.process(read_record_command(SFI_TRANSACTIONS, 1)), Sw.OK)
    )
    assert detail.transaction_type == pc.TRANSACTION_TYPE_COMPOSITE


def test_a_composite_debit_without_its_trip_record_is_refused(
    purse: Purse, sam: PurchaseSam
) -> None:
    session = authorize(purse, sam, composite=True)
    assert_sw(purse.process(debit(session)), Sw.CONDITIONS_NOT_SATISFIED)
    assert money_state(purse) == (5_000, 0, 0, (), ())


def test_a_trip_record_for_another_amount_is_refused(purse: Purse, sam: PurchaseSam) -> None:
    session = authorize(purse, sam, composite=True)
    assert_sw(purse.process(update_capp_data_cache_command(trip(FARE_FEN + 1))), Sw.WRONG_DATA)
    assert_sw(purse.process(update_capp_data_cache_command(trip())), Sw.OK)
    assert_sw(purse.process(debit(session)), Sw.OK)
    assert len(purse.state.trips) == 1


def test_update_capp_data_cache_outside_a_composite_purchase_is_refused(
    purse: Purse, sam: PurchaseSam
) -> None:
    assert_sw(purse.process(update_capp_data_cache_command(trip())), Sw.CONDITIONS_NOT_SATISFIED)
    authorize(purse, sam)  # a plain purchase has no trip record
    assert_sw(purse.process(update_capp_data_cache_command(trip())), Sw.CONDITIONS_NOT_SATISFIED)


def test_the_trip_file_keeps_the_last_trips(city: CityMasterKeys, sam: PurchaseSam) -> None:
    card = make_purse(city, balance_fen=BALANCE_MAX_FEN)
    assert_sw(card.process(select_command()), Sw.OK)
    for station in range(TRIP_RECORDS_MAX + 2):
        session = authorize(card, sam, composite=True)
        assert_sw(card.process(update_capp_data_cache_command(trip(station=station))), Sw.OK)
        assert_sw(card.process(debit(session)), Sw.OK)
    stations = [TripRecord.decode(r).entry_station for r in card.state.trips]
    assert stations == list(range(TRIP_RECORDS_MAX + 1, 1, -1))


# --- Torn debit ---------------------------------------------------------------------


def test_a_debit_torn_before_the_commit_changes_nothing(purse: Purse, sam: PurchaseSam) -> None:
    before = money_state(purse)
    session = authorize(purse, sam)
    purse.arm_tear(TearPoint.BEFORE_COMMIT)
    assert purse.process(debit(session)) == b""  # the phone left the field
    # Next tap: the purse powers up, drops the unfinished journal, and has no prove.
    assert_sw(purse.process(select_command()), Sw.OK)
    assert money_state(purse) == before
    prove = get_transaction_prove_command(pc.TRANSACTION_TYPE_PURCHASE, session.offline_counter)
    assert_sw(purse.process(prove), Sw.PROVE_NOT_AVAILABLE)
    # So the gate charges the fare again, once.
    purchase(purse, sam)
    assert purse.balance_fen == 5_000 - FARE_FEN
    assert purse.offline_counter == 1


def test_a_debit_torn_after_the_commit_is_resolved_by_get_transaction_prove(
    purse: Purse, sam: PurchaseSam
) -> None:
    session = authorize(purse, sam)
    purse.arm_tear(TearPoint.AFTER_COMMIT)
    assert purse.process(debit(session)) == b""  # the gate got neither TAC nor MAC2
    assert_sw(purse.process(select_command()), Sw.OK)
    assert purse.balance_fen == 5_000 - FARE_FEN
    assert purse.offline_counter == 1
    prove = get_transaction_prove_command(pc.TRANSACTION_TYPE_PURCHASE, session.offline_counter)
    answer = assert_sw(purse.process(prove), Sw.OK)
    mac2, tac = answer[:4], answer[4:]
    assert sam.verify_mac2(session, mac2)
    assert sam.verify_tac(session, tac)
    # The gate completes its record and does not charge again: exactly one fare.
    assert purse.balance_fen == 5_000 - FARE_FEN
    assert len(purse.state.transactions) == 1


def test_get_transaction_prove_for_another_counter_or_type_is_not_available(
    purse: Purse, sam: PurchaseSam
) -> None:
    purchase(purse, sam)
    assert_sw(purse.process(get_transaction_prove_command(0x06, 1)), Sw.PROVE_NOT_AVAILABLE)
    assert_sw(purse.process(get_transaction_prove_command(0x09, 0)), Sw.PROVE_NOT_AVAILABLE)
    assert_sw(purse.process(get_transaction_prove_command(0x02, 0)), Sw.WRONG_P1P2)
    assert_sw(purse.process(get_transaction_prove_command(0x06, 0)), Sw.OK)


# --- Load ---------------------------------------------------------------------------


def load(card: Purse, host: LoadHost, amount_fen: int) -> tuple[LoadInit, bytes, bytes]:
    command = initialize_for_load_command(KEY_INDEX, amount_fen, LOAD_TERMINAL_ID)
    init = LoadInit.decode(assert_sw(card.process(command), Sw.OK))
    request = LoadRequest(CARD_NUMBER, init, amount_fen, LOAD_TERMINAL_ID, DATE, TIME)
    decision = host.authorize_load(request)
    assert decision.mac2 is not None
    tac = assert_sw(card.process(credit_for_load_command(DATE, TIME, decision.mac2)), Sw.OK)
    return init, decision.mac2, tac


def test_a_load_credits_the_purse_and_its_tac_verifies(purse: Purse, city: CityMasterKeys) -> None:
    host = LoadHost([city])
    init, _mac2, tac = load(purse, host, 10_000)
    assert (init.balance_fen, init.online_counter) == (5_000, 0)
    assert purse.balance_fen == 15_000
    assert (purse.online_counter, purse.offline_counter) == (1, 0)
    assert host.confirm(CARD_NUMBER, 0, tac)
    record = TransactionRecord.decode(
        assert_sw(purse.process(read_record_command(SFI_TRANSACTIONS, 1)), Sw.OK)
    )
    assert (record.counter, record.amount_fen, record.transaction_type) == (0, 10_000, 0x02)


def test_a_replayed_mac2_is_refused_by_the_card(purse: Purse, city: CityMasterKeys) -> None:
    host = LoadHost([city])
    _init, mac2, _tac = load(purse, host, 1_000)
    # The same CREDIT FOR LOAD again: its INITIALIZE was spent by the first credit.
    assert_sw(purse.process(credit_for_load_command(DATE, TIME, mac2)), Sw.CONDITIONS_NOT_SATISFIED)
    # Against a fresh INITIALIZE: new random and counter, so a new session key.
    command = initialize_for_load_command(KEY_INDEX, 1_000, LOAD_TERMINAL_ID)
    assert_sw(purse.process(command), Sw.OK)
    assert_sw(purse.process(credit_for_load_command(DATE, TIME, mac2)), Sw.LOAD_MAC_INVALID)
    assert purse.balance_fen == 6_000
    assert purse.online_counter == 1


def test_a_load_above_the_maximum_balance_is_refused(purse: Purse) -> None:
    command = initialize_for_load_command(KEY_INDEX, BALANCE_MAX_FEN - 5_000 + 1, LOAD_TERMINAL_ID)
    assert_sw(purse.process(command), Sw.WRONG_DATA)
    assert_sw(
        purse.process(initialize_for_load_command(KEY_INDEX, 0, LOAD_TERMINAL_ID)), Sw.WRONG_DATA
    )


def test_credit_without_initialize_is_refused(purse: Purse) -> None:
    command = credit_for_load_command(DATE, TIME, b"\x00\x00\x00\x00")
    assert_sw(purse.process(command), Sw.CONDITIONS_NOT_SATISFIED)


def test_a_load_torn_before_the_commit_leaves_the_counter_for_a_retry(
    purse: Purse, city: CityMasterKeys
) -> None:
    command = initialize_for_load_command(KEY_INDEX, 1_000, LOAD_TERMINAL_ID)
    init = LoadInit.decode(assert_sw(purse.process(command), Sw.OK))
    host = LoadHost([city])
    decision = host.authorize_load(
        LoadRequest(CARD_NUMBER, init, 1_000, LOAD_TERMINAL_ID, DATE, TIME)
    )
    assert decision.mac2 is not None
    purse.arm_tear(TearPoint.BEFORE_COMMIT)
    assert purse.process(credit_for_load_command(DATE, TIME, decision.mac2)) == b""
    assert_sw(purse.process(select_command()), Sw.OK)
    assert (purse.balance_fen, purse.online_counter) == (5_000, 0)


# --- Any bytes, any order -----------------------------------------------------------

_AMOUNTS = st.integers(0, 20_000)
_STRUCTURED = st.one_of(
    st.just(select_command()),
    st.just(get_balance_command()),
    st.builds(
        initialize_for_purchase_command,
        st.sampled_from([KEY_INDEX, 0, 2]),
        _AMOUNTS,
        st.just(TERMINAL_ID),
        composite=st.booleans(),
    ),
    st.builds(update_capp_data_cache_command, st.builds(trip, _AMOUNTS)),
    st.builds(
        debit_for_purchase_command,
        st.integers(0, 2**32 - 1),
        st.just(DATE),
        st.just(TIME),
        st.binary(min_size=4, max_size=4),
    ),
    st.builds(initialize_for_load_command, st.just(KEY_INDEX), _AMOUNTS, st.just(LOAD_TERMINAL_ID)),
    st.builds(
        credit_for_load_command, st.just(DATE), st.just(TIME), st.binary(min_size=4, max_size=4)
    ),
    st.builds(get_transaction_prove_command, st.sampled_from([2, 6, 9]), st.integers(0, 3)),
    st.builds(
        read_record_command, st.sampled_from([SFI_TRANSACTIONS, SFI_TRIPS, 1]), st.integers(0, 12)
    ),
)
_RAW = st.binary(min_size=0, max_size=270)
_HEADER_THEN_RAW = st.builds(
    lambda head, rest: head + rest,
    st.sampled_from([b"\x80\x50", b"\x80\x54", b"\x80\x52", b"\x80\x5a", b"\x80\xdc", b"\x00\xb2"]),
    st.binary(max_size=24),
)
# A paid step: INITIALIZE then a DEBIT or CREDIT with the right MAC from the SAM or host.
_PAID = st.tuples(st.sampled_from(["purchase", "load"]), _AMOUNTS)
_STEPS = st.lists(st.one_of(_STRUCTURED, _RAW, _HEADER_THEN_RAW, _PAID), max_size=40)


class _Checked:
    """Sends commands to a purse and checks each answer against the invariants."""

    def __init__(self, card: Purse) -> None:
        self.card = card
        self.initialized_fen = 0  # the amount of the last INITIALIZE the purse accepted
        self.completed = 0

    def send(self, command: bytes) -> bytes:
        before = self.card.state
        response = self.card.process(command)
        data, sw = split_response(response)
        assert sw in KNOWN_SWS
        after = self.card.state
        debited = command[:2] == b"\x80\x54" and sw == Sw.OK
        credited = command[:2] == b"\x80\x52" and sw == Sw.OK
        self.completed += debited + credited
        assert after.offline_counter == before.offline_counter + int(debited)
        assert after.online_counter == before.online_counter + int(credited)
        moved_fen = -self.initialized_fen if debited else self.initialized_fen if credited else 0
        assert after.balance_fen == before.balance_fen + moved_fen
        if not (debited or credited):
            assert (after.transactions, after.trips) == (before.transactions, before.trips)
        assert -OVERDRAFT_LIMIT_FEN <= after.balance_fen <= BALANCE_MAX_FEN
        if command[:2] == b"\x80\x50" and sw == Sw.OK:
            self.initialized_fen = int.from_bytes(command[6:10], "big")
        return data if sw == Sw.OK else b""


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_STEPS)
def test_any_command_sequence_answers_a_known_status_word_and_keeps_the_invariants(
    steps: list[bytes | tuple[str, int]],
) -> None:
    keys = CityMasterKeys(
        KEY_INDEX, 1, bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48))
    )
    checked = _Checked(make_purse(keys, balance_fen=2_000))
    sam = PurchaseSam([keys], TERMINAL_ID)
    host = LoadHost([keys])
    checked.send(select_command())
    for step in steps:
        if isinstance(step, bytes):
            checked.send(step)
        elif step[0] == "purchase":
            _paid_purchase(checked, sam, step[1])
        else:
            _paid_load(checked, host, step[1])


def _paid_purchase(checked: _Checked, sam: PurchaseSam, amount_fen: int) -> None:
    answer = checked.send(initialize_for_purchase_command(KEY_INDEX, amount_fen, TERMINAL_ID))
    if answer:
        init = PurchaseInit.decode(answer)
        session = sam.authorize(CARD_NUMBER, init, amount_fen, 0x06, DATE, TIME)
        assert checked.send(debit(session))


def _paid_load(checked: _Checked, host: LoadHost, amount_fen: int) -> None:
    answer = checked.send(initialize_for_load_command(KEY_INDEX, amount_fen, LOAD_TERMINAL_ID))
    if answer:
        init = LoadInit.decode(answer)
        request = LoadRequest(CARD_NUMBER, init, amount_fen, LOAD_TERMINAL_ID, DATE, TIME)
        decision = host.authorize_load(request)
        assert decision.mac2 is not None
        assert checked.send(credit_for_load_command(DATE, TIME, decision.mac2))


# --- Limits at their edge -----------------------------------------------------------


def test_a_purse_whose_offline_counter_is_at_its_maximum_refuses_purchases(
    purse: Purse, sam: PurchaseSam, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(purse_module, "COUNTER_MAX", 2)
    purchase(purse, sam, 100)
    purchase(purse, sam, 100)
    command = initialize_for_purchase_command(KEY_INDEX, 100, TERMINAL_ID)
    assert_sw(purse.process(command), Sw.COUNTER_EXHAUSTED)
    assert purse.offline_counter == 2


def test_a_purse_whose_online_counter_is_at_its_maximum_refuses_loads(
    purse: Purse, city: CityMasterKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(purse_module, "COUNTER_MAX", 1)
    load(purse, LoadHost([city]), 100)
    command = initialize_for_load_command(KEY_INDEX, 100, LOAD_TERMINAL_ID)
    assert_sw(purse.process(command), Sw.COUNTER_EXHAUSTED)
    assert purse.online_counter == 1


def test_a_load_up_to_exactly_the_maximum_balance_is_accepted(
    purse: Purse, city: CityMasterKeys
) -> None:
    load(purse, LoadHost([city]), BALANCE_MAX_FEN - 5_000)
    assert purse.balance_fen == BALANCE_MAX_FEN
