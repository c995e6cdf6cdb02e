"""The stored-value transit purse applet on the phone's secure element.

It owns the card side of a city transit card: the balance (integer fen), the offline and
online counters, the transaction and trip records, and the APDUs that read and move them
(`Purse.process`). Commands and byte layouts follow the PBOC electronic purse (JR/T 0025
part 2, "electronic deposit / electronic purse") as JT/T 978 keeps it for the
interoperable transport card (AID A000000632010105); the trip file and the tearing model
are Millet Pay's own and say so. docs/transit-purse.md gives every APDU byte by byte.

It must never raise on what a terminal sends: every answer ends in a status word of `Sw`,
and a refused command changes nothing but, for a wrong MAC, the failure count. Money moves
only through a completed DEBIT FOR PURCHASE or CREDIT FOR LOAD, each written with a
two-step commit (journal, then commit mark) so that a torn write leaves all of it or none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum, IntEnum
from types import MappingProxyType

from milletpay.core.errors import MilletError
from milletpay.emv import tlv
from milletpay.transit import purse_crypto as pc

AID = bytes.fromhex("A000000632010105")  # JT/T 978 interoperable transport card
APPLICATION_VERSION = 0x02
ALGORITHM_TDES = 0x00  # PBOC's algorithm identifier for DES/TDES keys
PURSE_P2 = 0x02  # P2 of INITIALIZE and GET BALANCE: 02 e-purse (01 would be e-deposit)

BALANCE_MAX_FEN = 100_000  # 1,000 yuan, the usual ceiling of an anonymous transit purse
OVERDRAFT_LIMIT_MAX_FEN = (1 << 24) - 1  # the overdraft limit travels in 3 bytes
AMOUNT_MAX_FEN = (1 << 31) - 1  # amounts are 4 bytes; above this a balance could wrap
COUNTER_MAX = (1 << 16) - 1  # offline and online counters are 2 bytes; then 9402
MAC_FAILURES_MAX = 3  # consecutive wrong MAC1 / MAC2 before the purse locks (9303)
TRANSACTION_RECORDS_MAX = 10  # cyclic file 0x18: the last 10 transactions (PBOC)
TRIP_RECORDS_MAX = 10  # cyclic file 0x1E: the last 10 trips

SFI_PUBLIC_DATA = 0x15  # public application basic data (JT/T 978), READ BINARY
SFI_TRANSACTIONS = 0x18  # transaction detail records (PBOC), READ RECORD
SFI_TRIPS = 0x1E  # trip records (Millet Pay layout), READ RECORD

PUBLIC_DATA_BYTES = 30
TRANSACTION_RECORD_BYTES = 23
TRIP_RECORD_BYTES = 16
ISSUER_ID_BYTES = 8
APDU_BYTES_MAX = 261  # short APDU: 4 header + Lc + 255 data + Le


class Sw(IntEnum):
    """Every status word the purse answers."""

    OK = 0x9000
    MEMORY_FAILURE = 0x6581  # reserved: a failed write; the simulated memory never fails
    WRONG_LENGTH = 0x6700
    CONDITIONS_NOT_SATISFIED = 0x6985  # e.g. DEBIT without INITIALIZE, nothing selected
    MAC1_WRONG = 0x6988  # purchase MAC1 does not verify
    WRONG_DATA = 0x6A80  # amount out of range, trip record not matching the debit
    FILE_NOT_FOUND = 0x6A82  # unknown AID or SFI
    RECORD_NOT_FOUND = 0x6A83
    WRONG_P1P2 = 0x6A86
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    LOAD_MAC_INVALID = 0x9302  # load MAC2 does not verify
    APPLICATION_LOCKED = 0x9303  # too many wrong MACs
    BALANCE_TOO_LOW = 0x9401
    COUNTER_EXHAUSTED = 0x9402
    KEY_NOT_SUPPORTED = 0x9403  # unknown key index
    PROVE_NOT_AVAILABLE = 0x9406  # GET TRANSACTION PROVE for a transaction not kept


class PurseError(MilletError):
    """A purse built from a malformed profile, or an answer of the wrong shape parsed on
    the terminal's side. Never raised by `Purse.process`."""

    code = "purse_invalid"


