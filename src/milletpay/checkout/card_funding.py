"""Payment intents paid with a tokenized bank card, in-app, card-not-present through the
card network: Millet Pay acts as the acquirer of its own checkout.

The payer's phone makes an ARQC over this intent's transaction data (`card_data`: the
amount, CNY, the China-time date, type 00 and an unpredictable number the platform
derives for the intent and its attempt) with its limited-use key
(`emv.applet.PaymentApplet.in_app_cryptogram`); the wallet sends that field 55 with the
token id. The platform checks that the data is this intent's, then sends a 0200 (single
message: the issuer posts at once; an 0100 for an intent with manual capture, the issuer
holding until the 0220 of `capture` or the 0400 of `cancel`) to the switch over
`SwitchLink`, entry mode 812 (81: e-commerce / in-app with chip credentials; 2: no PIN
entry), the token in field 2 and its device in 61. Each confirmation runs in three
steps, never holding a database transaction across the network:

1. admit (one transaction): the intent locked and `processing`, the card's own risk
   limits (`OperationKind.CARD_PAYMENT`; a refusal sends nothing), a STAN taken, the
   request recorded `sending` in `card_payments`;
2. the exchange with the switch; no answer → a reversal (0400), sent up to
   `REVERSAL_ATTEMPTS_MAX` times, so that no hold or charge is left at the issuer;
3. settle (one transaction): approved → the card network owes the platform the amount
   (`CARD_NETWORK` receivable → merchant) and the merchant discount is taken, the
   intent `succeeded` (an 0100: `requires_capture`, nothing owed until the capture);
   otherwise the intent waits for another try (`payment_failed`,
   with the ISO 8583 response code mapped by `DECLINE_REASONS`).

Refunds of a card payment go back to the card: a 0200 with processing code 20 through
the switch to the issuer, which credits the account. The merchant's part is held in
the ledger (merchant → receivable, pending) while the refund is in flight, then posted
or voided. A refund is named by the merchant's key: asked again, it is the same refund.

It never sends a card number (only the token), never succeeds an intent the network did
not approve, and never sends a second request for one admitted attempt.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Protocol

import sqlalchemy as sa

from milletpay.banks.model import CST
from milletpay.cards.tokens import Token, TokenDomain
from milletpay.checkout import card_messages
from milletpay.checkout.card_link import NoAnswer, SwitchLink, SwitchUnreachable
from milletpay.checkout.card_messages import (
    CONDITION_IN_APP,
    CURRENCY_NUMERIC,
    ENTRY_IN_APP,
    PLATFORM_ACQUIRER_ID,
    PLATFORM_TERMINAL_ID,
    PROCESSING_PURCHASE,
    PROCESSING_REFUND,
    REQUEST_MTIS,
)
from milletpay.checkout.errors import (
    MerchantNotActive,
    PaymentIntentConflict,
    PaymentIntentNotFound,
)
from milletpay.checkout.funding import intent_transfer_id as _transfer_id
from milletpay.checkout.intents import (
    CAPTURE_WINDOW_S,
    CancellationReason,
    Confirmation,
    Funding,
    IntentStatus,
    PaymentIntent,
    PaymentIntents,
    Refund,
    RefundStatus,
    _conflict,
    _refund_value,
    _refunded_fen,
    _require_ok,
    _share,
    public_id,
    refund_amount,
    refund_object,
)
from milletpay.checkout.intents import (
    _row as _intent_row,
)
from milletpay.checkout.merchants import Merchant, MerchantStatus
from milletpay.checkout.tables import acquirer_stans, card_payments, payment_intents, refunds
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.errors import MilletError
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing
from milletpay.emv import tlv
from milletpay.emv.tlv import TlvError
from milletpay.identity import IdentityService
from milletpay.ledger import (
    AMOUNT_MAX,
    Account,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
)
from milletpay.ledger.committer import Committer
from milletpay.ledger.engine import LedgerTransaction
from milletpay.network.iso8583 import (
    APPROVED,
    FieldValue,
    Message,
    transmission_date_time,
    validate,
)
from milletpay.risk import VELOCITY_WINDOW_S, OperationKind, Usage, decide
from milletpay.wallet import periods
from milletpay.wallet.accounts import (
    CHART,
    LEDGER_CNY,
    AccountCode,
    TransferCode,
    platform_account_id,
)

__all__ = [
    "DECLINE_REASONS",
    "RESUME_BATCH_MAX",
    "REVERSAL_ATTEMPTS_MAX",
    "STUCK_AFTER_S",
    "CardData",
    "CardFunding",
    "CardPaymentRefused",
    "TokenSource",
]

#: Sends of one reversal before it is left `reversal_pending` for `resume_stuck`.
REVERSAL_ATTEMPTS_MAX: Final = 3
#: A request left `sending` this long (its server died mid-exchange) is reversed by
#: `resume_stuck`.
STUCK_AFTER_S: Final = 60
#: Requests one `resume_stuck` call finishes, at most.
RESUME_BATCH_MAX: Final = 100
#: The date in 9A may be the platform's China-time day or the day before (a payment
#: confirmed across midnight).
DATE_SKEW_DAYS: Final = 1
_UN_PURPOSE: Final = b"milletpay/checkout/card-unpredictable-number/v1"

#: ISO 8583 response code (field 39) → the decline reason the merchant and the payer see.
DECLINE_REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "05": "card_declined",  # do not honour; a cryptogram refused
        "12": "card_transaction_invalid",
        "13": "card_amount_invalid",
        "14": "card_invalid",
        "30": "card_data_invalid",
        "51": "insufficient_funds",
        "54": "card_expired_or_keys_used_up",  # replenish the LUK, then pay again
        "57": "card_not_permitted",  # the token's domain or device
        "61": "card_limit_exceeded",
        "62": "card_restricted",
        "91": "issuer_unavailable",
        "92": "issuer_unavailable",
        "94": "card_duplicate_transmission",
        "96": "card_network_error",
    }
)
DECLINE_REASON_OTHER: Final = "card_declined"


class CardPaymentRefused(MilletError):
    """The card payment cannot be sent as asked; nothing was sent. `field` names what."""

    code = "card_payment_invalid"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message, code=code)
        self.field = field


class _Kind(enum.StrEnum):
    PAYMENT = "payment"  # 0200, or 0100 for manual capture
    COMPLETION = "completion"  # 0220: the capture of a manual-capture payment
    REFUND = "refund"  # 0200, processing code 20


class _Status(enum.StrEnum):
    SENDING = "sending"
    APPROVED = "approved"
    DECLINED = "declined"
    NOT_SENT = "not_sent"  # no connection to the switch
    REVERSED = "reversed"  # no answer; the reversal was answered
    REVERSAL_PENDING = "reversal_pending"  # no answer; the reversal waits to be resent
    ADVICE_PENDING = "advice_pending"  # a completion unanswered: resent until answered


#: The statuses `resume_stuck` finishes.
_UNFINISHED: Final = tuple(
    s.value for s in (_Status.SENDING, _Status.REVERSAL_PENDING, _Status.ADVICE_PENDING)
)


class TokenSource(Protocol):
    """Where card funding reads a token (`cards.TokenService` is one)."""

    def token(self, token_id: int) -> Token: ...


@dataclass(frozen=True, slots=True)
class CardData:
    """What the phone's applet signs for this intent's current attempt."""

    amount_fen: int
    currency_numeric: int
    date: datetime.date
    transaction_type: str
    unpredictable_number: bytes


@dataclass(frozen=True, slots=True)
class _Sent:
    """An admitted request: its row and the message to send."""

    row_id: int
    message: Message


@dataclass(frozen=True, slots=True)
class _Result:
    status: _Status
    response: Message | None = None

    @property
    def response_code(self) -> str | None:
        return None if self.response is None else self.response.text(39)


class CardFunding:
    """Card payments and card refunds of payment intents; thread-safe."""

    def __init__(
        self,
        intents: PaymentIntents,
        identity: IdentityService,
        tokens: TokenSource,
        link: SwitchLink,
        keyring: KeyRing,
        clock: Clock,
        *,
        committer: Committer,
    ) -> None:
        self._intents = intents
        self._identity = identity
        self._tokens = tokens
        self._link = link
        self._un_key = keyring.derive(_UN_PURPOSE)
        self._clock = clock
        self._committer = committer
        self._ids = IdGenerator(clock)

    def close(self) -> None:
        self._link.close()

    # -- what the phone signs -----------------------------------------------------------

    def card_data(self, intent_id: int, client_secret: str) -> CardData:
        """The transaction data the phone's applet makes its ARQC over, for the intent's
        current attempt. `PaymentIntentNotFound` for a wrong secret."""
        intent, _ = self._intents.for_payer(intent_id, client_secret)
        return CardData(
            intent.amount_fen,
            CURRENCY_NUMERIC,
            _cst_date(self._clock.now_ns()),
            "00",
            self._unpredictable_number(intent),
        )

    def _unpredictable_number(self, intent: PaymentIntent) -> bytes:
        message = id_to_bytes(intent.id) + intent.confirm_attempts.to_bytes(2, "big")
        return hmac.new(self._un_key, message, hashlib.sha256).digest()[:4]

    # -- paying -------------------------------------------------------------------------

    def confirm(
        self,
        user_id: int,
        intent_id: int,
        client_secret: str,
        token_id: int,
        icc_data: bytes,
    ) -> Confirmation:
        """Pay the intent with the user's token and the phone's field 55. A decline is an
        answer (`decline_code`); `CardPaymentRefused` (nothing sent) for a token or data
        that is not this payer's or this intent's; `PaymentIntentNotFound`,
        `PaymentIntentConflict` (not waiting for confirmation)."""
        self._intents._check_secret(intent_id, client_secret)
        admitted = self._committer.run(
            lambda tx: self._admit(tx, user_id, intent_id, token_id, icc_data)
        )
        if isinstance(admitted, Confirmation):
            return admitted
        result = self._send(admitted)
        return self._committer.run(lambda tx: self._settle(tx, intent_id, admitted, result))

    def _admit(
        self,
        tx: LedgerTransaction,
        user_id: int,
        intent_id: int,
        token_id: int,
        icc_data: bytes,
    ) -> Confirmation | _Sent:
        intents = self._intents
        intent = intents._locked(tx, None, intent_id)
        if intent.status is not IntentStatus.REQUIRES_CONFIRMATION:
            raise _conflict(intent, "confirmed")
        if self._clock.now_ns() >= intent.expires_at_ns:
            expired = intents._cancel(tx, intent, CancellationReason.EXPIRED)
            return Confirmation(expired, "payment_intent_expired")
        merchant = intents._merchants.merchant(intent.merchant_id)
        if merchant.status is not MerchantStatus.ACTIVE:
            raise MerchantNotActive(f"merchant {merchant.id:032x} is {merchant.status}")
        token = self._payer_token(user_id, token_id)
        self._check_icc(intent, icc_data)
        # The STAN first: its row lock serializes admissions, so the limits below see
        # every card payment admitted before this one (a gap in STANs is harmless).
        stan = _next_stan(tx.connection, PLATFORM_TERMINAL_ID)
        decision = decide(
            OperationKind.CARD_PAYMENT,
            self._identity.current_tier(user_id, conn=tx.connection),
            intent.amount_fen,
            self._usage(tx.connection, user_id),
        )
        if not decision.approved:
            assert decision.code is not None
            failed = intents._declined(tx, intent, user_id, decision.code.value)
            return Confirmation(failed, decision.code.value, decision.limit, decision.remaining)
        mti = REQUEST_MTIS[intent.capture_method]
        message = card_messages.request(
            merchant, token, intent.amount_fen, PROCESSING_PURCHASE, mti, stan, self._clock.now_ns()
        )
        message = message.with_fields({55: icc_data})
        validate(message)
        row_id = self._record(tx, intent, _Kind.PAYMENT, user_id, token, message)
        processing = intents._update(
            tx,
            intent,
            status=IntentStatus.PROCESSING.value,
            payer_user_id=id_to_bytes(user_id),
            funding=Funding.CARD.value,
        )
        intents._emit(tx, processing, "payment_intent.processing")
        return _Sent(row_id, message)

    def _payer_token(self, user_id: int, token_id: int) -> Token:
        try:
            token = self._tokens.token(token_id)
        except MilletError:
            token = None
        if token is None or token.user_id != user_id:
            raise CardPaymentRefused(
                "no such card in the wallet", code="card_not_found", field="token_id"
            )
        return token

    def _check_icc(self, intent: PaymentIntent, icc_data: bytes) -> None:
        """The phone's data must be this intent's: its amount, CNY, a date of today (or
        yesterday), goods and services, and this attempt's unpredictable number."""
        try:
            icc = tlv.primitives(tlv.decode(icc_data))
        except TlvError as exc:
            raise CardPaymentRefused(
                f"icc_data is not EMV data: {exc}", code="card_cryptogram_invalid", field="icc_data"
            ) from None
        today = _cst_date(self._clock.now_ns())
        dates = {
            bytes.fromhex((today - datetime.timedelta(days=d)).strftime("%y%m%d"))
            for d in range(DATE_SKEW_DAYS + 1)
        }
        expected = {
            "9F02": {bytes.fromhex(f"{intent.amount_fen:012d}")},
            "5F2A": {bytes.fromhex(f"{CURRENCY_NUMERIC:04d}")},
            "9C": {b"\x00"},
            "9F37": {self._unpredictable_number(intent)},
            "9A": dates,
        }
        for tag in ("9F26", "9F36", "9F10", *expected):
            if tag not in icc:
                raise CardPaymentRefused(
                    f"icc_data lacks tag {tag}", code="card_cryptogram_invalid", field="icc_data"
                )
        for tag, allowed in expected.items():
            if icc[tag] not in allowed:
                raise CardPaymentRefused(
                    f"icc_data tag {tag} is not this payment's (ask for the card data again)",
                    code="card_cryptogram_invalid",
                    field="icc_data",
                )

    def _usage(self, conn: sa.Connection, user_id: int) -> Usage:
        """The user's card payments today (approved or in flight) and in the velocity
        window, from `card_payments`."""
        now_ns = self._clock.now_ns()
        c = card_payments.c
        counted = (_Status.SENDING.value, _Status.APPROVED.value)
        base = sa.and_(
            c.user_id == id_to_bytes(user_id),
            c.kind == _Kind.PAYMENT.value,
            c.status.in_(counted),
        )
        today = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(c.amount_fen), 0)).where(
                base, c.created_at >= periods.day_start_ns(now_ns)
            )
        ).scalar_one()
        window = conn.execute(
            sa.select(sa.func.count()).where(
                base, c.created_at > now_ns - VELOCITY_WINDOW_S * NS_PER_S
            )
        ).scalar_one()
        return Usage(int(today), int(window), 0)

    # -- the messages ---------------------------------------------------------------------

    def _record(
        self,
        tx: LedgerTransaction,
        intent: PaymentIntent,
        kind: _Kind,
        user_id: int,
        token: Token,
        message: Message,
        *,
        refund_id: int | None = None,
        refund_key: str | None = None,
    ) -> int:
        row_id = self._ids.next_id()
        now_ns = self._clock.now_ns()
        tx.connection.execute(
            sa.insert(card_payments).values(
                id=id_to_bytes(row_id),
                intent_id=id_to_bytes(intent.id),
                kind=kind.value,
                refund_id=None if refund_id is None else id_to_bytes(refund_id),
                refund_key=refund_key,
                user_id=id_to_bytes(user_id),
                token_id=id_to_bytes(token.id),
                token_number=token.number,
                device_id=token.device_id,
                terminal_id=message.text(41),
                stan=message.text(11),
                transmitted=message.text(7),
                rrn=message.text(37),
                mti=message.mti,
                amount_fen=int(message.text(4)),
                status=_Status.SENDING.value,
                response_code=None,
                approval_code=None,
                created_at=now_ns,
                updated_at=now_ns,
            )
        )
        return row_id

    # -- the exchange ---------------------------------------------------------------------

    def _send(self, sent: _Sent) -> _Result:
        """The switch's answer, or what became of a request with no answer: reversed
        (or left to `resume_stuck`)."""
        try:
            answer = self._link.exchange(sent.message)
        except SwitchUnreachable:
            return _Result(_Status.NOT_SENT)
        except NoAnswer:
            return self._reverse(sent.message)
        code = answer.text(39)
        return _Result(_Status.APPROVED if code == APPROVED else _Status.DECLINED, answer)

    def _reverse(self, original: Message) -> _Result:
        """Send the 0400 of `original` up to `REVERSAL_ATTEMPTS_MAX` times (the same
        message each time: the switch and the issuer know a repeat) until one is
        answered 00; else it is left `reversal_pending` for `resume_stuck`."""

        def numbered(tx: LedgerTransaction) -> Message:
            stan = _next_stan(tx.connection, original.text(41))
            return card_messages.reversal(original, stan=stan, now_ns=self._clock.now_ns())

        reversal = self._committer.run(numbered)
        for _ in range(REVERSAL_ATTEMPTS_MAX):
            try:
                answer = self._link.exchange(reversal)
            except (SwitchUnreachable, NoAnswer):
                continue
            if answer.text(39) == APPROVED:
                return _Result(_Status.REVERSED, answer)
        return _Result(_Status.REVERSAL_PENDING)

    # -- settling -------------------------------------------------------------------------

    def _settle(
        self, tx: LedgerTransaction, intent_id: int, sent: _Sent, result: _Result
    ) -> Confirmation:
        intents = self._intents
        intent = intents._locked(tx, None, intent_id)
        assert intent.status is IntentStatus.PROCESSING, intent.status
        _finish_row(tx, sent.row_id, result, self._clock.now_ns())
        if result.status is _Status.APPROVED and sent.message.mti == "0100":
            return Confirmation(self._held(tx, intent))
        if result.status is _Status.APPROVED:
            return Confirmation(self._paid(tx, intent, intent.amount_fen))
        code = _decline_reason(result)
        waiting = intents._update(tx, intent, status=IntentStatus.REQUIRES_CONFIRMATION.value)
        failed = intents._declined(tx, waiting, _payer(intent), code)
        return Confirmation(failed, code)

    def _held(self, tx: LedgerTransaction, intent: PaymentIntent) -> PaymentIntent:
        """The issuer holds the amount on the card: the intent waits for its capture.
        Nothing is owed yet, so the ledger does not move."""
        held = self._intents._update(
            tx,
            intent,
            status=IntentStatus.REQUIRES_CAPTURE.value,
            amount_capturable_fen=intent.amount_fen,
            capture_before=self._clock.now_ns() + CAPTURE_WINDOW_S * NS_PER_S,
        )
        self._intents._emit(tx, held, "payment_intent.requires_capture")
        return held

    def _paid(self, tx: LedgerTransaction, intent: PaymentIntent, taken: int) -> PaymentIntent:
        """The network owes the platform `taken`; the merchant is owed it, less the
        merchant discount. One transaction with the intent and its event."""
        intents = self._intents
        merchant = intents._merchants.merchant(intent.merchant_id)
        receivable = _card_network_account(tx)
        payment = Transfer(
            _transfer_id(intent.id, "card"),
            receivable,
            merchant.account_id,
            taken,
            LEDGER_CNY,
            TransferCode.CARD_PAYMENT,
            user_data_128=intent.id,
        )
        _require_ok(tx.create_transfers([payment]), payment)
        fee = intents._take_fee(tx, intent, merchant, taken)
        done = intents._update(
            tx,
            intent,
            status=IntentStatus.SUCCEEDED.value,
            amount_capturable_fen=0,
            amount_received_fen=taken,
            fee_fen=fee,
            payment_transfer_id=id_to_bytes(payment.id),
        )
        intents._emit(tx, done, "payment_intent.succeeded")
        return done

    # -- capture and cancel of a held card payment -----------------------------------------

    def capture(
        self, merchant_id: int, intent_id: int, amount_fen: int | None = None
    ) -> PaymentIntent:
        """Take `amount_fen` (by default all) of a card payment the issuer holds: its
        completion advice (0220, field 4 and 95 the amount taken) through the switch;
        then the network owes the platform that much, and the issuer releases the rest.
        An advice tells of what is done: one left unanswered is resent by `resume_stuck`
        and the intent succeeds now. `PaymentIntentConflict` unless `requires_capture`
        inside its window, or when the network refuses the completion (nothing it
        approved is left to complete); `PaymentIntentInvalid` for an amount above the
        hold."""
        sent = self._committer.run(
            lambda tx: self._admit_capture(tx, merchant_id, intent_id, amount_fen)
        )
        result = self._send_advice(sent.message)
        done = self._committer.run(lambda tx: self._settle_capture(tx, intent_id, sent, result))
        if done.status is not IntentStatus.SUCCEEDED:
            raise PaymentIntentConflict(
                f"{public_id(intent_id)}: the card network refused the completion "
                f"({result.response_code}); the hold stays for another try or a cancel"
            )
        return done

    def _admit_capture(
        self, tx: LedgerTransaction, merchant_id: int, intent_id: int, amount_fen: int | None
    ) -> _Sent:
        intents = self._intents
        intent, taken = intents._capturable(tx, merchant_id, intent_id, amount_fen, card=True)
        row = _original_payment(tx.connection, intent.id)
        merchant = intents._merchants.merchant(intent.merchant_id)
        now_ns = self._clock.now_ns()
        advice = card_messages.completion(
            _message_of(row, merchant),
            row.approval_code,
            taken,
            stan=_next_stan(tx.connection, row.terminal_id),
            transmitted=transmission_date_time(now_ns),
        )
        token = self._tokens.token(id_from_bytes(row.token_id))
        user_id = id_from_bytes(row.user_id)
        row_id = self._record(tx, intent, _Kind.COMPLETION, user_id, token, advice)
        intents._update(tx, intent, status=IntentStatus.PROCESSING.value)
        return _Sent(row_id, advice)

    def _send_advice(self, advice: Message) -> _Result:
        """The advice's answer; unanswered after `REVERSAL_ATTEMPTS_MAX` sends (the same
        message each time), `advice_pending`."""
        for _ in range(REVERSAL_ATTEMPTS_MAX):
            try:
                answer = self._link.exchange(advice)
            except (SwitchUnreachable, NoAnswer):
                continue
            code = answer.text(39)
            return _Result(_Status.APPROVED if code == APPROVED else _Status.DECLINED, answer)
        return _Result(_Status.ADVICE_PENDING)

    def _settle_capture(
        self, tx: LedgerTransaction, intent_id: int, sent: _Sent, result: _Result
    ) -> PaymentIntent:
        intents = self._intents
        intent = intents._locked(tx, None, intent_id)
        assert intent.status is IntentStatus.PROCESSING, intent.status
        _finish_row(tx, sent.row_id, result, self._clock.now_ns())
        if result.status is _Status.DECLINED:
            return intents._update(tx, intent, status=IntentStatus.REQUIRES_CAPTURE.value)
        return self._paid(tx, intent, int(sent.message.text(4)))

    def cancel(
        self,
        merchant_id: int | None,
        intent_id: int,
        reason: CancellationReason = CancellationReason.REQUESTED_BY_MERCHANT,
    ) -> PaymentIntent:
        """Release a card payment the issuer holds: its reversal (0400) through the
        switch, and the intent `canceled`. A reversal left unanswered is resent by
        `resume_stuck` (the issuer's hold would lapse by its own timeout anyway).
        `PaymentIntentConflict` unless `requires_capture` with a card."""
        sent = self._committer.run(lambda tx: self._admit_cancel(tx, merchant_id, intent_id))
        result = self._reverse(sent.message)
        return self._committer.run(
            lambda tx: self._settle_cancel(tx, intent_id, sent, result, reason)
        )

    def _admit_cancel(
        self, tx: LedgerTransaction, merchant_id: int | None, intent_id: int
    ) -> _Sent:
        intents = self._intents
        intent = intents._locked(tx, merchant_id, intent_id)
        if intent.status is not IntentStatus.REQUIRES_CAPTURE or intent.funding is not Funding.CARD:
            raise _conflict(intent, "canceled")
        row = _original_payment(tx.connection, intent.id)
        assert row is not None
        merchant = intents._merchants.merchant(intent.merchant_id)
        sent = _Sent(id_from_bytes(row.id), _message_of(row, merchant))
        # Marked before it is sent: a server that dies now leaves it to `resume_stuck`.
        _finish_row(tx, sent.row_id, _Result(_Status.REVERSAL_PENDING), self._clock.now_ns())
        intents._update(tx, intent, status=IntentStatus.PROCESSING.value)
        return sent

    def _settle_cancel(
        self,
        tx: LedgerTransaction,
        intent_id: int,
        sent: _Sent,
        result: _Result,
        reason: CancellationReason,
    ) -> PaymentIntent:
        intents = self._intents
        intent = intents._locked(tx, None, intent_id)
        assert intent.status is IntentStatus.PROCESSING, intent.status
        _finish_row(tx, sent.row_id, result, self._clock.now_ns())
        return intents._mark_canceled(tx, intent, reason)

    # -- refunds --------------------------------------------------------------------------

    def refund(
        self,
        merchant_id: int,
        intent_id: int,
        key: str,
        amount_fen: int | None = None,
        reason: str | None = None,
    ) -> Refund:
        """Give back `amount_fen` (by default all that is left) of a card payment to the
        card, through the network; several refunds may follow each other up to what the
        intent received. The same `key` answers the same refund. A refund the merchant
        cannot fund, or the issuer declines, is `failed` and moves nothing."""
        admitted = self._committer.run(
            lambda tx: self._admit_refund(tx, merchant_id, intent_id, key, amount_fen, reason)
        )
        if isinstance(admitted, Refund):
            return admitted
        sent, refund_id = admitted
        result = self._send(sent)
        return self._committer.run(
            lambda tx: self._settle_refund(tx, intent_id, sent, refund_id, reason, result)
        )

    def _admit_refund(
        self,
        tx: LedgerTransaction,
        merchant_id: int,
        intent_id: int,
        key: str,
        amount_fen: int | None,
        reason: str | None,
    ) -> Refund | tuple[_Sent, int]:
        intents = self._intents
        intent = intents._locked(tx, merchant_id, intent_id)
        if intent.status is not IntentStatus.SUCCEEDED or intent.funding is not Funding.CARD:
            raise _conflict(intent, "refunded to a card")
        earlier = _refund_row(tx.connection, intent.id, key)
        if earlier is not None:
            return self._earlier_refund(tx.connection, earlier)
        left = intent.amount_received_fen - _refunded_fen(tx.connection, intent.id)
        left -= _refunds_in_flight_fen(tx.connection, intent.id)
        amount = refund_amount(left, amount_fen, reason)
        merchant = intents._merchants.merchant(intent.merchant_id)
        refund_id = self._ids.next_id()
        before = intent.amount_received_fen - left  # refunded, and in flight
        fee_back = _share(intent.fee_fen, before + amount, intent.amount_received_fen)
        fee_back -= _share(intent.fee_fen, before, intent.amount_received_fen)
        holds = _refund_holds(tx, intent.id, refund_id, merchant, amount, fee_back)
        results = tx.create_transfers(holds)
        if CreateTransferResult.EXCEEDS_CREDITS in results:
            return self._refund_done(
                tx, intent, refund_id, amount, reason, "merchant_balance_insufficient"
            )
        for held, hold in zip(results, holds, strict=True):
            _require_ok([held], hold)
        row = _original_payment(tx.connection, intent.id)
        token = self._tokens.token(id_from_bytes(row.token_id))
        stan = _next_stan(tx.connection, PLATFORM_TERMINAL_ID)
        message = card_messages.request(
            merchant, token, amount, PROCESSING_REFUND, "0200", stan, self._clock.now_ns()
        )
        validate(message)
        row_id = self._record(
            tx,
            intent,
            _Kind.REFUND,
            id_from_bytes(row.user_id),
            token,
            message,
            refund_id=refund_id,
            refund_key=key,
        )
        return _Sent(row_id, message), refund_id

    def _earlier_refund(self, conn: sa.Connection, row: Any) -> Refund:
        """The refund a key already made; `PaymentIntentConflict` while it is in flight."""
        found = conn.execute(sa.select(refunds).where(refunds.c.id == row.refund_id)).first()
        if found is None:
            raise PaymentIntentConflict("this refund is still being sent to the card")
        return _refund_value(found._asdict())

    def _settle_refund(
        self,
        tx: LedgerTransaction,
        intent_id: int,
        sent: _Sent,
        refund_id: int,
        reason: str | None,
        result: _Result,
    ) -> Refund:
        intent = self._intents._locked(tx, None, intent_id)
        _finish_row(tx, sent.row_id, result, self._clock.now_ns())
        approved = result.status is _Status.APPROVED
        flags = (
            TransferFlags.POST_PENDING_TRANSFER if approved else TransferFlags.VOID_PENDING_TRANSFER
        )
        for leg in _REFUND_LEGS:
            ending = Transfer(
                _transfer_id(refund_id, f"{leg}-end"),
                0,
                0,
                AMOUNT_MAX,
                LEDGER_CNY,
                TransferCode.CARD_REFUND,
                flags=flags,
                pending_id=_transfer_id(refund_id, leg),
                user_data_128=intent.id,
            )
            (ended,) = tx.create_transfers([ending])
            # No fee share to end when the fee gave nothing back for this refund.
            if ended is not CreateTransferResult.PENDING_TRANSFER_NOT_FOUND:
                _require_ok([ended], ending)
        amount = int(sent.message.text(4))
        failure = None if approved else _decline_reason(result)
        return self._refund_done(tx, intent, refund_id, amount, reason, failure)

    def _refund_done(
        self,
        tx: LedgerTransaction,
        intent: PaymentIntent,
        refund_id: int,
        amount: int,
        reason: str | None,
        failure: str | None,
    ) -> Refund:
        intents = self._intents
        row = {
            "id": id_to_bytes(refund_id),
            "intent_id": id_to_bytes(intent.id),
            "merchant_id": id_to_bytes(intent.merchant_id),
            "amount_fen": amount,
            "reason": reason,
            "status": (RefundStatus.FAILED if failure else RefundStatus.SUCCEEDED).value,
            "failure_code": failure,
            "wallet_operation_id": None,
            "created_at": self._clock.now_ns(),
        }
        tx.connection.execute(sa.insert(refunds).values(row))
        refund = _refund_value(row)
        if intents._events is not None:
            kind = "refund.failed" if failure else "refund.succeeded"
            intents._events.emit(tx.connection, intent.merchant_id, kind, refund_object(refund))
        return refund

    # -- housekeeping ---------------------------------------------------------------------

    def resume_stuck(self, limit: int = RESUME_BATCH_MAX) -> int:
        """Finish what a dead server or a silent switch left, untouched for
        `STUCK_AFTER_S`: requests `sending` (a payment or refund is reversed and settled
        as not done, a completion is sent again), reversals `reversal_pending` and
        completions `advice_pending` (sent again); then release the card holds whose
        capture window lapsed. The number finished. Safe on every server at once: a row
        is claimed (`_claim`) before anything is sent for it."""
        assert 1 <= limit <= RESUME_BATCH_MAX
        now_ns = self._clock.now_ns()
        c = card_payments.c
        with self._intents._engine.connect() as conn:
            rows = conn.execute(
                sa.select(card_payments)
                .where(
                    c.status.in_(_UNFINISHED),
                    c.updated_at <= now_ns - STUCK_AFTER_S * NS_PER_S,
                )
                .order_by(c.created_at)
                .limit(limit)
            ).all()
            lapsed = _lapsed_holds(conn, now_ns, limit)
        finished = sum(self._resume(row) for row in rows if self._claim(row))
        for intent_id in lapsed:
            try:
                self.cancel(None, intent_id, CancellationReason.CAPTURE_WINDOW_LAPSED)
            except PaymentIntentConflict:  # another server got there first
                continue
            finished += 1
        return finished

    def _claim(self, row: Any) -> bool:
        """Take `row` for this pass (compare-and-set on its `updated_at`): moved on, it is
        no other pass's for `STUCK_AFTER_S`, longer than its exchanges can take."""

        def unit(tx: LedgerTransaction) -> bool:
            c = card_payments.c
            taken = tx.connection.execute(
                sa.update(card_payments)
                .where(c.id == row.id, c.status == row.status, c.updated_at == row.updated_at)
                .values(updated_at=self._clock.now_ns())
            )
            return bool(taken.rowcount == 1)

        return self._committer.run(unit)

    def _resume(self, row: Any) -> int:
        intent_id = id_from_bytes(row.intent_id)
        with self._intents._engine.connect() as conn:
            intent_row = _intent_row(conn, intent_id)
            original_row = _original_payment(conn, intent_id, missing_ok=True)
        merchant = self._intents._merchants.merchant(id_from_bytes(intent_row.merchant_id))
        processing = intent_row.status == IntentStatus.PROCESSING.value
        sent = _Sent(id_from_bytes(row.id), _message_of(row, merchant))
        if row.kind == _Kind.COMPLETION.value:
            assert original_row is not None
            return self._resume_completion(row, original_row, merchant, processing)
        result = self._reverse(sent.message)
        if result.status is not _Status.REVERSED:
            return 0
        if row.kind == _Kind.REFUND.value and row.status == _Status.SENDING.value:
            refund_id = id_from_bytes(row.refund_id)
            self._committer.run(
                lambda tx: self._settle_refund(tx, intent_id, sent, refund_id, None, result)
            )
        elif processing and row.status == _Status.SENDING.value:
            self._committer.run(lambda tx: self._settle(tx, intent_id, sent, result))
        elif processing:  # a cancel interrupted after it marked the reversal
            reason = CancellationReason.REQUESTED_BY_MERCHANT
            self._committer.run(lambda tx: self._settle_cancel(tx, intent_id, sent, result, reason))
        else:  # settled already: the reversal was all that was left
            self._committer.run(
                lambda tx: _finish_row(tx, sent.row_id, result, self._clock.now_ns())
            )
        return 1

    def _resume_completion(
        self, row: Any, original_row: Any, merchant: Merchant, processing: bool
    ) -> int:
        advice = card_messages.completion(
            _message_of(original_row, merchant),
            original_row.approval_code,
            row.amount_fen,
            stan=row.stan,
            transmitted=row.transmitted,
        )
        result = self._send_advice(advice)
        if result.status is _Status.ADVICE_PENDING:
            return 0
        sent = _Sent(id_from_bytes(row.id), advice)
        intent_id = id_from_bytes(row.intent_id)
        if processing:
            self._committer.run(lambda tx: self._settle_capture(tx, intent_id, sent, result))
        else:
            self._committer.run(
                lambda tx: _finish_row(tx, sent.row_id, result, self._clock.now_ns())
            )
        return 1


