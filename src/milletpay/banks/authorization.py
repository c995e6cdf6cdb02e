"""A bank's authorization service: approve or decline a card payment, hold, post, void.

`authorize` answers an ISO 8583 response code (`responses.py`) and, when approved, an
approval code and the id of the hold it placed: a pending transfer from the cardholder's
account to the bank's network settlement account, with a timeout. `complete` posts the
hold (in full or in part), `reverse` voids it.

Each request is named by the caller's `reference` (the network's retrieval reference:
acquirer, STAN, date): the authorization's id is derived from it, and the decision, its
hold and its row commit in one ledger transaction. A retry finds the row and gets the
first answer; it never places a second hold nor counts a PIN try twice. Answers 91 and
96 are not recorded, so a retry is decided afresh.

The checks run in a fixed order, each giving its code: card (14), card status (62, 54),
expiry (54), account status (62), currency (57), cardholder verification (55 / 75 for
the PIN, 05 for CVN2), limits (61), funds (51). The PAN is never logged.
"""

from __future__ import annotations

import enum
import hmac
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from milletpay.banks import chart
from milletpay.banks.cardnumbers import is_pan
from milletpay.banks.chart import LEDGER_CNY, BankAccountCode, BankTransferCode
from milletpay.banks.model import (
    AccountStatus,
    CardStatus,
    check_amount,
    check_reference,
    day_start_ns,
    is_expired,
    year_start_ns,
)
from milletpay.banks.responses import ResponseCode as R
from milletpay.banks.tables import authorizations, cards
from milletpay.core.clock import NS_PER_S
from milletpay.core.ids import id_from_bytes, id_to_bytes
from milletpay.ledger import AMOUNT_MAX, CreateTransferResult, Transfer, TransferFlags
from milletpay.ledger.engine import LedgerTransaction
from milletpay.store.sql import Sql

if TYPE_CHECKING:
    from milletpay.banks.bank import Bank

log = logging.getLogger(__name__)

#: A hold lapses this long after it was placed if it is neither completed nor reversed.
AUTH_HOLD_TIMEOUT_S = 7 * 24 * 3600
#: Wrong PINs in a row after which the card answers 75 until the PIN is reset.
PIN_TRIES_MAX = 3
CURRENCY = "CNY"
APPROVAL_CODE_CHARS = 6

#: The legs of an authorization's transfers: the hold (0), its post (1) or void (2), and
#: the money given back when a completed one is reversed (3).
_LEG_REVERSED = 3


class Channel(enum.StrEnum):
    CARD_PRESENT_PIN = "pin"  # chip or magnetic stripe with online PIN
    CARD_NOT_PRESENT = "cnp"  # e-commerce, mail/phone order: expiry and CVN2
    CONTACTLESS = "contactless"  # tap or token: the network has checked the cryptogram


class AuthStatus(enum.StrEnum):
    DECLINED = "declined"
    HELD = "held"
    COMPLETED = "completed"
    REVERSED = "reversed"
    EXPIRED = "expired"
    REFUNDED = "refunded"  # a refund credited to the card (never counted as spending)


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    reference: str
    pan: str = field(repr=False)
    amount_fen: int
    channel: Channel
    currency: str = CURRENCY
    expiry_yymm: str | None = field(default=None, repr=False)
    cvn2: str | None = field(default=None, repr=False)
    pin: str | None = field(default=None, repr=False)
    merchant_category: str = ""


@dataclass(frozen=True, slots=True)
class AuthorizationAnswer:
    response_code: R
    approval_code: str = ""
    authorization_id: int = 0
    hold_id: int = 0
    reason: str = ""  # the bank's own word for a decline (not sent on the wire)

    @property
    def approved(self) -> bool:
        return self.response_code is R.APPROVED


@dataclass(frozen=True, slots=True)
class HoldAnswer:
    ok: bool
    status: str  # the authorization's status after the call, or why nothing was done
    completed_fen: int = 0


