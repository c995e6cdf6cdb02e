"""The cities' fare engines: the fare table and the gate's offline pricing of a tap.

Published rules are cited from /work/shared/REFERENCES.md, section "Transit cards":
  [BJ] Beijing (from 2014-12-28): metro 3 yuan ≤ 6 km, 4 ≤ 12, 5 ≤ 22, 6 ≤ 32, then +1 per
       20 km; monthly card spending above 100 yuan 20% off, above 150 yuan 50% off, above
       400 no discount; bus 2 yuan for 10 km then +1 per 5 km, card holders 50% off,
       students 25%.
  [SH] Shanghai: 1 yuan off a ride taken within 120 minutes of the previous (not metro to
       metro); a ride may overdraw if the balance is not negative and the fare is under
       10 yuan; refundable card deposit 20 yuan.
Everything else (other cities' fares, stay limits, unclosed-trip charges, station
positions) is the platform's configuration, described in docs/transit-fares.md.

Rounding: a percentage of a fare is rounded to the fen, half a fen up (`pay_percent`).
"""

from __future__ import annotations

import datetime
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from milletpay.core.clock import NS_PER_S
from milletpay.transit.fares import (
    Charge,
    Discount,
    DiscountName,
    FareDataError,
    FareError,
    FareQuote,
    Mode,
    OpenTrip,
    PastRide,
    Refusal,
    Ride,
    RideContext,
    Rider,
    Tap,
    bus_fare,
    china_month,
    fare_for,
    fare_table,
    load_fares,
    metro_fare,
    pay_percent,
    station_distance_m,
)

CITIES = ("shanghai", "shenzhen", "beijing", "guangdong", "suzhou", "wuhan")
MINUTE_NS = 60 * NS_PER_S
CST = datetime.timezone(datetime.timedelta(hours=8))
#: 2026-11-02 08:00 China time: a Monday morning.
MORNING_NS = int(datetime.datetime(2026, 11, 2, 8, 0, tzinfo=CST).timestamp()) * NS_PER_S
NOVEMBER = 202611


def minutes_later(minutes: int, start_ns: int = MORNING_NS) -> int:
    return start_ns + minutes * MINUTE_NS


def metro_exit(
    city: str,
    entry: str,
    exit: str,
    *,
    balance_fen: int = 10_000,
    stay_min: int = 30,
    spent_fen: int = 0,
    spending_month: int = NOVEMBER,
    last_ride: PastRide | None = None,
) -> FareQuote:
    """The quote at the exit gate of `exit` for a card that entered at `entry`."""
    context = RideContext(
        balance_fen=balance_fen,
        open_trips=(OpenTrip(Mode.METRO, MORNING_NS, entry),),
        last_ride=last_ride,
        spending_month=spending_month,
        month_metro_spent_fen=spent_fen,
    )
    ride = Ride(city, Mode.METRO, Tap.EXIT, minutes_later(stay_min), station=exit)
    return fare_for(ride, context)


def bus_boarding(
    city: str, *, balance_fen: int = 10_000, last_ride: PastRide | None = None, at_min: int = 0
) -> FareQuote:
    context = RideContext(balance_fen=balance_fen, last_ride=last_ride)
    return fare_for(Ride(city, Mode.BUS, Tap.ENTRY, minutes_later(at_min)), context)


def metro_entry(city: str, station: str, context: RideContext) -> FareQuote:
    return fare_for(Ride(city, Mode.METRO, Tap.ENTRY, MORNING_NS, station=station), context)


# --- the table ---------------------------------------------------------------------------


def test_the_table_holds_the_six_cities_with_a_metro_and_buses_in_cny() -> None:
    table = fare_table()
    assert table.currency == "CNY"
    assert tuple(c.code for c in table.cities) == CITIES
    for city in table.cities:
        assert city.modes == (Mode.METRO, Mode.BUS)
        assert city.rule(Mode.METRO).lines


def test_shanghai_keeps_a_refundable_deposit_of_20_yuan() -> None:  # [SH]
    assert fare_table().city("shanghai").deposit_fen == 2_000
    assert fare_table().city("shanghai").issuance_fee_fen == 0