class TransitMode(IntEnum):
    """The mode byte of a trip record."""

    METRO = 0x01
    BUS = 0x02
    FERRY = 0x03
    RAIL = 0x04


class TearPoint(Enum):
    """Where a write is interrupted when the phone leaves the field (for tests)."""

    BEFORE_COMMIT = "before_commit"  # journal written, commit mark not: nothing happened
    AFTER_COMMIT = "after_commit"  # commit mark written, answer not sent: all happened


# --- Data kept by the purse ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurseProfile:
    """What personalization writes once: identity, keys by key index, overdraft limit."""

    card_number: bytes  # 10 bytes BCD, 20 digits
    issuer_id: bytes  # 8 bytes
    start_date: bytes  # YYYYMMDD BCD
    expiry_date: bytes  # YYYYMMDD BCD
    keys: tuple[pc.CardKeys, ...]
    overdraft_limit_fen: int = 0
    application_type: int = 0x02  # 02: e-purse

    def __post_init__(self) -> None:
        _require(len(self.card_number) == pc.CARD_NUMBER_BYTES, "card_number is not 10 bytes")
        _require(len(self.issuer_id) == ISSUER_ID_BYTES, "issuer_id is not 8 bytes")
        _require(len(self.start_date) == pc.DATE_BYTES, "start_date is not 4 bytes")
        _require(len(self.expiry_date) == pc.DATE_BYTES, "expiry_date is not 4 bytes")
        _require(bool(self.keys), "a purse needs at least one key set")
        indexes = [k.key_index for k in self.keys]
        _require(len(set(indexes)) == len(indexes), "key indexes repeat")
        _require(
            0 <= self.overdraft_limit_fen <= OVERDRAFT_LIMIT_MAX_FEN,
            "overdraft_limit_fen is outside 0..16777215",
        )

    def public_data(self) -> bytes:
        """File 0x15 (JT/T 978): issuer id 8 || application type 1 || application version 1
        || card number 10 || start date 4 || expiry date 4 || RFU 2."""
        out = (
            self.issuer_id
            + bytes([self.application_type, APPLICATION_VERSION])
            + self.card_number
            + self.start_date
            + self.expiry_date
            + bytes(2)
        )
        assert len(out) == PUBLIC_DATA_BYTES
        return out


@dataclass(frozen=True, slots=True)
class TransactionProve:
    """What GET TRANSACTION PROVE returns for the last purchase: MAC2 and TAC."""

    offline_counter: int  # the counter INITIALIZE answered, before the debit's +1
    transaction_type: int
    mac2: bytes
    tac: bytes


@dataclass(frozen=True, slots=True)
class PurseState:
    """The purse's persistent memory: one value, replaced whole at each commit."""

    balance_fen: int
    offline_counter: int = 0
    online_counter: int = 0
    transactions: tuple[bytes, ...] = ()  # newest first
    trips: tuple[bytes, ...] = ()  # newest first
    last_purchase: TransactionProve | None = None
    mac_failures: int = 0


@dataclass(frozen=True, slots=True)
class TripRecord:
    """A trip record (Millet Pay layout, file 0x1E): mode 1 || entry station 4 ||
    date 4 (YYYYMMDD BCD) || time 3 (hhmmss BCD) || amount 4 (fen)."""

    mode: int
    entry_station: int
    date: bytes
    time: bytes
    amount_fen: int

    def __post_init__(self) -> None:
        _require(0 <= self.mode <= 0xFF, "mode is not one byte")
        _require(0 <= self.entry_station < 1 << 32, "entry_station is not 4 bytes")
        _require(len(self.date) == pc.DATE_BYTES, "date is not 4 bytes")
        _require(len(self.time) == pc.TIME_BYTES, "time is not 3 bytes")
        _require(0 <= self.amount_fen <= AMOUNT_MAX_FEN, "amount_fen is outside 4 bytes")

    def encode(self) -> bytes:
        out = (
            bytes([self.mode])
            + self.entry_station.to_bytes(4, "big")
            + self.date
            + self.time
            + self.amount_fen.to_bytes(4, "big")
        )
        assert len(out) == TRIP_RECORD_BYTES
        return out

    @classmethod
    def decode(cls, raw: bytes) -> TripRecord:
        _require(len(raw) == TRIP_RECORD_BYTES, "a trip record is 16 bytes")
        return cls(raw[0], int.from_bytes(raw[1:5], "big"), raw[5:9], raw[9:12], _u(raw[12:16]))


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """A transaction detail record (PBOC file 0x18): counter 2 || overdraft limit 3 ||
    amount 4 || type 1 || terminal id 6 || date 4 || time 3."""

    counter: int
    overdraft_limit_fen: int
    amount_fen: int
    transaction_type: int
    terminal_id: bytes
    date: bytes
    time: bytes

    def encode(self) -> bytes:
        out = (
            self.counter.to_bytes(2, "big")
            + self.overdraft_limit_fen.to_bytes(3, "big")
            + self.amount_fen.to_bytes(4, "big")
            + bytes([self.transaction_type])
            + self.terminal_id
            + self.date
            + self.time
        )
        assert len(out) == TRANSACTION_RECORD_BYTES
        return out

    @classmethod
    def decode(cls, raw: bytes) -> TransactionRecord:
        _require(len(raw) == TRANSACTION_RECORD_BYTES, "a transaction record is 23 bytes")
        return cls(
            _u(raw[0:2]), _u(raw[2:5]), _u(raw[5:9]), raw[9], raw[10:16], raw[16:20], raw[20:23]
        )


