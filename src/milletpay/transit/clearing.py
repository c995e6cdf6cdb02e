"""Tap upload and clearing: the gates' records into the platform's books, a day's fares
from the city's float to its operators, and every touched card's shadow balance checked
against what the card itself said.

Upload is idempotent by (card number, offline counter): the card moves its counter by
one per debit, so the pair names one debit for ever, and a record uploaded again changes
nothing. Every record's TAC is verified with the city's TAC master key; a bad one is
rejected and kept apart for investigation. A blacklisted or closed card's records are
held, never cleared. Clearing moves money only by ledger transfers with ids derived from
(city, day, run), so a re-run clears only what is new and never twice. It never corrects
a shadow balance: a gap is reported, with the card, what the platform expected and what
the card showed.

The data plane works in batches: a bulk insert per table per upload, set-based SQL for
clearing; no per-record round trip.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

import sqlalchemy as sa

from milletpay.core.clock import Clock
from milletpay.core.errors import MilletError
from milletpay.core.ids import IdGenerator, id_to_bytes
from milletpay.ledger import CreateTransferResult, Ledger, Transfer, TransferFlags
from milletpay.store.engine import read_transaction, write_transaction
from milletpay.transit import purse_crypto as pc
from milletpay.transit.accounts import (
    TransitTransferCode,
    derive_u128,
    float_account_id,
    operator_account_id,
)
from milletpay.transit.fares import Mode, fare_table
from milletpay.transit.records import TapRecord
from milletpay.transit.sam import CityMasterKeys
from milletpay.wallet.accounts import LEDGER_CNY

#: The most records one upload may carry; a gate with more splits them.
UPLOAD_RECORDS_MAX: Final = 100_000
#: Values in one IN list (SQLite allows 32,766 variables a statement).
IN_CHUNK_MAX: Final = 10_000
GATE_ID_CHARS_MAX: Final = 64
#: The most gaps one clearing report lists; the count is always complete.
GAPS_LISTED_MAX: Final = 10_000


class Blacklist(Protocol):
    """Cards whose offline records are not cleared (lost, stolen, closed by the issuer)."""

    def is_blacklisted(self, card_number: bytes) -> bool: ...


class RejectReason(StrEnum):
    GATE_MISMATCH = "gate_mismatch"  # names another gate than the upload (and is not torn)
    KEY_VERSION_UNKNOWN = "key_version_unknown"  # no master keys of the city at that version
    TAC_INVALID = "tac_invalid"
    DATE_INVALID = "date_invalid"  # the TAC-covered date is not a BCD calendar date
    CARD_UNKNOWN = "card_unknown"  # not a card the platform issued
    CITY_MISMATCH = "city_mismatch"  # the card belongs to another city


class HoldReason(StrEnum):
    BLACKLISTED = "blacklisted"
    CARD_CLOSED = "card_closed"  # closed or replaced: its balance was refunded already


class TapStatus(StrEnum):
    ACCEPTED = "accepted"  # waits for its day's clearing
    HELD = "held"  # TAC good, not cleared
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class Rejection:
    card_number: bytes
    offline_counter: int
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class UploadReport:
    gate_id: str
    received: int
    accepted: int
    duplicates: int
    held: int
    rejected: tuple[Rejection, ...]

    def __post_init__(self) -> None:
        assert self.received == self.accepted + self.duplicates + self.held + len(self.rejected)


@dataclass(frozen=True, slots=True)
class BalanceGap:
    """A card whose own balance, in its latest record, is not what the platform expected."""

    card_number: bytes
    expected_fen: int  # loads before the latest record, less every fare up to it
    seen_fen: int  # the latest record's balance_after_fen
    offline_counter: int  # of the latest record
    missing_records: int  # offline counters below it with no record uploaded


@dataclass(frozen=True, slots=True)
class ClearingReport:
    city: str
    day: dt.date
    run: int  # 0 when there was nothing new to clear
    records_cleared: int
    by_operator_fen: Mapping[Mode, int]
    transfer_ids: tuple[int, ...]
    cards_reconciled: int
    gaps_total: int
    gaps: tuple[BalanceGap, ...]  # at most GAPS_LISTED_MAX

    @property
    def amount_fen(self) -> int:
        return sum(self.by_operator_fen.values())


class ClearingInputError(MilletError, ValueError):
    """An upload or clearing request the caller must fix; nothing was recorded."""

    code = "transit_clearing_input_invalid"


class TransitClearing:
    """Upload of gates' tap records and the daily clearing, for the cities in `city_keys`."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        city_keys: Mapping[str, Sequence[CityMasterKeys]],
        blacklist: Blacklist,
    ) -> None:
        self._ledger = ledger
        self._engine = ledger.engine
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._clock = clock
        self._keys = {city: {k.key_version: k for k in keys} for city, keys in city_keys.items()}
        self._blacklist = blacklist
        self._ids = IdGenerator(clock)

    # -- upload ---------------------------------------------------------------------

    def upload(self, gate_id: str, records: Sequence[TapRecord]) -> UploadReport:
        """Take a gate's records: duplicates counted and ignored, bad ones rejected and
        kept, blacklisted or closed cards' held, the rest accepted for clearing."""
        _check_gate(gate_id)
        if len(records) > UPLOAD_RECORDS_MAX:
            raise ClearingInputError(
                f"an upload carries at most {UPLOAD_RECORDS_MAX} records, got {len(records)}"
            )
        good, rejected, duplicates = self._verify(gate_id, records)
        with self._write() as cur:
            cards = self._cards(cur, sorted({r.card_number for r in good}))
            seen = self._existing_keys(cur, sorted(cards))
            fresh: list[tuple[TapRecord, TapStatus, HoldReason | None]] = []
            for record in good:
                card = cards.get(record.card_number)
                if card is None or card[0] != record.city:
                    reason = (
                        RejectReason.CARD_UNKNOWN if card is None else RejectReason.CITY_MISMATCH
                    )
                    rejected.append((record, reason))
                elif record.key in seen:
                    duplicates += 1
                else:
                    fresh.append((record, *self._disposition(card[1], record.card_number)))
            self._store(cur, fresh, rejected)
        held = sum(1 for _, status, _ in fresh if status is TapStatus.HELD)
        return UploadReport(
            gate_id,
            len(records),
            accepted=len(fresh) - held,
            duplicates=duplicates,
            held=held,
            rejected=tuple(Rejection(r.card_number, r.offline_counter, why) for r, why in rejected),
        )

    def _verify(
        self, gate_id: str, records: Sequence[TapRecord]
    ) -> tuple[list[TapRecord], list[tuple[TapRecord, RejectReason]], int]:
        """The pure pass: (records whose TAC verifies, once each; rejections; duplicates
        within the upload)."""
        tac_keys: dict[tuple[str, int, bytes], bytes] = {}
        good: dict[tuple[bytes, int], TapRecord] = {}
        rejected: list[tuple[TapRecord, RejectReason]] = []
        duplicates = 0
        for record in records:
            reason = self._reject_reason(gate_id, record, tac_keys)
            if reason is not None:
                rejected.append((record, reason))
            elif record.key in good:
                duplicates += 1
            else:
                good[record.key] = record
        return list(good.values()), rejected, duplicates

    def _reject_reason(
        self, gate_id: str, record: TapRecord, tac_keys: dict[tuple[str, int, bytes], bytes]
    ) -> RejectReason | None:
        # A torn debit is completed by whichever gate of the city saw the card next: its
        # record keeps the gate (and terminal) the card paid at, and comes with that
        # later gate's upload. Any other record names the gate that uploads it.
        if record.gate_id != gate_id and not record.resolved_torn:
            return RejectReason.GATE_MISMATCH
        keys = self._keys.get(record.city, {}).get(record.key_version)
        if keys is None:
            return RejectReason.KEY_VERSION_UNKNOWN
        slot = (record.city, record.key_version, record.card_number)
        key = tac_keys.get(slot)
        if key is None:  # a card taps many times: diversify its TAC key once per upload
            key = pc.tac_key(pc.diversify(keys.tac_master_key, record.card_number))
            tac_keys[slot] = key
        if not pc.mac_equal(pc.purse_mac(key, record.purchase.tac_input()), record.tac):
            return RejectReason.TAC_INVALID
        if _day(record.purchase.date) is None:
            return RejectReason.DATE_INVALID
        return None

    def _disposition(
        self, card_status: str, card_number: bytes
    ) -> tuple[TapStatus, HoldReason | None]:
        if card_status != "active":
            return TapStatus.HELD, HoldReason.CARD_CLOSED
        if self._blacklist.is_blacklisted(card_number):
            return TapStatus.HELD, HoldReason.BLACKLISTED
        return TapStatus.ACCEPTED, None

    def _cards(self, cur: Any, numbers: list[bytes]) -> dict[bytes, tuple[str, str]]:
        """(city, status) of each known card, its row locked to the end of the upload
        (in card number order, so two uploads never wait on each other in a circle)."""
        found: dict[bytes, tuple[str, str]] = {}
        lock = "" if self._sqlite else " ORDER BY card_number FOR UPDATE"
        for chunk in _chunks(numbers):
            clause, params = self._in("card_number", chunk)
            cur.execute(
                f"SELECT card_number, city, status FROM transit_cards WHERE {clause}{lock}",
                params,
            )
            for number, city, status in cur.fetchall():
                found[bytes(number)] = (city, status)
        return found

    def _existing_keys(self, cur: Any, numbers: list[bytes]) -> set[tuple[bytes, int]]:
        keys: set[tuple[bytes, int]] = set()
        for chunk in _chunks(numbers):
            clause, params = self._in("card_number", chunk)
            cur.execute(
                f"SELECT card_number, offline_counter FROM transit_taps WHERE {clause}", params
            )
            keys.update((bytes(n), c) for n, c in cur.fetchall())
        return keys

    def _store(
        self,
        cur: Any,
        fresh: list[tuple[TapRecord, TapStatus, HoldReason | None]],
        rejected: list[tuple[TapRecord, RejectReason]],
    ) -> None:
        now_ns = self._clock.now_ns()
        if fresh:
            cur.executemany(
                self._sql(_INSERT_TAP), [_tap_row(r, s, h, now_ns) for r, s, h in fresh]
            )
            spent: dict[bytes, int] = defaultdict(int)
            for record, _, _ in fresh:
                spent[record.card_number] += record.amount_fen
            cur.executemany(
                self._sql(_ADD_SPENT),
                [(amount, number) for number, amount in sorted(spent.items())],
            )
        if rejected:
            cur.executemany(
                self._sql(_INSERT_REJECT),
                [_reject_row(self._ids.next_id(), r, why, now_ns) for r, why in rejected],
            )

    # -- clearing -------------------------------------------------------------------

    def clear_day(self, city: str, day: dt.date) -> ClearingReport:
        """Clear the day's accepted fares of `city`: float → each operator, one transfer
        per operator, linked into one chain; then reconcile the shadow balance of every
        card with a record that day. A re-run clears only records uploaded since."""
        spec = fare_table().city(city)  # FareError for a city not carried
        day_number = day.year * 10_000 + day.month * 100 + day.day
        with self._ledger.transaction() as tx:
            cur = tx.connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                run, totals = self._mark_cleared(cur, city, day_number)
                transfers = _clearing_transfers(city, day_number, run, totals, spec.modes)
                for result, transfer in zip(tx.create_transfers(transfers), transfers, strict=True):
                    assert result in (CreateTransferResult.OK, CreateTransferResult.EXISTS), (
                        f"clearing transfer {transfer.id:032x}: {result.value}"
                    )
            finally:
                cur.close()
        with read_transaction(self._engine) as conn:
            cards, gaps = self._reconcile(conn, city, day_number)
        cleared = {mode: amount for mode, (_, amount) in totals.items()}
        return ClearingReport(
            city=city,
            day=day,
            run=run,
            records_cleared=sum(count for count, _ in totals.values()),
            by_operator_fen=cleared,
            transfer_ids=tuple(t.id for t in transfers),
            cards_reconciled=cards,
            gaps_total=len(gaps),
            gaps=tuple(gaps[:GAPS_LISTED_MAX]),
        )

    def _mark_cleared(
        self, cur: Any, city: str, day: int
    ) -> tuple[int, dict[Mode, tuple[int, int]]]:
        """Mark the day's accepted records cleared under a new run; (run, (count, fen) by
        mode). The marking comes first, so the sums are of exactly the rows marked."""
        cur.execute(
            self._sql(
                "SELECT COALESCE(MAX(run), 0) FROM transit_clearings WHERE city = ? AND day = ?"
            ),
            (city, day),
        )
        run = cur.fetchone()[0] + 1
        clearing_id = id_to_bytes(_clearing_id(city, day, run))
        cur.execute(
            self._sql(
                "UPDATE transit_taps SET status = 'cleared', clearing_id = ? "
                "WHERE city = ? AND day = ? AND status = 'accepted'"
            ),
            (clearing_id, city, day),
        )
        cur.execute(
            self._sql(
                "SELECT mode, COUNT(*), COALESCE(SUM(amount_fen), 0) FROM transit_taps "
                "WHERE clearing_id = ? GROUP BY mode"
            ),
            (clearing_id,),
        )
        totals = {Mode(mode): (count, int(amount)) for mode, count, amount in cur.fetchall()}
        if not totals:
            return 0, {}
        lock = "" if self._sqlite else " ORDER BY card_number FOR UPDATE"
        cur.execute(
            self._sql(
                "SELECT card_number FROM transit_cards WHERE card_number IN "
                f"(SELECT card_number FROM transit_taps WHERE clearing_id = ?){lock}"
            ),
            (clearing_id,),
        )
        cur.fetchall()
        cur.execute(
            self._sql(
                "UPDATE transit_cards SET cleared_fen = transit_cards.cleared_fen + s.amount "
                "FROM (SELECT card_number, SUM(amount_fen) AS amount FROM transit_taps "
                "WHERE clearing_id = ? GROUP BY card_number) AS s "
                "WHERE transit_cards.card_number = s.card_number"
            ),
            (clearing_id,),
        )
        count = sum(c for c, _ in totals.values())
        amount = sum(a for _, a in totals.values())
        cur.execute(
            self._sql(
                "INSERT INTO transit_clearings (id, city, day, run, records, amount_fen, "
                "cleared_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            (clearing_id, city, day, run, count, amount, self._clock.now_ns()),
        )
        return run, totals

    def _reconcile(self, conn: sa.Connection, city: str, day: int) -> tuple[int, list[BalanceGap]]:
        """(cards checked, gaps): each card with a record that day, its latest record's
        balance against loads before it less every fare up to it."""
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(self._sql(_RECONCILE), (city, day))
            rows = cur.fetchall()
        finally:
            cur.close()
        gaps = []
        for number, last_counter, records, spent, seen, loaded in rows:
            expected = int(loaded) - int(spent)
            missing = last_counter + 1 - records
            if expected != seen or missing:
                gaps.append(BalanceGap(bytes(number), expected, seen, last_counter, missing))
        return len(rows), gaps

    # -- plumbing -------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with write_transaction(self._engine) as conn:
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                yield cur
            finally:
                cur.close()

    def _sql(self, text: str) -> str:
        return text if self._sqlite else text.replace("?", "%s")

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if self._sqlite:
            return f"{column} IN ({','.join('?' * len(values))})", list(values)
        return f"{column} = ANY(%s)", [list(values)]


_TAP_COLUMNS = (
    "card_number, offline_counter, city, gate_id, mode, tap, station, amount_fen, "
    "transaction_type, terminal_id, terminal_transaction_number, tap_date, tap_time, day, "
    "balance_after_fen, key_version, tac, tapped_at, resolved_torn, status, held_reason, "
    "clearing_id, uploaded_at"
)
_INSERT_TAP = (
    f"INSERT INTO transit_taps ({_TAP_COLUMNS}) VALUES "
    f"({', '.join('?' * len(_TAP_COLUMNS.split(',')))})"
)
_ADD_SPENT = "UPDATE transit_cards SET spent_fen = spent_fen + ? WHERE card_number = ?"
_REJECT_COLUMNS = (
    "id, card_number, offline_counter, city, gate_id, amount_fen, transaction_type, "
    "terminal_id, terminal_transaction_number, tap_date, tap_time, key_version, tac, reason, "
    "uploaded_at"
)
_INSERT_REJECT = (
    f"INSERT INTO transit_tap_rejects ({_REJECT_COLUMNS}) VALUES "
    f"({', '.join('?' * len(_REJECT_COLUMNS.split(',')))})"
)
# Per card with a record on (city, day): its latest record overall, how many records it
# has, every fare up to the latest, and the loads funded before the latest was tapped.
_RECONCILE = """
WITH touched AS (
    SELECT DISTINCT card_number FROM transit_taps WHERE city = ? AND day = ?
), latest AS (
    SELECT t.card_number, MAX(t.offline_counter) AS last_counter, COUNT(*) AS records,
           SUM(t.amount_fen) AS spent
    FROM transit_taps t JOIN touched USING (card_number)
    GROUP BY t.card_number
)
SELECT l.card_number, l.last_counter, l.records, l.spent, r.balance_after_fen,
       (SELECT COALESCE(SUM(x.amount_fen), 0) FROM transit_loads x
        WHERE x.card_number = l.card_number AND x.created_at <= r.tapped_at
          AND x.status IN ('funded', 'authorized', 'confirmed')) AS loaded
FROM latest l
JOIN transit_taps r ON r.card_number = l.card_number AND r.offline_counter = l.last_counter
ORDER BY l.card_number
"""


def _tap_row(
    record: TapRecord, status: TapStatus, held: HoldReason | None, now_ns: int
) -> tuple[Any, ...]:
    p = record.purchase
    return (
        record.card_number, record.offline_counter, record.city, record.gate_id,
        record.mode.value, record.tap.value, record.station, p.amount_fen, p.transaction_type,
        p.terminal_id, p.terminal_transaction_number, p.date, p.time, _day(p.date),
        record.balance_after_fen, record.key_version, record.tac, record.tapped_at_ns,
        record.resolved_torn, status.value, held.value if held else None, None, now_ns,
    )  # fmt: skip


def _reject_row(
    row_id: int, record: TapRecord, reason: RejectReason, now_ns: int
) -> tuple[Any, ...]:
    p = record.purchase
    return (
        id_to_bytes(row_id), record.card_number, record.offline_counter, record.city,
        record.gate_id, p.amount_fen, p.transaction_type, p.terminal_id,
        p.terminal_transaction_number, p.date, p.time, record.key_version, record.tac,
        reason.value, now_ns,
    )  # fmt: skip


def _clearing_id(city: str, day: int, run: int) -> int:
    return derive_u128(b"clearing", city.encode(), day.to_bytes(4, "big"), run.to_bytes(4, "big"))


def _clearing_transfers(
    city: str,
    day: int,
    run: int,
    totals: Mapping[Mode, tuple[int, int]],
    modes: Sequence[Mode],
) -> list[Transfer]:
    """One transfer float → operator per mode with fares, linked into one chain."""
    if not run:
        return []
    clearing = _clearing_id(city, day, run).to_bytes(16, "big")
    legs = [(mode, totals[mode][1]) for mode in modes if totals.get(mode, (0, 0))[1] > 0]
    transfers = [
        Transfer(
            derive_u128(b"transfer", b"fares-cleared", clearing, mode.value.encode()),
            float_account_id(city),
            operator_account_id(city, mode),
            amount,
            LEDGER_CNY,
            TransitTransferCode.FARES_CLEARED,
            flags=TransferFlags.LINKED if i < len(legs) - 1 else TransferFlags.NONE,
            user_data_128=int.from_bytes(clearing, "big"),
            user_data_32=day,
        )
        for i, (mode, amount) in enumerate(legs)
    ]
    return transfers


def _day(date: bytes) -> int | None:
    """The yyyymmdd of a BCD date, or None if it is not a calendar date."""
    text = date.hex()
    if not text.isdigit():
        return None
    try:
        dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None
    return int(text)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), IN_CHUNK_MAX):
        yield values[start : start + IN_CHUNK_MAX]


