"""Transit cards in the platform's books: issuance, online loads, moves between phones,
closing, and each card's shadow balance.

The card's balance lives on the card; the platform keeps its own view of it, the shadow
balance: loads whose money is in the city's float, less the fares of every tap record
accepted for the card, less what was refunded at closing. Clearing
(`milletpay.transit.clearing`) adds the fares and compares the view with the card.

Every movement of money is a ledger transfer written in one transaction with the rows
that explain it; the wallet's legs go through `WalletService.pay_merchant_in` (wallet →
a transit account, a balance payment) and `receive_refund_in` (back to the wallet), with
wallet idempotency keys derived from the caller's key, so a retry never moves money
twice. This module never writes a purse: the phone's applet is personalized by the caller
with `CityMasterKeys.card_keys(card_number)` and credited only by its own CREDIT FOR LOAD.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.errors import MilletError
from milletpay.core.ids import IdGenerator, id_to_bytes
from milletpay.ledger import (
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    Transfer,
)
from milletpay.ledger.engine import LedgerTransaction
from milletpay.store.engine import read_transaction
from milletpay.store.sql import Sql
from milletpay.transit import purse_crypto as pc
from milletpay.transit.accounts import (
    TransitTransferCode,
    city_accounts,
    deposits_account_id,
    derive_u128,
    float_account_id,
    issuance_fees_account_id,
)
from milletpay.transit.fares import china_month, fare_table
from milletpay.transit.purse import BALANCE_MAX_FEN
from milletpay.transit.sam import (
    CityMasterKeys,
    LoadHost,
    LoadRequest,
    verify_load_tac,
)
from milletpay.wallet.accounts import LEDGER_CNY
from milletpay.wallet.errors import IdempotencyKeyReused
from milletpay.wallet.service import OperationStatus, WalletService, check_idempotency_key

DEVICE_ID_CHARS_MAX: Final = 64
#: Tries at a fresh card number before giving up (16 random digits: a clash is rare).
CARD_NUMBER_TRIES_MAX: Final = 8
#: The most loads `unconfirmed_loads` lists at once.
UNCONFIRMED_LIST_MAX: Final = 500


@dataclass(frozen=True, slots=True)
class CardRule:
    """What the fare table does not say about a city's card: the prefix of its numbers
    and how it moves between phones."""

    card_prefix: str  # the first 4 of the card number's 20 digits
    keeps_number_on_move: bool  # else reissued with a new number, the old balance refunded
    moves_per_year_max: int  # moves in a China calendar year, per user and city


#: FACT: Shenzhen Tong moves once a calendar year with a new number and the old balance
#: refunded; Shanghai keeps number and balance (/work/shared/REFERENCES.md, "Transit
#: cards"). CONFIG: every prefix, and every other city's rule and limit.
CARD_RULES: Mapping[str, CardRule] = MappingProxyType(
    {
        "shanghai": CardRule("3100", keeps_number_on_move=True, moves_per_year_max=4),
        "shenzhen": CardRule("5180", keeps_number_on_move=False, moves_per_year_max=1),
        "beijing": CardRule("1000", keeps_number_on_move=True, moves_per_year_max=4),
        "guangdong": CardRule("5100", keeps_number_on_move=True, moves_per_year_max=4),
        "suzhou": CardRule("2150", keeps_number_on_move=True, moves_per_year_max=4),
        "wuhan": CardRule("4300", keeps_number_on_move=True, moves_per_year_max=4),
    }
)


class TransitCardError(MilletError):
    code = "transit_card_error"


class TransitCardNotFound(TransitCardError):
    """No such card, or not the caller's (another user's card is not found either)."""

    code = "transit_card_not_found"


class TransitCardNotActive(TransitCardError):
    code = "transit_card_not_active"


class TransitRequestInvalid(TransitCardError):
    code = "transit_request_invalid"


class TransitPaymentDeclined(TransitCardError):
    """The wallet declined the issuance payment; nothing was recorded."""

    code = "transit_payment_declined"

    def __init__(self, message: str, *, decline_code: str) -> None:
        super().__init__(message)
        self.decline_code = decline_code


class CardMoveRefused(TransitCardError):
    code = "transit_card_move_refused"


class LoadNotFound(TransitCardError):
    code = "transit_load_not_found"


class LoadTacInvalid(TransitCardError):
    code = "transit_load_tac_invalid"


class LoadReachedCard(TransitCardError):
    """A void asked for a load the card's online counter shows it has credited."""

    code = "transit_load_reached_card"


