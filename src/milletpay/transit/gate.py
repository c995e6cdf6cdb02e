"""Transit gates: a bus reader, or a metro entry or exit gate, deciding a tap alone, offline.

A `Gate` drives the card over APDUs (the purse of `purse.py`), prices the tap with the
city's fare engine from what the card itself carries (`card_context`), debits it with a
composite purchase that writes the trip record in the same commit, checks MAC2 and the
TAC with its secure module, and keeps a `TapRecord` of every completed debit for upload.
A refusal is an answer with a stable `Reason`, never an exception.

Torn taps: a debit whose answer never came back is kept as a `TornDebit` in the city's
`TornDebits` book; the card's next tap, at any gate sharing the book, settles it from the
card itself (GET TRANSACTION PROVE, then the transaction records), so that a fare is
neither lost nor taken twice. docs/transit-gates.md gives the dialogue and the rules.

It must never do I/O or wait during a tap: the blacklist is the copy in memory, pulled
only by `refresh_blacklist`; every loop is bounded by the card's record files.
"""

from __future__ import annotations

import calendar
import datetime
import enum
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from milletpay.core.clock import NS_PER_S
from milletpay.core.errors import MilletError
from milletpay.transit import purse_crypto as pc
from milletpay.transit.blacklist import (
    BLACKLIST_MAX_AGE_S,
    BLACKLIST_REFRESH_S,
    BlacklistSource,
    BlacklistStatus,
    GateBlacklist,
)
from milletpay.transit.fares import (
    CST_OFFSET_S,
    FareError,
    FareKind,
    FareQuote,
    FareTable,
    Mode,
    OpenTrip,
    PastRide,
    Refusal,
    Ride,
    RideContext,
    Tap,
    china_month,
    fare_for,
    fare_table,
)
from milletpay.transit.purse import (
    PUBLIC_DATA_BYTES,
    SFI_PUBLIC_DATA,
    SFI_TRANSACTIONS,
    SFI_TRIPS,
    TRANSACTION_RECORDS_MAX,
    TRIP_RECORDS_MAX,
    PurchaseInit,
    Sw,
    TransactionRecord,
    TransitMode,
    TripRecord,
    debit_for_purchase_command,
    get_balance_command,
    get_transaction_prove_command,
    initialize_for_purchase_command,
    read_binary_command,
    read_record_command,
    select_command,
    split_response,
    update_capp_data_cache_command,
)
from milletpay.transit.records import TapRecord
from milletpay.transit.sam import PurchaseSam, PurchaseSession, SamError

__all__ = [
    "BLACKLIST_REFRESH_S",
    "DEFAULT_KEY_INDEX",
    "RECORDS_MAX",
    "TORN_DEBITS_MAX",
    "TRIP_VALUE_MAX",
    "CardContextError",
    "CardTransport",
    "CardTrip",
    "Gate",
    "GateDecision",
    "GateError",
    "Reason",
    "TornDebit",
    "TornDebits",
    "TripKind",
    "card_context",
    "decode_trip",
    "station_number",
    "station_numbers",
]

#: The records one gate keeps before the uploader drains them; at the limit the gate
#: refuses taps (`record_store_full`) rather than take a fare it could not record.
RECORDS_MAX: Final = 100_000
#: Torn debits one city's book holds; beyond it the oldest is dropped and counted.
TORN_DEBITS_MAX: Final = 10_000
#: The trip word's value is 3 bytes: a station number, or the month's metro spending.
TRIP_VALUE_MAX: Final = 0xFFFFFF
DEFAULT_KEY_INDEX: Final = 1

CardTransport = Callable[[bytes], bytes]  # one command APDU in, its response out ("NFC")

_CARD_NUMBER_AT = slice(10, 20)  # in file 0x15: issuer 8, type 1, version 1, number 10
_TRANSIT_MODES: Mapping[Mode, TransitMode] = MappingProxyType(
    {Mode.METRO: TransitMode.METRO, Mode.BUS: TransitMode.BUS}
)
_MODES_BY_BYTE: Mapping[int, Mode] = MappingProxyType(
    {int(t): m for m, t in _TRANSIT_MODES.items()}
)


class GateError(MilletError, ValueError):
    """A gate configured with something its city cannot price (unknown city, mode or
    station, an exit reader on a flat fare, station numbers that collide)."""

    code = "gate_invalid"


