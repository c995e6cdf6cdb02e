"""The cities' fare engines: the fare table of `fares.toml` and the pure functions with
which a gate prices a tap alone and offline.

`load_fares(text)` parses and validates the whole file in one pass and answers an
immutable `FareTable`, or raises `FareDataError` naming the city and the field at fault.
`fare_for(ride, context)` prices one tap from the table and from what the card itself
carries, and answers a `FareQuote`: the fare, the discounts by name, and whether the card
may ride (a refusal is an answer with a stable code, not an exception). What differs
between cities is in the file; nothing here names a city, reads a clock, touches storage
or holds money in a float: amounts are integer fen, distances integer metres.
"""

from __future__ import annotations

import datetime
import enum
import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar

from milletpay.core.clock import NS_PER_S
from milletpay.core.errors import MilletError

__all__ = [
    "CITIES_MAX",
    "Band",
    "Charge",
    "ChargeBase",
    "ChargeRule",
    "CitySpec",
    "Discount",
    "DiscountName",
    "FareDataError",
    "FareError",
    "FareKind",
    "FareQuote",
    "FareTable",
    "Line",
    "Mode",
    "ModeRule",
    "MonthlyTier",
    "OpenTrip",
    "OverdraftKind",
    "OverdraftRule",
    "PastRide",
    "Refusal",
    "Ride",
    "RideContext",
    "Rider",
    "Station",
    "Tap",
    "TransferRule",
    "bus_fare",
    "china_month",
    "fare_for",
    "fare_table",
    "load_fares",
    "metro_fare",
    "pay_percent",
    "station_distance_m",
]

DATA_FILE = "fares.toml"
CURRENCY = "CNY"
NS_PER_MIN = 60 * NS_PER_S
#: China Standard Time is UTC+8 all year (the same fact as `identity.kyc.CST_OFFSET_S`;
#: transit keeps its own copy so that a gate's fare engine imports nothing with storage).
CST_OFFSET_S = 8 * 3600

# Bounds on the file: on the work of validating it, and on any single value in it.
CITIES_MAX = 64
BANDS_MAX = 32
MONTHLY_TIERS_MAX = 8
LINES_PER_CITY_MAX = 16
STATIONS_PER_LINE_MAX = 128
CODE_CHARS_MAX = 40
#: The longest ride any mode may price: 1,000 km.
DISTANCE_M_MAX = 1_000_000
#: The highest amount of any fare, fee or charge in the file: 1,000 yuan.
AMOUNT_FEN_MAX = 100_000
#: The longest window or stay in the file: one day.
MINUTES_MAX = 24 * 60
PERCENT_MAX = 100


class FareDataError(MilletError, ValueError):
    """The fare data file is malformed; the message names the city and the field."""

    code = "fare_data_invalid"


class FareError(MilletError, ValueError):
    """A tap the table cannot price: an unknown city, mode or station, a ride between two
    lines, a distance outside the mode's range. The reader's input is wrong, not the card."""

    code = "fare_input_invalid"


class Mode(enum.StrEnum):
    METRO = "metro"
    BUS = "bus"


class Tap(enum.StrEnum):
    ENTRY = "entry"  # a metro entry gate, or boarding a bus
    EXIT = "exit"  # a metro exit gate, or alighting from a bus with a distance fare


class Rider(enum.StrEnum):
    """The kind of card: what share of a fare its holder pays (`rider_pays_percent`)."""

    CARD_HOLDER = "card_holder"
    STUDENT = "student"


class FareKind(enum.StrEnum):
    FLAT = "flat"  # one fare for any ride; one tap, on boarding
    DISTANCE = "distance"  # by distance; tapped in and out, charged at the exit


class ChargeBase(enum.StrEnum):
    MAX_FARE = "max_fare"  # the mode's highest fare
    FARE = "fare"  # the ride's own distance fare
    NONE = "none"


class OverdraftKind(enum.StrEnum):
    LIMIT = "limit"  # a ride may take the balance down to -limit_fen
    SINGLE_RIDE = "single_ride"  # from a balance not negative, one ride under a fare cap


class Refusal(enum.StrEnum):
    """Why a card may not ride: stable codes the gate shows and the platform records."""

    BALANCE_TOO_LOW = "balance_too_low"  # the fare is above what balance and overdraft allow
    BALANCE_NEGATIVE = "balance_negative"  # overdrawn already: top up before riding
    NO_ENTRY = "no_entry"  # an exit tap with no entry on the card