def test_every_amount_in_the_table_is_whole_fen() -> None:
    for city in fare_table().cities:
        for rule in city.rules.values():
            amounts = [rule.flat_fen, rule.step_fen, *(b.fare_fen for b in rule.bands)]
            assert all(type(a) is int for a in amounts)


# --- Beijing metro [BJ] -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distance_m", "fare_fen"),
    [
        (0, 300),
        (6_000, 300),
        (6_001, 400),
        (12_000, 400),
        (12_001, 500),
        (22_000, 500),
        (22_001, 600),
        (32_000, 600),
        (32_001, 700),
        (52_000, 700),
        (52_001, 800),
        (72_000, 800),
        (72_001, 900),
        (92_000, 900),
    ],
)
def test_beijing_metro_fare_at_every_band_edge(distance_m: int, fare_fen: int) -> None:
    assert metro_fare("beijing", distance_m) == fare_fen


def test_a_distance_beyond_the_longest_ride_is_an_input_error() -> None:
    longest_m = fare_table().city("beijing").rule(Mode.METRO).max_distance_m
    assert metro_fare("beijing", longest_m) == 1_000
    with pytest.raises(FareError, match="outside"):
        metro_fare("beijing", longest_m + 1)
    with pytest.raises(FareError):
        metro_fare("beijing", -1)


def test_the_distance_between_two_stations_of_a_line_is_their_difference() -> None:
    assert station_distance_m("beijing", "pingguoyuan", "wukesong") == 9_000
    assert station_distance_m("beijing", "wukesong", "pingguoyuan") == 9_000
    quote = metro_exit("beijing", "pingguoyuan", "wukesong")
    assert (quote.charge, quote.fare_fen, quote.discounts) == (Charge.RIDE, 400, ())
    assert quote.balance_after_fen == 10_000 - 400


def test_an_unknown_station_or_a_ride_between_lines_is_an_input_error() -> None:
    with pytest.raises(FareError, match="no metro station 'atlantis'"):
        station_distance_m("beijing", "pingguoyuan", "atlantis")
    with pytest.raises(FareError, match="different lines"):
        station_distance_m("shanghai", "xujiahui", "nanxiang")
    with pytest.raises(FareError, match="no city"):
        metro_fare("gotham", 1_000)


# --- Beijing monthly spending [BJ] ---------------------------------------------------------
# pingguoyuan → gucheng is 2.6 km: a 3-yuan ride.


@pytest.mark.parametrize(
    ("spent_fen", "fare_fen"),
    [
        (0, 300),
        (10_000, 300),  # 100.00 yuan spent: not above 100 yet
        (10_001, 240),  # above 100: 20% off
        (15_000, 240),
        (15_001, 150),  # above 150: 50% off
        (40_000, 150),
        (40_001, 300),  # above 400: the full fare again
    ],
)
def test_beijing_monthly_metro_discount_at_its_edges(spent_fen: int, fare_fen: int) -> None:
    quote = metro_exit("beijing", "pingguoyuan", "gucheng", spent_fen=spent_fen)
    assert quote.list_fare_fen == 300
    assert quote.fare_fen == fare_fen
    if fare_fen < 300:
        assert quote.discounts == (Discount(DiscountName.MONTHLY_SPENDING, 300 - fare_fen),)
    assert quote.month_metro_spent_after_fen == spent_fen + fare_fen


def test_last_months_spending_does_not_count_in_a_new_month() -> None:
    quote = metro_exit("beijing", "pingguoyuan", "gucheng", spent_fen=20_000, spending_month=202610)
    assert quote.fare_fen == 300
    assert (quote.spending_month, quote.month_metro_spent_after_fen) == (NOVEMBER, 300)


def test_the_month_turns_at_china_midnight() -> None:
    utc_evening = datetime.datetime(2026, 10, 31, 16, 0, tzinfo=datetime.UTC)  # 00:00 in China
    assert china_month(int(utc_evening.timestamp()) * NS_PER_S) == NOVEMBER
    assert china_month(int(utc_evening.timestamp()) * NS_PER_S - 1) == 202610