def _check_gate(gate_id: object) -> None:
    if not (isinstance(gate_id, str) and 0 < len(gate_id) <= GATE_ID_CHARS_MAX):
        raise ClearingInputError(f"gate_id is 1 to {GATE_ID_CHARS_MAX} characters")


# -- benchmark ----------------------------------------------------------------------

#: Taps per card in `clear_benchmark`: a rider's day or two.
BENCHMARK_TAPS_PER_CARD: Final = 10


@dataclass(frozen=True, slots=True)
class BenchmarkResult:
    records: int
    cards: int
    upload_s: float
    clear_s: float
    gaps_total: int

    @property
    def total_s(self) -> float:
        return self.upload_s + self.clear_s


def clear_benchmark(n: int, url: str | None = None) -> BenchmarkResult:
    """Upload `n` tap records (TACs made with a card's real keys) in uploads of
    `UPLOAD_RECORDS_MAX` and clear their day; the timings are of upload and clearing only.

    The cards and their loads are seeded straight into the tables of a throw-away
    database (a temporary SQLite file unless `url` names another): issuing through the
    wallet is not what is measured, and the ledger is touched only by the clearing."""
    import tempfile
    import time
    from pathlib import Path

    from milletpay.core.clock import ManualClock

    assert n > 0 and n % BENCHMARK_TAPS_PER_CARD == 0
    city, day = "shanghai", dt.date(2026, 11, 26)
    with tempfile.TemporaryDirectory(prefix="millet-clearing-") as tmp:
        ledger = Ledger.open(url or f"sqlite:///{Path(tmp) / 'bench.db'}", clock=ManualClock())
        keys = CityMasterKeys.generate()
        clearing = TransitClearing(ledger, ledger.clock, {city: [keys]}, _NoBlacklist())
        with ledger.transaction() as tx:
            from milletpay.transit.accounts import city_accounts

            tx.create_accounts(city_accounts(city))
        cards = [bytes.fromhex(f"3100{i:016d}") for i in range(n // BENCHMARK_TAPS_PER_CARD)]
        _seed_cards(clearing, cards, city)
        records = _benchmark_records(keys, cards, city, day)
        upload_s = 0.0
        while batch := list(itertools.islice(records, UPLOAD_RECORDS_MAX)):
            started = time.perf_counter()  # records are made between uploads, untimed
            clearing.upload("bench-gate", batch)
            upload_s += time.perf_counter() - started
        uploaded = time.perf_counter()
        report = clearing.clear_day(city, day)
        cleared = time.perf_counter()
        assert report.records_cleared == n and ledger.verify().ok
        ledger.close()
    return BenchmarkResult(n, len(cards), upload_s, cleared - uploaded, report.gaps_total)


class _NoBlacklist:
    def is_blacklisted(self, card_number: bytes) -> bool:
        return False


_BENCHMARK_LOAD_FEN: Final = 10_000


def _seed_cards(clearing: TransitClearing, cards: list[bytes], city: str) -> None:
    """Active cards, each with one confirmed load of `_BENCHMARK_LOAD_FEN`."""
    user = bytes(16)
    with clearing._write() as cur:
        cur.executemany(
            clearing._sql(
                "INSERT INTO transit_cards (card_number, city, user_id, device_id, status, "
                "key_index, key_version, deposit_fen, issuance_fee_fen, loaded_fen, spent_fen, "
                "cleared_fen, refunded_fen, covered_fen, issue_key, issued_at) VALUES "
                "(?, ?, ?, 'bench', 'active', 1, 1, 0, 0, ?, 0, 0, 0, 0, ?, 0)"
            ),
            [(card, city, user, _BENCHMARK_LOAD_FEN, card.hex()) for card in cards],
        )
        cur.executemany(
            clearing._sql(
                "INSERT INTO transit_loads (id, card_number, user_id, idempotency_key, "
                "amount_fen, online_counter, old_balance_fen, terminal_id, load_date, "
                "load_time, key_version, status, created_at) VALUES "
                "(?, ?, ?, ?, ?, 0, 0, ?, ?, ?, 1, 'confirmed', 0)"
            ),
            [
                (
                    card + bytes(6),
                    card,
                    user,
                    card.hex(),
                    _BENCHMARK_LOAD_FEN,
                    bytes(6),
                    bytes(4),
                    bytes(3),
                )
                for card in cards
            ],
        )


def _benchmark_records(
    keys: CityMasterKeys, cards: list[bytes], city: str, day: dt.date
) -> Iterator[TapRecord]:
    from milletpay.transit.fares import Tap

    date = bytes.fromhex(day.strftime("%Y%m%d"))
    fare_fen = 300
    for card in cards:
        tac_key = pc.tac_key(pc.diversify(keys.tac_master_key, card))
        for counter in range(BENCHMARK_TAPS_PER_CARD):
            data = pc.PurchaseData(fare_fen, 0x09, bytes(6), counter, date, bytes(3))
            yield TapRecord(
                city=city,
                gate_id="bench-gate",
                card_number=card,
                offline_counter=counter,
                purchase=data,
                balance_after_fen=_BENCHMARK_LOAD_FEN - fare_fen * (counter + 1),
                key_version=keys.key_version,
                tac=pc.purse_mac(tac_key, data.tac_input()),
                mode=Mode.METRO,
                tap=Tap.EXIT,
                station="xujiahui",
                tapped_at_ns=1 + counter,
            )
