"""The gate's secure access module (SAM) and the transit issuer host's load side.

`PurchaseSam` holds a city's purchase and TAC master keys: it derives each card's DPK,
computes MAC1 for INITIALIZE's answer, keeps the terminal transaction number, verifies
MAC2 and the TAC (clearing verifies TACs with `verify_purchase_tac`). `LoadHost` holds the
load master key: it verifies the card's load MAC1 with the card's DLK, answers MAC2, and
refuses a second load request for the same card and online counter.

Plain in-memory state; storage belongs to later work. Keys come from `CityMasterKeys`,
which the caller provides; no key is ever logged, and every repr here hides keys. The
computations are `purse_crypto`'s (PBOC e-purse, JR/T 0025 part 2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from milletpay.core.errors import MilletError
from milletpay.transit import purse_crypto as pc
from milletpay.transit.purse import ALGORITHM_TDES, LoadInit, PurchaseInit

TERMINAL_TRANSACTION_NUMBER_MAX = (1 << 32) - 1  # 4 bytes in DEBIT FOR PURCHASE
LOAD_RECORDS_MAX = 100_000  # (card, online counter) pairs one host remembers in memory


class SamError(MilletError):
    """The module cannot serve this request: an unknown key version or algorithm, an
    exhausted terminal transaction number, or malformed key material."""

    code = "sam_refused"


@dataclass(frozen=True, slots=True, repr=False)
class CityMasterKeys:
    """A city issuer's master keys for one key index and version: MPK (purchase), MLK
    (load), MTK (TAC), each a double-length TDES key. The repr hides them."""

    key_index: int
    key_version: int
    purchase_master_key: bytes
    load_master_key: bytes
    tac_master_key: bytes

    def __post_init__(self) -> None:
        for name, key in (
            ("purchase_master_key", self.purchase_master_key),
            ("load_master_key", self.load_master_key),
            ("tac_master_key", self.tac_master_key),
        ):
            if len(key) != pc.CARD_KEY_BYTES:
                raise SamError(f"{name} is {len(key)} bytes, not {pc.CARD_KEY_BYTES}")
        if not (0 <= self.key_index <= 0xFF and 0 <= self.key_version <= 0xFF):
            raise SamError("key_index and key_version are single bytes")

    def __repr__(self) -> str:
        return (
            f"CityMasterKeys(key_index={self.key_index}, key_version={self.key_version}, "
            "keys=<hidden>)"
        )

    @classmethod
    def generate(
        cls,
        key_index: int = 1,
        key_version: int = 1,
        random_source: Callable[[int], bytes] = os.urandom,
    ) -> CityMasterKeys:
        """Fresh random master keys (for tests and demos; production keys come from a key
        ceremony, not from here)."""
        return cls(
            key_index,
            key_version,
            random_source(pc.CARD_KEY_BYTES),
            random_source(pc.CARD_KEY_BYTES),
            random_source(pc.CARD_KEY_BYTES),
        )

    def card_keys(self, card_number: bytes) -> pc.CardKeys:
        """The card's DPK, DLK and DTK, diversified by its card number (what
        personalization writes into the purse)."""
        return pc.CardKeys(
            key_index=self.key_index,
            key_version=self.key_version,
            dpk=pc.diversify(self.purchase_master_key, card_number),
            dlk=pc.diversify(self.load_master_key, card_number),
            dtk=pc.diversify(self.tac_master_key, card_number),
        )


def _by_version(keys: Iterable[CityMasterKeys]) -> Mapping[int, CityMasterKeys]:
    table = {k.key_version: k for k in keys}
    if not table:
        raise SamError("a module needs at least one set of master keys")
    return MappingProxyType(table)


def verify_purchase_tac(
    keys: CityMasterKeys, card_number: bytes, data: pc.PurchaseData, tac: bytes
) -> bool:
    """Whether `tac` is the card's TAC over a purchase (what clearing checks), constant time."""
    dtk = pc.diversify(keys.tac_master_key, card_number)
    return pc.mac_equal(pc.purse_mac(pc.tac_key(dtk), data.tac_input()), tac)