def test_a_percentage_is_rounded_to_the_fen_half_up() -> None:
    assert pay_percent(150, 25) == 38  # 37.5 fen
    assert pay_percent(1, 50) == 1  # 0.5 fen
    assert pay_percent(3, 80) == 2  # 2.4 fen
    assert pay_percent(7, 80) == 6  # 5.6 fen
    assert pay_percent(300, 100) == 300
    assert pay_percent(300, 0) == 0


# --- Beijing bus [BJ] ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distance_m", "card_holder_fen", "student_fen"),
    [
        (0, 100, 50),
        (10_000, 100, 50),  # 2 yuan
        (10_001, 150, 75),  # 3 yuan
        (15_000, 150, 75),
        (15_001, 200, 100),  # 4 yuan
        (20_001, 250, 125),  # 5 yuan
    ],
)
def test_beijing_bus_by_distance_with_card_holder_and_student_discounts(
    distance_m: int, card_holder_fen: int, student_fen: int
) -> None:
    assert bus_fare("beijing", distance_m, Rider.CARD_HOLDER) == card_holder_fen
    assert bus_fare("beijing", distance_m, Rider.STUDENT) == student_fen


def test_beijing_bus_is_tapped_on_and_off_and_charged_at_the_exit() -> None:
    boarding = fare_for(
        Ride("beijing", Mode.BUS, Tap.ENTRY, MORNING_NS), RideContext(balance_fen=1_000)
    )
    assert (boarding.charge, boarding.fare_fen, boarding.may_ride) == (Charge.NONE, 0, True)
    aboard = RideContext(balance_fen=1_000, open_trips=(OpenTrip(Mode.BUS, MORNING_NS),))
    alighting = Ride(
        "beijing", Mode.BUS, Tap.EXIT, minutes_later(40), distance_m=12_000, rider=Rider.STUDENT
    )
    quote = fare_for(alighting, aboard)
    assert quote.list_fare_fen == 300
    assert quote.discounts == (Discount(DiscountName.STUDENT, 225),)
    assert (quote.fare_fen, quote.balance_after_fen) == (75, 925)
    assert quote.month_metro_spent_after_fen == 0  # buses are not metro spending
    with pytest.raises(FareError, match="needs one"):
        fare_for(Ride("beijing", Mode.BUS, Tap.EXIT, minutes_later(40)), aboard)


# --- Shanghai transfers [SH] ---------------------------------------------------------------


def test_a_bus_within_120_minutes_of_the_previous_rides_end_is_1_yuan_off() -> None:
    metro = PastRide(Mode.METRO, minutes_later(-40), MORNING_NS)
    quote = bus_boarding("shanghai", last_ride=metro, at_min=120)
    assert quote.discounts == (Discount(DiscountName.TRANSFER, 100),)
    assert (quote.list_fare_fen, quote.fare_fen) == (200, 100)


def test_a_bus_more_than_120_minutes_after_the_previous_ride_pays_in_full() -> None:
    metro = PastRide(Mode.METRO, minutes_later(-40), MORNING_NS)
    context = RideContext(balance_fen=1_000, last_ride=metro)
    late = Ride("shanghai", Mode.BUS, Tap.ENTRY, minutes_later(120) + 1)
    quote = fare_for(late, context)
    assert (quote.fare_fen, quote.discounts) == (200, ())


def test_bus_to_bus_and_bus_to_metro_transfers_are_discounted() -> None:
    bus = PastRide(Mode.BUS, minutes_later(-30), minutes_later(-30))
    assert bus_boarding("shanghai", last_ride=bus).fare_fen == 100
    # the metro ride starts at its entry, 30 minutes after the bus: 1 yuan off at the exit
    quote = metro_exit("shanghai", "xinzhuang", "xujiahui", last_ride=bus)  # 8.2 km: 4 yuan
    assert (quote.list_fare_fen, quote.fare_fen) == (400, 300)
    assert quote.discounts == (Discount(DiscountName.TRANSFER, 100),)


def test_metro_to_metro_is_not_a_transfer() -> None:
    metro = PastRide(Mode.METRO, minutes_later(-40), minutes_later(-10))
    quote = metro_exit("shanghai", "xinzhuang", "xujiahui", last_ride=metro)
    assert (quote.fare_fen, quote.discounts) == (400, ())