class CardContextError(MilletError, ValueError):
    """A trip record the gate cannot read (bad BCD date, unknown station number)."""

    code = "card_records_unreadable"


class Reason(enum.StrEnum):
    """Why a gate stays shut: stable codes shown on the gate and kept by the platform."""

    BLACKLISTED = "blacklisted"
    BALANCE_TOO_LOW = "balance_too_low"  # the fare is above balance and overdraft
    BALANCE_NEGATIVE = "balance_negative"  # overdrawn already (Shanghai): top up first
    NO_ENTRY = "no_entry"  # an exit with no entry on the card
    CARD_UNREADABLE = "card_unreadable"  # no answer, a malformed one, or unreadable records
    KEY_NOT_SUPPORTED = "key_not_supported"  # key index (card) or version (SAM) not held
    CARD_LOCKED = "card_locked"  # too many wrong MACs (9303)
    COUNTER_EXHAUSTED = "counter_exhausted"  # the card's offline counter is at its max
    CARD_REFUSED = "card_refused"  # any other refusal by the card (e.g. 6988)
    TAC_INVALID = "tac_invalid"  # MAC2 or TAC does not verify: not a genuine card
    FARE_INPUT_INVALID = "fare_input_invalid"  # the fare engine cannot price this tap
    RECORD_STORE_FULL = "record_store_full"  # the uploader has not drained the gate
    TORN = "torn"  # the card left during DEBIT: settled at its next tap


_SW_REASONS: Mapping[int, Reason] = MappingProxyType(
    {
        Sw.BALANCE_TOO_LOW: Reason.BALANCE_TOO_LOW,
        Sw.KEY_NOT_SUPPORTED: Reason.KEY_NOT_SUPPORTED,
        Sw.APPLICATION_LOCKED: Reason.CARD_LOCKED,
        Sw.COUNTER_EXHAUSTED: Reason.COUNTER_EXHAUSTED,
    }
)
_FARE_REASONS: Mapping[Refusal, Reason] = MappingProxyType(
    {
        Refusal.BALANCE_TOO_LOW: Reason.BALANCE_TOO_LOW,
        Refusal.BALANCE_NEGATIVE: Reason.BALANCE_NEGATIVE,
        Refusal.NO_ENTRY: Reason.NO_ENTRY,
    }
)


# --- What the card carries: trip records as gates write them --------------------------


class TripKind(enum.IntEnum):
    """The first byte of a trip record's 4-byte word (the purse's "entry station")."""

    ENTRY = 0x01  # a distance-fare entry: the trip is open; value = station number
    EXIT = 0x02  # a distance-fare exit: value = the month's metro spending after it
    BOARDING = 0x03  # the one tap of a flat fare: value = the month's metro spending


def station_number(code: str) -> int:
    """The 3-byte number a trip record carries for a station: CRC-32 of its code, low 24
    bits. Stable while codes are; `station_numbers` refuses a city where two collide."""
    return zlib.crc32(code.encode("utf-8")) & TRIP_VALUE_MAX


def station_numbers(table: FareTable, city: str) -> Mapping[int, str]:
    """Station number -> station code for the city's metro (empty without a metro)."""
    spec = table.city(city)
    if Mode.METRO not in spec.rules:
        return MappingProxyType({})
    found: dict[int, str] = {}
    for line in spec.rule(Mode.METRO).lines:
        for station in line.stations:
            number = station_number(station.code)
            if number == 0 or found.get(number, station.code) != station.code:
                raise GateError(f"{city}: station {station.code} has a number already in use")
            found[number] = station.code
    return MappingProxyType(found)


@dataclass(frozen=True, slots=True)
class CardTrip:
    """A trip record read back: what the gate that wrote it meant."""

    mode: Mode
    kind: TripKind
    value: int  # ENTRY: station number (0 for a bus); else the month's metro spending
    at_ns: int  # the tap's time (seconds), from the record's China-time date and time
    month: int  # yyyymm of the tap, China time
    amount_fen: int