# --- Responses the terminal parses --------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurchaseInit:
    """INITIALIZE FOR PURCHASE's answer: balance 4 || offline counter 2 || overdraft limit
    3 || key version 1 || algorithm 1 || card random 4."""

    balance_fen: int
    offline_counter: int
    overdraft_limit_fen: int
    key_version: int
    algorithm: int
    card_random: bytes

    @classmethod
    def decode(cls, data: bytes) -> PurchaseInit:
        _require(len(data) == 15, "INITIALIZE FOR PURCHASE answers 15 bytes")
        balance = int.from_bytes(data[0:4], "big", signed=True)
        return cls(balance, _u(data[4:6]), _u(data[6:9]), data[9], data[10], data[11:15])


@dataclass(frozen=True, slots=True)
class LoadInit:
    """INITIALIZE FOR LOAD's answer: old balance 4 || online counter 2 || key version 1 ||
    algorithm 1 || card random 4 || MAC1 4."""

    balance_fen: int
    online_counter: int
    key_version: int
    algorithm: int
    card_random: bytes
    mac1: bytes

    @classmethod
    def decode(cls, data: bytes) -> LoadInit:
        _require(len(data) == 16, "INITIALIZE FOR LOAD answers 16 bytes")
        balance = int.from_bytes(data[0:4], "big", signed=True)
        return cls(balance, _u(data[4:6]), data[6], data[7], data[8:12], data[12:16])


# --- Command builders (the terminal's side) -----------------------------------------


def select_command() -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(AID)]) + AID + b"\x00"


def get_balance_command() -> bytes:
    return bytes.fromhex("805C000204")


def initialize_for_purchase_command(
    key_index: int, amount_fen: int, terminal_id: bytes, *, composite: bool = False
) -> bytes:
    p1 = _P1_COMPOSITE if composite else _P1_PURCHASE
    data = bytes([key_index]) + amount_fen.to_bytes(4, "big") + terminal_id
    return bytes([0x80, 0x50, p1, PURSE_P2, len(data)]) + data + b"\x0f"


def update_capp_data_cache_command(record: bytes) -> bytes:
    # P1 00, P2 F0 (SFI 0x1E, mode 000) as public JT/T 978 terminal traces write the cyclic
    # trip file during a composite purchase; their records are 48 bytes, ours 16.
    return bytes([0x80, 0xDC, 0x00, SFI_TRIPS << 3, len(record)]) + record


def debit_for_purchase_command(
    terminal_transaction_number: int, date: bytes, time: bytes, mac1: bytes
) -> bytes:
    data = terminal_transaction_number.to_bytes(4, "big") + date + time + mac1
    return bytes([0x80, 0x54, 0x01, 0x00, len(data)]) + data + b"\x08"


def initialize_for_load_command(key_index: int, amount_fen: int, terminal_id: bytes) -> bytes:
    data = bytes([key_index]) + amount_fen.to_bytes(4, "big") + terminal_id
    return bytes([0x80, 0x50, _P1_LOAD, PURSE_P2, len(data)]) + data + b"\x10"


