"""Transit gates as specifications: a tap in, a decision out, the card's money moved once.

Fares are the fare table's (docs/transit-fares.md); a gate prices from what the card
carries, so every scenario here starts from an empty card and builds its records by taps.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milletpay.core.clock import NS_PER_S
from milletpay.transit import purse_crypto as pc
from milletpay.transit.blacklist import BlacklistService
from milletpay.transit.fares import (
    CST_OFFSET_S,
    DiscountName,
    Mode,
    OpenTrip,
    PastRide,
    Tap,
    fare_table,
)
from milletpay.transit.gate import (
    RECORDS_MAX,
    CardContextError,
    CardTrip,
    Gate,
    GateDecision,
    GateError,
    Reason,
    TornDebits,
    TripKind,
    card_context,
    decode_trip,
    station_numbers,
)
from milletpay.transit.purse import (
    MAC_FAILURES_MAX,
    SFI_PUBLIC_DATA,
    Purse,
    PurseProfile,
    TearPoint,
    debit_for_purchase_command,
    initialize_for_purchase_command,
    read_binary_command,
    select_command,
    split_response,
)
from milletpay.transit.records import TapRecord
from milletpay.transit.sam import CityMasterKeys, PurchaseSam, verify_purchase_tac

CARD_A = bytes.fromhex("31040000000012345678")
CARD_B = bytes.fromhex("31040000000087654321")
MIN_NS = 60 * NS_PER_S
#: 2026-11-26 08:00 China time.
T0 = int(
    (datetime.datetime(2026, 11, 26, 8, 0, tzinfo=datetime.UTC).timestamp() - CST_OFFSET_S)
    * NS_PER_S
)
_terminal_numbers = itertools.count(1)


@pytest.fixture
def keys() -> CityMasterKeys:
    return CityMasterKeys.generate()


@pytest.fixture
def service() -> BlacklistService:
    return BlacklistService()


def make_card(
    keys: CityMasterKeys,
    card_number: bytes = CARD_A,
    *,
    balance_fen: int = 5_000,
    overdraft_limit_fen: int = 0,
) -> Purse:
    profile = PurseProfile(
        card_number=card_number,
        issuer_id=bytes.fromhex("0310000000000000"),
        start_date=bytes.fromhex("20260101"),
        expiry_date=bytes.fromhex("20360101"),
        keys=(keys.card_keys(card_number),),
        overdraft_limit_fen=overdraft_limit_fen,
    )
    return Purse(profile, balance_fen=balance_fen)


def make_gate(
    keys: CityMasterKeys,
    city: str,
    mode: Mode,
    tap: Tap,
    station: str = "",
    *,
    blacklist: BlacklistService | None = None,
    torn: TornDebits | None = None,
    records_max: int = RECORDS_MAX,
) -> Gate:
    number = next(_terminal_numbers)
    sam = PurchaseSam([keys], number.to_bytes(6, "big"))
    return Gate(
        f"{city}-{mode}-{tap}-{number}",
        city,
        mode,
        tap,
        sam,
        blacklist or BlacklistService(),
        station=station,
        torn_debits=torn,
        records_max=records_max,
    )


def opened(decision: GateDecision) -> TapRecord:
    assert decision.opened, decision.reason
    assert decision.record is not None
    return decision.record


def refused(decision: GateDecision, reason: Reason) -> None:
    assert decision.reason is reason
    assert decision.record is None
    assert decision.fare_fen == 0


# --- Entry and exit ------------------------------------------------------------------


def test_beijing_metro_entry_records_the_station_and_the_exit_charges_by_distance(
    keys: CityMasterKeys,
) -> None:
    card = make_card(keys)
    entry = make_gate(keys, "beijing", Mode.METRO, Tap.ENTRY, "pingguoyuan")
    exit_ = make_gate(keys, "beijing", Mode.METRO, Tap.EXIT, "xidan")

    entered = opened(entry.tap(card.process, T0))
    assert entered.amount_fen == 0
    trip = decode_trip(card.state.trips[0])
    assert trip is not None and trip.kind is TripKind.ENTRY
    assert station_numbers(fare_table(), "beijing")[trip.value] == "pingguoyuan"

    left = opened(exit_.tap(card.process, T0 + 35 * MIN_NS))
    assert left.amount_fen == 500  # 18 km: 5 yuan (up to 22 km)
    assert (left.mode, left.tap, left.station) == (Mode.METRO, Tap.EXIT, "xidan")
    assert card.balance_fen == 4_500
    assert left.balance_after_fen == 4_500
    assert left.offline_counter == entered.offline_counter + 1
    assert verify_purchase_tac(keys, CARD_A, left.purchase, left.tac)


def test_an_exit_without_an_entry_stays_shut(keys: CityMasterKeys) -> None:
    card = make_card(keys)
    exit_ = make_gate(keys, "beijing", Mode.METRO, Tap.EXIT, "xidan")
    refused(exit_.tap(card.process, T0), Reason.NO_ENTRY)
    assert card.balance_fen == 5_000


def test_an_entry_with_an_unclosed_trip_charges_the_max_fare(keys: CityMasterKeys) -> None:
    card = make_card(keys)
    entry = make_gate(keys, "beijing", Mode.METRO, Tap.ENTRY, "pingguoyuan")
    opened(entry.tap(card.process, T0))
    again = opened(entry.tap(card.process, T0 + 600 * MIN_NS))
    assert again.amount_fen == fare_table().city("beijing").rule(Mode.METRO).max_fare_fen
    assert card.balance_fen == 5_000 - again.amount_fen


def test_beijing_bus_is_charged_by_measured_distance_at_half_price(keys: CityMasterKeys) -> None:
    card = make_card(keys)
    board = make_gate(keys, "beijing", Mode.BUS, Tap.ENTRY)
    alight = make_gate(keys, "beijing", Mode.BUS, Tap.EXIT)
    opened(board.tap(card.process, T0))
    record = opened(alight.tap(card.process, T0 + 20 * MIN_NS, distance_m=14_000))
    assert record.amount_fen == 150  # 3 yuan for 14 km, card holders pay 50%


def test_shanghai_bus_then_metro_within_120_minutes_is_one_yuan_off(
    keys: CityMasterKeys,
) -> None:
    card = make_card(keys)
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)
    entry = make_gate(keys, "shanghai", Mode.METRO, Tap.ENTRY, "xinzhuang")
    exit_ = make_gate(keys, "shanghai", Mode.METRO, Tap.EXIT, "xujiahui")

    assert opened(bus.tap(card.process, T0)).amount_fen == 200
    opened(entry.tap(card.process, T0 + 90 * MIN_NS))
    decision = exit_.tap(card.process, T0 + 130 * MIN_NS)
    assert opened(decision).amount_fen == 300  # 8.2 km: 4 yuan, less 1 yuan transfer
    assert decision.quote is not None
    assert [d.name for d in decision.quote.discounts] == [DiscountName.TRANSFER]
    assert card.balance_fen == 5_000 - 200 - 300


def test_shanghai_metro_entered_after_120_minutes_pays_in_full(keys: CityMasterKeys) -> None:
    card = make_card(keys)
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)
    entry = make_gate(keys, "shanghai", Mode.METRO, Tap.ENTRY, "xinzhuang")
    exit_ = make_gate(keys, "shanghai", Mode.METRO, Tap.EXIT, "xujiahui")
    opened(bus.tap(card.process, T0))
    opened(entry.tap(card.process, T0 + 121 * MIN_NS))
    assert opened(exit_.tap(card.process, T0 + 150 * MIN_NS)).amount_fen == 400


def test_beijing_monthly_spending_above_100_yuan_is_read_from_the_card(
    keys: CityMasterKeys,
) -> None:
    """More rides than the trip file holds: the spending travels on the card's records."""
    card = make_card(keys, balance_fen=20_000)
    entry = make_gate(keys, "beijing", Mode.METRO, Tap.ENTRY, "pingguoyuan")
    exit_ = make_gate(keys, "beijing", Mode.METRO, Tap.EXIT, "xidan")
    fares = []
    for ride in range(22):
        at_ns = T0 + ride * 60 * MIN_NS
        opened(entry.tap(card.process, at_ns))
        fares.append(opened(exit_.tap(card.process, at_ns + 30 * MIN_NS)).amount_fen)
    # 20 rides of 5 yuan make exactly 100 yuan: the 21st still pays in full ("above").
    assert fares[:21] == [500] * 21
    assert fares[21] == 400  # above 100 yuan: 20% off