def test_a_city_without_a_transfer_rule_gives_no_transfer_discount() -> None:
    bus = PastRide(Mode.BUS, minutes_later(-30), minutes_later(-30))
    assert bus_boarding("shenzhen", last_ride=bus).fare_fen == 200


# --- overdraft -----------------------------------------------------------------------------


def test_shanghai_a_negative_balance_is_refused() -> None:  # [SH]
    quote = bus_boarding("shanghai", balance_fen=-1)
    assert (quote.may_ride, quote.refusal) == (False, Refusal.BALANCE_NEGATIVE)
    assert quote.balance_after_fen == -1


def test_shanghai_a_fare_under_10_yuan_may_overdraw_a_balance_of_0() -> None:  # [SH]
    bus = bus_boarding("shanghai", balance_fen=0)
    assert (bus.may_ride, bus.balance_after_fen) == (True, -200)
    # jiading_xincheng → disney_resort is 63 km: 9 yuan
    metro = metro_exit("shanghai", "jiading_xincheng", "disney_resort", balance_fen=0)
    assert (metro.fare_fen, metro.may_ride, metro.balance_after_fen) == (900, True, -900)


def test_shanghai_a_fare_of_10_yuan_or_more_must_be_paid_by_the_balance() -> None:  # [SH]
    # jiading_north → disney_resort is 72.4 km: 10 yuan
    short = metro_exit("shanghai", "jiading_north", "disney_resort", balance_fen=999)
    assert (short.fare_fen, short.refusal, short.balance_after_fen) == (
        1_000,
        Refusal.BALANCE_TOO_LOW,
        999,
    )
    paid = metro_exit("shanghai", "jiading_north", "disney_resort", balance_fen=1_000)
    assert (paid.may_ride, paid.balance_after_fen) == (True, 0)


def test_an_overdraft_limit_is_the_lowest_balance_a_ride_may_leave() -> None:
    assert bus_boarding("guangdong", balance_fen=0).balance_after_fen == -200  # limit 2 yuan
    assert bus_boarding("guangdong", balance_fen=-1).refusal is Refusal.BALANCE_TOO_LOW
    assert bus_boarding("shenzhen", balance_fen=199).refusal is Refusal.BALANCE_TOO_LOW  # limit 0
    assert bus_boarding("shenzhen", balance_fen=200).balance_after_fen == 0


def test_a_metro_entry_needs_a_balance_that_could_pay_the_lowest_fare() -> None:
    assert metro_entry("shenzhen", "luohu", RideContext(199)).refusal is Refusal.BALANCE_TOO_LOW
    entry = metro_entry("shenzhen", "luohu", RideContext(200))
    assert (entry.may_ride, entry.charge, entry.fare_fen, entry.balance_after_fen) == (
        True,
        Charge.NONE,
        0,
        200,
    )
    assert metro_entry("shanghai", "xinzhuang", RideContext(0)).may_ride  # [SH] may overdraw
    with pytest.raises(FareError, match="no metro station"):
        metro_entry("shenzhen", "atlantis", RideContext(200))


# --- entry without exit, exit without entry, over-long stays ----------------------------------


def test_an_entry_without_exit_is_charged_the_max_fare_at_the_next_entry() -> None:
    unclosed = OpenTrip(Mode.METRO, minutes_later(-24 * 60), "pingguoyuan")
    quote = metro_entry("beijing", "xidan", RideContext(5_000, open_trips=(unclosed,)))
    assert (quote.charge, quote.fare_fen, quote.discounts) == (Charge.UNCLOSED_TRIP, 1_000, ())
    assert (quote.may_ride, quote.balance_after_fen) == (True, 4_000)
    assert quote.month_metro_spent_after_fen == 1_000


def test_an_unclosed_trip_the_card_cannot_pay_keeps_the_gate_closed() -> None:
    unclosed = OpenTrip(Mode.METRO, minutes_later(-24 * 60), "xinzhuang")
    # Shanghai's max fare is 13 yuan: too much to overdraw from a balance of 0
    quote = metro_entry("shanghai", "xujiahui", RideContext(0, open_trips=(unclosed,)))
    assert (quote.refusal, quote.balance_after_fen) == (Refusal.BALANCE_TOO_LOW, 0)
    # enough for the charge but not for a ride after it
    quote = metro_entry("beijing", "xidan", RideContext(1_200, open_trips=(unclosed,)))
    assert quote.refusal is Refusal.BALANCE_TOO_LOW