def decode_trip(raw: bytes) -> CardTrip | None:
    """A trip record as gates write it, or None for a mode gates do not price (a ferry or
    rail record). `CardContextError` for a record that does not parse."""
    try:
        record = TripRecord.decode(raw)
        kind = TripKind(record.entry_station >> 24)
        at = _parse_china_time(record.date, record.time)
    except (MilletError, ValueError) as exc:
        raise CardContextError(f"trip record {raw.hex()} does not parse: {exc}") from None
    mode = _MODES_BY_BYTE.get(record.mode)
    if mode is None:
        return None
    at_ns = (calendar.timegm(at.timetuple()) - CST_OFFSET_S) * NS_PER_S
    return CardTrip(
        mode,
        kind,
        record.entry_station & TRIP_VALUE_MAX,
        at_ns,
        at.year * 100 + at.month,
        record.amount_fen,
    )


def card_context(
    balance_fen: int, trips: Sequence[CardTrip], stations: Mapping[int, str], month: int
) -> RideContext:
    """The fare context from the card's own records (newest first): one open trip a mode
    (the newest record of the mode is an ENTRY), the last finished ride (the newest EXIT or
    BOARDING), and the metro spending of `month` (yyyymm): the spending the newest finished
    ride wrote, if of that month, plus the metro entries since (unclosed-trip charges)."""
    open_trips: list[OpenTrip] = []
    for mode in Mode:
        newest = next((t for t in trips if t.mode is mode), None)
        if newest is not None and newest.kind is TripKind.ENTRY:
            open_trips.append(OpenTrip(mode, newest.at_ns, _station(newest, stations)))
    finished_at = next((i for i, t in enumerate(trips) if t.kind is not TripKind.ENTRY), None)
    last_ride = None
    spent_fen = 0
    newer = trips if finished_at is None else trips[:finished_at]
    if finished_at is not None:
        last = trips[finished_at]
        last_ride = PastRide(last.mode, _started_at_ns(trips, finished_at), last.at_ns)
        spent_fen = last.value if last.month == month else 0
    spent_fen += sum(t.amount_fen for t in newer if t.mode is Mode.METRO and t.month == month)
    return RideContext(
        balance_fen=balance_fen,
        open_trips=tuple(open_trips),
        last_ride=last_ride,
        spending_month=month,
        month_metro_spent_fen=spent_fen,
    )


def _station(trip: CardTrip, stations: Mapping[int, str]) -> str:
    if trip.mode is not Mode.METRO:
        return ""
    code = stations.get(trip.value)
    if code is None:
        raise CardContextError(f"station number {trip.value:06X} is not one of the city's")
    return code


def _started_at_ns(trips: Sequence[CardTrip], index: int) -> int:
    """A finished ride's start: its entry (the next older record of its mode, if an
    ENTRY), or its own tap for a boarding or an exit whose entry fell off the file."""
    ride = trips[index]
    if ride.kind is TripKind.EXIT:
        entry = next((t for t in trips[index + 1 :] if t.mode is ride.mode), None)
        if entry is not None and entry.kind is TripKind.ENTRY:
            return entry.at_ns
    return ride.at_ns


def _china_bcd(now_ns: int) -> tuple[bytes, bytes]:
    """(date YYYYMMDD, time hhmmss) in BCD, China Standard Time."""
    at = datetime.datetime.fromtimestamp(now_ns // NS_PER_S + CST_OFFSET_S, tz=datetime.UTC)
    return bytes.fromhex(at.strftime("%Y%m%d")), bytes.fromhex(at.strftime("%H%M%S"))


def _parse_china_time(date: bytes, time: bytes) -> datetime.datetime:
    digits = (date + time).hex()
    if not digits.isdigit():
        raise ValueError("date and time are not BCD")
    return datetime.datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=datetime.UTC)


# --- Torn debits -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TornDebit:
    """A DEBIT sent with no answer back: everything of its record but the TAC."""

    session: PurchaseSession  # what the SAM authorized: the TAC's data, MAC2's key
    gate_id: str
    city: str
    mode: Mode
    tap: Tap
    station: str
    tapped_at_ns: int
    balance_after_fen: int

    def record(self, tac: bytes, *, resolved_torn: bool) -> TapRecord:
        return TapRecord(
            city=self.city,
            gate_id=self.gate_id,
            card_number=self.session.card_number,
            offline_counter=self.session.offline_counter,
            purchase=self.session.data,
            balance_after_fen=self.balance_after_fen,
            key_version=self.session.key_version,
            tac=tac,
            mode=self.mode,
            tap=self.tap,
            station=self.station,
            tapped_at_ns=self.tapped_at_ns,
            resolved_torn=resolved_torn,
        )