def credit_for_load_command(date: bytes, time: bytes, mac2: bytes) -> bytes:
    data = date + time + mac2
    return bytes([0x80, 0x52, 0x00, 0x00, len(data)]) + data + b"\x04"


def get_transaction_prove_command(transaction_type: int, offline_counter: int) -> bytes:
    counter = offline_counter.to_bytes(2, "big")
    return bytes([0x80, 0x5A, 0x00, transaction_type, 2]) + counter + b"\x08"


def read_binary_command(sfi: int, offset: int = 0, length: int = PUBLIC_DATA_BYTES) -> bytes:
    """READ BINARY by short file identifier: P1 = 80 | SFI, P2 the offset, Le the length."""
    return bytes([0x00, 0xB0, 0x80 | sfi, offset, length])


def read_record_command(sfi: int, record_number: int) -> bytes:
    return bytes([0x00, 0xB2, record_number, (sfi << 3) | 0b100, 0x00])


def split_response(response: bytes) -> tuple[bytes, int]:
    """(data, status word) of a response; `PurseError` if it has no status word."""
    if len(response) < 2:
        raise PurseError("a response ends in a 2-byte status word")
    return response[:-2], int.from_bytes(response[-2:], "big")


# --- The applet ---------------------------------------------------------------------

_P1_LOAD = 0x00
_P1_PURCHASE = 0x01
_P1_COMPOSITE = 0x03
_CLA_ISO = 0x00
_CLA_PROPRIETARY = 0x80
_READ_RECORD_BY_NUMBER = 0b100


@dataclass(frozen=True, slots=True)
class _Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: absent; 0 means "up to 256"


def _parse_apdu(raw: bytes) -> _Apdu | None:
    """A short ISO 7816-4 command (cases 1 to 4), or None when the lengths do not add up.
    Extended lengths (Lc 00 followed by two bytes) are not supported."""
    if not 4 <= len(raw) <= APDU_BYTES_MAX:
        return None
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    body = raw[4:]
    if not body:
        return _Apdu(cla, ins, p1, p2, b"", None)
    if len(body) == 1:
        return _Apdu(cla, ins, p1, p2, b"", body[0])
    lc = body[0]
    if lc == 0:
        return None
    if len(body) == 1 + lc:
        return _Apdu(cla, ins, p1, p2, body[1:], None)
    if len(body) == 2 + lc:
        return _Apdu(cla, ins, p1, p2, body[1:-1], body[-1])
    return None


@dataclass(frozen=True, slots=True)
class _PurchaseSession:
    keys: pc.CardKeys
    transaction_type: int
    amount_fen: int
    terminal_id: bytes
    card_random: bytes
    offline_counter: int
    trip_record: bytes | None = None


@dataclass(frozen=True, slots=True)
class _LoadSession:
    keys: pc.CardKeys
    amount_fen: int
    terminal_id: bytes
    card_random: bytes
    online_counter: int
    old_balance_fen: int


@dataclass(slots=True)
class _Memory:
    """Persistent memory with a journal: `committed` is what the purse reads; a write puts
    the new state in `journal`, then sets `journal_valid` (the commit point), then copies."""

    committed: PurseState
    journal: PurseState | None = None
    journal_valid: bool = False

    def recover(self) -> None:
        """At power-up: roll a valid journal forward, drop an unfinished one."""
        if self.journal is not None and self.journal_valid:
            self.committed = self.journal
        self.journal, self.journal_valid = None, False


class _Torn(Exception):
    """The field was lost during a write (raised only when a test armed a tear)."""


_Response = tuple[bytes, Sw]


@dataclass(frozen=True, slots=True)
class _CommandSpec:
    """One command's header rules, checked before its handler runs."""

    name: str
    p1p2: frozenset[tuple[int, int]] | None  # None: the handler checks P1-P2
    lc: int | None  # exact data length; 0: no data; None: 1..255
    le: int | None  # the answer's length, which Le may name (or 00); None: the handler checks
    handler: str
    needs_selection: bool = True


def _p1p2(*pairs: tuple[int, int]) -> frozenset[tuple[int, int]]:
    return frozenset(pairs)