class CardStatus(StrEnum):
    ACTIVE = "active"
    REPLACED = "replaced"  # reissued with a new number on a move
    CLOSED = "closed"


class LoadStatus(StrEnum):
    FUNDED = "funded"  # money in the float, MAC2 not yet issued
    AUTHORIZED = "authorized"  # MAC2 issued; the card has not confirmed with its TAC
    CONFIRMED = "confirmed"  # the card's load TAC verified
    VOIDED = "voided"  # never reached the card; money back in the wallet
    REFUSED = "refused"  # the issuer host refused; money back in the wallet
    DECLINED = "declined"  # the wallet declined; no money moved


#: Loads whose money is (still) in the float.
LIVE_LOADS: Final = (LoadStatus.FUNDED, LoadStatus.AUTHORIZED, LoadStatus.CONFIRMED)


@dataclass(frozen=True, slots=True)
class ShadowBalance:
    """The platform's view of a card's balance, in fen."""

    loaded_fen: int  # loads whose money is in the float (and overdrafts covered at closing)
    spent_fen: int  # fares of every accepted or held tap record
    cleared_fen: int  # of those, paid to the operators
    refunded_fen: int  # paid back to the wallet at closing or reissue

    @property
    def balance_fen(self) -> int:
        return self.loaded_fen - self.spent_fen - self.refunded_fen

    @property
    def pending_fen(self) -> int:
        """Fares accepted but not yet cleared: still in the float."""
        return self.spent_fen - self.cleared_fen


@dataclass(frozen=True, slots=True)
class TransitCard:
    card_number: bytes
    city: str
    user_id: int
    device_id: str
    status: CardStatus
    key_index: int  # with the key version: which city master keys personalize the purse
    key_version: int
    deposit_fen: int
    issuance_fee_fen: int
    shadow: ShadowBalance
    replaced_by: bytes | None = None


@dataclass(frozen=True, slots=True)
class TopUp:
    """A load as the platform recorded it; `mac2` goes to the card's CREDIT FOR LOAD."""

    load_id: int
    card_number: bytes
    online_counter: int
    amount_fen: int
    status: LoadStatus
    mac2: bytes | None = None
    decline_code: str | None = None  # the wallet's, when declined
    refusal: str | None = None  # the host's, when refused


@dataclass(frozen=True, slots=True)
class ClosedCard:
    card: TransitCard
    balance_refunded_fen: int
    deposit_refunded_fen: int
    overdraft_covered_fen: int  # taken from the deposit for a card left overdrawn