@dataclass(slots=True)
class TornDebits:
    """The city's book of torn debits, one at most per card (the card's next tap settles
    it before any new debit), shared by the gates that may see the card next."""

    limit: int = TORN_DEBITS_MAX
    dropped: int = 0  # torn debits pushed out at the limit
    _pending: dict[bytes, TornDebit] = field(default_factory=dict, repr=False)
    #: Settled as committed by the card's records, but with no TAC to show for them (the
    #: card had made another purchase since): for clearing to look into. Bounded too.
    unproven: dict[tuple[bytes, int], TornDebit] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, debit: TornDebit) -> None:
        card_number = debit.session.card_number
        assert card_number not in self._pending, "a card's torn debit is settled first"
        if len(self._pending) >= self.limit:
            del self._pending[next(iter(self._pending))]
            self.dropped += 1
        self._pending[card_number] = debit

    def get(self, card_number: bytes) -> TornDebit | None:
        return self._pending.get(card_number)

    def settle(self, card_number: bytes, *, unproven: bool = False) -> None:
        debit = self._pending.pop(card_number)
        if unproven and len(self.unproven) < self.limit:
            self.unproven[(card_number, debit.session.offline_counter)] = debit


# --- The gate --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's answer to one tap."""

    reason: Reason | None  # None: open
    card_number: bytes | None = None
    quote: FareQuote | None = None
    record: TapRecord | None = None  # this tap's debit
    resolved: TapRecord | None = None  # an earlier torn debit completed at this tap
    blacklist_stale: bool = False

    @property
    def opened(self) -> bool:
        return self.reason is None

    @property
    def fare_fen(self) -> int:
        """What this tap took from the card (0 when refused or torn)."""
        return 0 if self.record is None else self.record.amount_fen