# --- Overdraft and balance -------------------------------------------------------------


def test_shanghai_allows_one_overdrawn_ride_and_refuses_the_next_while_negative(
    keys: CityMasterKeys,
) -> None:
    card = make_card(keys, balance_fen=100, overdraft_limit_fen=1_000)
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)
    record = opened(bus.tap(card.process, T0))
    assert record.balance_after_fen == -100 == card.balance_fen
    refused(bus.tap(card.process, T0 + MIN_NS), Reason.BALANCE_NEGATIVE)
    assert card.balance_fen == -100
    assert bus.records_held == 1


def test_a_balance_below_the_fare_is_refused_where_there_is_no_overdraft(
    keys: CityMasterKeys,
) -> None:
    card = make_card(keys, balance_fen=199)
    bus = make_gate(keys, "shenzhen", Mode.BUS, Tap.ENTRY)
    decision = bus.tap(card.process, T0)
    refused(decision, Reason.BALANCE_TOO_LOW)
    assert card.balance_fen == 199 and card.offline_counter == 0
    assert bus.records_held == 0


def test_a_card_that_refuses_the_overdraft_itself_is_balance_too_low(
    keys: CityMasterKeys,
) -> None:
    """Shanghai's rule allows it, but this card was personalized without an overdraft."""
    card = make_card(keys, balance_fen=100, overdraft_limit_fen=0)
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)
    refused(bus.tap(card.process, T0), Reason.BALANCE_TOO_LOW)
    assert card.balance_fen == 100