@dataclass(frozen=True, slots=True)
class _Decision:
    code: R
    reason: str
    card_id: bytes | None = None
    account_id: bytes | None = None
    pin_tries: int | None = None  # the card's new count of wrong PIN tries, if it moved


def authorize(
    bank: Bank, request: AuthorizationRequest, *, post: bool = False
) -> AuthorizationAnswer:
    """Decide `request`; an approval holds the amount. With `post` (a single-message
    purchase), an approval is also posted in full in the same transaction: the answer
    and the money are stored together or not at all. A repeat of the request is
    answered from its record."""
    check_reference(request.reference)
    check_amount(request.amount_fen)
    if not bank.online:
        return AuthorizationAnswer(R.ISSUER_INOPERATIVE, reason="issuer_offline")
    auth_id = chart.request_id(bank.code, "authorization", request.reference)
    try:
        fingerprint = bank.fingerprint(request.pan) if is_pan(request.pan) else None
        with bank.ledger.transaction() as tx:
            row = _authorization_row(tx.connection, auth_id)
            if row is not None:
                if not _same_request(tx.connection, row, request, fingerprint):
                    # A reference names one authorization: never the first one's answer
                    # (and hold) for another card, amount or channel.
                    return AuthorizationAnswer(R.DUPLICATE_TRANSMISSION, reason="reference_reused")
                if post and row.status == AuthStatus.HELD.value:
                    _posted(_post_or_void(bank, tx, row, request.reference, request.amount_fen))
                return _answer(row)
            decision = _decide(bank, tx.connection, request, fingerprint)
            answer = _record(bank, tx, request, auth_id, decision)
            if post and answer.approved:
                held = _Held(id_to_bytes(auth_id), id_to_bytes(answer.hold_id))
                _posted(_post_or_void(bank, tx, held, request.reference, request.amount_fen))
            return answer
    except Exception:
        # Never the request itself in the log: it carries the PAN.
        log.exception("%s: authorization %x failed", bank.code, auth_id)
        return AuthorizationAnswer(R.SYSTEM_MALFUNCTION, reason="system_malfunction")


def _posted(answer: HoldAnswer) -> None:
    """A purchase's hold was just posted; if not (it expired), undo the transaction."""
    if not answer.ok:
        raise RuntimeError(f"an approved purchase was not posted: {answer.status}")


def _same_request(
    conn: sa.Connection, row: Any, request: AuthorizationRequest, fingerprint: bytes | None
) -> bool:
    """Whether a retry asks what the first request under its reference asked. A
    reversal's tombstone (no channel) stands for whatever comes late under it."""
    if row.channel == _TOMBSTONE_CHANNEL:
        return True
    if (row.amount_fen, row.channel) != (request.amount_fen, str(request.channel)):
        return False
    if row.card_id is None or fingerprint is None:
        return row.card_id is None and fingerprint is None
    card = _CARD_BY_FINGERPRINT.run(conn, the_fingerprint=fingerprint).first()
    return card is not None and bytes(card.id) == bytes(row.card_id)


def _authorization_row(conn: sa.Connection, auth_id: int) -> Any:
    return _AUTHORIZATION_BY_ID.run(conn, the_id=id_to_bytes(auth_id)).first()


def _answer(row: Any) -> AuthorizationAnswer:
    return AuthorizationAnswer(
        R(row.response_code),
        row.approval_code,
        id_from_bytes(row.id),
        id_from_bytes(row.hold_id) if row.hold_id else 0,
        reason="" if row.response_code == R.APPROVED else "repeated",
    )


def _card_of(
    bank: Bank, conn: sa.Connection, request: AuthorizationRequest, fingerprint: bytes | None
) -> Any:
    """The bank's card row of the request's card number, or None (not a number, not one
    of the bank's IINs, no such card)."""
    if fingerprint is None or not bank.spec.issues_iin(request.pan[:6]):
        return None
    return _CARD_BY_FINGERPRINT.run(conn, the_fingerprint=fingerprint).first()