class _Refused(Exception):
    """A tap ends early with `reason`; caught in `Gate.tap`, never leaves it."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Tap:
    """What one tap learned so far, for the decision even when it ends early."""

    card: CardTransport
    card_number: bytes | None = None
    quote: FareQuote | None = None
    resolved: TapRecord | None = None

    def send(self, command: bytes) -> tuple[bytes, int]:
        response = self.card(command)
        if len(response) < 2:
            raise _Refused(Reason.CARD_UNREADABLE)  # the card left the field
        return split_response(response)

    def expect(self, command: bytes, length: int | None) -> bytes:
        """The data of a 9000 answer of `length` bytes (None: any)."""
        data, sw = self.send(command)
        if sw != Sw.OK:
            raise _Refused(_SW_REASONS.get(sw, Reason.CARD_REFUSED))
        if length is not None and len(data) != length:
            raise _Refused(Reason.CARD_UNREADABLE)
        return data

    def records(self, sfi: int, most: int) -> Iterator[bytes]:
        """Records 1 (newest) on, until the file ends or `most` were read."""
        for number in range(1, most + 1):
            data, sw = self.send(read_record_command(sfi, number))
            if sw == Sw.RECORD_NOT_FOUND:
                return
            if sw != Sw.OK:
                raise _Refused(Reason.CARD_UNREADABLE)
            yield data


class Gate:
    """One reader of one city: a metro entry or exit gate at a station, or a bus reader."""

    def __init__(
        self,
        gate_id: str,
        city: str,
        mode: Mode,
        tap: Tap,
        sam: PurchaseSam,
        blacklist: BlacklistSource,
        *,
        station: str = "",
        key_index: int = DEFAULT_KEY_INDEX,
        torn_debits: TornDebits | None = None,
        fares: FareTable | None = None,
        records_max: int = RECORDS_MAX,
        blacklist_refresh_s: int = BLACKLIST_REFRESH_S,
        blacklist_max_age_s: int = BLACKLIST_MAX_AGE_S,
    ) -> None:
        self._fares = fares or fare_table()
        try:
            rule = self._fares.city(city).rule(mode)
            if mode is Mode.METRO:
                self._fares.city(city).require_station(station)
        except FareError as exc:
            raise GateError(f"gate {gate_id}: {exc.message}") from None
        if rule.kind is FareKind.FLAT and tap is not Tap.ENTRY:
            raise GateError(f"gate {gate_id}: {city} {mode} is a flat fare, tapped on boarding")
        assert 2 <= records_max <= RECORDS_MAX
        self.gate_id, self.city, self.mode, self.tap_kind = gate_id, city, mode, tap
        self.station = station if mode is Mode.METRO else ""
        self._flat = rule.kind is FareKind.FLAT
        self._sam = sam
        self._key_index = key_index
        self._stations = station_numbers(self._fares, city)
        self._torn = TornDebits() if torn_debits is None else torn_debits
        self._blacklist = GateBlacklist(
            blacklist, refresh_s=blacklist_refresh_s, max_age_s=blacklist_max_age_s
        )
        self._records: dict[tuple[bytes, int], TapRecord] = {}
        self._records_max = records_max

    def __repr__(self) -> str:
        return f"Gate({self.gate_id!r}, {self.city}, {self.mode}, {self.tap_kind})"

    @property
    def terminal_id(self) -> bytes:
        """The terminal id of the gate's secure module, as the card records it."""
        return self._sam.terminal_id

    # --- the blacklist and the records --------------------------------------------------

    def refresh_blacklist(self, now_ns: int) -> BlacklistStatus:
        """Pull the blacklist when `BLACKLIST_REFRESH_S` has elapsed since the last try."""
        return self._blacklist.refresh(now_ns)

    @property
    def blacklist_version(self) -> int:
        return self._blacklist.version

    @property
    def records_held(self) -> int:
        return len(self._records)

    def drain_records(self, limit: int) -> list[TapRecord]:
        """Up to `limit` records, oldest first, handed over and forgotten by the gate."""
        assert 1 <= limit <= RECORDS_MAX
        keys = list(self._records)[:limit]
        return [self._records.pop(key) for key in keys]

    def _keep(self, record: TapRecord) -> None:
        assert record.key not in self._records, "a card's counter names one debit"
        assert len(self._records) < self._records_max
        self._records[record.key] = record

    # --- a tap --------------------------------------------------------------------------

    def tap(
        self, card: CardTransport, now_ns: int, *, distance_m: int | None = None
    ) -> GateDecision:
        """Decide one tap: open (the fare taken and recorded) or a refusal's reason.
        `distance_m` is what a distance-fare bus reader measured, at its exit."""
        stale = self._blacklist.is_stale(now_ns)
        # Room for this tap's record and a torn one it may settle, before touching money.
        if len(self._records) + 2 > self._records_max:
            return GateDecision(Reason.RECORD_STORE_FULL, blacklist_stale=stale)
        state = _Tap(card)
        try:
            record = self._tap(state, now_ns, distance_m)
        except _Refused as refused:
            return GateDecision(
                refused.reason, state.card_number, state.quote, None, state.resolved, stale
            )
        return GateDecision(None, state.card_number, state.quote, record, state.resolved, stale)

    def _tap(self, state: _Tap, now_ns: int, distance_m: int | None) -> TapRecord:
        state.expect(select_command(), None)  # the FCI; the number is read from 0x15
        public = state.expect(read_binary_command(SFI_PUBLIC_DATA), PUBLIC_DATA_BYTES)
        card_number = state.card_number = public[_CARD_NUMBER_AT]
        if self._blacklist.contains(card_number):
            raise _Refused(Reason.BLACKLISTED)
        if self._torn.get(card_number) is not None:
            state.resolved = self._settle_torn(state, card_number)
        balance_fen = int.from_bytes(state.expect(get_balance_command(), 4), "big", signed=True)
        state.quote = quote = self._price(state, balance_fen, now_ns, distance_m)
        if quote.refusal is not None:
            raise _Refused(_FARE_REASONS[quote.refusal])
        return self._debit(state, card_number, quote, now_ns)

    def _price(
        self, state: _Tap, balance_fen: int, now_ns: int, distance_m: int | None
    ) -> FareQuote:
        try:
            trips = [decode_trip(raw) for raw in state.records(SFI_TRIPS, TRIP_RECORDS_MAX)]
            context = card_context(
                balance_fen,
                [t for t in trips if t is not None],
                self._stations,
                china_month(now_ns),
            )
        except CardContextError:
            raise _Refused(Reason.CARD_UNREADABLE) from None
        ride = Ride(self.city, self.mode, self.tap_kind, now_ns, self.station, distance_m)
        try:
            return fare_for(ride, context, self._fares)
        except FareError:
            raise _Refused(Reason.FARE_INPUT_INVALID) from None

    def _debit(self, state: _Tap, card_number: bytes, quote: FareQuote, now_ns: int) -> TapRecord:
        """INITIALIZE (composite), MAC1, UPDATE CAPP DATA CACHE, DEBIT, MAC2 and TAC."""
        date, time = _china_bcd(now_ns)
        amount_fen, terminal_id = quote.fare_fen, self._sam.terminal_id
        initialize = initialize_for_purchase_command(
            self._key_index, amount_fen, terminal_id, composite=True
        )
        init = PurchaseInit.decode(state.expect(initialize, 15))
        try:
            session = self._sam.authorize(
                card_number, init, amount_fen, pc.TRANSACTION_TYPE_COMPOSITE, date, time
            )
        except SamError:
            raise _Refused(Reason.KEY_NOT_SUPPORTED) from None
        trip = TripRecord(_TRANSIT_MODES[self.mode], self._trip_word(quote), date, time, amount_fen)
        state.expect(update_capp_data_cache_command(trip.encode()), 0)
        debit = TornDebit(
            session,
            self.gate_id,
            self.city,
            self.mode,
            self.tap_kind,
            self.station,
            now_ns,
            init.balance_fen - amount_fen,
        )
        data = session.data
        command = debit_for_purchase_command(
            data.terminal_transaction_number, data.date, data.time, session.mac1
        )
        try:
            answer = state.expect(command, 2 * pc.MAC_BYTES)
        except _Refused as refused:
            if refused.reason is Reason.CARD_UNREADABLE:
                self._torn.put(debit)  # the card may or may not have committed
                raise _Refused(Reason.TORN) from None
            raise
        tac, mac2 = answer[: pc.MAC_BYTES], answer[pc.MAC_BYTES :]
        if not (self._sam.verify_mac2(session, mac2) and self._sam.verify_tac(session, tac)):
            raise _Refused(Reason.TAC_INVALID)
        record = debit.record(tac, resolved_torn=False)
        self._keep(record)
        return record

    def _trip_word(self, quote: FareQuote) -> int:
        """kind 1 || value 3: an entry names its station; a finished ride carries the
        month's metro spending after it, so that the next reader can price the month."""
        if self._flat:
            kind, value = TripKind.BOARDING, quote.month_metro_spent_after_fen
        elif self.tap_kind is Tap.ENTRY:
            kind = TripKind.ENTRY
            value = station_number(self.station) if self.mode is Mode.METRO else 0
        else:
            kind, value = TripKind.EXIT, quote.month_metro_spent_after_fen
        return kind << 24 | min(value, TRIP_VALUE_MAX)

    def _settle_torn(self, state: _Tap, card_number: bytes) -> TapRecord | None:
        """Settle the card's torn debit from the card: its prove if it committed (the
        record completed, `resolved_torn`), nothing if it did not (the fare is taken
        afresh by this tap)."""
        debit = self._torn.get(card_number)
        assert debit is not None
        session = debit.session
        prove = get_transaction_prove_command(
            session.data.transaction_type, session.offline_counter
        )
        data, sw = state.send(prove)
        if sw == Sw.OK and len(data) == 2 * pc.MAC_BYTES:
            mac2, tac = data[: pc.MAC_BYTES], data[pc.MAC_BYTES :]
            if not (self._sam.verify_mac2(session, mac2) and self._sam.verify_tac(session, tac)):
                raise _Refused(Reason.TAC_INVALID)
            record = debit.record(tac, resolved_torn=True)
            self._torn.settle(card_number)
            self._keep(record)
            return record
        if sw != Sw.PROVE_NOT_AVAILABLE:
            raise _Refused(Reason.CARD_UNREADABLE)
        committed = any(
            _same_debit(raw, session)
            for raw in state.records(SFI_TRANSACTIONS, TRANSACTION_RECORDS_MAX)
        )
        self._torn.settle(card_number, unproven=committed)
        return None


def _same_debit(raw: bytes, session: PurchaseSession) -> bool:
    """Whether a transaction record (file 0x18) is the debit `session` authorized."""
    try:
        record = TransactionRecord.decode(raw)
    except MilletError:
        return False
    data = session.data
    return (
        record.counter == session.offline_counter
        and record.transaction_type == data.transaction_type
        and record.terminal_id == data.terminal_id
        and (record.amount_fen, record.date, record.time) == (data.amount_fen, data.date, data.time)
    )