def test_an_open_bus_trip_is_not_charged_at_a_metro_gate() -> None:
    on_bus = OpenTrip(Mode.BUS, minutes_later(-60))
    quote = metro_entry("beijing", "xidan", RideContext(1_000, open_trips=(on_bus,)))
    assert (quote.charge, quote.fare_fen) == (Charge.NONE, 0)


def test_an_exit_without_entry_is_refused() -> None:
    ride = Ride("beijing", Mode.METRO, Tap.EXIT, MORNING_NS, station="xidan")
    quote = fare_for(ride, RideContext(1_000))
    assert (quote.may_ride, quote.refusal, quote.fare_fen) == (False, Refusal.NO_ENTRY, 0)


def test_a_stay_of_240_minutes_is_a_ride_and_one_more_minute_is_an_overstay() -> None:
    in_time = metro_exit("beijing", "pingguoyuan", "gucheng", stay_min=240)
    assert (in_time.charge, in_time.fare_fen) == (Charge.RIDE, 300)
    late = metro_exit("beijing", "pingguoyuan", "gucheng", stay_min=241, spent_fen=20_000)
    assert (late.charge, late.fare_fen, late.discounts) == (Charge.OVERSTAY, 1_000, ())


def test_an_overstay_may_be_the_fare_plus_a_penalty() -> None:
    quote = metro_exit("guangdong", "xilang", "huangsha", stay_min=241)  # 5.4 km: 3 yuan
    assert (quote.charge, quote.fare_fen) == (Charge.OVERSTAY, 300 + 200)


def test_wuhan_allows_a_stay_of_180_minutes() -> None:
    assert metro_exit("wuhan", "jiedaokou", "guanggu_square", stay_min=180).fare_fen == 200
    assert metro_exit("wuhan", "jiedaokou", "guanggu_square", stay_min=181).fare_fen == 900


# --- the other cities, from the same table ---------------------------------------------------


@pytest.mark.parametrize("city", ["shanghai", "shenzhen", "guangdong", "suzhou", "wuhan"])
def test_a_flat_bus_fare_is_charged_at_boarding(city: str) -> None:
    assert bus_fare(city, 0) == 200
    assert bus_fare(city, 30_000, Rider.STUDENT) == 200
    quote = bus_boarding(city)
    assert (quote.charge, quote.fare_fen, quote.balance_after_fen) == (Charge.RIDE, 200, 9_800)
    with pytest.raises(FareError, match="one tap"):
        fare_for(Ride(city, Mode.BUS, Tap.EXIT, MORNING_NS), RideContext(1_000))


@pytest.mark.parametrize(
    ("city", "distance_m", "fare_fen"),
    [
        ("shanghai", 6_000, 300),
        ("shanghai", 6_001, 400),
        ("shanghai", 16_001, 500),
        ("shenzhen", 4_000, 200),
        ("shenzhen", 4_001, 300),
        ("shenzhen", 24_001, 700),
        ("guangdong", 12_001, 500),
        ("suzhou", 6_000, 200),
        ("suzhou", 24_001, 600),
        ("wuhan", 9_000, 200),
        ("wuhan", 50_001, 800),
    ],
)
def test_the_other_cities_metro_fares_come_from_the_same_table(
    city: str, distance_m: int, fare_fen: int
) -> None:
    assert metro_fare(city, distance_m) == fare_fen


# --- invariants ------------------------------------------------------------------------------


@given(st.sampled_from(CITIES), st.data())
def test_a_metro_fare_is_never_negative_nor_above_the_max_and_never_falls_with_distance(
    city: str, data: st.DataObject
) -> None:
    rule = fare_table().city(city).rule(Mode.METRO)
    distance = st.integers(0, rule.max_distance_m)
    shorter_m, longer_m = sorted((data.draw(distance), data.draw(distance)))
    shorter_fen, longer_fen = metro_fare(city, shorter_m), metro_fare(city, longer_m)
    assert 0 < shorter_fen <= longer_fen <= rule.max_fare_fen