def _decide(
    bank: Bank, conn: sa.Connection, request: AuthorizationRequest, fingerprint: bytes | None
) -> _Decision:
    """Every check but funds, in order; the first that fails decides."""
    card = _card_of(bank, conn, request, fingerprint)
    if card is None:
        return _Decision(R.INVALID_CARD, "card_unknown")
    ids = {"card_id": card.id, "account_id": card.account_id}
    status = CardStatus(card.status)
    if status in (CardStatus.LOST, CardStatus.BLOCKED):
        return _Decision(R.RESTRICTED_CARD, f"card_{status.value}", **ids)
    if status is CardStatus.EXPIRED or is_expired(card.expiry_yymm, bank.clock):
        return _Decision(R.EXPIRED_CARD, "card_expired", **ids)
    if request.expiry_yymm is not None and request.expiry_yymm != card.expiry_yymm:
        return _Decision(R.EXPIRED_CARD, "expiry_mismatch", **ids)
    account = _ACCOUNT_BY_ID.run(conn, the_account=card.account_id).one()
    if account.status != AccountStatus.ACTIVE:
        return _Decision(R.RESTRICTED_CARD, f"account_{account.status}", **ids)
    if request.currency != CURRENCY:
        return _Decision(R.NOT_PERMITTED_TO_CARDHOLDER, "currency_not_supported", **ids)
    verified = _verify_cardholder(bank, request, card)
    if verified is not None:
        return verified
    limit = _limit_exceeded(bank, conn, request.amount_fen, account, card.id)
    if limit is not None:
        return _Decision(R.EXCEEDS_AMOUNT_LIMIT, limit, **ids)
    tries = 0 if card.pin_failed_tries and request.channel is Channel.CARD_PRESENT_PIN else None
    return _Decision(R.APPROVED, "", pin_tries=tries, **ids)


def _verify_cardholder(bank: Bank, request: AuthorizationRequest, card: Any) -> _Decision | None:
    ids = {"card_id": card.id, "account_id": card.account_id}
    channel = Channel(request.channel)
    if channel is Channel.CARD_NOT_PRESENT:
        pan = bank.unseal(b"pan", id_from_bytes(card.id), card.pan_sealed)
        expected = bank.card_cvn2(pan, card.expiry_yymm)
        given = request.cvn2 or ""
        if request.expiry_yymm is None or not hmac.compare_digest(given, expected):
            return _Decision(R.DO_NOT_HONOUR, "cvn2_mismatch", **ids)
    elif channel is Channel.CARD_PRESENT_PIN:
        if card.pin_failed_tries >= PIN_TRIES_MAX:
            return _Decision(R.PIN_TRIES_EXCEEDED, "pin_tries_exceeded", **ids)
        value = bank.pin_value(id_from_bytes(card.id), request.pin or "")
        if card.pin_verification_value is None or not hmac.compare_digest(
            value, card.pin_verification_value
        ):
            tries = card.pin_failed_tries + 1
            if tries >= PIN_TRIES_MAX:
                return _Decision(R.PIN_TRIES_EXCEEDED, "pin_tries_exceeded", pin_tries=tries, **ids)
            return _Decision(R.INCORRECT_PIN, "pin_wrong", pin_tries=tries, **ids)
    return None


def _limit_exceeded(
    bank: Bank, conn: sa.Connection, amount_fen: int, account: Any, card_id: bytes
) -> str | None:
    """The name of the first limit `amount_fen` would break, or None."""
    product = bank.spec.product(account.product)
    if amount_fen > product.per_transaction_limit_fen:
        return "per_transaction_limit"
    today = day_start_ns(bank.clock)
    spent_fen = card_spent_fen(conn, card_id, today, bank.clock.now_ns())
    if spent_fen + amount_fen > product.daily_limit_fen:
        return "daily_limit"
    return class_limit_exceeded(bank, conn, account, amount_fen)


