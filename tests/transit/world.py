"""A transit world for storage tests: the ledger, identity, a simulated bank, the wallet,
transit cards and clearing over one database, and riders whose phones hold real purses.

A rider's card is loaded through the purse's own INITIALIZE FOR LOAD / CREDIT FOR LOAD
with the issuer host's MAC2, and tap records come from real composite purchases at a gate
with a `PurchaseSam`: every MAC and TAC in these tests is the card's and the SAM's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from stdnum.cn import ric

from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.identity import Channel, IdentityService, SimulatedSms
from milletpay.ledger import Ledger
from milletpay.store import create_engine, upgrade
from milletpay.transit.cards import TopUp, TransitCard, TransitCards
from milletpay.transit.clearing import TransitClearing
from milletpay.transit.fares import Mode, Tap
from milletpay.transit.purse import (
    LoadInit,
    PurchaseInit,
    Purse,
    PurseProfile,
    Sw,
    TransitMode,
    TripRecord,
    credit_for_load_command,
    debit_for_purchase_command,
    initialize_for_load_command,
    initialize_for_purchase_command,
    select_command,
    split_response,
    update_capp_data_cache_command,
)
from milletpay.transit.purse_crypto import TRANSACTION_TYPE_COMPOSITE
from milletpay.transit.records import TapRecord
from milletpay.transit.sam import CityMasterKeys, LoadRequest, PurchaseSam
from milletpay.wallet import SimulatedBankGateway, WalletService

BANK = "ICBC"
DAY = dt.date(2026, 11, 26)
LOAD_TERMINAL_ID = bytes.fromhex("990000000001")
CITIES = ("shanghai", "shenzhen", "beijing")
CHANNELS = (Channel.BANK_CARD, Channel.PUBLIC_SECURITY_ID, Channel.TELECOM)  # Class II


def yuan(amount_yuan: int) -> int:
    return amount_yuan * 100


def bcd_date(day: dt.date) -> bytes:
    return bytes.fromhex(day.strftime("%Y%m%d"))


@dataclass
class Rider:
    user_id: int
    linked_account_id: int
    device_id: str
    account_number: str  # at `BANK`, linked to the wallet


@dataclass
class SetBlacklist:
    cards: set[bytes] = field(default_factory=set)

    def is_blacklisted(self, card_number: bytes) -> bool:
        return card_number in self.cards


@dataclass
class Gate:
    gate_id: str
    city: str
    sam: PurchaseSam
    mode: Mode = Mode.METRO


@dataclass
class World:
    engine: sa.Engine
    clock: ManualClock
    ledger: Ledger
    identity: IdentityService
    bank: SimulatedBankGateway
    wallet: WalletService
    keys: dict[str, CityMasterKeys]
    cards: TransitCards
    clearing: TransitClearing
    blacklist: SetBlacklist
    people: int = 0
    gates: int = 0

    def rider(self, wallet_fen: int = yuan(500)) -> Rider:
        """A Class II user with `wallet_fen` in the wallet, topped up from the bank."""
        self.people += 1
        n = self.people
        body = f"11010519900101{n:03d}"
        user = self.identity.register(
            f"1390013{n:04d}", f"Rider {n}", body + ric.calc_check_digit(body + "0")
        )
        for channel in CHANNELS:
            self.identity.verify_channel(user.id, channel)
        account_number = f"62220200{n:08d}"
        self.bank.open_account(BANK, account_number, f"Rider {n}", yuan(100_000))
        linked = self.wallet.link_bank_account(user.id, BANK, account_number)
        if wallet_fen:
            outcome = self.wallet.top_up(user.id, linked.id, wallet_fen, f"fund-{n}")
            assert outcome.approved
        return Rider(user.id, linked.id, f"phone-{n}", account_number)

    def wallet_fen(self, rider: Rider) -> int:
        return self.wallet.balance(rider.user_id).posted_fen

    def account_fen(self, account_id: int) -> int:
        """Credits less debits posted: what a liability-side account holds."""
        (account,) = self.ledger.lookup_accounts([account_id])
        return account.credits_posted - account.debits_posted

    def purse(self, card: TransitCard, *, balance_fen: int = 0, overdraft_fen: int = 0) -> Purse:
        """The phone's applet, personalized with the card's diversified keys."""
        profile = PurseProfile(
            card_number=card.card_number,
            issuer_id=bytes(8),
            start_date=bytes.fromhex("20260101"),
            expiry_date=bytes.fromhex("20360101"),
            keys=(self.keys[card.city].card_keys(card.card_number),),
            overdraft_limit_fen=overdraft_fen,
        )
        purse = Purse(profile, balance_fen=balance_fen)
        ok(purse.process(select_command()))
        return purse

    def load_request(self, purse: Purse, card: TransitCard, amount_fen: int) -> LoadRequest:
        """The card's INITIALIZE FOR LOAD, as the wallet app sends it to the platform."""
        init = LoadInit.decode(
            ok(purse.process(initialize_for_load_command(1, amount_fen, LOAD_TERMINAL_ID)))
        )
        return LoadRequest(
            card.card_number, init, amount_fen, LOAD_TERMINAL_ID, bcd_date(DAY), bytes(3)
        )

    def load(
        self, rider: Rider, purse: Purse, card: TransitCard, amount_fen: int, key: str
    ) -> TopUp:
        """A whole top-up: INITIALIZE FOR LOAD, the platform's MAC2, CREDIT FOR LOAD, and
        the card's TAC confirmed."""
        request = self.load_request(purse, card, amount_fen)
        top_up = self.cards.top_up(rider.user_id, card.card_number, amount_fen, request, key)
        assert top_up.mac2 is not None, top_up
        tac = ok(purse.process(credit_for_load_command(request.date, request.time, top_up.mac2)))
        return self.cards.confirm_load(
            rider.user_id, card.card_number, request.init.online_counter, tac
        )

    def gate(self, city: str, mode: Mode = Mode.METRO) -> Gate:
        self.gates += 1
        terminal_id = (0x100000 + self.gates).to_bytes(6, "big")
        return Gate(
            f"{city}-gate-{self.gates}", city, PurchaseSam([self.keys[city]], terminal_id), mode
        )

    def tap(
        self, gate: Gate, card: TransitCard, purse: Purse, fare_fen: int, day: dt.date = DAY
    ) -> TapRecord:
        """A composite purchase at the gate, as the gate records it."""
        self.clock.advance(seconds=60)
        ok(purse.process(select_command()))
        command = initialize_for_purchase_command(1, fare_fen, gate.sam.terminal_id, composite=True)
        init = PurchaseInit.decode(ok(purse.process(command)))
        date, time = bcd_date(day), bytes.fromhex("081500")
        card_number = card.card_number
        session = gate.sam.authorize(
            card_number, init, fare_fen, TRANSACTION_TYPE_COMPOSITE, date, time
        )
        trip = TripRecord(
            TransitMode.METRO if gate.mode is Mode.METRO else TransitMode.BUS,
            1,
            date,
            time,
            fare_fen,
        )
        ok(purse.process(update_capp_data_cache_command(trip.encode())))
        answer = ok(
            purse.process(
                debit_for_purchase_command(
                    session.data.terminal_transaction_number, date, time, session.mac1
                )
            )
        )
        tac, mac2 = answer[:4], answer[4:8]
        assert gate.sam.verify_mac2(session, mac2) and gate.sam.verify_tac(session, tac)
        return TapRecord(
            city=gate.city,
            gate_id=gate.gate_id,
            card_number=card_number,
            offline_counter=init.offline_counter,
            purchase=session.data,
            balance_after_fen=init.balance_fen - fare_fen,
            key_version=session.key_version,
            tac=tac,
            mode=gate.mode,
            tap=Tap.EXIT if gate.mode is Mode.METRO else Tap.ENTRY,
            station="xujiahui",
            tapped_at_ns=self.clock.now_ns(),
        )

    def verify(self) -> None:
        report = self.ledger.verify()
        assert report.ok, report.problems


def ok(response: bytes) -> bytes:
    data, sw = split_response(response)
    assert sw == Sw.OK, f"{sw:04X}"
    return data


def open_world(database_url: str) -> Iterator[World]:
    """The world on a fresh database, for a module's `world` fixture to yield from; the
    ledger's invariants are checked when the test ends."""
    engine = create_engine(database_url)
    upgrade(engine)
    clock = ManualClock(1_795_000_000 * NS_PER_S)  # 2026-11-18
    ledger = Ledger(engine, clock)
    identity = IdentityService(engine, KeyRing.generate(), clock, SimulatedSms())
    bank = SimulatedBankGateway()
    wallet = WalletService(ledger, identity, engine, clock, bank)
    keys = {city: CityMasterKeys.generate(key_index=1, key_version=1) for city in CITIES}
    city_keys = {city: [k] for city, k in keys.items()}
    blacklist = SetBlacklist()
    world = World(
        engine,
        clock,
        ledger,
        identity,
        bank,
        wallet,
        keys,
        TransitCards(ledger, wallet, clock, city_keys),
        TransitClearing(ledger, clock, city_keys, blacklist),
        blacklist,
    )
    yield world
    world.verify()
    engine.dispose()