@given(
    st.sampled_from(CITIES),
    st.data(),
    st.integers(-2_000, 20_000),
    st.integers(0, 60_000),
    st.integers(0, 6 * 60),
    st.sampled_from(Rider),
)
def test_a_metro_exit_charges_between_0_and_the_most_a_tap_can_cost(
    city: str, data: st.DataObject, balance_fen: int, spent_fen: int, stay_min: int, rider: Rider
) -> None:
    rule = fare_table().city(city).rule(Mode.METRO)
    stations = st.sampled_from(rule.lines[0].stations)
    entry, exit = data.draw(stations), data.draw(stations)
    previous = data.draw(st.sampled_from(Mode))
    context = RideContext(
        balance_fen,
        open_trips=(OpenTrip(Mode.METRO, MORNING_NS, entry.code),),
        last_ride=PastRide(previous, minutes_later(-100), minutes_later(-10)),
        spending_month=NOVEMBER,
        month_metro_spent_fen=spent_fen,
    )
    ride = Ride(city, Mode.METRO, Tap.EXIT, minutes_later(stay_min), exit.code, rider=rider)
    quote = fare_for(ride, context)
    assert 0 <= quote.fare_fen <= rule.max_charge_fen
    charged_fen = quote.fare_fen if quote.may_ride else 0
    assert quote.balance_after_fen == balance_fen - charged_fen
    assert quote.month_metro_spent_after_fen == spent_fen + charged_fen


# --- the data file ----------------------------------------------------------------------------

ONE_CITY = """
currency = "CNY"

[[city]]
code = "testville"
name = "Testville Card"
modes = ["metro", "bus"]
issuance_fee_fen = 0
deposit_fen = 0

[city.overdraft]
rule = "limit"
limit_fen = 0

[city.metro]
fare = "distance"
bands = [{ up_to_m = 5_000, fare_fen = 200 }, { up_to_m = 10_000, fare_fen = 300 }]
step_m = 10_000
step_fen = 100
max_distance_m = 50_000
rider_pays_percent = { card_holder = 100, student = 50 }
unclosed_trip = { base = "max_fare", plus_fen = 0 }

[[city.metro.lines]]
code = "1"
name = "Line 1"
stations = [
    { code = "east", name = "East", at_m = 0 },
    { code = "west", name = "West", at_m = 12_000 },
]

[city.bus]
fare = "flat"
flat_fen = 150
rider_pays_percent = { card_holder = 100, student = 25 }
"""


def test_the_packaged_file_is_the_table() -> None:
    text = resources.files("milletpay.transit").joinpath("fares.toml").read_text("utf-8")
    assert load_fares(text) == fare_table()