_CARD_COLUMNS = (
    "card_number, city, user_id, device_id, status, key_index, key_version, deposit_fen, "
    "issuance_fee_fen, loaded_fen, spent_fen, cleared_fen, refunded_fen, covered_fen, "
    "replaced_by"
)
_LOAD_COLUMNS = (
    "id, card_number, user_id, idempotency_key, amount_fen, online_counter, old_balance_fen, "
    "terminal_id, load_date, load_time, key_version, status, mac2, refusal"
)
_CARD = Sql(f"SELECT {_CARD_COLUMNS} FROM transit_cards WHERE card_number = :card")
_CARD_LOCKED = Sql(
    f"SELECT {_CARD_COLUMNS} FROM transit_cards WHERE card_number = :card FOR UPDATE"
)
_CARDS_OF_USER = Sql(
    f"SELECT {_CARD_COLUMNS} FROM transit_cards WHERE user_id = :user ORDER BY issued_at"
)
_ISSUED = Sql(
    f"SELECT {_CARD_COLUMNS} FROM transit_cards WHERE user_id = :user AND issue_key = :key"
)
_INSERT_CARD = Sql(
    "INSERT INTO transit_cards (card_number, city, user_id, device_id, status, key_index, "
    "key_version, deposit_fen, issuance_fee_fen, loaded_fen, spent_fen, cleared_fen, "
    "refunded_fen, covered_fen, issue_key, replaces, replaced_by, issued_at, closed_at) "
    "VALUES (:card, :city, :user, :device, :status, :key_index, :key_version, :deposit, "
    ":fee, 0, 0, 0, 0, 0, :issue_key, :replaces, NULL, :now, NULL)"
)
_ADD_LOADED = Sql(
    "UPDATE transit_cards SET loaded_fen = loaded_fen + :amount WHERE card_number = :card"
)
_LOAD_BY_KEY = Sql(
    f"SELECT {_LOAD_COLUMNS} FROM transit_loads WHERE user_id = :user AND idempotency_key = :key"
)
_LOAD_AT_COUNTER = Sql(
    f"SELECT {_LOAD_COLUMNS} FROM transit_loads WHERE card_number = :card "
    "AND online_counter = :counter AND status IN ('funded', 'authorized', 'confirmed')"
)
_LOAD_LOCKED = Sql(f"SELECT {_LOAD_COLUMNS} FROM transit_loads WHERE id = :id FOR UPDATE")
_INSERT_LOAD = Sql(
    "INSERT INTO transit_loads (id, card_number, user_id, idempotency_key, amount_fen, "
    "online_counter, old_balance_fen, terminal_id, load_date, load_time, key_version, status, "
    "mac2, refusal, wallet_operation_id, created_at, resolved_at) VALUES (:id, :card, :user, "
    ":key, :amount, :counter, :old_balance, :terminal, :date, :time, :key_version, :status, "
    "NULL, :refusal, :operation, :now, NULL)"
)
_RESOLVE_LOAD = Sql(
    "UPDATE transit_loads SET status = :status, mac2 = :mac2, refusal = :refusal, "
    "resolved_at = :now WHERE id = :id"
)
_UNCONFIRMED = Sql(
    f"SELECT {_LOAD_COLUMNS} FROM transit_loads WHERE status IN ('funded', 'authorized') "
    "AND created_at <= :before ORDER BY created_at LIMIT :limit"
)
_MOVES_IN_YEAR = Sql(
    "SELECT COUNT(*) FROM transit_card_moves WHERE user_id = :user AND city = :city "
    "AND year = :year"
)
_INSERT_MOVE = Sql(
    "INSERT INTO transit_card_moves (id, user_id, city, year, card_number, new_card_number, "
    "from_device_id, to_device_id, moved_at) VALUES (:id, :user, :city, :year, :card, "
    ":new_card, :from_device, :to_device, :now)"
)
_SET_DEVICE = Sql("UPDATE transit_cards SET device_id = :device WHERE card_number = :card")
_REPLACE = Sql(
    "UPDATE transit_cards SET status = 'replaced', replaced_by = :new_card, "
    "refunded_fen = refunded_fen + :refunded, closed_at = :now WHERE card_number = :card"
)
_CLOSE = Sql(
    "UPDATE transit_cards SET status = 'closed', refunded_fen = refunded_fen + :refunded, "
    "covered_fen = :covered, loaded_fen = loaded_fen + :covered, closed_at = :now "
    "WHERE card_number = :card"
)