class Charge(enum.StrEnum):
    """What a quote's fare is for."""

    NONE = "none"  # an entry: the fare is charged at the exit
    RIDE = "ride"  # the ride's fare
    UNCLOSED_TRIP = "unclosed_trip"  # an earlier entry that never had an exit
    OVERSTAY = "overstay"  # a stay longer than the mode's limit


class DiscountName(enum.StrEnum):
    CARD_HOLDER = "card_holder"
    STUDENT = "student"
    MONTHLY_SPENDING = "monthly_spending"
    TRANSFER = "transfer"


def pay_percent(fare_fen: int, percent: int) -> int:
    """`percent` of `fare_fen`, to the fen, half a fen rounded up: 25% of 150 fen is 38."""
    assert fare_fen >= 0 and 0 <= percent <= PERCENT_MAX
    return (fare_fen * percent + PERCENT_MAX // 2) // PERCENT_MAX


def china_month(at_ns: int) -> int:
    """The calendar month of an instant in China Standard Time, as yyyymm."""
    day = datetime.datetime.fromtimestamp(at_ns // NS_PER_S + CST_OFFSET_S, tz=datetime.UTC)
    return day.year * 100 + day.month


# --- the table ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Band:
    """Rides up to `up_to_m` (and above the band before) cost `fare_fen`."""

    up_to_m: int
    fare_fen: int


@dataclass(frozen=True, slots=True)
class MonthlyTier:
    """Once the month's spending is above `above_fen`, a ride pays `pays_percent`."""

    above_fen: int
    pays_percent: int


@dataclass(frozen=True, slots=True)
class ChargeRule:
    """A charge in place of a fare: `base` plus a fixed `plus_fen`."""

    base: ChargeBase
    plus_fen: int

    def amount_fen(self, fare_fen: int, max_fare_fen: int) -> int:
        base_fen = {ChargeBase.MAX_FARE: max_fare_fen, ChargeBase.FARE: fare_fen}.get(self.base, 0)
        return base_fen + self.plus_fen


@dataclass(frozen=True, slots=True)
class Station:
    code: str
    name: str
    at_m: int  # position along its line, from the line's origin


@dataclass(frozen=True, slots=True)
class Line:
    code: str
    name: str
    stations: tuple[Station, ...]

    def position_m(self, station: str) -> int | None:
        return next((s.at_m for s in self.stations if s.code == station), None)


@dataclass(frozen=True, slots=True)
class ModeRule:
    """How one city prices one mode."""

    mode: Mode
    kind: FareKind
    rider_pays_percent: Mapping[Rider, int]
    flat_fen: int = 0  # flat fares only
    bands: tuple[Band, ...] = ()  # distance fares only, from here to lines
    step_m: int = 0
    step_fen: int = 0
    max_distance_m: int = 0
    unclosed_trip: ChargeRule | None = None
    max_stay_min: int | None = None
    overstay: ChargeRule | None = None
    monthly_discounts: tuple[MonthlyTier, ...] = ()
    lines: tuple[Line, ...] = ()

    def list_fare_fen(self, distance_m: int) -> int:
        """The published fare of a ride of `distance_m`, before any discount."""
        if self.kind is FareKind.FLAT:
            return self.flat_fen
        if not 0 <= distance_m <= self.max_distance_m:
            raise FareError(
                f"{self.mode} distance {distance_m} m is outside 0 to {self.max_distance_m} m"
            )
        band = next((b for b in self.bands if distance_m <= b.up_to_m), None)
        if band is not None:
            return band.fare_fen
        last = self.bands[-1]
        steps = -(-(distance_m - last.up_to_m) // self.step_m)  # a part of a step is a step
        return last.fare_fen + steps * self.step_fen

    @property
    def max_fare_fen(self) -> int:
        """The highest published fare: a flat fare, or the fare of the longest ride."""
        return self.list_fare_fen(self.max_distance_m)

    @property
    def min_fare_fen(self) -> int:
        return self.flat_fen if self.kind is FareKind.FLAT else self.bands[0].fare_fen

    @property
    def max_charge_fen(self) -> int:
        """The most one tap on this mode can cost: a fare, an unclosed trip or an overstay."""
        top = self.max_fare_fen
        rules = [r for r in (self.unclosed_trip, self.overstay) if r is not None]
        return max([top, *(r.amount_fen(top, top) for r in rules)])

    def monthly_pays_percent(self, spent_fen: int) -> int:
        """What a ride pays after the month's spending of `spent_fen` (100 below every tier)."""
        passed = [t.pays_percent for t in self.monthly_discounts if spent_fen > t.above_fen]
        return passed[-1] if passed else PERCENT_MAX


@dataclass(frozen=True, slots=True)
class OverdraftRule:
    kind: OverdraftKind
    limit_fen: int = 0  # LIMIT: how far below zero a ride may take the balance
    fare_below_fen: int = 0  # SINGLE_RIDE: only a fare below this may overdraw

    def refusal(self, balance_fen: int, fare_fen: int) -> Refusal | None:
        """Why a card holding `balance_fen` may not pay `fare_fen`; None if it may."""
        if self.kind is OverdraftKind.LIMIT:
            return None if balance_fen - fare_fen >= -self.limit_fen else Refusal.BALANCE_TOO_LOW
        if balance_fen < 0:
            return Refusal.BALANCE_NEGATIVE
        if balance_fen >= fare_fen or fare_fen < self.fare_below_fen:
            return None
        return Refusal.BALANCE_TOO_LOW


@dataclass(frozen=True, slots=True)
class TransferRule:
    """`discount_fen` off a ride that starts at most `window_min` after the previous ride
    ended, unless (previous mode, this mode) is `excluded`."""

    window_min: int
    discount_fen: int
    excluded: frozenset[tuple[Mode, Mode]]

    def applies(self, previous: PastRide | None, mode: Mode, started_at_ns: int) -> bool:
        if previous is None or (previous.mode, mode) in self.excluded:
            return False
        return 0 <= started_at_ns - previous.ended_at_ns <= self.window_min * NS_PER_MIN


@dataclass(frozen=True, slots=True)
class CitySpec:
    code: str
    name: str
    modes: tuple[Mode, ...]
    issuance_fee_fen: int  # kept by the issuer
    deposit_fen: int  # paid back when the card is returned
    overdraft: OverdraftRule
    transfer: TransferRule | None
    rules: Mapping[Mode, ModeRule]

    def rule(self, mode: Mode) -> ModeRule:
        if mode not in self.rules:
            raise FareError(f"{self.code} has no {mode}")
        return self.rules[mode]

    def require_station(self, station: str) -> None:
        """`FareError` unless `station` is one of the city's metro stations."""
        if all(line.position_m(station) is None for line in self.rule(Mode.METRO).lines):
            raise FareError(f"{self.code} has no metro station {station!r}")

    def station_distance_m(self, from_station: str, to_station: str) -> int:
        """The distance between two stations of one metro line. A ride that changes lines
        is not priced by this table."""
        self.require_station(from_station)
        self.require_station(to_station)
        for line in self.rule(Mode.METRO).lines:
            start_m, end_m = line.position_m(from_station), line.position_m(to_station)
            if start_m is not None and end_m is not None:
                return abs(end_m - start_m)
        raise FareError(
            f"{self.code}: {from_station} and {to_station} are on different lines; "
            "rides between lines are not priced"
        )


@dataclass(frozen=True, slots=True)
class FareTable:
    currency: str
    cities: tuple[CitySpec, ...]

    def city(self, code: str) -> CitySpec:
        for spec in self.cities:
            if spec.code == code:
                return spec
        raise FareError(f"no city {code!r} in the fare table")


# --- loading and validation -------------------------------------------------------------


_KIND_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "a table"}


def _require(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FareDataError(f"{where} must be {_KIND_NAMES[kind]}, got {value!r}")
    return value


def _table(raw: Any, where: str, required: Iterable[str], optional: Iterable[str] = ()) -> Any:
    """`raw` as a table holding every `required` key, and no key it does not know."""
    _require(raw, dict, where)
    required = tuple(required)
    missing = [k for k in required if k not in raw]
    if missing:
        raise FareDataError(f"{where}.{missing[0]} is missing")
    unknown = sorted(set(raw) - set(required) - set(optional))
    if unknown:
        raise FareDataError(f"{where}.{unknown[0]} is not a known field")
    return raw


def _int(raw: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = _require(raw.get(key), int, f"{where}.{key}")
    if not low <= value <= high:
        raise FareDataError(f"{where}.{key} must be {low} to {high}, got {value}")
    return int(value)


def _fen(raw: Mapping[str, Any], key: str, where: str, *, positive: bool = False) -> int:
    return _int(raw, key, where, 1 if positive else 0, AMOUNT_FEN_MAX)


_E = TypeVar("_E", bound=enum.StrEnum)


def _enum(kind: type[_E], value: Any, where: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = " | ".join(kind)
        raise FareDataError(f"{where} must be one of {allowed}, got {value!r}") from None


def _code(raw: Mapping[str, Any], where: str) -> str:
    code = _require(raw.get("code"), str, f"{where}.code")
    well_formed = code.replace("_", "").isascii() and code.replace("_", "").isalnum()
    if not (well_formed and code == code.lower() and 1 <= len(code) <= CODE_CHARS_MAX):
        raise FareDataError(
            f"{where}.code must be 1 to {CODE_CHARS_MAX} lower-case letters, digits or _, "
            f"got {code!r}"
        )
    return str(code)


def _list(raw: Mapping[str, Any], key: str, where: str, most: int) -> list[Any]:
    items = _require(raw.get(key), list, f"{where}.{key}")
    if not 1 <= len(items) <= most:
        raise FareDataError(f"{where}.{key} must hold 1 to {most} entries, got {len(items)}")
    return list(items)


def _bands(raw: Mapping[str, Any], where: str) -> tuple[Band, ...]:
    bands: list[Band] = []
    for i, item in enumerate(_list(raw, "bands", where, BANDS_MAX)):
        at = f"{where}.bands[{i}]"
        _table(item, at, ("up_to_m", "fare_fen"))
        band = Band(_int(item, "up_to_m", at, 1, DISTANCE_M_MAX), _fen(item, "fare_fen", at))
        if bands and band.up_to_m <= bands[-1].up_to_m:
            raise FareDataError(
                f"{at}.up_to_m must be above {bands[-1].up_to_m}, got {band.up_to_m}"
            )
        if bands and band.fare_fen < bands[-1].fare_fen:
            raise FareDataError(
                f"{at}.fare_fen must be at least {bands[-1].fare_fen} (a longer ride never "
                f"costs less), got {band.fare_fen}"
            )
        bands.append(band)
    return tuple(bands)


def _monthly(raw: Mapping[str, Any], where: str) -> tuple[MonthlyTier, ...]:
    tiers: list[MonthlyTier] = []
    for i, item in enumerate(_list(raw, "monthly_discounts", where, MONTHLY_TIERS_MAX)):
        at = f"{where}.monthly_discounts[{i}]"
        _table(item, at, ("above_fen", "pays_percent"))
        tier = MonthlyTier(
            _int(item, "above_fen", at, 0, 100 * AMOUNT_FEN_MAX),
            _int(item, "pays_percent", at, 0, PERCENT_MAX),
        )
        if tiers and tier.above_fen <= tiers[-1].above_fen:
            raise FareDataError(f"{at}.above_fen must be above {tiers[-1].above_fen}")
        tiers.append(tier)
    return tuple(tiers)


def _charge(raw: Any, where: str, bases: tuple[ChargeBase, ...]) -> ChargeRule:
    _table(raw, where, ("base", "plus_fen"))
    base = _enum(ChargeBase, raw["base"], f"{where}.base")
    if base not in bases:
        raise FareDataError(f"{where}.base must be one of {' | '.join(bases)}, got {base}")
    return ChargeRule(base, _fen(raw, "plus_fen", where))


def _lines(raw: Mapping[str, Any], where: str, max_distance_m: int) -> tuple[Line, ...]:
    lines: list[Line] = []
    for i, item in enumerate(_list(raw, "lines", where, LINES_PER_CITY_MAX)):
        at = f"{where}.lines[{i}]"
        _table(item, at, ("code", "name", "stations"))
        at = f"{where}.lines[{_code(item, at)}]"
        stations: list[Station] = []
        for j, entry in enumerate(_list(item, "stations", at, STATIONS_PER_LINE_MAX)):
            spot = f"{at}.stations[{j}]"
            _table(entry, spot, ("code", "name", "at_m"))
            station = Station(
                _code(entry, spot),
                _require(entry["name"], str, f"{spot}.name"),
                _int(entry, "at_m", spot, 0, max_distance_m),
            )
            if stations and station.at_m <= stations[-1].at_m:
                raise FareDataError(f"{spot}.at_m must be above {stations[-1].at_m}")
            stations.append(station)
        if len(stations) < 2:
            raise FareDataError(f"{at}.stations must hold at least 2 stations")
        lines.append(Line(item["code"], _require(item["name"], str, f"{at}.name"), tuple(stations)))
    codes = [s.code for line in lines for s in line.stations]
    twice = next((c for c in codes if codes.count(c) > 1), None)
    if twice is not None:
        raise FareDataError(f"{where}.lines: station {twice} appears twice")
    return tuple(lines)


_FLAT_FIELDS = ("fare", "flat_fen", "rider_pays_percent")
_DISTANCE_FIELDS = (
    "fare",
    "bands",
    "step_m",
    "step_fen",
    "max_distance_m",
    "rider_pays_percent",
    "unclosed_trip",
)
_DISTANCE_OPTIONAL = ("max_stay_min", "overstay", "monthly_discounts", "lines")


def _rider_percent(raw: Any, where: str) -> Mapping[Rider, int]:
    _table(raw, where, tuple(Rider))
    return MappingProxyType({r: _int(raw, r, where, 0, PERCENT_MAX) for r in Rider})


def _mode_rule(raw: Any, mode: Mode, where: str) -> ModeRule:
    _require(raw, dict, where)
    kind = _enum(FareKind, raw.get("fare"), f"{where}.fare")
    if kind is FareKind.FLAT:
        if mode is Mode.METRO:
            raise FareDataError(f"{where}.fare must be distance: a metro is priced by stations")
        _table(raw, where, _FLAT_FIELDS)
        return ModeRule(
            mode,
            kind,
            _rider_percent(raw["rider_pays_percent"], f"{where}.rider_pays_percent"),
            flat_fen=_fen(raw, "flat_fen", where),
        )
    _table(raw, where, _DISTANCE_FIELDS, _DISTANCE_OPTIONAL)
    if ("max_stay_min" in raw) != ("overstay" in raw):
        raise FareDataError(f"{where}: max_stay_min and overstay go together")
    if "monthly_discounts" in raw and mode is not Mode.METRO:
        raise FareDataError(f"{where}.monthly_discounts is for the metro only")
    if ("lines" in raw) != (mode is Mode.METRO):
        raise FareDataError(f"{where}.lines: the metro, and only the metro, has lines")
    bands = _bands(raw, where)
    max_distance_m = _int(raw, "max_distance_m", where, bands[0].up_to_m, DISTANCE_M_MAX)
    rule = ModeRule(
        mode,
        kind,
        _rider_percent(raw["rider_pays_percent"], f"{where}.rider_pays_percent"),
        bands=bands,
        step_m=_int(raw, "step_m", where, 1, DISTANCE_M_MAX),
        step_fen=_fen(raw, "step_fen", where),
        max_distance_m=max_distance_m,
        unclosed_trip=_charge(
            raw["unclosed_trip"], f"{where}.unclosed_trip", (ChargeBase.MAX_FARE, ChargeBase.NONE)
        ),
        max_stay_min=_int(raw, "max_stay_min", where, 1, MINUTES_MAX)
        if "overstay" in raw
        else None,
        overstay=_charge(raw["overstay"], f"{where}.overstay", tuple(ChargeBase))
        if "overstay" in raw
        else None,
        monthly_discounts=_monthly(raw, where) if "monthly_discounts" in raw else (),
        lines=_lines(raw, where, max_distance_m) if "lines" in raw else (),
    )
    if rule.max_charge_fen > AMOUNT_FEN_MAX:
        raise FareDataError(
            f"{where}: the fare of {max_distance_m} m is above {AMOUNT_FEN_MAX} fen"
        )
    return rule


def _overdraft(raw: Any, where: str) -> OverdraftRule:
    _require(raw, dict, where)
    kind = _enum(OverdraftKind, raw.get("rule"), f"{where}.rule")
    if kind is OverdraftKind.LIMIT:
        _table(raw, where, ("rule", "limit_fen"))
        return OverdraftRule(kind, limit_fen=_fen(raw, "limit_fen", where))
    _table(raw, where, ("rule", "fare_below_fen"))
    return OverdraftRule(kind, fare_below_fen=_fen(raw, "fare_below_fen", where, positive=True))


def _transfer(raw: Any, where: str, modes: tuple[Mode, ...]) -> TransferRule:
    _table(raw, where, ("window_min", "discount_fen", "excluded"))
    pairs = _require(raw["excluded"], list, f"{where}.excluded")
    excluded: set[tuple[Mode, Mode]] = set()
    for i, pair in enumerate(pairs):
        at = f"{where}.excluded[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise FareDataError(f"{at} must be a pair [from, to], got {pair!r}")
        for value in pair:
            if _enum(Mode, value, at) not in modes:
                raise FareDataError(f"{at}: the city has no {value}")
        excluded.add((Mode(pair[0]), Mode(pair[1])))
    return TransferRule(
        _int(raw, "window_min", where, 1, MINUTES_MAX),
        _fen(raw, "discount_fen", where, positive=True),
        frozenset(excluded),
    )


_CITY_FIELDS = ("code", "name", "modes", "issuance_fee_fen", "deposit_fen", "overdraft")


def _city(raw: Any, index: int) -> CitySpec:
    where = f"city[{index}]"
    _require(raw, dict, where)
    where = f"city {_code(raw, where)}"
    _table(raw, where, _CITY_FIELDS, ("transfer", *Mode))
    names = _require(raw["modes"], list, f"{where}.modes")
    modes = tuple(_enum(Mode, m, f"{where}.modes[{i}]") for i, m in enumerate(names))
    if not modes or len(set(modes)) != len(modes):
        raise FareDataError(f"{where}.modes must name each mode once, got {names!r}")
    for mode in Mode:
        if (mode in raw) != (mode in modes):
            raise FareDataError(f"{where}.{mode}: a table for each mode in modes, and no other")
    return CitySpec(
        code=raw["code"],
        name=_require(raw["name"], str, f"{where}.name"),
        modes=modes,
        issuance_fee_fen=_fen(raw, "issuance_fee_fen", where),
        deposit_fen=_fen(raw, "deposit_fen", where),
        overdraft=_overdraft(raw["overdraft"], f"{where}.overdraft"),
        transfer=_transfer(raw["transfer"], f"{where}.transfer", modes)
        if "transfer" in raw
        else None,
        rules=MappingProxyType({m: _mode_rule(raw[m], m, f"{where}.{m}") for m in modes}),
    )


def load_fares(text: str) -> FareTable:
    """Every city in the TOML `text`, validated; `FareDataError` names the first fault."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FareDataError(f"the fare data is not TOML: {exc}") from None
    _table(document, "fares", ("currency", "city"))
    if document["currency"] != CURRENCY:
        raise FareDataError(f"fares.currency must be {CURRENCY}, got {document['currency']!r}")
    raw_cities = _list(document, "city", "fares", CITIES_MAX)
    cities = tuple(_city(raw, i) for i, raw in enumerate(raw_cities))
    codes = [c.code for c in cities]
    twice = next((c for c in codes if codes.count(c) > 1), None)
    if twice is not None:
        raise FareDataError(f"city {twice} appears twice")
    return FareTable(CURRENCY, cities)


@functools.cache
def fare_table() -> FareTable:
    """The fare table of the packaged data file, loaded once."""
    text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return load_fares(text)


def metro_fare(city: str, distance_m: int) -> int:
    """The published metro fare of a ride of `distance_m` in `city`, before discounts."""
    return fare_table().city(city).rule(Mode.METRO).list_fare_fen(distance_m)


def bus_fare(city: str, distance_m: int, rider: Rider = Rider.CARD_HOLDER) -> int:
    """What `rider` pays for a bus ride of `distance_m` in `city` (a flat fare ignores the
    distance), after the rider's discount and before any other."""
    rule = fare_table().city(city).rule(Mode.BUS)
    return pay_percent(rule.list_fare_fen(distance_m), rule.rider_pays_percent[rider])


def station_distance_m(city: str, from_station: str, to_station: str) -> int:
    return fare_table().city(city).station_distance_m(from_station, to_station)


# --- pricing a tap ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ride:
    """One tap, as the gate or bus reader knows it when the card is in its field."""

    city: str
    mode: Mode
    tap: Tap
    at_ns: int
    station: str = ""  # a metro gate's station
    distance_m: int | None = None  # a distance-fare bus at the exit: what the reader measured
    rider: Rider = Rider.CARD_HOLDER


@dataclass(frozen=True, slots=True)
class OpenTrip:
    """An entry the card holds with no exit yet."""

    mode: Mode
    entered_at_ns: int
    station: str = ""  # metro only


@dataclass(frozen=True, slots=True)
class PastRide:
    """The card's last finished ride; a flat-fare bus ride starts and ends at its one tap."""

    mode: Mode
    started_at_ns: int
    ended_at_ns: int


@dataclass(frozen=True, slots=True)
class RideContext:
    """What the card itself carries offline: its balance, its open entries (one a mode at
    most), its last finished ride, and its metro spending in `spending_month` (yyyymm)."""

    balance_fen: int
    open_trips: tuple[OpenTrip, ...] = ()
    last_ride: PastRide | None = None
    spending_month: int = 0
    month_metro_spent_fen: int = 0

    def __post_init__(self) -> None:
        assert len({t.mode for t in self.open_trips}) == len(self.open_trips)
        assert self.month_metro_spent_fen >= 0

    def open_trip(self, mode: Mode) -> OpenTrip | None:
        return next((t for t in self.open_trips if t.mode is mode), None)


@dataclass(frozen=True, slots=True)
class Discount:
    name: DiscountName
    amount_fen: int


@dataclass(frozen=True, slots=True)
class FareQuote:
    """The gate's answer to a tap. When `refusal` is set nothing is charged and the card
    may not pass; `balance_after_fen` and the spending are then the card's as they were."""

    charge: Charge
    list_fare_fen: int  # before discounts
    discounts: tuple[Discount, ...]
    fare_fen: int  # what this tap costs the card
    refusal: Refusal | None
    balance_after_fen: int
    spending_month: int  # yyyymm, China time, of the tap
    month_metro_spent_after_fen: int

    def __post_init__(self) -> None:
        assert self.fare_fen >= 0
        assert self.fare_fen == self.list_fare_fen - sum(d.amount_fen for d in self.discounts)
        assert all(d.amount_fen > 0 for d in self.discounts)

    @property
    def may_ride(self) -> bool:
        return self.refusal is None


_RIDER_DISCOUNT = {Rider.CARD_HOLDER: DiscountName.CARD_HOLDER, Rider.STUDENT: DiscountName.STUDENT}


def _discounts(
    city: CitySpec,
    rule: ModeRule,
    list_fen: int,
    ride: Ride,
    context: RideContext,
    *,
    started_at_ns: int,
    spent_fen: int,
) -> tuple[Discount, ...]:
    """A ride's discounts, in order: the rider's, the month's spending, the transfer; each
    taken from the fare the one before left, percentages rounded by `pay_percent`."""
    fare_fen = list_fen
    found: list[Discount] = []
    percents = [(_RIDER_DISCOUNT[ride.rider], rule.rider_pays_percent[ride.rider])]
    if rule.mode is Mode.METRO:
        percents.append((DiscountName.MONTHLY_SPENDING, rule.monthly_pays_percent(spent_fen)))
    for name, percent in percents:
        off_fen = fare_fen - pay_percent(fare_fen, percent)
        if off_fen:
            found.append(Discount(name, off_fen))
            fare_fen -= off_fen
    transfer = city.transfer
    if transfer is not None and transfer.applies(context.last_ride, rule.mode, started_at_ns):
        off_fen = min(fare_fen, transfer.discount_fen)
        if off_fen:
            found.append(Discount(DiscountName.TRANSFER, off_fen))
    return tuple(found)


def _quote(
    city: CitySpec,
    ride: Ride,
    context: RideContext,
    charge: Charge,
    list_fen: int,
    discounts: tuple[Discount, ...] = (),
    *,
    refusal: Refusal | None = None,
) -> FareQuote:
    """The quote of a priced tap: the overdraft rule decides, unless `refusal` did already."""
    month = china_month(ride.at_ns)
    spent_fen = context.month_metro_spent_fen if context.spending_month == month else 0
    fare_fen = list_fen - sum(d.amount_fen for d in discounts)
    if refusal is None:
        refusal = city.overdraft.refusal(context.balance_fen, fare_fen)
    charged_fen = 0 if refusal is not None else fare_fen
    return FareQuote(
        charge=charge,
        list_fare_fen=list_fen,
        discounts=discounts,
        fare_fen=fare_fen,
        refusal=refusal,
        balance_after_fen=context.balance_fen - charged_fen,
        spending_month=month,
        month_metro_spent_after_fen=spent_fen + (charged_fen if ride.mode is Mode.METRO else 0),
    )


def _entry(city: CitySpec, rule: ModeRule, ride: Ride, context: RideContext) -> FareQuote:
    """An entry on a distance fare: it settles an unclosed trip of the same mode, and it
    lets the card in only if the card could then pay the mode's lowest fare."""
    if rule.mode is Mode.METRO:
        city.require_station(ride.station)
    unclosed = context.open_trip(rule.mode)
    if unclosed is None:
        charge, charge_fen = Charge.NONE, 0
    else:
        assert rule.unclosed_trip is not None
        charge = Charge.UNCLOSED_TRIP
        charge_fen = rule.unclosed_trip.amount_fen(0, rule.max_fare_fen)
    lowest_fen = pay_percent(rule.min_fare_fen, rule.rider_pays_percent[ride.rider])
    overdraft = city.overdraft
    refusal = overdraft.refusal(context.balance_fen, charge_fen) or overdraft.refusal(
        context.balance_fen - charge_fen, lowest_fen
    )
    return _quote(city, ride, context, charge, charge_fen, refusal=refusal)


def _exit(city: CitySpec, rule: ModeRule, ride: Ride, context: RideContext) -> FareQuote:
    """An exit on a distance fare: the ride's fare and discounts, or the overstay charge."""
    trip = context.open_trip(rule.mode)
    if trip is None:
        return _quote(city, ride, context, Charge.NONE, 0, refusal=Refusal.NO_ENTRY)
    if rule.mode is Mode.METRO:
        distance_m = city.station_distance_m(trip.station, ride.station)
    elif ride.distance_m is None:
        raise FareError(f"{city.code} {rule.mode} is priced by distance: the exit needs one")
    else:
        distance_m = ride.distance_m
    list_fen = rule.list_fare_fen(distance_m)
    stay_ns = ride.at_ns - trip.entered_at_ns
    if stay_ns < 0:
        raise FareError(f"the exit at {ride.at_ns} is before the entry at {trip.entered_at_ns}")
    if rule.max_stay_min is not None and stay_ns > rule.max_stay_min * NS_PER_MIN:
        assert rule.overstay is not None
        overstay_fen = rule.overstay.amount_fen(list_fen, rule.max_fare_fen)
        return _quote(city, ride, context, Charge.OVERSTAY, overstay_fen)
    month = china_month(ride.at_ns)
    spent_fen = context.month_metro_spent_fen if context.spending_month == month else 0
    discounts = _discounts(
        city, rule, list_fen, ride, context, started_at_ns=trip.entered_at_ns, spent_fen=spent_fen
    )
    return _quote(city, ride, context, Charge.RIDE, list_fen, discounts)


def _boarding(city: CitySpec, rule: ModeRule, ride: Ride, context: RideContext) -> FareQuote:
    """Boarding on a flat fare: the one tap of the ride, charged there."""
    list_fen = rule.list_fare_fen(0)
    discounts = _discounts(
        city, rule, list_fen, ride, context, started_at_ns=ride.at_ns, spent_fen=0
    )
    return _quote(city, ride, context, Charge.RIDE, list_fen, discounts)


def fare_for(ride: Ride, context: RideContext, table: FareTable | None = None) -> FareQuote:
    """The gate's one entry point: price `ride` from the fare table (the packaged one by
    default) and the card's own `context`. Pure: the gate writes the answer to the card."""
    city = (table or fare_table()).city(ride.city)
    rule = city.rule(ride.mode)
    if rule.kind is FareKind.FLAT:
        if ride.tap is not Tap.ENTRY:
            raise FareError(f"{city.code} {rule.mode} is a flat fare: one tap, on boarding")
        return _boarding(city, rule, ride, context)
    if ride.tap is Tap.ENTRY:
        return _entry(city, rule, ride, context)
    return _exit(city, rule, ride, context)