def class_limit_exceeded(
    bank: Bank, conn: sa.Connection, account: Any, amount_fen: int
) -> str | None:
    """The account class's limit on spending and transfers `amount_fen` would break:
    only for the class the bank opens remotely (its data's `remote_opening`)."""
    remote = bank.spec.remote_opening
    if remote is None or account.account_class != remote.account_class:
        return None
    now_ns = bank.clock.now_ns()
    today_fen = account_spent_fen(conn, account.id, day_start_ns(bank.clock), now_ns)
    if today_fen + amount_fen > remote.daily_limit_fen:
        return "account_class_daily_limit"
    this_year_fen = account_spent_fen(conn, account.id, year_start_ns(bank.clock), now_ns)
    if this_year_fen + amount_fen > remote.yearly_limit_fen:
        return "account_class_yearly_limit"
    return None


#: What an authorization row spent: the posted amount once completed, the held amount
#: while its hold can still be live (a hold past its timeout has lapsed in the ledger
#: even if nobody has resolved the row yet), else nothing; summed over the rows, of
#: those `_SPENT_ROWS` names, created since `:the_since`.
_SPENT_ROWS_SUM = f"""SELECT COALESCE(SUM(CASE
        WHEN status = '{AuthStatus.COMPLETED.value}' THEN completed_fen
        WHEN created_at > :the_now - {AUTH_HOLD_TIMEOUT_S * NS_PER_S} THEN amount_fen
        ELSE 0 END), 0) AS spent_fen
    FROM authorizations
    WHERE created_at >= :the_since
    AND status IN ('{AuthStatus.HELD.value}', '{AuthStatus.COMPLETED.value}')"""
_CARD_SPENT: Final = Sql(_SPENT_ROWS_SUM + " AND card_id = :the_card")
_ACCOUNT_CARD_SPENT: Final = Sql(_SPENT_ROWS_SUM + " AND account_id = :the_account")
_ACCOUNT_DEBITED: Final = Sql(
    """SELECT COALESCE(SUM(amount_fen), 0) AS debited_fen FROM movements
    WHERE account_id = :the_account AND created_at >= :the_since
    AND kind = 'debit' AND approved = :approved"""
)


def card_spent_fen(conn: sa.Connection, card_id: bytes, since_ns: int, now_ns: int) -> int:
    """What the card has spent since `since_ns`: holds live or completed."""
    spent = _CARD_SPENT.run(conn, the_card=card_id, the_since=since_ns, the_now=now_ns)
    return int(spent.scalar_one_or_none())


#: The statements every card payment runs.
_CARD_BY_FINGERPRINT: Final = Sql("SELECT * FROM cards WHERE pan_fingerprint = :the_fingerprint")
_ACCOUNT_BY_ID: Final = Sql("SELECT * FROM bank_accounts WHERE id = :the_account")
_AUTHORIZATION_BY_ID: Final = Sql("SELECT * FROM authorizations WHERE id = :the_id")
_INSERT_AUTHORIZATION: Final = Sql.insert(authorizations)
_RESOLVE_AUTHORIZATION: Final = Sql(
    """UPDATE authorizations SET status = :the_status, completed_fen = :the_completed,
    resolved_at = :the_time WHERE id = :the_id"""
)


def account_spent_fen(conn: sa.Connection, account_id: bytes, since_ns: int, now_ns: int) -> int:
    """What left the account since `since_ns` by card or to Millet Pay."""
    when = {"the_account": account_id, "the_since": since_ns}
    by_card = _ACCOUNT_CARD_SPENT.run(conn, **when, the_now=now_ns).scalar_one_or_none()
    linked = _ACCOUNT_DEBITED.run(conn, **when, approved=True).scalar_one_or_none()
    return int(by_card) + int(linked)


@dataclass(frozen=True, slots=True)
class _Held:
    """The part of a held authorization's row `_post_or_void` needs."""

    id: bytes
    hold_id: bytes