# -- pure helpers and rows ------------------------------------------------------------------


#: The pending legs of a refund to a card: the merchant's part, and the fee's share the
#: platform gives back (the merchant discount is returned pro rata, as for the wallet).
_REFUND_LEGS: Final = ("card-refund", "card-refund-fee")


def _refund_holds(
    tx: LedgerTransaction,
    intent_id: int,
    refund_id: int,
    merchant: Merchant,
    amount: int,
    fee_back: int,
) -> list[Transfer]:
    """The holds toward the card network of a refund of `amount`: `amount - fee_back`
    from the merchant, `fee_back` from fee revenue."""
    assert 0 <= fee_back <= amount
    receivable = _card_network_account(tx)
    sources = (
        (merchant.account_id, amount - fee_back),
        (platform_account_id(AccountCode.FEE_REVENUE), fee_back),
    )
    pairs = zip(_REFUND_LEGS, sources, strict=True)
    legs = [(leg, source, part) for leg, (source, part) in pairs if part]
    return [  # linked: both holds or neither
        Transfer(
            _transfer_id(refund_id, leg),
            source,
            receivable,
            part,
            LEDGER_CNY,
            TransferCode.CARD_REFUND,
            flags=TransferFlags.PENDING | (TransferFlags.LINKED if n < len(legs) - 1 else 0),
            user_data_128=intent_id,
        )
        for n, (leg, source, part) in enumerate(legs)
    ]