# --- Blacklist -------------------------------------------------------------------------


def test_a_blacklisted_card_is_refused_and_leaves_no_record(
    keys: CityMasterKeys, service: BlacklistService
) -> None:
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY, blacklist=service)
    service.add(CARD_A)
    bus.refresh_blacklist(T0)
    card = make_card(keys)
    decision = bus.tap(card.process, T0)
    refused(decision, Reason.BLACKLISTED)
    assert decision.card_number == CARD_A
    assert card.balance_fen == 5_000 and card.offline_counter == 0
    assert bus.records_held == 0
    other = make_card(keys, CARD_B)
    opened(bus.tap(other.process, T0))


def test_the_gate_uses_the_blacklist_it_pulled_until_the_next_refresh(
    keys: CityMasterKeys, service: BlacklistService
) -> None:
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY, blacklist=service)
    bus.refresh_blacklist(T0)
    service.add(CARD_A)
    card = make_card(keys)
    opened(bus.tap(card.process, T0 + MIN_NS))  # the gate has not pulled yet
    assert not bus.refresh_blacklist(T0 + 2 * MIN_NS).pulled
    status = bus.refresh_blacklist(T0 + 15 * MIN_NS)
    assert status.pulled and status.version == 1 == bus.blacklist_version
    refused(bus.tap(card.process, T0 + 16 * MIN_NS), Reason.BLACKLISTED)


def test_a_decision_reports_a_stale_blacklist(keys: CityMasterKeys) -> None:
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)
    card = make_card(keys)
    assert bus.tap(card.process, T0).blacklist_stale  # never pulled
    bus.refresh_blacklist(T0)
    assert not bus.tap(card.process, T0 + MIN_NS).blacklist_stale


# --- Torn taps -------------------------------------------------------------------------