def _record(
    bank: Bank,
    tx: LedgerTransaction,
    request: AuthorizationRequest,
    auth_id: int,
    decision: _Decision,
) -> AuthorizationAnswer:
    """Place the hold if approved (the ledger decides funds), then write the row."""
    conn = tx.connection
    code, reason, hold_id = decision.code, decision.reason, 0
    if code is R.APPROVED:
        assert decision.account_id is not None
        hold_id = chart.transfer_id(bank.code, "authorization", request.reference, 0)
        hold = Transfer(
            hold_id,
            id_from_bytes(decision.account_id),
            bank.own_account_id(BankAccountCode.NETWORK_SETTLEMENT),
            request.amount_fen,
            LEDGER_CNY,
            BankTransferCode.CARD_PURCHASE,
            flags=TransferFlags.PENDING,
            timeout_s=AUTH_HOLD_TIMEOUT_S,
        )
        (result,) = tx.create_transfers([hold])
        if result is CreateTransferResult.EXCEEDS_CREDITS:
            code, reason, hold_id = R.INSUFFICIENT_FUNDS, "insufficient_funds", 0
        else:
            assert result is CreateTransferResult.OK, result
    if decision.pin_tries is not None:
        conn.execute(
            sa.update(cards)
            .where(cards.c.id == decision.card_id)
            .values(pin_failed_tries=decision.pin_tries)
        )
    approval_code = _approval_code(auth_id) if code is R.APPROVED else ""
    _INSERT_AUTHORIZATION.run(
        conn,
        id=id_to_bytes(auth_id),
        card_id=decision.card_id,
        account_id=decision.account_id,
        amount_fen=request.amount_fen,
        channel=Channel(request.channel).value,
        response_code=code.value,
        approval_code=approval_code,
        hold_id=id_to_bytes(hold_id) if hold_id else None,
        status=(AuthStatus.HELD if hold_id else AuthStatus.DECLINED).value,
        completed_fen=0,
        created_at=bank.clock.now_ns(),
        resolved_at=None,
    )
    return AuthorizationAnswer(code, approval_code, auth_id, hold_id, reason)


def _approval_code(auth_id: int) -> str:
    """Six digits derived from the authorization's id (ISO 8583 field 38)."""
    return f"{auth_id % 10**APPROVAL_CODE_CHARS:0{APPROVAL_CODE_CHARS}d}"


def complete(bank: Bank, reference: str, amount_fen: int) -> HoldAnswer:
    """Post `amount_fen` of the hold (at most what was authorized; the rest is released).
    Completing again answers the first completion."""
    check_reference(reference)
    check_amount(amount_fen)
    return _resolve(bank, reference, amount_fen)


def reverse(bank: Bank, reference: str) -> HoldAnswer:
    """Void the hold. A reversal of an authorization the bank never saw is recorded, so
    that the authorization, if it arrives late, is declined instead of holding money."""
    check_reference(reference)
    return _resolve(bank, reference, None)


def _reverse_completed(bank: Bank, tx: Any, row: Any, reference: str) -> HoldAnswer:
    """A reversal of a completed authorization (a single-message 0200 whose answer the
    acquirer never got): the amount taken goes back to the cardholder's account, by a
    transfer the other way, and the authorization is reversed. Once: a repeat finds it
    reversed."""
    (taken,) = bank.ledger.lookup_transfers([id_from_bytes(row.hold_id)])
    if row.completed_fen:
        back = Transfer(
            chart.transfer_id(bank.code, "authorization", reference, _LEG_REVERSED),
            taken.credit_account_id,
            taken.debit_account_id,
            row.completed_fen,
            LEDGER_CNY,
            BankTransferCode.CARD_PURCHASE,
        )
        (result,) = tx.create_transfers([back])
        assert result is CreateTransferResult.OK, result
    _set_status(bank, tx.connection, row, AuthStatus.REVERSED, row.completed_fen)
    return HoldAnswer(True, AuthStatus.REVERSED.value, row.completed_fen)