def _cst_date(now_ns: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(now_ns // NS_PER_S, CST).date()


def _decline_reason(result: _Result) -> str:
    if result.status is _Status.NOT_SENT:
        return SwitchUnreachable.code
    if result.status in (_Status.REVERSED, _Status.REVERSAL_PENDING):
        return NoAnswer.code
    code = result.response_code
    return DECLINE_REASONS.get(code or "", DECLINE_REASON_OTHER)


def _payer(intent: PaymentIntent) -> int:
    assert intent.payer_user_id is not None
    return intent.payer_user_id


def _card_network_account(tx: LedgerTransaction) -> int:
    kind = CHART[AccountCode.CARD_NETWORK]
    account_id = platform_account_id(AccountCode.CARD_NETWORK)
    (opened,) = tx.create_accounts([Account(account_id, LEDGER_CNY, kind.code, kind.flags)])
    assert opened in (CreateAccountResult.OK, CreateAccountResult.EXISTS), opened
    return account_id


def _next_stan(conn: sa.Connection, terminal_id: str) -> str:
    """The terminal's next STAN, 000001 to 999999 and round again; the row stays locked
    to the end of the transaction, so two servers never take the same one."""
    c = acquirer_stans.c
    bumped = conn.execute(
        sa.update(acquirer_stans)
        .where(c.terminal_id == terminal_id)
        .values(last_stan=sa.case((c.last_stan >= 999_999, 1), else_=c.last_stan + 1))
    )
    if bumped.rowcount == 0:
        conn.execute(sa.insert(acquirer_stans).values(terminal_id=terminal_id, last_stan=1))
    last = conn.execute(sa.select(c.last_stan).where(c.terminal_id == terminal_id)).scalar_one()
    return f"{int(last):06d}"


def _finish_row(tx: LedgerTransaction, row_id: int, result: _Result, now_ns: int) -> None:
    """The request's new status; the answer's codes when it was answered itself (a
    reversal's answer leaves the original's codes as they were)."""
    values: dict[str, Any] = {"status": result.status.value, "updated_at": now_ns}
    if result.response is not None and result.status in (_Status.APPROVED, _Status.DECLINED):
        approval = result.response.fields.get(38)
        values["response_code"] = result.response_code
        values["approval_code"] = approval if isinstance(approval, str) else None
    tx.connection.execute(
        sa.update(card_payments).where(card_payments.c.id == id_to_bytes(row_id)).values(values)
    )


def _refund_row(conn: sa.Connection, intent_id: int, key: str) -> Any:
    c = card_payments.c
    return conn.execute(
        sa.select(card_payments).where(c.intent_id == id_to_bytes(intent_id), c.refund_key == key)
    ).first()


def _refunds_in_flight_fen(conn: sa.Connection, intent_id: int) -> int:
    c = card_payments.c
    return int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(c.amount_fen), 0)).where(
                c.intent_id == id_to_bytes(intent_id),
                c.kind == _Kind.REFUND.value,
                c.status.in_((_Status.SENDING.value, _Status.REVERSAL_PENDING.value)),
            )
        ).scalar_one()
    )