def test_a_tap_torn_after_commit_is_completed_at_the_next_tap_at_another_gate(
    keys: CityMasterKeys,
) -> None:
    torn = TornDebits()
    card = make_card(keys)
    entry = make_gate(keys, "beijing", Mode.METRO, Tap.ENTRY, "pingguoyuan", torn=torn)
    exit_ = make_gate(keys, "beijing", Mode.METRO, Tap.EXIT, "xidan", torn=torn)
    later = make_gate(keys, "beijing", Mode.METRO, Tap.ENTRY, "wangfujing", torn=torn)
    opened(entry.tap(card.process, T0))

    card.arm_tear(TearPoint.AFTER_COMMIT)
    decision = exit_.tap(card.process, T0 + 30 * MIN_NS)
    refused(decision, Reason.TORN)
    card.process(select_command())  # power up: the committed journal is rolled forward
    assert card.balance_fen == 4_500  # the card committed: the fare is taken
    assert exit_.records_held == 0 and len(torn) == 1

    next_tap = later.tap(card.process, T0 + 40 * MIN_NS)
    resolved = next_tap.resolved
    assert resolved is not None and resolved.resolved_torn
    assert resolved.amount_fen == 500 and resolved.gate_id == exit_.gate_id
    assert resolved.purchase.terminal_id == exit_.terminal_id != later.terminal_id
    assert verify_purchase_tac(keys, CARD_A, resolved.purchase, resolved.tac)
    assert opened(next_tap).amount_fen == 0  # the exit closed the trip: a plain entry
    assert len(torn) == 0
    records = entry.drain_records(10) + later.drain_records(10)
    assert sum(r.amount_fen for r in records) == 5_000 - card.balance_fen == 500
    assert len({r.key for r in records}) == len(records) == 3


def test_a_tap_torn_before_commit_took_nothing_and_is_simply_repeated(
    keys: CityMasterKeys,
) -> None:
    torn = TornDebits()
    card = make_card(keys)
    entry = make_gate(keys, "beijing", Mode.METRO, Tap.ENTRY, "pingguoyuan", torn=torn)
    exit_ = make_gate(keys, "beijing", Mode.METRO, Tap.EXIT, "xidan", torn=torn)
    other_exit = make_gate(keys, "beijing", Mode.METRO, Tap.EXIT, "xidan", torn=torn)
    opened(entry.tap(card.process, T0))

    card.arm_tear(TearPoint.BEFORE_COMMIT)
    refused(exit_.tap(card.process, T0 + 30 * MIN_NS), Reason.TORN)
    card.process(select_command())  # power up: the unmarked journal is dropped
    assert card.balance_fen == 5_000 and card.offline_counter == 1

    again = other_exit.tap(card.process, T0 + 31 * MIN_NS)
    assert again.resolved is None
    assert opened(again).amount_fen == 500
    assert card.balance_fen == 4_500 and len(torn) == 0 and not torn.unproven


def test_a_torn_tap_returning_to_the_same_gate_is_completed_there(
    keys: CityMasterKeys,
) -> None:
    card = make_card(keys)
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)
    card.arm_tear(TearPoint.AFTER_COMMIT)
    refused(bus.tap(card.process, T0), Reason.TORN)
    decision = bus.tap(card.process, T0 + 5 * NS_PER_S)
    assert decision.resolved is not None and decision.resolved.amount_fen == 200
    # The same passenger tapping again is a new ride, within the transfer window.
    assert opened(decision).amount_fen == 100
    assert sum(r.amount_fen for r in bus.drain_records(10)) == 5_000 - card.balance_fen


def test_a_card_leaving_before_the_debit_is_unreadable_and_untouched(
    keys: CityMasterKeys,
) -> None:
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)
    refused(bus.tap(lambda command: b"", T0), Reason.CARD_UNREADABLE)


# --- Records ---------------------------------------------------------------------------


