"""The commute scene of `millet demo`: transit cards on phones in the six cities.

Each rider has a city's transit card issued into the phone (the deposit from the wallet),
topped up online (the card's INITIALIZE FOR LOAD, the issuer host's MAC2, the card's
CREDIT FOR LOAD and TAC), and taps at gates that decide alone, offline, from what the
card carries (`transit.gate`): metro in and out by distance, flat buses, Shanghai's
transfer discount and its overdraft rule, a tap torn by pulling the phone away (settled
at the next gate), a blacklisted card refused. At night the gates upload their records
and each city's day is cleared from the card issuer's float to the operators; the
scene ends with every card's shadow balance equal to the card's own balance, and the
ledger verified. Every figure printed is an answer of the parties.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.identity import Channel, IdentityService, SimulatedSms
from milletpay.ledger import Ledger
from milletpay.sim.scene import Outcome, register_cast, scene_line
from milletpay.transit.blacklist import BlacklistService
from milletpay.transit.cards import TransitCard, TransitCards
from milletpay.transit.clearing import TransitClearing
from milletpay.transit.fares import CST_OFFSET_S, Mode, Tap
from milletpay.transit.gate import Gate, GateDecision, Reason, TornDebits
from milletpay.transit.purse import (
    LoadInit,
    Purse,
    PurseProfile,
    Sw,
    TearPoint,
    credit_for_load_command,
    initialize_for_load_command,
    select_command,
    split_response,
)
from milletpay.transit.sam import CityMasterKeys, LoadRequest, PurchaseSam
from milletpay.wallet import SimulatedBankGateway, WalletService

CITIES: Final = ("shanghai", "shenzhen", "beijing", "guangdong", "suzhou", "wuhan")
BANK: Final = "ICBC"
WALLET_FEN: Final = 50_000
TOP_UP_FEN: Final = 5_000
#: Shanghai's card gets less, so that the day's rides reach its overdraft.
TOP_UP_FEN_BY_CITY: Final = {"shanghai": 1_000}
LOAD_TERMINAL: Final = bytes.fromhex("990000000001")
#: Shanghai lets a ride overdraw a card (balance not negative, fare under 10 yuan): its
#: cards are issued with room for it.
OVERDRAFT_FEN: Final = {"shanghai": 1_000}


@dataclass(frozen=True)
class Commuter:
    name: str
    born: str
    city: str


# fmt: off
RIDERS: Final = (
    Commuter("Lin Tao",   "19910412", "shanghai"),
    Commuter("Deng Qi",   "19880630", "shenzhen"),
    Commuter("Han Mei",   "19950921", "beijing"),
    Commuter("Luo Bin",   "19830115", "guangdong"),
    Commuter("Shen Yue",  "19970805", "suzhou"),
    Commuter("Kong Wei",  "19790228", "wuhan"),
)
# fmt: on


@dataclass
class _City:
    keys: CityMasterKeys
    blacklist: BlacklistService = field(default_factory=BlacklistService)
    torn: TornDebits = field(default_factory=TornDebits)
    gates: list[Gate] = field(default_factory=list)

    def gate(self, city: str, mode: Mode, tap: Tap, station: str = "") -> Gate:
        number = len(self.gates) + 1
        terminal = (0x200000 + CITIES.index(city) * 0x100 + number).to_bytes(6, "big")
        gate = Gate(
            f"{city}-{mode}-{tap}-{number}",
            city,
            mode,
            tap,
            PurchaseSam([self.keys], terminal),
            self.blacklist,
            station=station,
            torn_debits=self.torn,
        )
        self.gates.append(gate)
        return gate


@dataclass
class _Day:
    clock: ManualClock
    cards: TransitCards
    cities: dict[str, _City]
    purses: dict[Commuter, Purse] = field(default_factory=dict)
    issued: dict[Commuter, TransitCard] = field(default_factory=dict)
    users: dict[Commuter, int] = field(default_factory=dict)
    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def tap(self, who: Commuter, gate: Gate, minutes: int) -> GateDecision:
        self.clock.advance(seconds=minutes * 60)
        decision = gate.tap(self.purses[who].process, self.clock.now_ns())
        where = f"{gate.mode} {gate.tap_kind}" + (f" {gate.station}" if gate.station else "")
        fare = f"{decision.fare_fen / 100:.2f}" if decision.opened else "-"
        answer = "open" if decision.opened else str(decision.reason)
        if decision.resolved is not None:
            answer += ", settled a torn tap"
        self.rows.append((who.city, who.name, where, fare, answer))
        return decision


def play_commute_scene(
    ledger: Ledger, clock: ManualClock, console: Console, keyring: KeyRing
) -> list[Outcome]:
    """Issue, top up, ride, upload and clear; print the lines and the rides."""
    sms, bank = SimulatedSms(), SimulatedBankGateway()
    identity = IdentityService(ledger.engine, keyring, clock, sms)
    wallet = WalletService(ledger, identity, ledger.engine, clock, bank)
    cities = {city: _City(CityMasterKeys.generate()) for city in CITIES}
    keys = {city: [state.keys] for city, state in cities.items()}
    cards = TransitCards(ledger, wallet, clock, keys)
    clearing = TransitClearing(ledger, clock, keys, _AnyCityBlacklist(cities))
    day = _Day(clock, cards, cities)
    cast_number, users = register_cast(identity, RIDERS, "1392")
    console.print(
        f"[bold]Commute[/bold]: {len(RIDERS)} riders in six cities ride with transit "
        f"cards on their phones (cast {cast_number})\n"
    )
    lines: list[Outcome] = []

    def show(label: str, line: Outcome) -> None:
        lines.append(line)
        console.print(scene_line(label, line))

    for who in RIDERS:
        user = users[who]
        for channel in (Channel.BANK_CARD, Channel.PUBLIC_SECURITY_ID, Channel.TELECOM):
            identity.verify_channel(user.id, channel)
        number = f"6222029{cast_number:04d}{RIDERS.index(who):05d}"
        bank.open_account(BANK, number, who.name, 10 * WALLET_FEN)
        linked = wallet.link_bank_account(user.id, BANK, number)
        wallet.top_up(user.id, linked.id, WALLET_FEN, f"commute-{cast_number}")
        day.users[who] = user.id
        day.issued[who] = cards.issue(user.id, who.city, f"phone-{user.id:032x}"[:32], "card")
        day.purses[who] = _personalize(day.issued[who], cities[who.city].keys)
        _top_up(day, who)
    deposits = sum(card.deposit_fen for card in day.issued.values())
    show("issue", Outcome(
        f"6 cards issued into phones (deposits {deposits / 100:.2f}) and topped up online: "
        "the card's TAC confirmed every load",
        ("ok",) * len(RIDERS), True,
    ))  # fmt: skip
    clock.advance(seconds=_until_morning(clock.now_ns()))
    _ride(day, show)
    _night(day, clearing, show)
    console.print()
    console.print(_rides_table(day))
    console.print()
    return lines


def _ride(day: _Day, show: Any) -> None:
    sh, bj, sz = (day.cities[c] for c in ("shanghai", "beijing", "shenzhen"))
    lin, han, deng = RIDERS[0], RIDERS[2], RIDERS[1]
    # Beijing: in at Pingguoyuan, out at Yuquanlu, the fare by distance.
    day.tap(han, bj.gate("beijing", Mode.METRO, Tap.ENTRY, "pingguoyuan"), 5)
    out = day.tap(han, bj.gate("beijing", Mode.METRO, Tap.EXIT, "yuquanlu"), 20)
    show("metro", Outcome(f"Beijing metro by distance: {out.fare_fen / 100:.2f}",
                          (_said(out),), out.opened))  # fmt: skip
    # Shanghai: a bus, then the metro within 120 minutes: one yuan off.
    bus = day.tap(lin, sh.gate("shanghai", Mode.BUS, Tap.ENTRY), 5)
    day.tap(lin, sh.gate("shanghai", Mode.METRO, Tap.ENTRY, "xinzhuang"), 30)
    metro = day.tap(lin, sh.gate("shanghai", Mode.METRO, Tap.EXIT, "peoples_square"), 25)
    discounted = bool(metro.quote and any(d.name == "transfer" for d in metro.quote.discounts))
    show("transfer", Outcome(f"Shanghai bus {bus.fare_fen / 100:.2f} then metro "
                             f"{metro.fare_fen / 100:.2f}: 1.00 off within 120 minutes",
                             (_said(metro),), discounted))  # fmt: skip
    # Shanghai: rides until the card overdraws once, then is refused while negative.
    refused = None
    for _ in range(12):
        ride = day.tap(lin, sh.gate("shanghai", Mode.BUS, Tap.ENTRY), 150)
        if not ride.opened:
            refused = ride
            break
    balance = day.purses[lin].balance_fen
    show("overdraft", Outcome(
        f"Shanghai card overdrawn to {balance / 100:.2f}, the next bus refused",
        (str(refused.reason) if refused else "never refused",),
        refused is not None and refused.reason is Reason.BALANCE_NEGATIVE and balance < 0,
    ))  # fmt: skip
    # Shenzhen: the phone leaves the field right after the card took the fare; the next
    # gate finds the debit and completes its record: one fare, not two.
    entry = sz.gate("shenzhen", Mode.METRO, Tap.ENTRY, "luohu")
    day.tap(deng, entry, 10)
    before = day.purses[deng].balance_fen
    day.purses[deng].arm_tear(TearPoint.AFTER_COMMIT)
    torn = day.tap(deng, sz.gate("shenzhen", Mode.METRO, Tap.EXIT, "shopping_park"), 15)
    later = day.tap(deng, sz.gate("shenzhen", Mode.BUS, Tap.ENTRY), 30)
    taken = before - day.purses[deng].balance_fen
    fares = (later.resolved.amount_fen if later.resolved else 0) + later.fare_fen
    show("torn", Outcome(
        f"Shenzhen: torn at the exit, settled at the next gate ({taken / 100:.2f} taken "
        "for two rides)",
        (str(torn.reason), "resolved" if later.resolved else "unresolved"),
        torn.reason is Reason.TORN and later.resolved is not None and taken == fares,
    ))  # fmt: skip
    for who in RIDERS[3:5]:  # Guangdong and Suzhou: flat-fare buses
        state = day.cities[who.city]
        day.tap(who, state.gate(who.city, Mode.BUS, Tap.ENTRY), 10)
    # Wuhan: the rider's card is blacklisted; gates pull the list and refuse it.
    kong = RIDERS[5]
    wuhan = day.cities["wuhan"]
    reader = wuhan.gate("wuhan", Mode.BUS, Tap.ENTRY)
    day.tap(kong, reader, 10)
    wuhan.blacklist.add(day.issued[kong].card_number)
    day.clock.advance(seconds=3_600)
    reader.refresh_blacklist(day.clock.now_ns())
    blocked = day.tap(kong, reader, 1)
    refused_ok = blocked.reason is Reason.BLACKLISTED
    show("blacklist", Outcome("Wuhan: a blacklisted card refused at the bus",
                              (str(blocked.reason),), refused_ok))  # fmt: skip


def _night(day: _Day, clearing: TransitClearing, show: Any) -> None:
    uploaded = held = rejected = 0
    for state in day.cities.values():
        for gate in state.gates:
            report = clearing.upload(gate.gate_id, gate.drain_records(100_000))
            uploaded += report.accepted
            held += report.held
            rejected += len(report.rejected)
    show("upload", Outcome(f"the gates upload {uploaded} tap records; a blacklisted "
                           f"card's {held} held, not cleared; {rejected} rejected",
                           ("ok",), uploaded > 0 and rejected == 0))  # fmt: skip
    today = _cst_date(day.clock.now_ns())
    reports = [clearing.clear_day(city, today) for city in CITIES]
    cleared = sum(r.records_cleared for r in reports)
    gaps = sum(r.gaps_total for r in reports)
    paid = sum(sum(r.by_operator_fen.values()) for r in reports)
    owners = {day.issued[who].card_number: who.name for who in RIDERS}
    named = [
        f"{owners.get(g.card_number, '?')}: expected {g.expected_fen}, card {g.seen_fen}, "
        f"{g.missing_records} missing"
        for r in reports
        for g in r.gaps
    ]
    show("clearing", Outcome(f"{cleared} fares cleared to the operators, {paid / 100:.2f} "
                             f"in all; {gaps} shadow-balance gaps {'; '.join(named)}",
                             (f"gaps {gaps}",), gaps == 0 and cleared > 0))  # fmt: skip
    mismatched = [
        who.name
        for who in RIDERS
        if who is not RIDERS[5]
        and day.cards.card(day.users[who], day.issued[who].card_number).shadow.balance_fen
        != day.purses[who].balance_fen
    ]
    show("shadow", Outcome("every cleared card's shadow balance equals the card's own",
                           (f"{len(mismatched)} differ",), not mismatched))  # fmt: skip


class _AnyCityBlacklist:
    """Clearing's view of the cities' blacklists."""

    def __init__(self, cities: dict[str, _City]) -> None:
        self._cities = cities

    def is_blacklisted(self, card_number: bytes) -> bool:
        return any(c.blacklist.current().contains(card_number) for c in self._cities.values())


def _personalize(card: TransitCard, keys: CityMasterKeys) -> Purse:
    profile = PurseProfile(
        card_number=card.card_number,
        issuer_id=bytes(8),
        start_date=bytes.fromhex("20260101"),
        expiry_date=bytes.fromhex("20360101"),
        keys=(keys.card_keys(card.card_number),),
        overdraft_limit_fen=OVERDRAFT_FEN.get(card.city, 0),
    )
    return Purse(profile)


def _top_up(day: _Day, who: Commuter) -> None:
    purse, card = day.purses[who], day.issued[who]
    _ok(purse.process(select_command()))
    amount_fen = TOP_UP_FEN_BY_CITY.get(who.city, TOP_UP_FEN)
    command = initialize_for_load_command(card.key_index, amount_fen, LOAD_TERMINAL)
    init = LoadInit.decode(_ok(purse.process(command)))
    when = datetime.datetime.fromtimestamp(
        day.clock.now_ns() // NS_PER_S + CST_OFFSET_S, datetime.UTC
    )
    date, time = bytes.fromhex(when.strftime("%Y%m%d")), bytes.fromhex(when.strftime("%H%M%S"))
    request = LoadRequest(card.card_number, init, amount_fen, LOAD_TERMINAL, date, time)
    top_up = day.cards.top_up(day.users[who], card.card_number, amount_fen, request, "load-1")
    assert top_up.mac2 is not None, top_up
    tac = _ok(purse.process(credit_for_load_command(date, time, top_up.mac2)))
    day.cards.confirm_load(day.users[who], card.card_number, init.online_counter, tac)


def _said(decision: GateDecision) -> str:
    return "open" if decision.opened else str(decision.reason)


def _ok(response: bytes) -> bytes:
    data, sw = split_response(response)
    assert sw == Sw.OK, f"{sw:04X}"
    return data


def _cst_date(instant_ns: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(
        instant_ns // NS_PER_S + CST_OFFSET_S, datetime.UTC
    ).date()


def _until_morning(instant_ns: int) -> int:
    """Seconds from `instant_ns` to the next 07:00 China time."""
    seconds_of_day = (instant_ns // NS_PER_S + CST_OFFSET_S) % 86_400
    return (7 * 3_600 - seconds_of_day) % 86_400 or 86_400


def _rides_table(day: _Day) -> Table:
    table = Table(title="Rides", title_justify="left")
    for name in ("city", "rider", "gate", "fare", "decision"):
        table.add_column(name, justify="right" if name == "fare" else "left")
    for row in day.rows:
        table.add_row(*row)
    return table