def verify_load_tac(
    keys: CityMasterKeys, card_number: bytes, data: pc.LoadData, tac: bytes
) -> bool:
    """Whether `tac` is the card's TAC over a load, constant time."""
    dtk = pc.diversify(keys.tac_master_key, card_number)
    return pc.mac_equal(pc.purse_mac(pc.tac_key(dtk), data.tac_input()), tac)


# --- The gate's module --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurchaseSession:
    """One purchase as the SAM authorized it: everything needed to build DEBIT FOR
    PURCHASE, verify its MAC2 and TAC, and resolve it at the next tap if it was torn.
    The session key stays out of the repr."""

    card_number: bytes
    key_version: int
    offline_counter: int
    data: pc.PurchaseData
    mac1: bytes
    session_key: bytes = field(repr=False)


class PurchaseSam:
    """A gate's secure access module for purchases."""

    def __init__(
        self,
        master_keys: Iterable[CityMasterKeys],
        terminal_id: bytes,
        *,
        terminal_transaction_number: int = 0,
    ) -> None:
        if len(terminal_id) != pc.TERMINAL_ID_BYTES:
            raise SamError(f"terminal_id is {len(terminal_id)} bytes, not 6")
        if not 0 <= terminal_transaction_number <= TERMINAL_TRANSACTION_NUMBER_MAX:
            raise SamError("terminal_transaction_number is outside 4 bytes")
        self._keys = _by_version(master_keys)
        self._terminal_id = terminal_id
        self._next_ttn = terminal_transaction_number

    def __repr__(self) -> str:
        return f"PurchaseSam(terminal_id={self._terminal_id.hex()}, keys=<hidden>)"

    @property
    def terminal_id(self) -> bytes:
        return self._terminal_id

    @property
    def terminal_transaction_number(self) -> int:
        """The number the next authorized purchase will carry."""
        return self._next_ttn

    def authorize(
        self,
        card_number: bytes,
        init: PurchaseInit,
        amount_fen: int,
        transaction_type: int,
        date: bytes,
        time: bytes,
    ) -> PurchaseSession:
        """MAC1 for the card's INITIALIZE FOR PURCHASE answer; takes the next terminal
        transaction number. `amount_fen` and the type must be what INITIALIZE sent."""
        keys = self._keys_for(init.key_version, init.algorithm)
        if self._next_ttn > TERMINAL_TRANSACTION_NUMBER_MAX:
            raise SamError("the terminal transaction number is exhausted")
        ttn, self._next_ttn = self._next_ttn, self._next_ttn + 1
        data = pc.PurchaseData(amount_fen, transaction_type, self._terminal_id, ttn, date, time)
        dpk = pc.diversify(keys.purchase_master_key, card_number)
        sk = pc.purchase_session_key(dpk, init.card_random, init.offline_counter, ttn)
        mac1 = pc.purse_mac(sk, data.mac1_input())
        return PurchaseSession(card_number, keys.key_version, init.offline_counter, data, mac1, sk)

    def verify_mac2(self, session: PurchaseSession, mac2: bytes) -> bool:
        """Whether the card's MAC2 answers this session (MAC over the amount)."""
        return pc.mac_equal(pc.purse_mac(session.session_key, session.data.mac2_input()), mac2)

    def verify_tac(self, session: PurchaseSession, tac: bytes) -> bool:
        """Whether the card's TAC covers this purchase, with the city's TAC master key."""
        keys = self._keys_for(session.key_version, ALGORITHM_TDES)
        return verify_purchase_tac(keys, session.card_number, session.data, tac)

    def _keys_for(self, key_version: int, algorithm: int) -> CityMasterKeys:
        if algorithm != ALGORITHM_TDES:
            raise SamError(f"algorithm {algorithm:02X} is not supported")
        keys = self._keys.get(key_version)
        if keys is None:
            raise SamError(f"key version {key_version} is not loaded in this module")
        return keys


# --- The issuer host's load side ----------------------------------------------------


class LoadStatus(Enum):
    APPROVED = "approved"  # MAC2 issued; the card has not confirmed yet
    CONFIRMED = "confirmed"  # the card's load TAC verified
    VOIDED = "voided"  # an operator found the load never reached the card


