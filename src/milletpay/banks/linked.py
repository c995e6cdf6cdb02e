"""Linked-account movements: what the wallet's `BankGateway` asks of a bank.

- `link` finds the account by its number (or the PAN of one of its cards), checks the
  holder's name against the bank's customer, and answers an agreement: the bank's
  handle for the account, so that the wallet never keeps the number. Linking an account
  again answers the same agreement.
- `debit` (a wallet top-up) moves money from the cardholder's deposit account to the
  bank's Millet Pay settlement account; `credit` (a withdrawal) the other way.

Each movement is named by the wallet's `reference`: its row and its transfer commit in
one ledger transaction, and a repeated reference gets the first answer. A decline is an
answer with a reason, never an exception; an offline bank answers `bank_unavailable`
and records nothing, so the wallet's retry is decided afresh.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from milletpay.banks import chart
from milletpay.banks.authorization import class_limit_exceeded
from milletpay.banks.chart import LEDGER_CNY, BankAccountCode, BankTransferCode
from milletpay.banks.data import ProductType
from milletpay.banks.model import AccountStatus, check_amount, check_reference
from milletpay.banks.tables import agreements, bank_accounts, cards, customers, movements
from milletpay.core.ids import id_from_bytes, id_to_bytes
from milletpay.ledger import CreateTransferResult, Transfer
from milletpay.wallet.bank import BankAnswer, LinkAnswer

if TYPE_CHECKING:
    from milletpay.banks.bank import Bank

AGREEMENT_BYTES = 12  # 24 hex characters
UNAVAILABLE = "bank_unavailable"
REUSED = "reference_reused"


def link(bank: Bank, account_number: str, holder_name: str) -> LinkAnswer:
    if not bank.online:
        return LinkAnswer(False, reason=UNAVAILABLE)
    fingerprint = bank.fingerprint(account_number)
    with bank.ledger.transaction() as tx:
        conn = tx.connection
        account = _account_by_number(conn, fingerprint)
        if account is None:
            return LinkAnswer(False, reason="account_unknown")
        if account.status != AccountStatus.ACTIVE:
            return LinkAnswer(False, reason=f"account_{account.status}")
        customer_id = id_from_bytes(account.customer_id)
        sealed = conn.execute(
            sa.select(customers.c.real_name_sealed).where(customers.c.id == account.customer_id)
        ).scalar_one()
        real_name = bank.unseal(b"name", customer_id, sealed)
        if not hmac.compare_digest(real_name.encode(), holder_name.encode()):
            return LinkAnswer(False, reason="holder_name_mismatch")
        agreement = conn.execute(
            sa.select(agreements.c.agreement).where(agreements.c.account_id == account.id)
        ).scalar_one_or_none()
        if agreement is None:
            agreement = secrets.token_hex(AGREEMENT_BYTES)
            conn.execute(
                sa.insert(agreements).values(
                    agreement=agreement, account_id=account.id, created_at=bank.clock.now_ns()
                )
            )
        return LinkAnswer(True, agreement=agreement)


def _account_by_number(conn: sa.Connection, fingerprint: bytes) -> Any:
    account = conn.execute(
        sa.select(bank_accounts).where(bank_accounts.c.number_fingerprint == fingerprint)
    ).first()
    if account is not None:
        return account
    by_card = (
        sa.select(bank_accounts)
        .join(cards, cards.c.account_id == bank_accounts.c.id)
        .where(cards.c.pan_fingerprint == fingerprint)
    )
    return conn.execute(by_card).first()


def debit(bank: Bank, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
    """Take `amount_fen` from the account to Millet Pay (a top-up)."""
    return _move(bank, "debit", agreement, amount_fen, reference)


def credit(bank: Bank, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
    """Pay `amount_fen` from Millet Pay into the account (a withdrawal)."""
    return _move(bank, "credit", agreement, amount_fen, reference)


def _move(bank: Bank, kind: str, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
    check_amount(amount_fen)
    check_reference(reference)
    if not bank.online:
        return BankAnswer(False, UNAVAILABLE)
    movement_id = chart.request_id(bank.code, "movement", reference)
    with bank.ledger.transaction() as tx:
        conn = tx.connection
        account = conn.execute(
            sa.select(bank_accounts)
            .join(agreements, agreements.c.account_id == bank_accounts.c.id)
            .where(agreements.c.agreement == agreement)
        ).first()
        row = conn.execute(
            sa.select(movements).where(movements.c.id == id_to_bytes(movement_id))
        ).first()
        if row is not None:
            same = (row.kind, row.amount_fen, row.account_id) == (
                kind,
                amount_fen,
                account.id if account is not None else None,
            )
            # A reference names one movement: used again for another, it is refused
            # (and not recorded), never answered with the first movement's approval.
            return BankAnswer(row.approved, row.reason) if same else BankAnswer(False, REUSED)
        reason = _refusal(bank, conn, kind, account, amount_fen)
        if not reason:
            reason = _transfer(bank, tx, kind, account, amount_fen, reference)
        conn.execute(
            sa.insert(movements).values(
                id=id_to_bytes(movement_id),
                account_id=account.id if account is not None else None,
                kind=kind,
                amount_fen=amount_fen,
                approved=not reason,
                reason=reason,
                created_at=bank.clock.now_ns(),
            )
        )
        return BankAnswer(not reason, reason)


def _refusal(bank: Bank, conn: sa.Connection, kind: str, account: Any, amount_fen: int) -> str:
    """The bank's own checks before any money moves; "" when none refuses."""
    if account is None:
        return "agreement_unknown"
    if account.status == AccountStatus.CLOSED:
        return "account_closed"
    if account.status == AccountStatus.FROZEN:
        return "account_frozen"
    if kind == "debit":
        if account.product_type != ProductType.DEBIT:
            return "credit_account_not_debitable"
        return class_limit_exceeded(bank, conn, account, amount_fen) or ""
    return ""


def _transfer(bank: Bank, tx: Any, kind: str, account: Any, amount_fen: int, reference: str) -> str:
    cardholder = id_from_bytes(account.id)
    settlement = bank.own_account_id(BankAccountCode.MILLET_SETTLEMENT)
    debit_id, credit_id, code = (
        (cardholder, settlement, BankTransferCode.LINKED_DEBIT)
        if kind == "debit"
        else (settlement, cardholder, BankTransferCode.LINKED_CREDIT)
    )
    transfer = Transfer(
        chart.transfer_id(bank.code, "movement", reference, 0),
        debit_id,
        credit_id,
        amount_fen,
        LEDGER_CNY,
        code,
    )
    (result,) = tx.create_transfers([transfer])
    if result is CreateTransferResult.EXCEEDS_CREDITS:
        return "insufficient_funds"
    assert result is CreateTransferResult.OK, result
    return ""
