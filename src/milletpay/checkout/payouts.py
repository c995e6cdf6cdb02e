"""Merchant payouts: once a day, what Millet Pay owes a merchant goes to its bank account.

A payout is the withdrawal pattern of the wallet: in one transaction the payout's row
(`pending`) and a hold from the merchant's account to the platform's settlement account at
the merchant's bank; then the bank is asked to credit the merchant's account (through the
`BankGateway`, with the payout's id as the reference, so asking again is answered the
same); then, in a second transaction, the hold is posted (`paid`) or voided (`failed`,
the money stays owed) and the merchant's webhook event written. One payout per merchant
and China-time day: running the day again pays nothing twice, and finishes a payout a
crash left pending.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from milletpay.checkout.intents import EventSink
from milletpay.checkout.merchants import Merchant, MerchantService, MerchantStatus
from milletpay.checkout.tables import merchant_payouts, merchants
from milletpay.core.clock import Clock
from milletpay.core.ids import id_from_bytes, id_to_bytes
from milletpay.ledger import (
    U128_MAX,
    Account,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    Transfer,
    TransferFlags,
)
from milletpay.ledger.committer import Committer, DirectCommitter
from milletpay.ledger.engine import LedgerTransaction
from milletpay.wallet.accounts import (
    CHART,
    LEDGER_CNY,
    AccountCode,
    TransferCode,
    settlement_account_id,
)
from milletpay.wallet.bank import BankGateway

#: Below this a merchant's balance waits for another day.
PAYOUT_MIN_FEN: Final = 100
#: Merchants one `run_day` pays out, at most.
PAYOUTS_PER_RUN_MAX: Final = 10_000
FAILURE_REASON_CHARS_MAX: Final = 64
_LEG_HOLD, _LEG_POST, _LEG_VOID = 0, 1, 2


class PayoutStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Payout:
    id: int
    merchant_id: int
    day: int  # YYYYMMDD
    amount_fen: int
    status: PayoutStatus
    failure_reason: str | None
    created_at_ns: int


def payout_object(payout: Payout) -> dict[str, Any]:
    return {
        "id": f"po_{payout.id:032x}",
        "object": "payout",
        "day": payout.day,
        "amount_fen": payout.amount_fen,
        "status": str(payout.status),
        "failure_reason": payout.failure_reason,
        "created_at_ns": payout.created_at_ns,
    }


class Payouts:
    """Daily payouts; thread-safe, and safe to run again."""

    def __init__(
        self,
        ledger: Ledger,
        merchants: MerchantService,
        bank: BankGateway,
        clock: Clock,
        *,
        committer: Committer | None = None,
        events: EventSink | None = None,
    ) -> None:
        self._ledger = ledger
        self._engine = ledger.engine
        self._merchants = merchants
        self._bank = bank
        self._clock = clock
        self._committer: Committer = committer or DirectCommitter(ledger)
        self._events = events

    def run_day(self, day: datetime.date) -> list[Payout]:
        """Pay every active merchant what it is owed (at least `PAYOUT_MIN_FEN`) for
        `day`; the payouts made or finished."""
        with self._engine.connect() as conn:
            ids = (
                conn.execute(
                    sa.select(merchants.c.id)
                    .where(merchants.c.status == MerchantStatus.ACTIVE.value)
                    .order_by(merchants.c.created_at)
                    .limit(PAYOUTS_PER_RUN_MAX)
                )
                .scalars()
                .all()
            )
        done = [self.pay_out(id_from_bytes(key), day) for key in ids]
        return [payout for payout in done if payout is not None]

    def pay_out(self, merchant_id: int, day: datetime.date) -> Payout | None:
        """The merchant's payout of `day`: made now, finished if a crash left it
        pending, or as it was; None if the merchant is owed too little."""
        merchant = self._merchants.merchant(merchant_id)
        number = merchant_payout_day(day)
        payout_id = _payout_id(merchant_id, number)
        existing = self._payout(payout_id)
        if existing is not None and existing.status is not PayoutStatus.PENDING:
            return existing
        if existing is None:
            existing = self._begin(merchant, number, payout_id)
            if existing is None:
                return None
        return self._finish(merchant, existing)

    def payouts(self, merchant_id: int) -> list[Payout]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(merchant_payouts)
                .where(merchant_payouts.c.merchant_id == id_to_bytes(merchant_id))
                .order_by(merchant_payouts.c.day.desc())
            ).all()
        return [_payout(row._asdict()) for row in rows]

    def _begin(self, merchant: Merchant, day: int, payout_id: int) -> Payout | None:
        posted, _held = self._merchants.balance_fen(merchant.id)
        if posted < PAYOUT_MIN_FEN:
            return None
        now_ns = self._clock.now_ns()
        row = {
            "id": id_to_bytes(payout_id),
            "merchant_id": id_to_bytes(merchant.id),
            "day": day,
            "amount_fen": posted,
            "status": PayoutStatus.PENDING.value,
            "failure_reason": None,
            "created_at": now_ns,
            "updated_at": now_ns,
        }
        hold = self._transfer(merchant, payout_id, posted, _LEG_HOLD, TransferFlags.PENDING)

        def unit(tx: LedgerTransaction) -> Payout | None:
            if _row(tx.connection, payout_id) is not None:  # a concurrent run began it
                return _payout(_row(tx.connection, payout_id)._asdict())
            _open_settlement(tx, merchant.settlement_bank_code)
            (result,) = tx.create_transfers([hold])
            if result is CreateTransferResult.EXCEEDS_CREDITS:  # a refund took it meanwhile
                return None
            assert result is CreateTransferResult.OK, result
            tx.connection.execute(sa.insert(merchant_payouts).values(row))
            return _payout(row)

        return self._committer.run(unit)

    def _finish(self, merchant: Merchant, payout: Payout) -> Payout:
        account = self._merchants.settlement_account_number(merchant.id)
        bank_code = merchant.settlement_bank_code
        linked = self._bank.link(bank_code, account, merchant.legal_name)
        reference = f"po_{payout.id:032x}"
        if linked.approved:
            answer = self._bank.credit(bank_code, linked.agreement, payout.amount_fen, reference)
            paid, reason = answer.approved, answer.reason
        else:
            paid, reason = False, linked.reason or "account_not_linked"
        leg, flag = (
            (_LEG_POST, TransferFlags.POST_PENDING_TRANSFER)
            if paid
            else (_LEG_VOID, TransferFlags.VOID_PENDING_TRANSFER)
        )
        resolve = self._transfer(merchant, payout.id, payout.amount_fen, leg, flag)
        status = PayoutStatus.PAID if paid else PayoutStatus.FAILED

        def unit(tx: LedgerTransaction) -> Payout:
            (result,) = tx.create_transfers([resolve])
            assert result in (CreateTransferResult.OK, CreateTransferResult.EXISTS), result
            finished = tx.connection.execute(
                sa.update(merchant_payouts)
                .where(
                    merchant_payouts.c.id == id_to_bytes(payout.id),
                    merchant_payouts.c.status == PayoutStatus.PENDING.value,
                )
                .values(
                    status=status.value,
                    failure_reason=None if paid else reason[:FAILURE_REASON_CHARS_MAX],
                    updated_at=self._clock.now_ns(),
                )
            )
            done = _payout(_row(tx.connection, payout.id)._asdict())
            # Another server finishing the same payout at once: one of them tells.
            if self._events is not None and finished.rowcount == 1:
                kind = "payout.paid" if paid else "payout.failed"
                self._events.emit(tx.connection, merchant.id, kind, payout_object(done))
            return done

        return self._committer.run(unit)

    def _transfer(
        self, merchant: Merchant, payout_id: int, amount_fen: int, leg: int, flags: TransferFlags
    ) -> Transfer:
        pending = _transfer_id(payout_id, _LEG_HOLD)
        return Transfer(
            _transfer_id(payout_id, leg),
            merchant.account_id,
            settlement_account_id(merchant.settlement_bank_code),
            amount_fen,
            LEDGER_CNY,
            TransferCode.MERCHANT_PAYOUT,
            flags=flags,
            pending_id=0 if leg == _LEG_HOLD else pending,
            user_data_128=merchant.id,
        )

    def _payout(self, payout_id: int) -> Payout | None:
        with self._engine.connect() as conn:
            row = _row(conn, payout_id)
        return None if row is None else _payout(row._asdict())


def merchant_payout_day(day: datetime.date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _open_settlement(tx: LedgerTransaction, bank_code: str) -> None:
    kind = CHART[AccountCode.SETTLEMENT]
    account = Account(settlement_account_id(bank_code), LEDGER_CNY, kind.code, kind.flags)
    (result,) = tx.create_accounts([account])
    assert result in (CreateAccountResult.OK, CreateAccountResult.EXISTS), result


def _payout_id(merchant_id: int, day: int) -> int:
    digest = hashlib.blake2b(
        merchant_id.to_bytes(16, "big") + day.to_bytes(4, "big"),
        digest_size=16,
        person=b"millet.payout",
    ).digest()
    value = int.from_bytes(digest, "big")
    assert 0 < value < U128_MAX
    return value


def _transfer_id(payout_id: int, leg: int) -> int:
    digest = hashlib.blake2b(
        payout_id.to_bytes(16, "big") + bytes([leg]), digest_size=16, person=b"millet.payout"
    ).digest()
    value = int.from_bytes(digest, "big")
    assert 0 < value < U128_MAX
    return value


def _row(conn: sa.Connection, payout_id: int) -> Any:
    return conn.execute(
        sa.select(merchant_payouts).where(merchant_payouts.c.id == id_to_bytes(payout_id))
    ).first()


def _payout(row: Any) -> Payout:
    return Payout(
        id=id_from_bytes(row["id"]),
        merchant_id=id_from_bytes(row["merchant_id"]),
        day=row["day"],
        amount_fen=row["amount_fen"],
        status=PayoutStatus(row["status"]),
        failure_reason=row["failure_reason"],
        created_at_ns=row["created_at"],
    )