_COMMANDS: Mapping[tuple[int, int], _CommandSpec] = MappingProxyType(
    {
        (_CLA_ISO, 0xA4): _CommandSpec("SELECT", _p1p2((0x04, 0x00)), None, None, "_select", False),
        (_CLA_ISO, 0xB2): _CommandSpec("READ RECORD", None, 0, None, "_read_record"),
        (_CLA_ISO, 0xB0): _CommandSpec("READ BINARY", None, 0, None, "_read_binary"),
        (_CLA_PROPRIETARY, 0x5C): _CommandSpec(
            "GET BALANCE", _p1p2((0x00, PURSE_P2)), 0, 4, "_get_balance"
        ),
        (_CLA_PROPRIETARY, 0x50): _CommandSpec(
            "INITIALIZE",
            _p1p2((_P1_PURCHASE, PURSE_P2), (_P1_COMPOSITE, PURSE_P2), (_P1_LOAD, PURSE_P2)),
            11,
            None,
            "_initialize",
        ),
        (_CLA_PROPRIETARY, 0xDC): _CommandSpec(
            "UPDATE CAPP DATA CACHE",
            _p1p2((0x00, SFI_TRIPS << 3)),
            TRIP_RECORD_BYTES,
            0,
            "_update_capp_data_cache",
        ),
        (_CLA_PROPRIETARY, 0x54): _CommandSpec(
            "DEBIT FOR PURCHASE", _p1p2((0x01, 0x00)), 15, 8, "_debit_for_purchase"
        ),
        (_CLA_PROPRIETARY, 0x52): _CommandSpec(
            "CREDIT FOR LOAD", _p1p2((0x00, 0x00)), 11, 4, "_credit_for_load"
        ),
        (_CLA_PROPRIETARY, 0x5A): _CommandSpec(
            "GET TRANSACTION PROVE",
            _p1p2((0x00, pc.TRANSACTION_TYPE_PURCHASE), (0x00, pc.TRANSACTION_TYPE_COMPOSITE)),
            2,
            8,
            "_get_transaction_prove",
        ),
    }
)
_INITIALIZE_LE = MappingProxyType({_P1_PURCHASE: 15, _P1_COMPOSITE: 15, _P1_LOAD: 16})