def test_records_are_keyed_by_card_and_counter_and_drained_oldest_first(
    keys: CityMasterKeys,
) -> None:
    cards = [make_card(keys, CARD_A), make_card(keys, CARD_B)]
    bus = make_gate(keys, "suzhou", Mode.BUS, Tap.ENTRY)
    for minute in range(6):
        opened(bus.tap(cards[minute % 2].process, T0 + minute * MIN_NS))
    first = bus.drain_records(4)
    rest = bus.drain_records(10)
    assert [r.key for r in first] == [(CARD_A, 0), (CARD_B, 0), (CARD_A, 1), (CARD_B, 1)]
    assert [r.key for r in rest] == [(CARD_A, 2), (CARD_B, 2)]
    assert bus.records_held == 0
    assert len({r.purchase.terminal_transaction_number for r in first + rest}) == 6


def test_a_full_record_store_refuses_taps_before_touching_the_card(
    keys: CityMasterKeys,
) -> None:
    bus = make_gate(keys, "suzhou", Mode.BUS, Tap.ENTRY, records_max=3)
    card = make_card(keys)
    opened(bus.tap(card.process, T0))
    opened(bus.tap(card.process, T0 + MIN_NS))  # 1 held + room for 2
    refused(bus.tap(card.process, T0 + 2 * MIN_NS), Reason.RECORD_STORE_FULL)
    assert card.offline_counter == 2
    bus.drain_records(1)
    opened(bus.tap(card.process, T0 + 3 * MIN_NS))


# --- Keys and configuration ------------------------------------------------------------


def test_a_card_without_the_gates_key_index_is_key_not_supported(keys: CityMasterKeys) -> None:
    other = CityMasterKeys.generate(key_index=2)
    card = make_card(other)
    bus = make_gate(keys, "wuhan", Mode.BUS, Tap.ENTRY)
    refused(bus.tap(card.process, T0), Reason.KEY_NOT_SUPPORTED)


def test_a_key_version_the_sam_lacks_is_key_not_supported(keys: CityMasterKeys) -> None:
    newer = CityMasterKeys.generate(key_index=1, key_version=2)
    card = make_card(newer)
    bus = make_gate(keys, "wuhan", Mode.BUS, Tap.ENTRY)
    refused(bus.tap(card.process, T0), Reason.KEY_NOT_SUPPORTED)
    assert card.balance_fen == 5_000


def test_gates_are_refused_for_what_their_city_cannot_price(keys: CityMasterKeys) -> None:
    with pytest.raises(GateError, match="no metro station"):
        make_gate(keys, "beijing", Mode.METRO, Tap.ENTRY, "xujiahui")
    with pytest.raises(GateError, match="flat fare"):
        make_gate(keys, "shanghai", Mode.BUS, Tap.EXIT)
    with pytest.raises(GateError):
        make_gate(keys, "hangzhou", Mode.BUS, Tap.ENTRY)


def test_every_citys_station_numbers_are_distinct() -> None:
    for city in fare_table().cities:
        numbers = station_numbers(fare_table(), city.code)
        stations = {s.code for line in city.rule(Mode.METRO).lines for s in line.stations}
        assert set(numbers.values()) == stations


def test_read_binary_command_reads_the_card_number_file(keys: CityMasterKeys) -> None:
    card = make_card(keys)
    card.process(select_command())
    command = read_binary_command(SFI_PUBLIC_DATA)
    assert command == bytes.fromhex("00B095001E")
    data, sw = split_response(card.process(command))
    assert sw == 0x9000 and data[10:20] == CARD_A


def test_a_tap_fits_in_a_few_milliseconds(keys: CityMasterKeys) -> None:
    card = make_card(keys, balance_fen=50_000)
    entry = make_gate(keys, "beijing", Mode.METRO, Tap.ENTRY, "pingguoyuan")
    exit_ = make_gate(keys, "beijing", Mode.METRO, Tap.EXIT, "xidan")
    for ride in range(6):  # a full trip file makes the longest dialogue
        opened(entry.tap(card.process, T0 + ride * 60 * MIN_NS))
        opened(exit_.tap(card.process, T0 + ride * 60 * MIN_NS + MIN_NS))
    started = time.perf_counter()
    opened(entry.tap(card.process, T0 + 600 * MIN_NS))
    assert time.perf_counter() - started < 0.05  # generous for a shared test machine