def _resolve(bank: Bank, reference: str, amount_fen: int | None) -> HoldAnswer:
    auth_id = chart.request_id(bank.code, "authorization", reference)
    posting = amount_fen is not None
    with bank.ledger.transaction() as tx:
        row = _authorization_row(tx.connection, auth_id)
        if row is None:
            if posting:
                return HoldAnswer(False, "authorization_unknown")
            _tombstone(bank, tx.connection, auth_id)
            return HoldAnswer(True, AuthStatus.REVERSED.value)
        status = AuthStatus(row.status)
        if status is AuthStatus.COMPLETED and not posting:
            return _reverse_completed(bank, tx, row, reference)
        if status is AuthStatus.REFUNDED and not posting:
            return _reverse_refund(bank, tx, row, reference)
        if status is not AuthStatus.HELD:
            done = status is (AuthStatus.COMPLETED if posting else AuthStatus.REVERSED)
            return HoldAnswer(done, status.value, row.completed_fen)
        if amount_fen is not None and amount_fen > row.amount_fen:
            return HoldAnswer(False, "amount_exceeds_authorization")
        return _post_or_void(bank, tx, row, reference, amount_fen)


def _post_or_void(
    bank: Bank, tx: LedgerTransaction, row: Any, reference: str, amount_fen: int | None
) -> HoldAnswer:
    """Post `amount_fen` of a held authorization's hold, or void it (None)."""
    posting = amount_fen is not None
    flag, leg = (
        (TransferFlags.POST_PENDING_TRANSFER, 1)
        if posting
        else (TransferFlags.VOID_PENDING_TRANSFER, 2)
    )
    transfer = Transfer(
        chart.transfer_id(bank.code, "authorization", reference, leg),
        0,
        0,
        AMOUNT_MAX if amount_fen is None else amount_fen,
        LEDGER_CNY,
        BankTransferCode.CARD_PURCHASE,
        flags=flag,
        pending_id=id_from_bytes(row.hold_id),
    )
    (result,) = tx.create_transfers([transfer])
    if result is CreateTransferResult.PENDING_TRANSFER_EXPIRED:
        new_status, completed = AuthStatus.EXPIRED, 0
    else:
        assert result is CreateTransferResult.OK, result
        new_status = AuthStatus.COMPLETED if posting else AuthStatus.REVERSED
        completed = amount_fen or 0
    _set_status(bank, tx.connection, row, new_status, completed)
    return HoldAnswer(new_status is not AuthStatus.EXPIRED, new_status.value, completed)


def _set_status(
    bank: Bank, conn: sa.Connection, row: Any, status: AuthStatus, completed_fen: int
) -> None:
    """An authorization resolved: its new status and posted amount, and when."""
    _RESOLVE_AUTHORIZATION.run(
        conn,
        the_status=status.value,
        the_completed=completed_fen,
        the_time=bank.clock.now_ns(),
        the_id=row.id,
    )


_TOMBSTONE_CHANNEL = ""


def refund(bank: Bank, request: AuthorizationRequest) -> AuthorizationAnswer:
    """Credit `request.amount_fen` to the card's account: a merchant's refund through the
    network (ISO 8583 processing code 20), from the bank's network settlement account.
    Keyed like an authorization by its reference, so a retry credits once and a
    reversal (`reverse`) takes it back. Declines: 14 (no such card), 62 (account not
    open), 57 (currency); 91 while the bank is offline."""
    check_reference(request.reference)
    check_amount(request.amount_fen)
    if not bank.online:
        return AuthorizationAnswer(R.ISSUER_INOPERATIVE, reason="issuer_offline")
    auth_id = chart.request_id(bank.code, "authorization", request.reference)
    fingerprint = bank.fingerprint(request.pan) if is_pan(request.pan) else None
    with bank.ledger.transaction() as tx:
        row = _authorization_row(tx.connection, auth_id)
        if row is not None:
            if not _same_request(tx.connection, row, request, fingerprint):
                return AuthorizationAnswer(R.DUPLICATE_TRANSMISSION, reason="reference_reused")
            return _answer(row)
        decision = _refund_decision(bank, tx.connection, request, fingerprint)
        return _record_refund(bank, tx, request, auth_id, decision)