class Purse:
    """The purse applet: `process` takes a command APDU and returns data || SW1 SW2."""

    def __init__(
        self,
        profile: PurseProfile,
        *,
        balance_fen: int = 0,
        random_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        _require(
            -profile.overdraft_limit_fen <= balance_fen <= BALANCE_MAX_FEN,
            "balance_fen is outside -overdraft limit..BALANCE_MAX_FEN",
        )
        self._profile = profile
        self._keys = MappingProxyType({k.key_index: k for k in profile.keys})
        self._random = random_source
        self._memory = _Memory(PurseState(balance_fen=balance_fen))
        self._selected = False
        self._session: _PurchaseSession | _LoadSession | None = None
        self._tear: TearPoint | None = None
        self._powered = True

    def __repr__(self) -> str:
        return f"Purse(card_number={self._profile.card_number.hex()}, keys=<hidden>)"

    # Read-only views of the persistent memory, for inspection and tests.
    @property
    def state(self) -> PurseState:
        return self._memory.committed

    @property
    def balance_fen(self) -> int:
        return self._memory.committed.balance_fen

    @property
    def offline_counter(self) -> int:
        return self._memory.committed.offline_counter

    @property
    def online_counter(self) -> int:
        return self._memory.committed.online_counter

    def arm_tear(self, point: TearPoint) -> None:
        """The next write stops at `point` and no answer is sent (the field is lost)."""
        self._tear = point

    def process(self, command: bytes) -> bytes:
        """The response to one command APDU: response data || SW1 SW2, or b"" when an
        armed tear cut the field (then the next command powers the purse up again)."""
        if not self._powered:
            self._power_up()
        try:
            data, sw = self._dispatch(command)
        except _Torn:
            self._powered = False
            return b""
        assert sw in Sw
        return data + int(sw).to_bytes(2, "big")

    # --- dispatch -------------------------------------------------------------------

    def _dispatch(self, raw: bytes) -> _Response:
        apdu = _parse_apdu(raw)
        if apdu is None:
            self._session = None
            return b"", Sw.WRONG_LENGTH
        spec = _COMMANDS.get((apdu.cla, apdu.ins))
        if spec is None:
            self._session = None
            known_cla = apdu.cla in (_CLA_ISO, _CLA_PROPRIETARY)
            return b"", Sw.INS_NOT_SUPPORTED if known_cla else Sw.CLA_NOT_SUPPORTED
        session, self._session = self._session, None  # a pending one survives only its next
        refusal = self._check_header(spec, apdu)
        if refusal is not None:
            return b"", refusal
        handler: Callable[[_Apdu, _PurchaseSession | _LoadSession | None], _Response]
        handler = getattr(self, spec.handler)
        return handler(apdu, session)

    def _check_header(self, spec: _CommandSpec, apdu: _Apdu) -> Sw | None:
        if spec.needs_selection and not self._selected:
            return Sw.CONDITIONS_NOT_SATISFIED
        if spec.p1p2 is not None and (apdu.p1, apdu.p2) not in spec.p1p2:
            return Sw.WRONG_P1P2
        length_ok = len(apdu.data) > 0 if spec.lc is None else len(apdu.data) == spec.lc
        le_ok = spec.le is None or apdu.le in (None, 0, spec.le)
        return None if length_ok and le_ok else Sw.WRONG_LENGTH

    # --- selection and reading ------------------------------------------------------

    def _select(self, apdu: _Apdu, _session: object) -> _Response:
        if apdu.data != AID:
            self._selected = False
            return b"", Sw.FILE_NOT_FOUND
        self._selected = True
        return self._fci(), Sw.OK

    def _fci(self) -> bytes:
        """6F { 84 AID, A5 { 9F08 application version, 9F0C file 0x15 } }: the public
        application data in the proprietary template, as PBOC e-purse cards return it."""
        proprietary = tlv.Tlv(
            "A5",
            (
                tlv.Tlv("9F08", bytes([APPLICATION_VERSION])),
                tlv.Tlv("9F0C", self._profile.public_data()),
            ),
        )
        return tlv.encode(tlv.Tlv("6F", (tlv.Tlv("84", AID), proprietary)))

    def _get_balance(self, _apdu: _Apdu, _session: object) -> _Response:
        return pc.signed_balance_bytes(self.balance_fen), Sw.OK

    def _read_binary(self, apdu: _Apdu, _session: object) -> _Response:
        if not apdu.p1 & 0x80 or apdu.p1 & 0x60:
            return b"", Sw.WRONG_P1P2
        if apdu.p1 & 0x1F != SFI_PUBLIC_DATA:
            return b"", Sw.FILE_NOT_FOUND
        content = self._profile.public_data()
        if apdu.p2 >= len(content):
            return b"", Sw.WRONG_P1P2
        wanted = len(content) - apdu.p2 if apdu.le in (None, 0) else apdu.le
        if apdu.p2 + wanted > len(content):
            return b"", Sw.WRONG_LENGTH
        return content[apdu.p2 : apdu.p2 + wanted], Sw.OK

    def _read_record(self, apdu: _Apdu, _session: object) -> _Response:
        if apdu.p2 & 0b111 != _READ_RECORD_BY_NUMBER or apdu.p1 == 0:
            return b"", Sw.WRONG_P1P2
        files = {SFI_TRANSACTIONS: self.state.transactions, SFI_TRIPS: self.state.trips}
        records = files.get(apdu.p2 >> 3)
        if records is None:
            return b"", Sw.FILE_NOT_FOUND
        if apdu.p1 > len(records):
            return b"", Sw.RECORD_NOT_FOUND
        record = records[apdu.p1 - 1]
        if apdu.le not in (None, 0, len(record)):
            return b"", Sw.WRONG_LENGTH
        return record, Sw.OK

    def _get_transaction_prove(self, apdu: _Apdu, _session: object) -> _Response:
        prove = self.state.last_purchase
        counter = _u(apdu.data)
        if prove is None or (prove.offline_counter, prove.transaction_type) != (counter, apdu.p2):
            return b"", Sw.PROVE_NOT_AVAILABLE
        return prove.mac2 + prove.tac, Sw.OK

    # --- purchase -------------------------------------------------------------------

    def _initialize(self, apdu: _Apdu, _session: object) -> _Response:
        if apdu.le not in (None, 0, _INITIALIZE_LE[apdu.p1]):
            return b"", Sw.WRONG_LENGTH
        state = self.state
        if state.mac_failures >= MAC_FAILURES_MAX:
            return b"", Sw.APPLICATION_LOCKED
        keys = self._keys.get(apdu.data[0])
        if keys is None:
            return b"", Sw.KEY_NOT_SUPPORTED
        amount, terminal_id = _u(apdu.data[1:5]), apdu.data[5:11]
        if apdu.p1 == _P1_LOAD:
            return self._initialize_for_load(keys, amount, terminal_id)
        if amount > AMOUNT_MAX_FEN:
            return b"", Sw.WRONG_DATA
        if state.offline_counter >= COUNTER_MAX:
            return b"", Sw.COUNTER_EXHAUSTED
        if state.balance_fen - amount < -self._profile.overdraft_limit_fen:
            return b"", Sw.BALANCE_TOO_LOW
        card_random = self._card_random()
        kind = (
            pc.TRANSACTION_TYPE_COMPOSITE
            if apdu.p1 == _P1_COMPOSITE
            else pc.TRANSACTION_TYPE_PURCHASE
        )
        self._session = _PurchaseSession(
            keys, kind, amount, terminal_id, card_random, state.offline_counter
        )
        answer = (
            pc.signed_balance_bytes(state.balance_fen)
            + state.offline_counter.to_bytes(2, "big")
            + self._profile.overdraft_limit_fen.to_bytes(3, "big")
            + bytes([keys.key_version, ALGORITHM_TDES])
            + card_random
        )
        return answer, Sw.OK

    def _update_capp_data_cache(self, apdu: _Apdu, session: object) -> _Response:
        if not isinstance(session, _PurchaseSession):
            return b"", Sw.CONDITIONS_NOT_SATISFIED
        if session.transaction_type != pc.TRANSACTION_TYPE_COMPOSITE or session.trip_record:
            return b"", Sw.CONDITIONS_NOT_SATISFIED
        if _u(apdu.data[12:16]) != session.amount_fen:
            self._session = session  # the record is refused, the purchase may go on
            return b"", Sw.WRONG_DATA
        self._session = replace(session, trip_record=apdu.data)
        return b"", Sw.OK

    def _debit_for_purchase(self, apdu: _Apdu, session: object) -> _Response:
        if not isinstance(session, _PurchaseSession):
            return b"", Sw.CONDITIONS_NOT_SATISFIED
        composite = session.transaction_type == pc.TRANSACTION_TYPE_COMPOSITE
        if composite and session.trip_record is None:
            return b"", Sw.CONDITIONS_NOT_SATISFIED
        data = pc.PurchaseData(
            amount_fen=session.amount_fen,
            transaction_type=session.transaction_type,
            terminal_id=session.terminal_id,
            terminal_transaction_number=_u(apdu.data[0:4]),
            date=apdu.data[4:8],
            time=apdu.data[8:11],
        )
        sk = pc.purchase_session_key(
            session.keys.dpk,
            session.card_random,
            session.offline_counter,
            data.terminal_transaction_number,
        )
        if not pc.mac_equal(pc.purse_mac(sk, data.mac1_input()), apdu.data[11:15]):
            self._count_mac_failure()
            return b"", Sw.MAC1_WRONG
        mac2 = pc.purse_mac(sk, data.mac2_input())
        tac = pc.purse_mac(pc.tac_key(session.keys.dtk), data.tac_input())
        self._write(self._debited(session, data, mac2, tac))
        return tac + mac2, Sw.OK

    def _debited(
        self, session: _PurchaseSession, data: pc.PurchaseData, mac2: bytes, tac: bytes
    ) -> PurseState:
        state = self.state
        assert state.offline_counter == session.offline_counter, "no write between init and debit"
        record = TransactionRecord(
            session.offline_counter,
            self._profile.overdraft_limit_fen,
            data.amount_fen,
            data.transaction_type,
            data.terminal_id,
            data.date,
            data.time,
        )
        trips = state.trips
        if session.trip_record is not None:
            trips = _prepend(session.trip_record, trips, TRIP_RECORDS_MAX)
        new = replace(
            state,
            balance_fen=state.balance_fen - data.amount_fen,
            offline_counter=state.offline_counter + 1,
            transactions=_prepend(record.encode(), state.transactions, TRANSACTION_RECORDS_MAX),
            trips=trips,
            last_purchase=TransactionProve(
                session.offline_counter, data.transaction_type, mac2, tac
            ),
            mac_failures=0,
        )
        assert new.balance_fen >= -self._profile.overdraft_limit_fen
        return new

    # --- load -----------------------------------------------------------------------

    def _initialize_for_load(self, keys: pc.CardKeys, amount: int, terminal_id: bytes) -> _Response:
        state = self.state
        if amount == 0 or amount > BALANCE_MAX_FEN - state.balance_fen:
            return b"", Sw.WRONG_DATA
        if state.online_counter >= COUNTER_MAX:
            return b"", Sw.COUNTER_EXHAUSTED
        card_random = self._card_random()
        session = _LoadSession(
            keys, amount, terminal_id, card_random, state.online_counter, state.balance_fen
        )
        sk = pc.load_session_key(keys.dlk, card_random, state.online_counter)
        mac1 = pc.purse_mac(sk, self._load_data(session, bytes(4), bytes(3)).mac1_input())
        self._session = session
        answer = (
            pc.signed_balance_bytes(state.balance_fen)
            + state.online_counter.to_bytes(2, "big")
            + bytes([keys.key_version, ALGORITHM_TDES])
            + card_random
            + mac1
        )
        return answer, Sw.OK

    def _credit_for_load(self, apdu: _Apdu, session: object) -> _Response:
        if not isinstance(session, _LoadSession):
            return b"", Sw.CONDITIONS_NOT_SATISFIED
        data = self._load_data(session, apdu.data[0:4], apdu.data[4:7])
        sk = pc.load_session_key(session.keys.dlk, session.card_random, session.online_counter)
        if not pc.mac_equal(pc.purse_mac(sk, data.mac2_input()), apdu.data[7:11]):
            self._count_mac_failure()
            return b"", Sw.LOAD_MAC_INVALID
        tac = pc.purse_mac(pc.tac_key(session.keys.dtk), data.tac_input())
        state = self.state
        assert state.online_counter == session.online_counter, "no write between init and credit"
        record = TransactionRecord(
            session.online_counter,
            self._profile.overdraft_limit_fen,
            data.amount_fen,
            pc.TRANSACTION_TYPE_LOAD,
            data.terminal_id,
            data.date,
            data.time,
        )
        new = replace(
            state,
            balance_fen=state.balance_fen + data.amount_fen,
            online_counter=state.online_counter + 1,
            transactions=_prepend(record.encode(), state.transactions, TRANSACTION_RECORDS_MAX),
            mac_failures=0,
        )
        assert new.balance_fen <= BALANCE_MAX_FEN
        self._write(new)
        return tac, Sw.OK

    @staticmethod
    def _load_data(session: _LoadSession, date: bytes, time: bytes) -> pc.LoadData:
        return pc.LoadData(
            old_balance_fen=session.old_balance_fen,
            amount_fen=session.amount_fen,
            online_counter=session.online_counter,
            terminal_id=session.terminal_id,
            date=date,
            time=time,
        )

    # --- persistent memory ----------------------------------------------------------

    def _card_random(self) -> bytes:
        value = self._random(pc.RANDOM_BYTES)
        assert len(value) == pc.RANDOM_BYTES
        return value

    def _count_mac_failure(self) -> None:
        state = self.state
        self._write(replace(state, mac_failures=min(state.mac_failures + 1, MAC_FAILURES_MAX)))

    def _write(self, new: PurseState) -> None:
        """Two-step commit: journal, commit mark (the point of no return), then apply."""
        memory = self._memory
        memory.journal, memory.journal_valid = new, False
        if self._tear is TearPoint.BEFORE_COMMIT:
            self._tear = None
            raise _Torn
        memory.journal_valid = True
        if self._tear is TearPoint.AFTER_COMMIT:
            self._tear = None
            raise _Torn
        memory.recover()

    def _power_up(self) -> None:
        self._memory.recover()
        self._selected = False
        self._session = None
        self._powered = True


# --- Small pure helpers -------------------------------------------------------------


def _prepend(record: bytes, records: tuple[bytes, ...], limit: int) -> tuple[bytes, ...]:
    """A cyclic file: the newest record first, the oldest dropped at the limit."""
    return (record, *records)[:limit]


def _u(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise PurseError(what)