# --- A property: money moves only as recorded ------------------------------------------

_BEIJING_GATES = (
    (Mode.METRO, Tap.ENTRY, "pingguoyuan"),
    (Mode.METRO, Tap.EXIT, "xidan"),
    (Mode.METRO, Tap.ENTRY, "guomao"),
    (Mode.METRO, Tap.EXIT, "babaoshan"),
    (Mode.BUS, Tap.ENTRY, ""),
    (Mode.BUS, Tap.EXIT, ""),
)
_TEARS = (None, None, TearPoint.BEFORE_COMMIT, TearPoint.AFTER_COMMIT)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    balance_fen=st.integers(0, 20_000),
    taps=st.lists(
        st.tuples(
            st.integers(0, len(_BEIJING_GATES) - 1),
            st.sampled_from(_TEARS),
            st.integers(1, 300),  # minutes since the tap before
        ),
        max_size=25,
    ),
)
def test_random_taps_and_tears_move_exactly_the_recorded_fares(
    balance_fen: int, taps: list[tuple[int, TearPoint | None, int]]
) -> None:
    keys = CityMasterKeys.generate()
    torn = TornDebits()
    gates = [
        make_gate(keys, "beijing", mode, tap, station, torn=torn)
        for mode, tap, station in _BEIJING_GATES
    ]
    card = make_card(keys, balance_fen=balance_fen)
    at_ns = T0
    for index, tear, minutes in taps:
        at_ns += minutes * MIN_NS
        if tear is not None:
            card.arm_tear(tear)
        gates[index].tap(card.process, at_ns, distance_m=7_000)
    # A tear armed for a tap that debited nothing cuts a later debit. Tap on until the
    # book is empty: a tear fires once, and the tap after a torn one settles it.
    for extra in range(1, 4):
        gates[0].tap(card.process, at_ns + extra * MIN_NS)
        if len(torn) == 0:
            break
    assert len(torn) == 0 and not torn.unproven
    records = [r for gate in gates for r in gate.drain_records(100)]
    assert len({r.key for r in records}) == len(records)
    assert sum(r.amount_fen for r in records) == balance_fen - card.balance_fen
    assert {r.offline_counter for r in records} == set(range(card.offline_counter))
    assert all(verify_purchase_tac(keys, r.card_number, r.purchase, r.tac) for r in records)
    assert all(r.purchase.transaction_type == pc.TRANSACTION_TYPE_COMPOSITE for r in records)


# --- Torn debits the prove cannot settle, forged cards, the book's limit --------------


def test_a_torn_debit_overtaken_by_another_purchase_is_settled_unproven(
    keys: CityMasterKeys,
) -> None:
    """The card went on to a reader outside the book: its prove is of that purchase now,
    but its transaction records still show the torn debit was committed."""
    torn = TornDebits()
    card = make_card(keys)
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY, torn=torn)
    elsewhere = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)  # its own book
    card.arm_tear(TearPoint.AFTER_COMMIT)
    refused(bus.tap(card.process, T0), Reason.TORN)
    opened(elsewhere.tap(card.process, T0 + MIN_NS))
    decision = bus.tap(card.process, T0 + 2 * MIN_NS)
    assert decision.resolved is None and opened(decision)
    assert list(torn.unproven) == [(CARD_A, 0)] and len(torn) == 0