class LoadRefusal(Enum):
    MAC1_INVALID = "mac1_invalid"
    ONLINE_COUNTER_USED = "online_counter_used"
    KEY_VERSION_UNKNOWN = "key_version_unknown"
    CAPACITY = "capacity"


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """What the phone's wallet sends the host: the card's INITIALIZE FOR LOAD answer and
    the inputs of that load."""

    card_number: bytes
    init: LoadInit
    amount_fen: int
    terminal_id: bytes
    date: bytes
    time: bytes

    def load_data(self) -> pc.LoadData:
        return pc.LoadData(
            old_balance_fen=self.init.balance_fen,
            amount_fen=self.amount_fen,
            online_counter=self.init.online_counter,
            terminal_id=self.terminal_id,
            date=self.date,
            time=self.time,
        )


@dataclass(frozen=True, slots=True)
class LoadDecision:
    """The host's answer: MAC2 when approved, else the refusal."""

    mac2: bytes | None
    refusal: LoadRefusal | None

    @property
    def approved(self) -> bool:
        return self.mac2 is not None


@dataclass(slots=True)
class _LoadRecord:
    data: pc.LoadData
    key_version: int
    status: LoadStatus


class LoadHost:
    """The transit issuer host's load authorization.

    Replays: one (card number, online counter) gets at most one live approval. The card's
    online counter moves only when a load is credited, so a second request at the same
    counter is either a replay or a retry after a load that never reached the card; the
    host refuses it (`ONLINE_COUNTER_USED`) until an operator voids the first approval
    (`void`), because only the card's records can tell the two apart."""

    def __init__(self, master_keys: Iterable[CityMasterKeys]) -> None:
        self._keys = _by_version(master_keys)
        self._loads: dict[tuple[bytes, int], _LoadRecord] = {}

    def __repr__(self) -> str:
        return f"LoadHost(loads={len(self._loads)}, keys=<hidden>)"

    def authorize_load(self, request: LoadRequest) -> LoadDecision:
        keys = self._keys.get(request.init.key_version)
        if keys is None or request.init.algorithm != ALGORITHM_TDES:
            return LoadDecision(None, LoadRefusal.KEY_VERSION_UNKNOWN)
        data = request.load_data()
        dlk = pc.diversify(keys.load_master_key, request.card_number)
        sk = pc.load_session_key(dlk, request.init.card_random, request.init.online_counter)
        if not pc.mac_equal(pc.purse_mac(sk, data.mac1_input()), request.init.mac1):
            return LoadDecision(None, LoadRefusal.MAC1_INVALID)
        slot = (request.card_number, request.init.online_counter)
        earlier = self._loads.get(slot)
        if earlier is not None and earlier.status is not LoadStatus.VOIDED:
            return LoadDecision(None, LoadRefusal.ONLINE_COUNTER_USED)
        if earlier is None and len(self._loads) >= LOAD_RECORDS_MAX:
            return LoadDecision(None, LoadRefusal.CAPACITY)
        self._loads[slot] = _LoadRecord(data, keys.key_version, LoadStatus.APPROVED)
        return LoadDecision(pc.purse_mac(sk, data.mac2_input()), None)

    def confirm(self, card_number: bytes, online_counter: int, tac: bytes) -> bool:
        """Mark an approved load credited when the card's TAC over it verifies."""
        record = self._loads.get((card_number, online_counter))
        if record is None or record.status is not LoadStatus.APPROVED:
            return False
        if not verify_load_tac(self._keys[record.key_version], card_number, record.data, tac):
            return False
        record.status = LoadStatus.CONFIRMED
        return True

    def void(self, card_number: bytes, online_counter: int) -> bool:
        """An operator's decision that an approved load never reached the card."""
        record = self._loads.get((card_number, online_counter))
        if record is None or record.status is not LoadStatus.APPROVED:
            return False
        record.status = LoadStatus.VOIDED
        return True

    def status(self, card_number: bytes, online_counter: int) -> LoadStatus | None:
        record = self._loads.get((card_number, online_counter))
        return None if record is None else record.status