class TransitCards:
    """The platform's side of the cities' transit cards on users' phones.

    `city_keys` gives each city's master keys (one set per key version; new cards get
    the last one): the issuer host that answers load MAC2s is built from them, and load
    TACs are verified with them."""

    def __init__(
        self,
        ledger: Ledger,
        wallet: WalletService,
        clock: Clock,
        city_keys: Mapping[str, Sequence[CityMasterKeys]],
        *,
        random_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        for city in city_keys:
            fare_table().city(city)  # FareError for a city the platform does not carry
            if city not in CARD_RULES:
                raise TransitRequestInvalid(f"no card rule for {city}")
        self._ledger = ledger
        self._wallet = wallet
        self._clock = clock
        self._keys = {city: {k.key_version: k for k in keys} for city, keys in city_keys.items()}
        self._issue_keys = {city: keys[-1] for city, keys in city_keys.items() if keys}
        self._hosts = {city: LoadHost(keys) for city, keys in city_keys.items()}
        self._random = random_source
        self._ids = IdGenerator(clock)

    # -- reading ------------------------------------------------------------------

    def card(self, user_id: int, card_number: bytes) -> TransitCard:
        """The user's card; `TransitCardNotFound` for another user's."""
        with read_transaction(self._ledger.engine) as conn:
            row = _CARD.run(conn, card=card_number).first()
        return _owned(row, user_id, card_number)

    def cards(self, user_id: int) -> list[TransitCard]:
        """The user's cards, oldest first, closed and replaced ones included."""
        with read_transaction(self._ledger.engine) as conn:
            rows = _CARDS_OF_USER.run(conn, user=id_to_bytes(user_id)).all()
        return [_card(row) for row in rows]

    def unconfirmed_loads(self, older_than_s: int = 0) -> list[TopUp]:
        """Loads paid into a float whose card has not confirmed the credit with its TAC,
        older than `older_than_s`: each is confirmed later, or voided."""
        before = self._clock.now_ns() - older_than_s * NS_PER_S
        with read_transaction(self._ledger.engine) as conn:
            rows = _UNCONFIRMED.run(conn, before=before, limit=UNCONFIRMED_LIST_MAX).all()
        return [_top_up(row) for row in rows]

    # -- issuance -----------------------------------------------------------------

    def issue(self, user_id: int, city: str, device_id: str, idempotency_key: str) -> TransitCard:
        """A new card of `city` in the user's phone `device_id`. The city's deposit and
        issuance fee are paid from the wallet balance, into the deposits account (the fee
        moves on to the fees account): money apart from what the card holds. The caller
        personalizes the purse with `CityMasterKeys.card_keys(card.card_number)` of the
        card's key version, balance 0. A retry with the key returns the same card;
        `TransitPaymentDeclined` if the wallet declines (nothing is recorded)."""
        check_idempotency_key(idempotency_key)
        _check_device(device_id)
        spec = fare_table().city(city)
        keys = self._issue_keys_of(city)
        self._wallet.open_wallet(user_id)  # UserNotFound
        user = id_to_bytes(user_id)
        with self._ledger.transaction() as tx:
            conn = tx.connection
            earlier = _ISSUED.run(conn, user=user, key=idempotency_key).first()
            if earlier is not None:
                if (earlier.city, earlier.device_id) != (city, device_id):
                    raise IdempotencyKeyReused(
                        f"idempotency key {idempotency_key!r} issued a {earlier.city} card "
                        f"to another phone; a different card needs a new key"
                    )
                return _card(earlier)
            card_number = self._fresh_card_number(conn, city)
            _create_accounts(tx, city)
            charge_fen = spec.deposit_fen + spec.issuance_fee_fen
            if charge_fen:
                self._pay(
                    tx,
                    user_id,
                    deposits_account_id(city),
                    charge_fen,
                    "issue",
                    user,
                    idempotency_key,
                )
            if spec.issuance_fee_fen:
                fee = Transfer(
                    derive_u128(b"transfer", b"issuance-fee", card_number),
                    deposits_account_id(city),
                    issuance_fees_account_id(city),
                    spec.issuance_fee_fen,
                    LEDGER_CNY,
                    TransitTransferCode.ISSUANCE_FEE,
                    user_data_128=user_id,
                )
                _send(tx, [fee])
            self._insert_card(
                conn, card_number, city, user_id, device_id, keys, spec.deposit_fen,
                spec.issuance_fee_fen, idempotency_key, None,
            )  # fmt: skip
            row = _CARD.run(conn, card=card_number).first()
        return _card(row)

    # -- loads ----------------------------------------------------------------------

    def top_up(
        self,
        user_id: int,
        card_number: bytes,
        amount_fen: int,
        request: LoadRequest,
        idempotency_key: str,
    ) -> TopUp:
        """Load `amount_fen` onto the card from the wallet balance. `request` carries the
        card's INITIALIZE FOR LOAD answer. First the money moves wallet → the city's float
        in one transaction with the load's record (`funded`); then the issuer host checks
        the card's MAC1 and answers MAC2 (`authorized`; the caller sends it in CREDIT FOR
        LOAD, then `confirm_load` with the card's TAC). A host refusal gives the money
        back (`refused`); a wallet decline moves nothing (`declined`). A retry with the key
        answers the first outcome and never moves money twice."""
        check_idempotency_key(idempotency_key)
        _check_load(card_number, amount_fen, request)
        funded = self._fund(user_id, card_number, amount_fen, request, idempotency_key)
        if funded.status is not LoadStatus.FUNDED:
            return funded
        city = self.card(user_id, card_number).city
        decision = self._hosts[city].authorize_load(request)
        with self._ledger.transaction() as tx:
            row = _LOAD_LOCKED.run(tx.connection, id=id_to_bytes(funded.load_id)).first()
            if row.status != LoadStatus.FUNDED:  # a concurrent retry finished it
                return _top_up(row)
            if decision.approved:
                self._resolve(tx, row, LoadStatus.AUTHORIZED, mac2=decision.mac2)
            else:
                assert decision.refusal is not None
                self._give_back(tx, row, city, "refused")
                self._resolve(tx, row, LoadStatus.REFUSED, refusal=decision.refusal.value)
            return _top_up(_LOAD_LOCKED.run(tx.connection, id=row.id).first())

    def top_up_from_bank(
        self,
        user_id: int,
        card_number: bytes,
        amount_fen: int,
        request: LoadRequest,
        linked_account_id: int,
        idempotency_key: str,
    ) -> TopUp:
        """`top_up` paid by the user's linked bank account instead of the balance: the
        wallet first takes the amount from the bank (a wallet top-up, with its limits),
        then the load is paid from the balance as `top_up` pays it. A bank that declines
        moves nothing (`declined`, with the wallet's code). The same key again answers
        the first outcome of each step: no money moves twice."""
        check_idempotency_key(idempotency_key)
        _check_load(card_number, amount_fen, request)
        self.card(user_id, card_number)  # the user's card, or an error before any money
        topped = self._wallet.top_up(
            user_id, linked_account_id, amount_fen, _bank_key(idempotency_key)
        )
        if topped.decline_code is not None:
            return TopUp(
                0, card_number, request.init.online_counter, amount_fen,
                LoadStatus.DECLINED, decline_code=topped.decline_code,
            )  # fmt: skip
        return self.top_up(user_id, card_number, amount_fen, request, idempotency_key)

    def confirm_load(
        self, user_id: int, card_number: bytes, online_counter: int, tac: bytes
    ) -> TopUp:
        """The card credited the load: its TAC (CREDIT FOR LOAD's answer) verifies with
        the city's TAC key. `LoadTacInvalid` if not (nothing changes)."""
        card = self.card(user_id, card_number)
        with self._ledger.transaction() as tx:
            row = self._live_load(tx, card, online_counter)
            if row.status == LoadStatus.CONFIRMED:
                return _top_up(row)
            keys = self._keys[card.city][row.key_version]
            if row.status != LoadStatus.AUTHORIZED or not verify_load_tac(
                keys, card_number, _load_data(row), tac
            ):
                raise LoadTacInvalid(f"the TAC does not confirm the load at {online_counter}")
            self._hosts[card.city].confirm(card_number, online_counter, tac)
            self._resolve(tx, row, LoadStatus.CONFIRMED, mac2=row.mac2)
            return _top_up(_LOAD_LOCKED.run(tx.connection, id=row.id).first())

    def void_unconfirmed_load(
        self, user_id: int, card_number: bytes, online_counter: int, card_online_counter: int
    ) -> TopUp:
        """Give back the money of a load that never reached the card. The evidence is the
        card's own online counter, read afresh (INITIALIZE FOR LOAD answers it): a credit
        moves it past the load's counter, so a card still at that counter was not
        credited; a card past it was, and the load is confirmed instead (`LoadReachedCard`).
        The host voids the approval, so the card may be loaded again at that counter."""
        card = self.card(user_id, card_number)
        with self._ledger.transaction() as tx:
            row = self._live_load(tx, card, online_counter)
            if card_online_counter < online_counter:
                raise TransitRequestInvalid(
                    f"the card cannot be at online counter {card_online_counter}: a load at "
                    f"{online_counter} was initialized on it"
                )
            if row.status == LoadStatus.CONFIRMED or card_online_counter > online_counter:
                raise LoadReachedCard(
                    f"the card is at online counter {card_online_counter}: the load at "
                    f"{online_counter} reached it"
                )
            self._give_back(tx, row, card.city, "void")
            self._resolve(tx, row, LoadStatus.VOIDED, mac2=row.mac2)
            self._hosts[card.city].void(card_number, online_counter)
            return _top_up(_LOAD_LOCKED.run(tx.connection, id=row.id).first())

    # -- moves and closing ------------------------------------------------------------

    def move_to_phone(self, user_id: int, card_number: bytes, new_device_id: str) -> TransitCard:
        """Move the card to the user's phone `new_device_id` under the city's rule: keep
        number and balance, or reissue with a new number (deposit carried over, the old
        card's shadow balance refunded to the wallet); at most the rule's moves a year.
        Asking again for a move already made answers the card where it is."""
        _check_device(new_device_id)
        user = id_to_bytes(user_id)
        with self._ledger.transaction() as tx:
            conn = tx.connection
            card = _owned(_CARD_LOCKED.run(conn, card=card_number).first(), user_id, card_number)
            if card.status is CardStatus.REPLACED and card.replaced_by is not None:
                successor = _card(_CARD.run(conn, card=card.replaced_by).first())
                if successor.device_id == new_device_id:
                    return successor
            _require_active(card)
            if card.device_id == new_device_id:
                return card
            rule = CARD_RULES[card.city]
            year = china_month(self._clock.now_ns()) // 100
            moves = _MOVES_IN_YEAR.run(conn, user=user, city=card.city, year=year).first()[0]
            if moves >= rule.moves_per_year_max:
                raise CardMoveRefused(
                    f"a {card.city} card moves at most {rule.moves_per_year_max} times a "
                    f"year; {moves} this year"
                )
            new_number = card_number
            if not rule.keeps_number_on_move:
                new_number = self._reissue(tx, card, new_device_id)
            else:
                _SET_DEVICE.run(conn, device=new_device_id, card=card_number)
            _INSERT_MOVE.run(
                conn, id=id_to_bytes(self._ids.next_id()), user=user, city=card.city,
                year=year, card=card_number, new_card=new_number, from_device=card.device_id,
                to_device=new_device_id, now=self._clock.now_ns(),
            )  # fmt: skip
            return _card(_CARD.run(conn, card=new_number).first())

    def close(self, user_id: int, card_number: bytes) -> ClosedCard:
        """Close the card (the phone deletes its applet): the shadow balance and the
        deposit go back to the wallet. A card left overdrawn pays its overdraft from the
        deposit first. Closing a closed card answers the first closing. Tap records of the
        card uploaded later are held, not cleared."""
        with self._ledger.transaction() as tx:
            conn = tx.connection
            card = _owned(_CARD_LOCKED.run(conn, card=card_number).first(), user_id, card_number)
            if card.status is not CardStatus.CLOSED:
                _require_active(card)
                self._close(tx, card)
            row = _CARD.run(conn, card=card_number).first()
        closed = _card(row)
        return ClosedCard(
            closed,
            balance_refunded_fen=row.refunded_fen,
            deposit_refunded_fen=row.deposit_fen - row.covered_fen,
            overdraft_covered_fen=row.covered_fen,
        )

    # -- the steps ------------------------------------------------------------------

    def _fund(
        self,
        user_id: int,
        card_number: bytes,
        amount_fen: int,
        request: LoadRequest,
        idempotency_key: str,
    ) -> TopUp:
        """The load's record and its money, wallet → float, in one transaction; or the
        record of an earlier attempt under the key."""
        user = id_to_bytes(user_id)
        with self._ledger.transaction() as tx:
            conn = tx.connection
            earlier = _LOAD_BY_KEY.run(conn, user=user, key=idempotency_key).first()
            if earlier is not None:
                same = (earlier.card_number, earlier.amount_fen, earlier.online_counter) == (
                    card_number,
                    amount_fen,
                    request.init.online_counter,
                )
                if not same:
                    raise IdempotencyKeyReused(
                        f"idempotency key {idempotency_key!r} was used for another load"
                    )
                return _top_up(earlier)
            card = _owned(_CARD_LOCKED.run(conn, card=card_number).first(), user_id, card_number)
            _require_active(card)
            load_id = self._ids.next_id()
            status, refusal, operation = LoadStatus.FUNDED, None, None
            live = _LOAD_AT_COUNTER.run(
                conn, card=card_number, counter=request.init.online_counter
            ).first()
            if live is not None:
                status, refusal = LoadStatus.REFUSED, "online_counter_used"
            else:
                outcome = self._wallet.pay_merchant_in(
                    tx, user_id, float_account_id(card.city), amount_fen,
                    _wallet_key("load", user, idempotency_key.encode()),
                )  # fmt: skip
                operation = id_to_bytes(outcome.operation_id)
                if outcome.status is not OperationStatus.COMPLETED:
                    status = LoadStatus.DECLINED
                    refusal = outcome.decline_code
                else:
                    _ADD_LOADED.run(conn, amount=amount_fen, card=card_number)
            _INSERT_LOAD.run(
                conn, id=id_to_bytes(load_id), card=card_number, user=user, key=idempotency_key,
                amount=amount_fen, counter=request.init.online_counter,
                old_balance=request.init.balance_fen, terminal=request.terminal_id,
                date=request.date, time=request.time, key_version=request.init.key_version,
                status=status.value, refusal=refusal, operation=operation,
                now=self._clock.now_ns(),
            )  # fmt: skip
            return _top_up(_LOAD_LOCKED.run(conn, id=id_to_bytes(load_id)).first())

    def _live_load(self, tx: LedgerTransaction, card: TransitCard, online_counter: int) -> Any:
        row = _LOAD_AT_COUNTER.run(
            tx.connection, card=card.card_number, counter=online_counter
        ).first()
        if row is None:
            raise LoadNotFound(f"no load in flight at online counter {online_counter}")
        return _LOAD_LOCKED.run(tx.connection, id=row.id).first()

    def _give_back(self, tx: LedgerTransaction, load: Any, city: str, why: str) -> None:
        """The load's money, float → wallet, and out of the card's shadow balance."""
        user_id = int.from_bytes(load.user_id, "big")
        key = _wallet_key(why, load.user_id, load.idempotency_key.encode())
        self._refund(tx, user_id, float_account_id(city), load.amount_fen, key)
        _ADD_LOADED.run(tx.connection, amount=-load.amount_fen, card=load.card_number)

    def _resolve(
        self,
        tx: LedgerTransaction,
        load: Any,
        status: LoadStatus,
        *,
        mac2: bytes | None = None,
        refusal: str | None = None,
    ) -> None:
        _RESOLVE_LOAD.run(
            tx.connection, status=status.value, mac2=mac2, refusal=refusal,
            now=self._clock.now_ns(), id=load.id,
        )  # fmt: skip

    def _reissue(self, tx: LedgerTransaction, card: TransitCard, device_id: str) -> bytes:
        """A new card for the phone, the deposit carried over; the old card replaced and
        its shadow balance refunded to the wallet."""
        conn = tx.connection
        new_number = self._fresh_card_number(conn, card.city)
        refund_fen = max(card.shadow.balance_fen, 0)
        if refund_fen:
            key = _wallet_key("reissue", card.card_number)
            self._refund(tx, card.user_id, float_account_id(card.city), refund_fen, key)
        self._insert_card(
            conn, new_number, card.city, card.user_id, device_id,
            self._issue_keys_of(card.city), card.deposit_fen, card.issuance_fee_fen,
            f"reissue:{card.card_number.hex()}", card.card_number,
        )  # fmt: skip
        _REPLACE.run(
            conn, new_card=new_number, refunded=refund_fen, now=self._clock.now_ns(),
            card=card.card_number,
        )  # fmt: skip
        return new_number

    def _close(self, tx: LedgerTransaction, card: TransitCard) -> None:
        balance_fen = card.shadow.balance_fen
        refund_fen = max(balance_fen, 0)
        covered_fen = min(max(-balance_fen, 0), card.deposit_fen)
        city, user = card.city, id_to_bytes(card.user_id)
        if covered_fen:
            cover = Transfer(
                derive_u128(b"transfer", b"overdraft-covered", card.card_number),
                deposits_account_id(city),
                float_account_id(city),
                covered_fen,
                LEDGER_CNY,
                TransitTransferCode.OVERDRAFT_COVERED,
                user_data_128=card.user_id,
            )
            _send(tx, [cover])
        if refund_fen:
            key = _wallet_key("close-balance", user, card.card_number)
            self._refund(tx, card.user_id, float_account_id(city), refund_fen, key)
        if card.deposit_fen - covered_fen:
            key = _wallet_key("close-deposit", user, card.card_number)
            amount = card.deposit_fen - covered_fen
            self._refund(tx, card.user_id, deposits_account_id(city), amount, key)
        _CLOSE.run(
            tx.connection, refunded=refund_fen, covered=covered_fen, now=self._clock.now_ns(),
            card=card.card_number,
        )  # fmt: skip

    def _pay(
        self,
        tx: LedgerTransaction,
        user_id: int,
        account_id: int,
        amount_fen: int,
        *key_parts: bytes | str,
    ) -> None:
        parts = [p.encode() if isinstance(p, str) else p for p in key_parts]
        outcome = self._wallet.pay_merchant_in(
            tx, user_id, account_id, amount_fen, _wallet_key(*parts)
        )
        if outcome.status is not OperationStatus.COMPLETED:
            assert outcome.decline_code is not None
            raise TransitPaymentDeclined(
                f"the wallet declined {amount_fen} fen: {outcome.decline_code}",
                decline_code=outcome.decline_code,
            )

    def _refund(
        self, tx: LedgerTransaction, user_id: int, account_id: int, amount_fen: int, key: str
    ) -> None:
        outcome = self._wallet.receive_refund_in(tx, user_id, account_id, amount_fen, key)
        # Transit accounts owe what they give back: a refund they cannot fund is a bug.
        assert outcome.status is OperationStatus.COMPLETED, outcome

    def _insert_card(
        self, conn: Any, card_number: bytes, city: str, user_id: int, device_id: str,
        keys: CityMasterKeys, deposit_fen: int, fee_fen: int, issue_key: str,
        replaces: bytes | None,
    ) -> None:  # fmt: skip
        _INSERT_CARD.run(
            conn, card=card_number, city=city, user=id_to_bytes(user_id), device=device_id,
            status=CardStatus.ACTIVE.value, key_index=keys.key_index,
            key_version=keys.key_version, deposit=deposit_fen, fee=fee_fen,
            issue_key=issue_key, replaces=replaces, now=self._clock.now_ns(),
        )  # fmt: skip

    def _fresh_card_number(self, conn: Any, city: str) -> bytes:
        prefix = CARD_RULES[city].card_prefix
        for _ in range(CARD_NUMBER_TRIES_MAX):
            digits = int.from_bytes(self._random(8), "big") % 10**16
            number = bytes.fromhex(f"{prefix}{digits:016d}")
            if _CARD.run(conn, card=number).first() is None:
                return number
        raise AssertionError("no free card number after several tries: the source is broken")

    def _issue_keys_of(self, city: str) -> CityMasterKeys:
        if city not in self._issue_keys:
            raise TransitRequestInvalid(f"no master keys for {city}")
        return self._issue_keys[city]


# -- pure helpers -------------------------------------------------------------------


def _wallet_key(*parts: bytes | str) -> str:
    """A wallet idempotency key derived from a transit operation: 40 visible characters,
    the same on every retry, and never one a caller of the wallet picks by chance."""
    raw = [p.encode() if isinstance(p, str) else p for p in parts]
    return f"transit-{derive_u128(b'wallet-key', *raw):032x}"


def _create_accounts(tx: LedgerTransaction, city: str) -> None:
    accounts = city_accounts(city)
    for result, account in zip(tx.create_accounts(accounts), accounts, strict=True):
        assert result in (CreateAccountResult.OK, CreateAccountResult.EXISTS), (account, result)


def _send(tx: LedgerTransaction, transfers: list[Transfer]) -> None:
    for result, transfer in zip(tx.create_transfers(transfers), transfers, strict=True):
        assert result in (CreateTransferResult.OK, CreateTransferResult.EXISTS), (
            f"transfer {transfer.id:032x}: {result.value}"
        )


def _check_device(device_id: object) -> None:
    if not (
        isinstance(device_id, str)
        and 0 < len(device_id) <= DEVICE_ID_CHARS_MAX
        and all("!" <= c <= "~" for c in device_id)
    ):
        raise TransitRequestInvalid(
            f"device_id is 1 to {DEVICE_ID_CHARS_MAX} visible ASCII characters"
        )


def _bank_key(idempotency_key: str) -> str:
    """The wallet top-up's key of a load paid by the bank: derived, within 64 characters."""
    return "transit-bank:" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def _check_load(card_number: bytes, amount_fen: int, request: LoadRequest) -> None:
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool):
        raise TransitRequestInvalid("amount_fen must be an int of fen")
    if not 0 < amount_fen <= BALANCE_MAX_FEN:
        raise TransitRequestInvalid(f"amount_fen must be between 1 and {BALANCE_MAX_FEN}")
    if request.card_number != card_number:
        raise TransitRequestInvalid("the load request is for another card")
    if request.amount_fen != amount_fen:
        raise TransitRequestInvalid(
            f"the load request is for {request.amount_fen} fen, not {amount_fen}"
        )