def test_a_blacklisted_cards_torn_debit_stays_in_the_book(
    keys: CityMasterKeys, service: BlacklistService
) -> None:
    torn = TornDebits()
    card = make_card(keys)
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY, blacklist=service, torn=torn)
    bus.refresh_blacklist(T0)
    card.arm_tear(TearPoint.AFTER_COMMIT)
    refused(bus.tap(card.process, T0), Reason.TORN)
    service.add(CARD_A)
    bus.refresh_blacklist(T0 + 20 * MIN_NS)
    decision = bus.tap(card.process, T0 + 21 * MIN_NS)
    refused(decision, Reason.BLACKLISTED)
    assert decision.resolved is None and len(torn) == 1


def test_the_torn_book_drops_its_oldest_at_the_limit(keys: CityMasterKeys) -> None:
    torn = TornDebits(limit=1)
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY, torn=torn)
    for number in (CARD_A, CARD_B):
        card = make_card(keys, number)
        card.arm_tear(TearPoint.BEFORE_COMMIT)
        refused(bus.tap(card.process, T0), Reason.TORN)
    assert len(torn) == 1 and torn.dropped == 1
    assert torn.get(CARD_B) is not None and torn.get(CARD_A) is None


def test_a_card_whose_tac_does_not_verify_is_refused_and_not_recorded(
    keys: CityMasterKeys,
) -> None:
    genuine = keys.card_keys(CARD_A)
    forged = dataclasses.replace(genuine, dtk=bytes(range(16)))
    profile = PurseProfile(
        card_number=CARD_A,
        issuer_id=bytes(8),
        start_date=bytes.fromhex("20260101"),
        expiry_date=bytes.fromhex("20360101"),
        keys=(forged,),
    )
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)
    refused(bus.tap(Purse(profile, balance_fen=1_000).process, T0), Reason.TAC_INVALID)
    assert bus.records_held == 0


def test_a_card_locked_by_wrong_macs_is_refused(keys: CityMasterKeys) -> None:
    card = make_card(keys)
    card.process(select_command())
    for _ in range(MAC_FAILURES_MAX):
        card.process(initialize_for_purchase_command(1, 200, bytes(6)))
        card.process(debit_for_purchase_command(1, bytes(4), bytes(3), bytes(4)))
    bus = make_gate(keys, "shanghai", Mode.BUS, Tap.ENTRY)
    refused(bus.tap(card.process, T0), Reason.CARD_LOCKED)


# --- The context read from the card ----------------------------------------------------


def test_the_months_spending_is_the_last_finished_ride_plus_metro_entries_since() -> None:
    month = 202611
    at = T0
    trips = [
        CardTrip(Mode.METRO, TripKind.ENTRY, 0x1234, at, month, 1_000),  # unclosed charge
        CardTrip(Mode.BUS, TripKind.BOARDING, 8_000, at - MIN_NS, month, 200),
        CardTrip(Mode.METRO, TripKind.EXIT, 8_000, at - 9 * MIN_NS, month, 500),
        CardTrip(Mode.METRO, TripKind.ENTRY, 0x1234, at - 50 * MIN_NS, month, 0),
    ]
    context = card_context(3_000, trips, {0x1234: "xidan"}, month)
    assert context.month_metro_spent_fen == 9_000
    assert context.open_trips == (OpenTrip(Mode.METRO, at, "xidan"),)
    assert context.last_ride == PastRide(Mode.BUS, at - MIN_NS, at - MIN_NS)
    next_month = card_context(3_000, trips, {0x1234: "xidan"}, 202612)
    assert next_month.month_metro_spent_fen == 0
    exit_first = card_context(3_000, trips[2:], {0x1234: "xidan"}, month)
    assert exit_first.last_ride == PastRide(Mode.METRO, at - 50 * MIN_NS, at - 9 * MIN_NS)
    assert exit_first.open_trips == ()


def test_a_trip_record_with_an_unknown_station_number_is_unreadable() -> None:
    entry = CardTrip(Mode.METRO, TripKind.ENTRY, 0x0BAD, T0, 202611, 0)
    with pytest.raises(CardContextError):
        card_context(0, [entry], {}, 202611)
    with pytest.raises(CardContextError):
        decode_trip(bytes(16))  # kind 00, date 00000000
