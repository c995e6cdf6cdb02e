"""Payment intents: a merchant asks to be paid, the payer's wallet confirms, the money
moves in the ledger, and the merchant captures or cancels.

Statuses (Stripe's, so merchants know them): `requires_confirmation` → `succeeded`
(automatic capture), or `requires_capture` (manual capture: the money is held) →
`succeeded` (captured, in full or in part) or `canceled` (released); `canceled` from
`requires_confirmation` too (by the merchant, or when the intent expires); `failed`
after `CONFIRM_ATTEMPTS_MAX` declined confirmations (one decline leaves the intent
waiting: the payer may top up and try again). `processing` is for funding that settles
later (a card through the network); the wallet balance and coins never need it.

The payer chooses the funding source when confirming (`Funding`); its side of the money
is a `FundingSource` (`funding.py`): the wallet balance, or coins at a digital-goods
merchant. A tokenized bank card (`Funding.CARD`) is paid, captured, canceled and refunded
through the card network by `card_funding.py`, never here. Every transition that moves
money is one ledger transaction with the intent's row:
- confirm, automatic: the source pays the merchant (the wallet's balance payment,
  `WalletService.pay_merchant_in`, or coins retired and their CNY value from coin sales,
  `CoinService.pay_merchant_in`, each with its limits), then merchant → fee revenue
  (the merchant discount at its MCC's rate, `fees.py`);
- confirm, manual: a hold on the source (wallet → merchant, or purse → coins issued),
  with a ledger timeout past the capture window (`CAPTURE_WINDOW_S`) as a backstop;
- capture: the hold posted for the amount captured (the rest released), and the fee;
- cancel of a held intent, or the sweep after its capture window: the hold voided;
- refund: merchant → the source the payment came from (coins come back as coins).
Every transfer id is derived from the intent (and the confirmation attempt), so a retry
never moves money twice. Events for the merchant's webhooks are written in the same
transaction, through an `EventSink` (the outbox).

The payer proves which intent they pay with its client secret, which the merchant's app
hands to the wallet; it is derived from the intent id under a key-ring key, so the
platform can show it again to the merchant and never stores it.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import sqlalchemy as sa

from milletpay.checkout.codes import PaymentCodes
from milletpay.checkout.errors import (
    FundingNotAvailable,
    MerchantNotActive,
    MerchantOrderReused,
    PaymentIntentConflict,
    PaymentIntentInvalid,
    PaymentIntentNotFound,
)
from milletpay.checkout.fees import fee_fen
from milletpay.checkout.funding import (
    CoinFunding,
    Funding,
    FundingSource,
    Paid,
    WalletFunding,
)
from milletpay.checkout.funding import intent_transfer_id as _transfer_id
from milletpay.checkout.merchants import Merchant, MerchantService, MerchantStatus
from milletpay.checkout.tables import payment_intents, refunds
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing
from milletpay.ledger import (
    Account,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    Transfer,
)
from milletpay.ledger.committer import Committer, DirectCommitter
from milletpay.ledger.engine import LedgerTransaction
from milletpay.store.sql import Sql
from milletpay.wallet import WalletService
from milletpay.wallet.accounts import (
    CHART,
    LEDGER_CNY,
    AccountCode,
    TransferCode,
    platform_account_id,
)
from milletpay.wallet.coins import CoinService

__all__ = [
    "CaptureMethod",
    "Confirmation",
    "Funding",
    "IntentRequest",
    "IntentStatus",
    "PaymentIntent",
    "PaymentIntents",
    "Refund",
    "RefundStatus",
]

CURRENCY: Final = "CNY"
AMOUNT_FEN_MAX: Final = 10**10  # 100 million CNY: far above every wallet limit
ORDER_ID_CHARS_MAX: Final = 64
DESCRIPTION_CHARS_MAX: Final = 500
METADATA_KEYS_MAX: Final = 20
METADATA_KEY_CHARS_MAX: Final = 40
METADATA_VALUE_CHARS_MAX: Final = 500
TTL_S_MIN: Final = 60
TTL_S_DEFAULT: Final = 3_600
TTL_S_MAX: Final = 7 * 86_400
#: How long a merchant may capture a held payment; the sweep releases it after.
CAPTURE_WINDOW_S: Final = 7 * 86_400
#: The ledger's own timeout of a hold lies this far past the capture window: a backstop
#: should the sweep not run, never the usual way a hold ends.
HOLD_BACKSTOP_S: Final = 86_400
REFUND_REASON_CHARS_MAX: Final = 64
#: The most a payment code pays without the payer confirming on the phone (1,000 CNY).
PAYMENT_CODE_LIMIT_FEN: Final = 100_000
#: Declined confirmations after which the intent is `failed`.
CONFIRM_ATTEMPTS_MAX: Final = 5
#: Intents one `sweep` call ends, at most.
SWEEP_BATCH_MAX: Final = 500
_CLIENT_SECRET_PURPOSE: Final = b"milletpay/checkout/client-secret/v1"
_CLIENT_SECRET_CHARS: Final = 24
_ORDER_ID: Final = re.compile(r"\A[\x21-\x7e]{1,64}\Z")  # visible ASCII
# The statements every payment runs are plain SQL (`Sql`); the rest is SQLAlchemy Core.
_INTENT_COLUMNS: Final = tuple(column.name for column in payment_intents.c)
_SELECT_INTENTS: Final = f"SELECT {', '.join(_INTENT_COLUMNS)} FROM payment_intents WHERE "
_INTENT = Sql(_SELECT_INTENTS + "id = :id")
_LOCKED_INTENT = Sql(_SELECT_INTENTS + "id = :id FOR UPDATE")
_ORDER_INTENT = Sql(_SELECT_INTENTS + "merchant_id = :merchant_id AND merchant_order_id = :order")
#: Where the merchant discount goes.
_FEE_REVENUE: Final = platform_account_id(AccountCode.FEE_REVENUE)
#: A new intent, unless its merchant's order has one (`merchant_order_id` is unique per
#: merchant): then nothing, rowcount 0.
_INSERT_INTENT = Sql(
    f"INSERT INTO payment_intents ({', '.join(_INTENT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _INTENT_COLUMNS)}) "
    "ON CONFLICT (merchant_id, merchant_order_id) DO NOTHING"
)
#: `UPDATE payment_intents` statements by the columns they set, made on first use.
_UPDATES: dict[tuple[str, ...], Sql] = {}


class IntentStatus(enum.StrEnum):
    REQUIRES_CONFIRMATION = "requires_confirmation"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class CaptureMethod(enum.StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class CancellationReason(enum.StrEnum):
    REQUESTED_BY_MERCHANT = "requested_by_merchant"
    EXPIRED = "expired"  # not confirmed before `expires_at`
    CAPTURE_WINDOW_LAPSED = "capture_window_lapsed"  # held, never captured


class RefundStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Refund:
    id: int
    intent_id: int
    merchant_id: int
    amount_fen: int
    reason: str | None
    status: RefundStatus
    failure_code: str | None
    created_at_ns: int


def refund_object(refund: Refund) -> dict[str, Any]:
    """A refund as the merchant's API and its webhooks show it."""
    return {
        "id": f"re_{refund.id:032x}",
        "object": "refund",
        "payment_intent": public_id(refund.intent_id),
        "amount_fen": refund.amount_fen,
        "reason": refund.reason,
        "status": str(refund.status),
        "failure_code": refund.failure_code,
        "created_at_ns": refund.created_at_ns,
    }