def _original_payment(conn: sa.Connection, intent_id: int, *, missing_ok: bool = False) -> Any:
    """The intent's approved payment request (0100 or 0200); None if there is none and
    `missing_ok`."""
    c = card_payments.c
    row = conn.execute(
        sa.select(card_payments).where(
            c.intent_id == id_to_bytes(intent_id),
            c.kind == _Kind.PAYMENT.value,
            c.status == _Status.APPROVED.value,
        )
    ).first()
    if row is None and not missing_ok:  # a held or succeeded card intent always has one
        raise PaymentIntentNotFound(f"no card payment of {public_id(intent_id)}")
    return row


def _lapsed_holds(conn: sa.Connection, now_ns: int, limit: int) -> list[int]:
    """Card-funded intents held past their capture window."""
    c = payment_intents.c
    found = conn.execute(
        sa.select(c.id)
        .where(
            c.status == IntentStatus.REQUIRES_CAPTURE.value,
            c.funding == Funding.CARD.value,
            c.capture_before <= now_ns,
        )
        .limit(limit)
    ).scalars()
    return [id_from_bytes(key) for key in found]


def _message_of(row: Any, merchant: Merchant) -> Message:
    """A recorded request again, without its cryptogram (never kept): what its reversal
    and completion carry over, and field 90 names."""
    fields: dict[int, FieldValue] = {
        2: row.token_number,
        3: PROCESSING_REFUND if row.kind == _Kind.REFUND.value else PROCESSING_PURCHASE,
        4: f"{row.amount_fen:012d}",
        7: row.transmitted,
        11: row.stan,
        12: "000000",
        13: row.transmitted[:4],
        18: merchant.mcc,
        22: ENTRY_IN_APP,
        25: CONDITION_IN_APP,
        32: PLATFORM_ACQUIRER_ID,
        37: row.rrn,
        41: row.terminal_id,
        42: card_messages.card_merchant_id(merchant.id),
        43: card_messages.name_location(merchant),
        49: f"{CURRENCY_NUMERIC:03d}",
        61: row.device_id,
        62: TokenDomain.IN_APP.value,
    }
    return Message(row.mti, fields)