def _require_active(card: TransitCard) -> None:
    if card.status is not CardStatus.ACTIVE:
        raise TransitCardNotActive(f"card {card.card_number.hex()} is {card.status}")


def _owned(row: Any, user_id: int, card_number: bytes) -> TransitCard:
    if row is None or row.user_id != id_to_bytes(user_id):
        raise TransitCardNotFound(f"the user has no card {card_number.hex()}")
    return _card(row)


def _card(row: Any) -> TransitCard:
    return TransitCard(
        card_number=bytes(row.card_number),
        city=row.city,
        user_id=int.from_bytes(row.user_id, "big"),
        device_id=row.device_id,
        status=CardStatus(row.status),
        key_index=row.key_index,
        key_version=row.key_version,
        deposit_fen=row.deposit_fen,
        issuance_fee_fen=row.issuance_fee_fen,
        shadow=ShadowBalance(row.loaded_fen, row.spent_fen, row.cleared_fen, row.refunded_fen),
        replaced_by=bytes(row.replaced_by) if row.replaced_by is not None else None,
    )


def _top_up(row: Any) -> TopUp:
    status = LoadStatus(row.status)
    return TopUp(
        load_id=int.from_bytes(row.id, "big"),
        card_number=bytes(row.card_number),
        online_counter=row.online_counter,
        amount_fen=row.amount_fen,
        status=status,
        mac2=bytes(row.mac2) if row.mac2 is not None else None,
        decline_code=row.refusal if status is LoadStatus.DECLINED else None,
        refusal=row.refusal if status is LoadStatus.REFUSED else None,
    )


def _load_data(row: Any) -> pc.LoadData:
    return pc.LoadData(
        old_balance_fen=row.old_balance_fen,
        amount_fen=row.amount_fen,
        online_counter=row.online_counter,
        terminal_id=bytes(row.terminal_id),
        date=bytes(row.load_date),
        time=bytes(row.load_time),
    )