class EventSink(Protocol):
    """Where the merchant's events go, in the caller's transaction (the outbox)."""

    def emit(
        self, conn: sa.Connection, merchant_id: int, event_type: str, data: Mapping[str, Any]
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class IntentRequest:
    amount_fen: int
    merchant_order_id: str
    currency: str = CURRENCY
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    capture_method: CaptureMethod = CaptureMethod.AUTOMATIC
    expires_in_s: int = TTL_S_DEFAULT


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: int
    merchant_id: int
    merchant_order_id: str
    amount_fen: int
    currency: str
    description: str | None
    metadata: dict[str, str]
    capture_method: CaptureMethod
    status: IntentStatus
    expires_at_ns: int
    payer_user_id: int | None
    funding: Funding | None
    wallet_operation_id: int | None  # the operation that paid, by funding source
    coin_operation_id: int | None
    payment_transfer_id: int | None  # the payment's transfer, or its hold
    capture_before_ns: int | None
    amount_capturable_fen: int
    amount_received_fen: int
    fee_fen: int
    confirm_attempts: int
    last_error_code: str | None
    cancellation_reason: CancellationReason | None
    created_at_ns: int
    updated_at_ns: int


@dataclass(frozen=True, slots=True, repr=False)
class Created:
    intent: PaymentIntent
    client_secret: str
    created: bool  # False: the merchant's order already had this intent

    def __repr__(self) -> str:
        return f"Created({public_id(self.intent.id)}, created={self.created})"


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A confirmation's answer: the intent after it, and what declined it if anything
    (the funding source's decline code, or `payment_intent_expired`); `limit` /
    `remaining` for a limit's decline."""

    intent: PaymentIntent
    decline_code: str | None = None
    limit_fen: int | None = None
    remaining_fen: int | None = None
    operation_id: int | None = None


def public_id(intent_id: int) -> str:
    return f"pi_{intent_id:032x}"


def parse_public_id(text: str) -> int | None:
    """The intent id of `pi_<32 hex>`; None for anything else."""
    if re.fullmatch(r"pi_[0-9a-f]{32}", text) is None:
        return None
    return int(text[3:], 16)


def intent_object(intent: PaymentIntent) -> dict[str, Any]:
    """The intent as the merchant's API and its webhooks show it."""
    return {
        "id": public_id(intent.id),
        "object": "payment_intent",
        "merchant_order_id": intent.merchant_order_id,
        "amount_fen": intent.amount_fen,
        "currency": intent.currency,
        "description": intent.description,
        "metadata": dict(intent.metadata),
        "capture_method": str(intent.capture_method),
        "status": str(intent.status),
        "expires_at_ns": intent.expires_at_ns,
        "funding": None if intent.funding is None else str(intent.funding),
        "capture_before_ns": intent.capture_before_ns,
        "amount_capturable_fen": intent.amount_capturable_fen,
        "amount_received_fen": intent.amount_received_fen,
        "fee_fen": intent.fee_fen,
        "confirm_attempts": intent.confirm_attempts,
        "last_error_code": intent.last_error_code,
        "cancellation_reason": (
            None if intent.cancellation_reason is None else str(intent.cancellation_reason)
        ),
        "created_at_ns": intent.created_at_ns,
        "updated_at_ns": intent.updated_at_ns,
    }


class PaymentIntents:
    """The intents of every merchant; thread-safe."""

    def __init__(
        self,
        ledger: Ledger,
        wallet: WalletService,
        merchants: MerchantService,
        keyring: KeyRing,
        clock: Clock,
        *,
        committer: Committer | None = None,
        events: EventSink | None = None,
        coins: CoinService | None = None,
    ) -> None:
        """`coins`: the coin service, without which coins fund nothing
        (`funding_not_available`)."""
        self._ledger = ledger
        self._engine = ledger.engine
        self._merchants = merchants
        self._secret_key = keyring.derive(_CLIENT_SECRET_PURPOSE)
        self._clock = clock
        self._committer: Committer = committer or DirectCommitter(ledger)
        self._events = events
        self._ids = IdGenerator(clock)
        self._sources: dict[Funding, FundingSource] = {Funding.WALLET: WalletFunding(wallet)}
        if coins is not None:
            self._sources[Funding.COINS] = CoinFunding(coins)
        # The account the merchant discount goes to: opened here, once, rather than by
        # every payment that takes a fee.
        kind = CHART[AccountCode.FEE_REVENUE]
        revenue = Account(_FEE_REVENUE, LEDGER_CNY, kind.code, kind.flags)
        (opened,) = ledger.create_accounts([revenue])
        assert opened in (CreateAccountResult.OK, CreateAccountResult.EXISTS), opened

    # -- the merchant's side ----------------------------------------------------------

    def create(self, merchant_id: int, request: IntentRequest) -> Created:
        """A new intent for the merchant's order, or the order's intent if it exists
        with the same amount, currency and capture method (`MerchantOrderReused`
        otherwise). `PaymentIntentInvalid` naming the field; `MerchantNotActive`."""
        return self._committer.run(lambda tx: self.create_in(tx, merchant_id, request))

    def create_in(self, tx: LedgerTransaction, merchant_id: int, request: IntentRequest) -> Created:
        """`create` in the caller's transaction (a payment to a static QR code creates
        its intent and pays it in one)."""
        merchant = self._merchants.merchant_in(tx.connection, merchant_id)
        return self.create_for_in(tx, merchant, request)

    def create_for_in(
        self, tx: LedgerTransaction, merchant: Merchant, request: IntentRequest
    ) -> Created:
        """`create_in` for the merchant as the caller has just read it in `tx` (with the
        key that signed the request, say)."""
        if merchant.status is not MerchantStatus.ACTIVE:
            raise MerchantNotActive(f"merchant {merchant.id:032x} is {merchant.status}")
        _check_request(request)
        intent_id = self._ids.next_id()
        secret = self._client_secret(intent_id)
        row = _new_row(intent_id, merchant.id, request, self._clock.now_ns(), secret)
        # The order's first intent, or nothing if the order has one: then that one.
        if _INSERT_INTENT.run(tx.connection, **row).rowcount == 0:
            existing = _order_row(tx.connection, merchant.id, request.merchant_order_id)
            # Writers take turns (the gate, `ledger_meta`'s row lock) at READ COMMITTED:
            # the row the INSERT ran into is there to read.
            assert existing is not None, "an order's intent is never deleted"
            intent = _same_order(existing, request)
            return Created(intent, self._client_secret(intent.id), created=False)
        intent = _intent(row)
        self._emit(tx, intent, "payment_intent.created")
        return Created(intent, secret, created=True)

    def get(self, merchant_id: int, intent_id: int) -> PaymentIntent:
        """`PaymentIntentNotFound` for an intent that is not the merchant's."""
        with self._engine.connect() as conn:
            row = _row(conn, intent_id)
        if row is None or id_from_bytes(row.merchant_id) != merchant_id:
            raise PaymentIntentNotFound(f"no payment intent {public_id(intent_id)}")
        return _intent(row._asdict())

    def client_secret(self, merchant_id: int, intent_id: int) -> str:
        return self._client_secret(self.get(merchant_id, intent_id).id)

    def capture(
        self, merchant_id: int, intent_id: int, amount_fen: int | None = None
    ) -> PaymentIntent:
        """Take `amount_fen` (by default all) of a held payment; the rest goes back to
        the payer. `PaymentIntentConflict` unless `requires_capture` and inside the
        capture window; `PaymentIntentInvalid` for an amount above what is held."""

        def unit(tx: LedgerTransaction) -> PaymentIntent:
            intent, taken = self._capturable(tx, merchant_id, intent_id, amount_fen, card=False)
            merchant = self._merchants.merchant_in(tx.connection, intent.merchant_id)
            self._source_of(intent).check(merchant, taken)  # coins: whole coins only
            return self._capture(tx, intent, merchant, taken)

        return self._committer.run(unit)

    def cancel(self, merchant_id: int, intent_id: int) -> PaymentIntent:
        """Cancel an intent not yet paid, or release a held one. `PaymentIntentConflict`
        for one that succeeded, failed or was canceled."""

        def unit(tx: LedgerTransaction) -> PaymentIntent:
            intent = self._locked(tx, merchant_id, intent_id)
            if intent.status not in (
                IntentStatus.REQUIRES_CONFIRMATION,
                IntentStatus.REQUIRES_CAPTURE,
            ) or _by_card(intent):
                raise _conflict(intent, "canceled")
            return self._cancel(tx, intent, CancellationReason.REQUESTED_BY_MERCHANT)

        return self._committer.run(unit)

    # -- refunds ----------------------------------------------------------------------

    def refund(
        self,
        merchant_id: int,
        intent_id: int,
        amount_fen: int | None = None,
        reason: str | None = None,
    ) -> Refund:
        """Give back `amount_fen` (by default all that is left) of a succeeded intent to
        the payer's wallet; several refunds may follow each other up to what the intent
        received. A refund the merchant cannot fund (it is owed less: paid out already)
        is recorded `failed` with `merchant_balance_insufficient`, and moves nothing.
        `PaymentIntentConflict` unless succeeded; `PaymentIntentInvalid` for an amount
        above what is left or a reason over `REFUND_REASON_CHARS_MAX`."""

        return self._committer.run(
            lambda tx: self.refund_in(tx, merchant_id, intent_id, amount_fen, reason)
        )

    def refund_in(
        self,
        tx: LedgerTransaction,
        merchant_id: int,
        intent_id: int,
        amount_fen: int | None = None,
        reason: str | None = None,
    ) -> Refund:
        """`refund` in the caller's transaction (with the API's idempotency key)."""
        intent = self._locked(tx, merchant_id, intent_id)
        if intent.status is not IntentStatus.SUCCEEDED or _by_card(intent):
            raise _conflict(intent, "refunded")
        left = intent.amount_received_fen - _refunded_fen(tx.connection, intent.id)
        amount = refund_amount(left, amount_fen, reason)
        merchant = self._merchants.merchant_in(tx.connection, intent.merchant_id)
        self._source_of(intent).check(merchant, amount)  # coins: whole coins only
        return self._refund(tx, intent, merchant, amount, reason)

    def refunds(self, merchant_id: int, intent_id: int) -> list[Refund]:
        """The intent's refunds, oldest first."""
        self.get(merchant_id, intent_id)
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(refunds)
                .where(refunds.c.intent_id == id_to_bytes(intent_id))
                .order_by(refunds.c.created_at, refunds.c.id)
            ).all()
        return [_refund_value(row._asdict()) for row in rows]

    def _refund(
        self,
        tx: LedgerTransaction,
        intent: PaymentIntent,
        merchant: Merchant,
        amount: int,
        reason: str | None,
    ) -> Refund:
        refund_id = self._ids.next_id()
        source = self._source_of(intent)
        key = f"re_{refund_id:032x}"
        refunded_before = _refunded_fen(tx.connection, intent.id)
        try:
            with tx.savepoint():  # the fee comes back only with a refund that is paid
                self._return_fee(tx, intent, merchant, refunded_before, amount, refund_id)
                outcome = source.refund_in(tx, intent, merchant, amount, key)
                if outcome.decline_code is not None:
                    raise _RefundUnfunded
        except _RefundUnfunded:  # record the decline in the payer's history, nothing moved
            outcome = source.refund_in(tx, intent, merchant, amount, key)
            assert outcome.decline_code is not None
        row = {
            "id": id_to_bytes(refund_id),
            "intent_id": id_to_bytes(intent.id),
            "merchant_id": id_to_bytes(intent.merchant_id),
            "amount_fen": amount,
            "reason": reason,
            "status": (
                RefundStatus.FAILED if outcome.decline_code else RefundStatus.SUCCEEDED
            ).value,
            "failure_code": outcome.decline_code,
            source.operation_column: id_to_bytes(outcome.operation_id),
            "created_at": self._clock.now_ns(),
        }
        tx.connection.execute(sa.insert(refunds).values(row))
        refund = _refund_value(row)
        if self._events is not None:
            kind = "refund.failed" if outcome.decline_code else "refund.succeeded"
            self._events.emit(tx.connection, intent.merchant_id, kind, refund_object(refund))
        return refund

    # -- the payer's side -------------------------------------------------------------

    def for_payer(self, intent_id: int, client_secret: str) -> tuple[PaymentIntent, Merchant]:
        """The intent and its merchant, for the wallet to show before paying;
        `PaymentIntentNotFound` for an unknown intent or a wrong secret alike."""
        self._check_secret(intent_id, client_secret)
        with self._engine.connect() as conn:
            row = _row(conn, intent_id)
            if row is None:
                raise PaymentIntentNotFound(f"no payment intent {public_id(intent_id)}")
            intent = _intent(row._asdict())
            return intent, self._merchants.merchant_in(conn, intent.merchant_id)

    def confirm_in(
        self,
        tx: LedgerTransaction,
        user_id: int,
        intent_id: int,
        client_secret: str,
        funding: Funding = Funding.WALLET,
    ) -> Confirmation:
        """Pay the intent from the user's `funding` source, in the caller's transaction.
        A decline is an answer (`decline_code`), as is an intent that expired (it is
        canceled, `payment_intent_expired`). `PaymentIntentNotFound` (or a wrong secret),
        `PaymentIntentConflict` (not waiting for confirmation); for a source that cannot
        pay this intent at all, its error with nothing changed (`CoinsNotAccepted`,
        `CoinAmountNotWhole`, `FundingNotAvailable`)."""
        self._check_secret(intent_id, client_secret)
        source = self._source(funding)
        intent = self._locked(tx, None, intent_id)
        if intent.status is not IntentStatus.REQUIRES_CONFIRMATION:
            raise _conflict(intent, "confirmed")
        return self._pay(tx, intent, user_id, source)

    def confirm_with_wallet_in(
        self, tx: LedgerTransaction, user_id: int, intent_id: int, client_secret: str
    ) -> Confirmation:
        """`confirm_in` from the user's wallet balance."""
        return self.confirm_in(tx, user_id, intent_id, client_secret, Funding.WALLET)

    def collect_with_code_in(
        self,
        tx: LedgerTransaction,
        merchant_id: int,
        intent_id: int,
        codes: PaymentCodes,
        code_text: str,
    ) -> Confirmation:
        """The merchant collects the intent with the payer's one-time payment code (read
        by its scanner), in the caller's transaction: the code is used and the code's
        wallet pays, as a confirmation would. Above `PAYMENT_CODE_LIMIT_FEN` the code is
        not enough (`payer_confirmation_required`, nothing used): the payer confirms on
        the phone. `PaymentCodeRefused`, `PaymentIntentNotFound`, `PaymentIntentConflict`."""
        intent = self._locked(tx, merchant_id, intent_id)
        if intent.status is not IntentStatus.REQUIRES_CONFIRMATION:
            raise _conflict(intent, "collected")
        if intent.amount_fen > PAYMENT_CODE_LIMIT_FEN:
            return Confirmation(intent, "payer_confirmation_required")
        payer = codes.claim_in(tx, code_text, intent.id)
        return self._pay(tx, intent, payer, self._source(Funding.WALLET))

    def _pay(
        self, tx: LedgerTransaction, intent: PaymentIntent, user_id: int, source: FundingSource
    ) -> Confirmation:
        """Pay the locked intent, waiting for confirmation, from the user's `source`."""
        merchant = self._merchants.merchant_in(tx.connection, intent.merchant_id)
        source.check(merchant, intent.amount_fen)  # before anything changes
        if self._clock.now_ns() >= intent.expires_at_ns:
            expired = self._cancel(tx, intent, CancellationReason.EXPIRED)
            return Confirmation(expired, "payment_intent_expired")
        if merchant.status is not MerchantStatus.ACTIVE:
            raise MerchantNotActive(f"merchant {merchant.id:032x} is {merchant.status}")
        manual = intent.capture_method is CaptureMethod.MANUAL
        # The fee of a payment (not of a hold: of its capture) in one chain with it.
        charge = None if manual else self._fee_charge(intent, merchant, intent.amount_fen)
        outcome: Paid = source.pay_in(
            tx,
            user_id,
            merchant,
            intent.amount_fen,
            _payer_key(intent),
            CAPTURE_WINDOW_S + HOLD_BACKSTOP_S if manual else 0,
            then=() if charge is None else (charge,),
        )
        if outcome.decline_code is not None:
            failed = self._declined(tx, intent, user_id, outcome.decline_code)
            return Confirmation(
                failed,
                outcome.decline_code,
                outcome.limit_fen,
                outcome.remaining_fen,
                outcome.operation_id,
            )
        paid = {
            "payer_user_id": id_to_bytes(user_id),
            "funding": source.funding.value,
            source.operation_column: id_to_bytes(outcome.operation_id),
            "payment_transfer_id": id_to_bytes(outcome.transfer_id),
        }
        if manual:
            now_ns = self._clock.now_ns()
            held = self._update(
                tx,
                intent,
                status=IntentStatus.REQUIRES_CAPTURE.value,
                amount_capturable_fen=intent.amount_fen,
                capture_before=now_ns + CAPTURE_WINDOW_S * NS_PER_S,
                **paid,
            )
            self._emit(tx, held, "payment_intent.requires_capture")
            return Confirmation(held, operation_id=outcome.operation_id)
        fee = 0 if charge is None else charge.amount
        done = self._update(
            tx,
            intent,
            status=IntentStatus.SUCCEEDED.value,
            amount_received_fen=intent.amount_fen,
            fee_fen=fee,
            **paid,
        )
        self._emit(tx, done, "payment_intent.succeeded")
        return Confirmation(done, operation_id=outcome.operation_id)

    # -- housekeeping -----------------------------------------------------------------

    def sweep(self, limit: int = SWEEP_BATCH_MAX) -> int:
        """Cancel up to `limit` intents that expired unconfirmed, and release the holds
        whose capture window lapsed; the number ended. Safe on every server at once."""
        assert 1 <= limit <= SWEEP_BATCH_MAX
        now_ns = self._clock.now_ns()
        c = payment_intents.c
        with self._engine.connect() as conn:
            due = (
                conn.execute(
                    sa.select(c.id)
                    .where(
                        sa.or_(
                            sa.and_(
                                c.status == IntentStatus.REQUIRES_CONFIRMATION.value,
                                c.expires_at <= now_ns,
                            ),
                            sa.and_(
                                c.status == IntentStatus.REQUIRES_CAPTURE.value,
                                c.capture_before <= now_ns,
                                # a card's hold is the issuer's: `CardFunding` releases it
                                c.funding != Funding.CARD.value,
                            ),
                        )
                    )
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        ended = 0
        for key in due:

            def unit(tx: LedgerTransaction, key: bytes = key) -> int:
                return self._sweep_one(tx, key, now_ns)

            ended += self._committer.run(unit)
        return ended

    def _sweep_one(self, tx: LedgerTransaction, key: bytes, now_ns: int) -> int:
        intent = self._locked(tx, None, id_from_bytes(key))
        if intent.status is IntentStatus.REQUIRES_CONFIRMATION and now_ns >= intent.expires_at_ns:
            self._cancel(tx, intent, CancellationReason.EXPIRED)
            return 1
        lapsed = intent.capture_before_ns is not None and now_ns >= intent.capture_before_ns
        if intent.status is IntentStatus.REQUIRES_CAPTURE and lapsed and not _by_card(intent):
            self._cancel(tx, intent, CancellationReason.CAPTURE_WINDOW_LAPSED)
            return 1
        return 0  # changed since it was found

    # -- money ------------------------------------------------------------------------

    def _capture(
        self, tx: LedgerTransaction, intent: PaymentIntent, merchant: Merchant, taken: int
    ) -> PaymentIntent:
        self._source_of(intent).capture_in(tx, intent, merchant, taken)
        fee = self._take_fee(tx, intent, merchant, taken)
        done = self._update(
            tx,
            intent,
            status=IntentStatus.SUCCEEDED.value,
            amount_capturable_fen=0,
            amount_received_fen=taken,
            fee_fen=fee,
        )
        self._emit(tx, done, "payment_intent.succeeded")
        return done

    def _cancel(
        self, tx: LedgerTransaction, intent: PaymentIntent, reason: CancellationReason
    ) -> PaymentIntent:
        if intent.status is IntentStatus.REQUIRES_CAPTURE:
            merchant = self._merchants.merchant_in(tx.connection, intent.merchant_id)
            self._source_of(intent).release_in(tx, intent, merchant)
        return self._mark_canceled(tx, intent, reason)

    def _capturable(
        self,
        tx: LedgerTransaction,
        merchant_id: int,
        intent_id: int,
        amount_fen: int | None,
        *,
        card: bool,
    ) -> tuple[PaymentIntent, int]:
        """The held intent, locked, and the amount to take (by default all it holds):
        `PaymentIntentConflict` unless `requires_capture` by the path asked for (card or
        not) and inside the capture window; `PaymentIntentInvalid` for an amount that is
        not 1 to what is held."""
        intent = self._locked(tx, merchant_id, intent_id)
        if intent.status is not IntentStatus.REQUIRES_CAPTURE or _by_card(intent) is not card:
            raise _conflict(intent, "captured")
        assert intent.capture_before_ns is not None
        if self._clock.now_ns() >= intent.capture_before_ns:
            raise PaymentIntentConflict(
                f"{public_id(intent.id)}: its capture window lapsed; the hold is released"
            )
        taken = intent.amount_capturable_fen if amount_fen is None else amount_fen
        if not (_is_int(taken) and 0 < taken <= intent.amount_capturable_fen):
            raise PaymentIntentInvalid(
                f"amount_fen to capture is 1 to {intent.amount_capturable_fen}",
                field="amount_fen",
            )
        return intent, taken

    def _mark_canceled(
        self, tx: LedgerTransaction, intent: PaymentIntent, reason: CancellationReason
    ) -> PaymentIntent:
        """The intent canceled and announced, once its money was released."""
        done = self._update(
            tx,
            intent,
            status=IntentStatus.CANCELED.value,
            amount_capturable_fen=0,
            cancellation_reason=reason.value,
        )
        self._emit(tx, done, "payment_intent.canceled")
        return done

    def _declined(
        self, tx: LedgerTransaction, intent: PaymentIntent, user_id: int, code: str
    ) -> PaymentIntent:
        attempts = intent.confirm_attempts + 1
        status = IntentStatus.FAILED if attempts >= CONFIRM_ATTEMPTS_MAX else intent.status
        failed = self._update(
            tx, intent, status=status.value, confirm_attempts=attempts, last_error_code=code
        )
        self._emit(tx, failed, "payment_intent.payment_failed")
        return failed

    def _take_fee(
        self, tx: LedgerTransaction, intent: PaymentIntent, merchant: Merchant, taken: int
    ) -> int:
        """The merchant discount on `taken`, from the merchant to fee revenue."""
        charge = self._fee_charge(intent, merchant, taken)
        if charge is None:
            return 0
        _require_ok(tx.create_transfers([charge]), charge)
        return charge.amount

    def _fee_charge(self, intent: PaymentIntent, merchant: Merchant, taken: int) -> Transfer | None:
        """The transfer of the merchant discount on `taken`; None when it is nothing."""
        fee = fee_fen(taken, merchant.mcc)
        if fee == 0:
            return None
        return Transfer(
            _transfer_id(intent.id, "fee"),
            merchant.account_id,
            _FEE_REVENUE,
            fee,
            LEDGER_CNY,
            TransferCode.MERCHANT_FEE,
            user_data_128=intent.id,
        )

    def _return_fee(
        self,
        tx: LedgerTransaction,
        intent: PaymentIntent,
        merchant: Merchant,
        refunded_before: int,
        amount: int,
        refund_id: int,
    ) -> None:
        """The merchant discount on the part refunded, back to the merchant: the fee of
        the refunds so far is `fee × refunded ÷ received` rounded half up, so refunds
        that add up to the payment return exactly its fee."""
        received, fee = intent.amount_received_fen, intent.fee_fen
        back = _share(fee, refunded_before + amount, received) - _share(
            fee, refunded_before, received
        )
        if back == 0:
            return
        charge = Transfer(
            _transfer_id(refund_id, "fee-back"),
            _FEE_REVENUE,
            merchant.account_id,
            back,
            LEDGER_CNY,
            TransferCode.MERCHANT_FEE,
            user_data_128=intent.id,
        )
        _require_ok(tx.create_transfers([charge]), charge)

    def _source(self, funding: Funding) -> FundingSource:
        source = self._sources.get(Funding(funding))
        if source is None:
            raise FundingNotAvailable(f"{funding} cannot fund payments here", field="funding")
        return source

    def _source_of(self, intent: PaymentIntent) -> FundingSource:
        """The source that paid the intent."""
        assert intent.funding is not None, "only a paid intent has a source"
        return self._source(intent.funding)

    # -- rows -------------------------------------------------------------------------

    def _locked(
        self, tx: LedgerTransaction, merchant_id: int | None, intent_id: int
    ) -> PaymentIntent:
        """The intent, its row locked to the end of `tx`; `PaymentIntentNotFound` if it is
        not `merchant_id`'s (when given)."""
        row = _LOCKED_INTENT.run(tx.connection, id=id_to_bytes(intent_id)).first()
        if row is None or (
            merchant_id is not None and id_from_bytes(row.merchant_id) != merchant_id
        ):
            raise PaymentIntentNotFound(f"no payment intent {public_id(intent_id)}")
        return _intent(row._asdict())

    def _update(self, tx: LedgerTransaction, intent: PaymentIntent, **values: Any) -> PaymentIntent:
        values["updated_at"] = self._clock.now_ns()
        done = _update_statement(tuple(values)).run(
            tx.connection,
            **values,
            where_id=id_to_bytes(intent.id),
            where_status=intent.status.value,
        )
        assert done.rowcount == 1, "the intent's row is locked: nothing else changed it"
        # The row is what it was (`intent`) with `values`: no need to read it back.
        return _updated(intent, values)

    def _emit(self, tx: LedgerTransaction, intent: PaymentIntent, type_: str) -> None:
        if self._events is not None:
            self._events.emit(tx.connection, intent.merchant_id, type_, intent_object(intent))

    def _client_secret(self, intent_id: int) -> str:
        digest = hmac.digest(self._secret_key, id_to_bytes(intent_id), "sha256")
        text = base64.urlsafe_b64encode(digest).decode("ascii")[:_CLIENT_SECRET_CHARS]
        return f"{public_id(intent_id)}_secret_{text}"

    def _check_secret(self, intent_id: int, client_secret: str) -> None:
        if not hmac.compare_digest(
            self._client_secret(intent_id).encode(), client_secret.encode("utf-8", "replace")
        ):
            raise PaymentIntentNotFound(f"no payment intent {public_id(intent_id)}")


# -- pure helpers -----------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_request(request: IntentRequest) -> None:
    """Every field of a new intent, or `PaymentIntentInvalid` naming the first wrong one."""
    if not (_is_int(request.amount_fen) and 1 <= request.amount_fen <= AMOUNT_FEN_MAX):
        raise PaymentIntentInvalid(f"amount_fen is 1 to {AMOUNT_FEN_MAX}", field="amount_fen")
    if request.currency != CURRENCY:
        raise PaymentIntentInvalid(f"currency must be {CURRENCY}", field="currency")
    if not (
        isinstance(request.merchant_order_id, str) and _ORDER_ID.match(request.merchant_order_id)
    ):
        raise PaymentIntentInvalid(
            f"merchant_order_id is 1 to {ORDER_ID_CHARS_MAX} visible ASCII characters",
            field="merchant_order_id",
        )
    description = request.description
    if description is not None and not (
        isinstance(description, str) and len(description) <= DESCRIPTION_CHARS_MAX
    ):
        raise PaymentIntentInvalid(
            f"description is at most {DESCRIPTION_CHARS_MAX} characters", field="description"
        )
    _check_metadata(request.metadata)
    if not (_is_int(request.expires_in_s) and TTL_S_MIN <= request.expires_in_s <= TTL_S_MAX):
        raise PaymentIntentInvalid(
            f"expires_in_s is {TTL_S_MIN} to {TTL_S_MAX}", field="expires_in_s"
        )
    CaptureMethod(request.capture_method)


def _check_metadata(metadata: Mapping[str, str]) -> None:
    if len(metadata) > METADATA_KEYS_MAX:
        raise PaymentIntentInvalid(
            f"metadata has at most {METADATA_KEYS_MAX} keys", field="metadata"
        )
    for key, value in metadata.items():
        if not (isinstance(key, str) and 1 <= len(key) <= METADATA_KEY_CHARS_MAX):
            raise PaymentIntentInvalid(
                f"a metadata key is 1 to {METADATA_KEY_CHARS_MAX} characters", field="metadata"
            )
        if not (isinstance(value, str) and len(value) <= METADATA_VALUE_CHARS_MAX):
            raise PaymentIntentInvalid(
                f"metadata {key!r}: a value is text of at most {METADATA_VALUE_CHARS_MAX} "
                "characters",
                field="metadata",
            )


def _new_row(
    intent_id: int, merchant_id: int, request: IntentRequest, now_ns: int, secret: str
) -> dict[str, Any]:
    return {
        "id": id_to_bytes(intent_id),
        "merchant_id": id_to_bytes(merchant_id),
        "merchant_order_id": request.merchant_order_id,
        "amount_fen": request.amount_fen,
        "currency": request.currency,
        "description": request.description,
        "metadata_json": json.dumps(dict(request.metadata), sort_keys=True),
        "capture_method": CaptureMethod(request.capture_method).value,
        "status": IntentStatus.REQUIRES_CONFIRMATION.value,
        "client_secret_hash": hashlib.sha256(secret.encode()).digest(),
        "expires_at": now_ns + request.expires_in_s * NS_PER_S,
        "payer_user_id": None,
        "funding": None,
        "wallet_operation_id": None,
        "coin_operation_id": None,
        "payment_transfer_id": None,
        "capture_before": None,
        "amount_capturable_fen": 0,
        "amount_received_fen": 0,
        "fee_fen": 0,
        "confirm_attempts": 0,
        "last_error_code": None,
        "cancellation_reason": None,
        "created_at": now_ns,
        "updated_at": now_ns,
    }


def _same_order(row: Any, request: IntentRequest) -> PaymentIntent:
    intent = _intent(row._asdict())
    same = (
        intent.amount_fen == request.amount_fen
        and intent.currency == request.currency
        and intent.capture_method is CaptureMethod(request.capture_method)
    )
    if not same:
        raise MerchantOrderReused(
            f"merchant_order_id {request.merchant_order_id!r} has intent "
            f"{public_id(intent.id)} for {intent.amount_fen} fen ({intent.capture_method})",
            field="merchant_order_id",
        )
    return intent


def _order_row(conn: sa.Connection, merchant_id: int, order_id: str) -> Any:
    return _ORDER_INTENT.run(conn, merchant_id=id_to_bytes(merchant_id), order=order_id).first()


def _row(conn: sa.Connection, intent_id: int) -> Any:
    return _INTENT.run(conn, id=id_to_bytes(intent_id)).first()


def _update_statement(columns: tuple[str, ...]) -> Sql:
    """`UPDATE payment_intents SET <columns>` of the intent `:where_id` while its status
    is `:where_status`; one statement per set of columns, made once."""
    statement = _UPDATES.get(columns)
    if statement is None:
        assert set(columns) <= set(_INTENT_COLUMNS), columns
        assignments = ", ".join(f"{name} = :{name}" for name in columns)
        statement = _UPDATES[columns] = Sql(
            f"UPDATE payment_intents SET {assignments} "
            "WHERE id = :where_id AND status = :where_status"
        )
    return statement


def _opt(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else decode(value)


def _same(value: Any) -> Any:
    return value


#: A `payment_intents` column -> the `PaymentIntent` field it holds, and how a column's
#: value becomes the field's.
_FIELDS: Final[dict[str, tuple[str, Callable[[Any], Any]]]] = {
    "id": ("id", id_from_bytes),
    "merchant_id": ("merchant_id", id_from_bytes),
    "merchant_order_id": ("merchant_order_id", _same),
    "amount_fen": ("amount_fen", _same),
    "currency": ("currency", _same),
    "description": ("description", _same),
    "metadata_json": ("metadata", json.loads),
    "capture_method": ("capture_method", CaptureMethod),
    "status": ("status", IntentStatus),
    "expires_at": ("expires_at_ns", _same),
    "payer_user_id": ("payer_user_id", _opt(id_from_bytes)),
    "funding": ("funding", _opt(Funding)),
    "wallet_operation_id": ("wallet_operation_id", _opt(id_from_bytes)),
    "coin_operation_id": ("coin_operation_id", _opt(id_from_bytes)),
    "payment_transfer_id": ("payment_transfer_id", _opt(id_from_bytes)),
    "capture_before": ("capture_before_ns", _same),
    "amount_capturable_fen": ("amount_capturable_fen", _same),
    "amount_received_fen": ("amount_received_fen", _same),
    "fee_fen": ("fee_fen", _same),
    "confirm_attempts": ("confirm_attempts", _same),
    "last_error_code": ("last_error_code", _same),
    "cancellation_reason": ("cancellation_reason", _opt(CancellationReason)),
    "created_at": ("created_at_ns", _same),
    "updated_at": ("updated_at_ns", _same),
}
#: The columns no `PaymentIntent` field holds.
_UNREAD_COLUMNS: Final = frozenset({"client_secret_hash"})
assert set(_FIELDS) | _UNREAD_COLUMNS == set(_INTENT_COLUMNS), "a column neither read nor left"


def _fields(columns: Mapping[str, Any]) -> dict[str, Any]:
    """`PaymentIntent` fields from these columns' values."""
    return {name: decode(columns[column]) for column, name, decode in _decoders(tuple(columns))}


@functools.lru_cache(maxsize=64)
def _decoders(columns: tuple[str, ...]) -> tuple[tuple[str, str, Callable[[Any], Any]], ...]:
    """(column, field, decode) for each of these columns a field holds, worked out once
    per set of columns (every read has the same)."""
    return tuple((column, *_FIELDS[column]) for column in columns if column not in _UNREAD_COLUMNS)


def _intent(row: Mapping[str, Any]) -> PaymentIntent:
    return PaymentIntent(**_fields(row))


def _updated(intent: PaymentIntent, values: Mapping[str, Any]) -> PaymentIntent:
    """`intent` with the columns `values` set, as its row now reads."""
    return replace(intent, **_fields(values))


class _RefundUnfunded(Exception):
    """Inside `_refund`: the merchant could not fund it; undo the fee's return."""


def _share(fee_fen: int, part_fen: int, whole_fen: int) -> int:
    """`fee_fen × part ÷ whole`, half a fen rounded up."""
    assert 0 <= part_fen <= whole_fen and whole_fen > 0
    return (2 * fee_fen * part_fen + whole_fen) // (2 * whole_fen)


def _refunded_fen(conn: sa.Connection, intent_id: int) -> int:
    done = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(refunds.c.amount_fen), 0)).where(
            refunds.c.intent_id == id_to_bytes(intent_id),
            refunds.c.status == RefundStatus.SUCCEEDED.value,
        )
    ).scalar_one()
    return int(done)


def _refund_value(row: Mapping[str, Any]) -> Refund:
    return Refund(
        id=id_from_bytes(row["id"]),
        intent_id=id_from_bytes(row["intent_id"]),
        merchant_id=id_from_bytes(row["merchant_id"]),
        amount_fen=row["amount_fen"],
        reason=row["reason"],
        status=RefundStatus(row["status"]),
        failure_code=row["failure_code"],
        created_at_ns=row["created_at"],
    )


def _payer_key(intent: PaymentIntent) -> str:
    """The payer's operation's idempotency key (a wallet or coin operation): one per
    intent and attempt, so a retry of an attempt pays once and a new attempt after a
    decline is a new operation."""
    return f"{public_id(intent.id)}:{intent.confirm_attempts}"


def refund_amount(left_fen: int, amount_fen: int | None, reason: str | None) -> int:
    """What a refund asked for takes (by default all that is left of the payment):
    `PaymentIntentInvalid` for an amount that is not 1 to `left_fen`, or a reason too long."""
    amount = left_fen if amount_fen is None else amount_fen
    if not (_is_int(amount) and 0 < amount <= left_fen):
        raise PaymentIntentInvalid(
            f"amount_fen to refund is 1 to {left_fen}, what is left of the payment",
            field="amount_fen",
        )
    if reason is not None and len(reason) > REFUND_REASON_CHARS_MAX:
        raise PaymentIntentInvalid(
            f"reason is at most {REFUND_REASON_CHARS_MAX} characters", field="reason"
        )
    return amount


def _by_card(intent: PaymentIntent) -> bool:
    """A card payment is captured, canceled and refunded through the card network
    (`card_funding.py`), never here."""
    return intent.funding is Funding.CARD


def _conflict(intent: PaymentIntent, action: str) -> PaymentIntentConflict:
    return PaymentIntentConflict(
        f"{public_id(intent.id)} is {intent.status}: it cannot be {action}"
    )


def _require_ok(results: list[CreateTransferResult], transfer: Transfer) -> None:
    (result,) = results
    assert result is CreateTransferResult.OK, f"transfer {transfer.id:032x}: {result}"