def _refund_decision(
    bank: Bank, conn: sa.Connection, request: AuthorizationRequest, fingerprint: bytes | None
) -> _Decision:
    card = _card_of(bank, conn, request, fingerprint)
    if card is None:
        return _Decision(R.INVALID_CARD, "card_unknown")
    ids = {"card_id": card.id, "account_id": card.account_id}
    account = _ACCOUNT_BY_ID.run(conn, the_account=card.account_id).one()
    if account.status == AccountStatus.CLOSED:
        return _Decision(R.RESTRICTED_CARD, "account_closed", **ids)
    if request.currency != CURRENCY:
        return _Decision(R.NOT_PERMITTED_TO_CARDHOLDER, "currency_not_supported", **ids)
    return _Decision(R.APPROVED, "", **ids)


def _record_refund(
    bank: Bank,
    tx: LedgerTransaction,
    request: AuthorizationRequest,
    auth_id: int,
    decision: _Decision,
) -> AuthorizationAnswer:
    credit_id = 0
    if decision.code is R.APPROVED:
        assert decision.account_id is not None
        credit_id = chart.transfer_id(bank.code, "authorization", request.reference, 0)
        credit = Transfer(
            credit_id,
            bank.own_account_id(BankAccountCode.NETWORK_SETTLEMENT),
            id_from_bytes(decision.account_id),
            request.amount_fen,
            LEDGER_CNY,
            BankTransferCode.CARD_REFUND,
        )
        (result,) = tx.create_transfers([credit])
        assert result is CreateTransferResult.OK, result
    approval_code = _approval_code(auth_id) if credit_id else ""
    now = bank.clock.now_ns()
    _INSERT_AUTHORIZATION.run(
        tx.connection,
        id=id_to_bytes(auth_id),
        card_id=decision.card_id,
        account_id=decision.account_id,
        amount_fen=request.amount_fen,
        channel=Channel(request.channel).value,
        response_code=decision.code.value,
        approval_code=approval_code,
        hold_id=id_to_bytes(credit_id) if credit_id else None,
        status=(AuthStatus.REFUNDED if credit_id else AuthStatus.DECLINED).value,
        completed_fen=request.amount_fen if credit_id else 0,
        created_at=now,
        resolved_at=now if credit_id else None,
    )
    return AuthorizationAnswer(decision.code, approval_code, auth_id, credit_id, decision.reason)


def _reverse_refund(bank: Bank, tx: Any, row: Any, reference: str) -> HoldAnswer:
    """A reversal of a refund (its answer never reached the acquirer): the credit goes
    back to the network settlement account, once. Refused (`refund_spent`) when the
    cardholder has spent it since: the account may not go below zero."""
    back = Transfer(
        chart.transfer_id(bank.code, "authorization", reference, _LEG_REVERSED),
        id_from_bytes(row.account_id),
        bank.own_account_id(BankAccountCode.NETWORK_SETTLEMENT),
        row.completed_fen,
        LEDGER_CNY,
        BankTransferCode.CARD_REFUND,
    )
    (result,) = tx.create_transfers([back])
    if result is CreateTransferResult.EXCEEDS_CREDITS:
        return HoldAnswer(False, "refund_spent")
    assert result is CreateTransferResult.OK, result
    _set_status(bank, tx.connection, row, AuthStatus.REVERSED, row.completed_fen)
    return HoldAnswer(True, AuthStatus.REVERSED.value, row.completed_fen)


def _tombstone(bank: Bank, conn: sa.Connection, auth_id: int) -> None:
    now = bank.clock.now_ns()
    _INSERT_AUTHORIZATION.run(
        conn,
        id=id_to_bytes(auth_id),
        card_id=None,
        account_id=None,
        amount_fen=0,
        channel=_TOMBSTONE_CHANNEL,
        response_code=R.DO_NOT_HONOUR.value,
        approval_code="",
        hold_id=None,
        status=AuthStatus.REVERSED.value,
        completed_fen=0,
        created_at=now,
        resolved_at=now,
    )