def test_a_table_of_ones_own_prices_a_tap_the_same_way() -> None:
    table = load_fares(ONE_CITY)
    context = RideContext(1_000)
    student = Ride("testville", Mode.BUS, Tap.ENTRY, MORNING_NS, rider=Rider.STUDENT)
    quote = fare_for(student, context, table)
    assert quote.fare_fen == 38  # 25% of 1.50 yuan is 37.5 fen, rounded half up
    context = RideContext(1_000, open_trips=(OpenTrip(Mode.METRO, MORNING_NS, "east"),))
    ride = Ride("testville", Mode.METRO, Tap.EXIT, minutes_later(600), "west")
    assert fare_for(ride, context, table).fare_fen == 400  # no stay limit in Testville


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "{ up_to_m = 10_000, fare_fen = 300 }",
            "{ up_to_m = 5_000, fare_fen = 300 }",
            r"city testville\.metro\.bands\[1\]\.up_to_m must be above 5000",
        ),
        (
            "{ up_to_m = 10_000, fare_fen = 300 }",
            "{ up_to_m = 10_000, fare_fen = 100 }",
            r"city testville\.metro\.bands\[1\]\.fare_fen must be at least 200",
        ),
        (
            "fare_fen = 200",
            "fare_fen = 2.0",
            r"city testville\.metro\.bands\[0\]\.fare_fen must be an integer",
        ),
        ("flat_fen = 150", "flat_fen = -1", r"city testville\.bus\.flat_fen must be 0 to"),
        ("flat_fen = 150", "flat = 150", r"city testville\.bus\.flat_fen is missing"),
        ("step_m = 10_000", "step_m = 10_000\nstep_km = 10", r"metro\.step_km is not a known"),
        ('fare = "flat"', 'fare = "zone"', r"city testville\.bus\.fare must be one of"),
        ("student = 50", "student = 150", r"metro\.rider_pays_percent\.student must be 0 to 100"),
        ("at_m = 12_000", "at_m = 60_000", r"lines\[1\]\.stations\[1\]\.at_m must be 0 to 50000"),
        ('"west", name = "West", at_m = 12_000', '"west", name = "West", at_m = 0', r"above 0"),
        ('code = "west"', 'code = "east"', r"station east appears twice"),
        ('modes = ["metro", "bus"]', 'modes = ["metro"]', r"city testville\.bus: a table"),
        ('modes = ["metro", "bus"]', 'modes = ["metro", "tram"]', r"modes\[1\] must be one of"),
        ('code = "testville"', 'code = "Test Ville"', r"city\[0\]\.code must be"),
        ('base = "max_fare"', 'base = "fare"', r"unclosed_trip\.base must be one of max_fare"),
        ('rule = "limit"', 'rule = "credit"', r"city testville\.overdraft\.rule must be one of"),
        ('currency = "CNY"', 'currency = "USD"', r"fares\.currency must be CNY"),
        (
            "[city.bus]",
            "[city.bus]\nmonthly_discounts = []",
            r"city testville\.bus\.monthly_discounts is not a known",
        ),
        ("deposit_fen = 0", "deposit_fen = 0\nmax_stay_min = 10", r"max_stay_min is not a known"),
        ("step_fen = 100", "step_fen = 100\nmax_stay_min = 240", r"max_stay_min and overstay"),
        (
            "[city.bus]",
            "[city.transfer]\nwindow_min = 120\ndiscount_fen = 100\n"
            'excluded = [["metro", "ferry"]]\n\n[city.bus]',
            r"transfer\.excluded\[0\] must be",
        ),
        ("max_distance_m = 50_000", "max_distance_m = 5_000_000", r"max_distance_m must be"),
        ("currency", "currency = ", r"not TOML"),
    ],
)
def test_a_malformed_entry_is_refused_naming_the_city_and_field(
    old: str, new: str, message: str
) -> None:
    assert old in ONE_CITY
    with pytest.raises(FareDataError, match=message):
        load_fares(ONE_CITY.replace(old, new, 1))


def test_monthly_discount_tiers_rise_in_order() -> None:
    falling = (
        "monthly_discounts = [{ above_fen = 100, pays_percent = 80 },"
        " { above_fen = 100, pays_percent = 50 }]\n"
    )
    metro = ONE_CITY.replace("step_fen = 100", "step_fen = 100\n" + falling)
    with pytest.raises(FareDataError, match=r"monthly_discounts\[1\]\.above_fen must be above"):
        load_fares(metro)


def test_monthly_discounts_are_for_the_metro_only() -> None:
    distance_bus = ONE_CITY.replace(
        'fare = "flat"\nflat_fen = 150',
        'fare = "distance"\nbands = [{ up_to_m = 10_000, fare_fen = 200 }]\nstep_m = 5_000\n'
        "step_fen = 100\nmax_distance_m = 60_000\n"
        'unclosed_trip = { base = "max_fare", plus_fen = 0 }\n'
        "monthly_discounts = [{ above_fen = 10_000, pays_percent = 80 }]",
    )
    assert distance_bus != ONE_CITY
    with pytest.raises(FareDataError, match=r"city testville\.bus\.monthly_discounts is for the"):
        load_fares(distance_bus)


def test_a_city_that_appears_twice_is_refused() -> None:
    city = ONE_CITY.split('currency = "CNY"')[1]
    with pytest.raises(FareDataError, match="city testville appears twice"):
        load_fares(ONE_CITY + city)
