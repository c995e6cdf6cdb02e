"""`WalletService`: the user's stored-value wallet on the CNY ledger.

Each operation (top-up, withdrawal, P2P) runs the same way: check the input, then in one
ledger write transaction (the user's wallet row locked) find an earlier attempt under the
same idempotency key or ask `risk` and record the operation; move money with transfer
ids derived from the key; record the outcome. P2P touches no bank, so all of it is one
transaction. A top-up or withdrawal calls the bank in between, outside any transaction:
admission (and the withdrawal's hold) commit first, the bank is called with a reference
derived from the key, then the transfer and the outcome commit together. Every step
repeats safely, so a retry after a crash finishes the work and never moves money twice.

The write transactions go through a `Committer`: in the API server a `GroupCommitter`
that commits the operations of many concurrent requests together.

It never keeps a bank account number in clear, and never changes the ledger except by
transfers: balances are the ledger's, the operations table is a record for limits and
history.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.identity import IdentityService
from milletpay.identity.phone import mask_phone, normalize_phone
from milletpay.ledger import (
    Account,
    AccountFilter,
    AccountFilterFlags,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    Transfer,
    TransferFlags,
)
from milletpay.ledger.committer import Committer, DirectCommitter
from milletpay.ledger.engine import LedgerTransaction
from milletpay.risk import (
    Decision,
    OperationKind,
    decide,
)
from milletpay.risk.limits import APPROVED
from milletpay.store.engine import read_transaction, write_transaction
from milletpay.store.sql import Sql
from milletpay.wallet import periods
from milletpay.wallet.accounts import (
    CHART,
    LEDGER_CNY,
    PARTNER_BANKS,
    AccountCode,
    TransferCode,
    settlement_account_id,
    transfer_id,
    wallet_account_id,
)
from milletpay.wallet.bank import BankGateway
from milletpay.wallet.errors import (
    AmountInvalid,
    BankAccountLinkDeclined,
    BankAccountNumberInvalid,
    BankUnknown,
    CursorInvalid,
    CursorNotFound,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    LedgerRefused,
    LinkedBankAccountNotFound,
    MonthInvalid,
    PageLimitInvalid,
    RecipientIsSender,
    RecipientNotFound,
)
from milletpay.wallet.tables import (
    linked_bank_accounts,
    wallet_operations,
    wallets,
)
from milletpay.wallet.usage import usage as count_usage

IDEMPOTENCY_KEY_CHARS_MAX = 64
_IDEMPOTENCY_KEY = re.compile(f"[!-~]{{1,{IDEMPOTENCY_KEY_CHARS_MAX}}}")
HISTORY_PAGE_LIMIT_MAX = 100
BANK_ACCOUNT_DIGITS_MIN = 8
BANK_ACCOUNT_DIGITS_MAX = 32
#: A pending operation older than this is taken to be stuck, and resumed.
RESUME_AFTER_S = 60.0
#: Operations resumed by one `resume_pending` call, at most.
RESUME_BATCH_MAX = 500
#: The largest amount one operation may carry (10^13 fen); the limits decline far below.
AMOUNT_FEN_MAX = 10**13

_APPLIED = (CreateTransferResult.OK, CreateTransferResult.EXISTS)
_TRANSFER_CODE = {
    OperationKind.TOP_UP: TransferCode.TOP_UP,
    OperationKind.WITHDRAW: TransferCode.WITHDRAWAL,
    OperationKind.P2P: TransferCode.P2P,
    OperationKind.MERCHANT_PAYMENT: TransferCode.MERCHANT_PAYMENT,
    OperationKind.MERCHANT_REFUND: TransferCode.MERCHANT_REFUND,
}
# The statements every operation runs.
_LOCK_WALLET = Sql("SELECT 1 FROM wallets WHERE user_id = :user FOR UPDATE")
_OPERATION_COLUMNS = [c.name for c in wallet_operations.columns]
_FIND_OPERATION = Sql(
    f"SELECT {', '.join(_OPERATION_COLUMNS)} FROM wallet_operations "
    "WHERE user_id = :user AND idempotency_key = :key"
)
_INSERT_OPERATION = Sql(
    f"INSERT INTO wallet_operations ({', '.join(_OPERATION_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _OPERATION_COLUMNS)})"
)
_FINISH_OPERATION = Sql(
    "UPDATE wallet_operations SET status = :status, decline_code = :decline_code, "
    "decline_reason = :decline_reason WHERE id = :id"
)
#: The kinds whose money comes into the user's own wallet.
_INCOMING = frozenset({OperationKind.TOP_UP, OperationKind.MERCHANT_REFUND})
# The legs of an operation: each gets its own derived transfer id.
_LEG_MOVE, _LEG_POST, _LEG_VOID = 0, 1, 2


class OperationStatus(StrEnum):
    PENDING = "pending"  # recorded, money not yet settled: a retry finishes it
    COMPLETED = "completed"
    DECLINED = "declined"
    CANCELED = "canceled"  # a merchant payment's hold released with nothing taken


class WalletDeclineCode(StrEnum):
    """Declines that are not a limit (those are `risk.DeclineCode`)."""

    INSUFFICIENT_BALANCE = "insufficient_balance"
    BANK_DECLINED = "bank_declined"
    MERCHANT_BALANCE_INSUFFICIENT = "merchant_balance_insufficient"  # a refund


@dataclass(frozen=True, slots=True)
class LinkedBankAccount:
    id: int
    bank_code: str
    account_masked: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to an operation; a retry with the same key gets the same answer."""

    operation_id: int
    kind: OperationKind
    amount_fen: int
    status: OperationStatus
    decline_code: str | None = None
    limit: int | None = None  # the limit that declined it, and what remained of it
    remaining: int | None = None
    reason: str | None = None  # the bank's reason, for `bank_declined`

    @property
    def approved(self) -> bool:
        return self.status is OperationStatus.COMPLETED


@dataclass(frozen=True, slots=True)
class Resumed:
    """What `resume_pending` did: operations finished, and those still stuck."""

    finished: int
    failed: int


@dataclass(frozen=True, slots=True)
class Balance:
    posted_fen: int  # what the ledger holds for the user
    available_fen: int  # less what is on hold for withdrawals in flight


@dataclass(frozen=True, slots=True)
class HistoryItem:
    operation_id: int
    kind: OperationKind
    incoming: bool  # money came into this user's wallet
    amount_fen: int
    status: OperationStatus
    decline_code: str | None
    created_at_ns: int


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: tuple[HistoryItem, ...]
    next_cursor: str | None  # None on the last page


@dataclass(frozen=True, slots=True)
class Statement:
    year: int
    month: int
    opening_fen: int
    credits_fen: int
    debits_fen: int
    closing_fen: int

    def __post_init__(self) -> None:
        assert self.opening_fen + self.credits_fen - self.debits_fen == self.closing_fen


@dataclass(frozen=True, slots=True)
class _Request:
    kind: OperationKind
    user_id: int
    amount_fen: int
    idempotency_key: str
    linked_account_id: int | None = None
    counterparty_user_id: int | None = None


@dataclass(frozen=True, slots=True)
class _Link:
    bank_code: str
    agreement: str


class WalletService:
    """Wallets, linked bank accounts, top-up, withdrawal, P2P, history and statements."""

    def __init__(
        self,
        ledger: Ledger,
        identity_service: IdentityService,
        engine: sa.Engine,
        clock: Clock,
        bank_gateway: BankGateway,
        committer: Committer | None = None,
    ) -> None:
        """`committer` runs the write transactions: a `GroupCommitter` shared by the
        server's services, or by default each in a transaction of its own."""
        self._ledger = ledger
        self._committer: Committer = committer or DirectCommitter(ledger)
        self._identity = identity_service
        self._engine = engine
        self._clock = clock
        self._bank = bank_gateway
        self._ids = IdGenerator(clock)

    # -- wallets and linked accounts ------------------------------------------------

    def open_wallet(self, user_id: int) -> int:
        """The user's wallet account id on the CNY ledger, opened on first use."""
        key = id_to_bytes(user_id)
        with self._read() as conn:
            query = sa.select(wallets.c.user_id).where(wallets.c.user_id == key)
            if conn.execute(query).first() is not None:
                return wallet_account_id(user_id)
        return self._committer.run(lambda tx: self._open_wallet(tx, user_id))

    def link_bank_account(
        self, user_id: int, bank_code: str, account_number: str
    ) -> LinkedBankAccount:
        """Link a bank account in the user's real name; the bank keeps the number."""
        if bank_code not in PARTNER_BANKS:
            raise BankUnknown(
                f"bank {bank_code!r} is not a partner bank: {', '.join(PARTNER_BANKS)}"
            )
        digits_ok = BANK_ACCOUNT_DIGITS_MIN <= len(account_number) <= BANK_ACCOUNT_DIGITS_MAX
        if not (digits_ok and account_number.isascii() and account_number.isdigit()):
            raise BankAccountNumberInvalid(
                f"an account number is {BANK_ACCOUNT_DIGITS_MIN} to "
                f"{BANK_ACCOUNT_DIGITS_MAX} digits"
            )
        user = self._identity.get_user(user_id)
        self.open_wallet(user_id)
        kind = CHART[AccountCode.SETTLEMENT]
        settlement = Account(settlement_account_id(bank_code), LEDGER_CNY, kind.code, kind.flags)
        self._committer.run(lambda tx: _create_account(tx, settlement))
        answer = self._bank.link(bank_code, account_number, user.real_name)
        masked = _mask_account_number(account_number)
        if not answer.approved:
            raise BankAccountLinkDeclined(f"{bank_code} {masked}: {answer.reason}")
        link_id = self._ids.next_id()
        row = {
            "id": id_to_bytes(link_id),
            "user_id": id_to_bytes(user_id),
            "bank_code": bank_code,
            "account_masked": masked,
            "agreement": answer.agreement,
            "created_at": self._clock.now_ns(),
        }
        with self._write() as conn:
            conn.execute(sa.insert(linked_bank_accounts).values(row))
        return LinkedBankAccount(link_id, bank_code, masked)

    def linked_bank_account(self, user_id: int, linked_account_id: int) -> LinkedBankAccount:
        """One of the user's linked bank accounts; `LinkedBankAccountNotFound` if the user
        has no such account (another user's is not found either)."""
        row = find_link(self._engine, user_id, linked_account_id)
        return LinkedBankAccount(linked_account_id, row.bank_code, row.account_masked)

    def balance(self, user_id: int) -> Balance:
        (account,) = self._ledger.lookup_accounts([self.open_wallet(user_id)])
        posted = account.credits_posted - account.debits_posted
        return Balance(posted, posted - account.debits_pending)

    # -- operations -----------------------------------------------------------------

    def top_up(
        self, user_id: int, linked_account_id: int, amount_fen: int, idempotency_key: str
    ) -> Outcome:
        """Debit the linked bank account, then credit the wallet."""
        request = _Request(
            OperationKind.TOP_UP, user_id, amount_fen, idempotency_key, linked_account_id
        )
        link = self._linked_account(request)
        admitted = self._committer.run(lambda tx: self._admit(tx, request))
        if admitted.status != OperationStatus.PENDING:
            return admitted
        reference = _reference(request)
        answer = self._bank.debit(link.bank_code, link.agreement, amount_fen, reference)
        if not answer.approved:
            return self._committer.run(
                lambda tx: self._finish(
                    tx, admitted, WalletDeclineCode.BANK_DECLINED, reason=answer.reason
                )
            )
        settlement = settlement_account_id(link.bank_code)
        move = self._transfer(request, _LEG_MOVE, settlement, wallet_account_id(user_id))

        def credit(tx: LedgerTransaction) -> Outcome:
            _send_or_raise(tx, [move])
            return self._finish(tx, admitted, None)

        return self._committer.run(credit)

    def withdraw(
        self, user_id: int, linked_account_id: int, amount_fen: int, idempotency_key: str
    ) -> Outcome:
        """Hold the amount in the wallet, credit the bank account, then post the hold (or
        void it if the bank declines, which restores the balance)."""
        request = _Request(
            OperationKind.WITHDRAW, user_id, amount_fen, idempotency_key, linked_account_id
        )
        link = self._linked_account(request)
        wallet, settlement = wallet_account_id(user_id), settlement_account_id(link.bank_code)
        hold = _with(
            self._transfer(request, _LEG_MOVE, wallet, settlement), flags=TransferFlags.PENDING
        )

        def admit_and_hold(tx: LedgerTransaction) -> Outcome:
            admitted = self._admit(tx, request)
            if admitted.status != OperationStatus.PENDING:
                return admitted
            (result,) = tx.create_transfers([hold])  # EXISTS on a retry
            if result == CreateTransferResult.EXCEEDS_CREDITS:
                return self._finish(tx, admitted, WalletDeclineCode.INSUFFICIENT_BALANCE)
            _require_applied(result, hold)
            return admitted

        admitted = self._committer.run(admit_and_hold)
        if admitted.status != OperationStatus.PENDING:
            return admitted
        answer = self._bank.credit(link.bank_code, link.agreement, amount_fen, _reference(request))
        leg, flag = (
            (_LEG_POST, TransferFlags.POST_PENDING_TRANSFER)
            if answer.approved
            else (_LEG_VOID, TransferFlags.VOID_PENDING_TRANSFER)
        )
        resolve = _with(
            self._transfer(request, leg, wallet, settlement), flags=flag, pending_id=hold.id
        )

        def settle(tx: LedgerTransaction) -> Outcome:
            _send_or_raise(tx, [resolve])
            if answer.approved:
                return self._finish(tx, admitted, None)
            return self._finish(tx, admitted, WalletDeclineCode.BANK_DECLINED, reason=answer.reason)

        return self._committer.run(settle)

    def p2p(
        self, sender_id: int, recipient_phone: str, amount_fen: int, idempotency_key: str
    ) -> Outcome:
        """Move money from the sender's wallet to the wallet of the user with that phone."""
        return self._committer.run(
            lambda tx: self.p2p_in(tx, sender_id, recipient_phone, amount_fen, idempotency_key)
        )

    def p2p_in(
        self,
        tx: LedgerTransaction,
        sender_id: int,
        recipient_phone: str,
        amount_fen: int,
        idempotency_key: str,
    ) -> Outcome:
        """`p2p` as part of the caller's transaction `tx`: the operation's record and its
        transfer commit with whatever else the caller writes there, or not at all."""
        recipient_id = self._user_by_phone(recipient_phone, tx.connection)
        if recipient_id == sender_id:
            raise RecipientIsSender("a user cannot send money to their own phone number")
        request = _Request(
            OperationKind.P2P, sender_id, amount_fen, idempotency_key, None, recipient_id
        )
        self._open_wallet(tx, recipient_id)
        admitted = self._admit(tx, request)
        if admitted.status != OperationStatus.PENDING:
            return admitted
        sender, recipient = wallet_account_id(sender_id), wallet_account_id(recipient_id)
        move = self._transfer(request, _LEG_MOVE, sender, recipient)
        (result,) = tx.create_transfers([move])
        if result == CreateTransferResult.EXCEEDS_CREDITS:
            return self._finish(tx, admitted, WalletDeclineCode.INSUFFICIENT_BALANCE)
        _require_applied(result, move)
        return self._finish(tx, admitted, None)

    def open_wallet_in(self, tx: LedgerTransaction, user_id: int) -> int:
        """The user's wallet account id, opened if new, its row locked to the end of `tx`:
        the one lock every wallet and coin operation of the user takes, so the limits see
        every operation before them."""
        return self._open_wallet(tx, user_id)

    def pay_merchant_in(
        self,
        tx: LedgerTransaction,
        user_id: int,
        merchant_account: int,
        amount_fen: int,
        idempotency_key: str,
        *,
        hold_timeout_s: int = 0,
        then: Sequence[Transfer] = (),
    ) -> Outcome:
        """Pay a merchant from the balance, in the caller's transaction: a balance payment
        (risk kind `merchant_payment`, counted toward the tier limit). With
        `hold_timeout_s` the money is only held (a pending transfer the caller later
        posts or voids, which the ledger releases itself after the timeout), else moved.
        The transfer's id is `merchant_payment_transfer_id(user_id, idempotency_key)`; a
        retry with the key answers the first outcome and moves nothing again. `then`:
        the caller's transfers that follow the payment (the merchant's fee), in one
        linked chain with it: made if and only if the payment is."""
        request = _Request(
            OperationKind.MERCHANT_PAYMENT, user_id, amount_fen, idempotency_key, None, None
        )
        admitted = self._admit(tx, request)
        if admitted.status != OperationStatus.PENDING:
            return admitted
        move = self._transfer(request, _LEG_MOVE, wallet_account_id(user_id), merchant_account)
        if hold_timeout_s:
            move = _with(move, flags=TransferFlags.PENDING, timeout_s=hold_timeout_s)
        chain = _linked_chain([move, *then])
        results = tx.create_transfers(chain)
        if results[0] == CreateTransferResult.EXCEEDS_CREDITS:
            return self._finish(tx, admitted, WalletDeclineCode.INSUFFICIENT_BALANCE)
        _require_chain_applied(chain, results)
        return self._finish(tx, admitted, None)

    def receive_refund_in(
        self,
        tx: LedgerTransaction,
        user_id: int,
        merchant_account: int,
        amount_fen: int,
        idempotency_key: str,
    ) -> Outcome:
        """A merchant's refund into the user's wallet, in the caller's transaction: an
        operation in the user's history (`merchant_refund`, incoming, counted toward no
        limit) and the transfer merchant → wallet. Declined `merchant_balance_insufficient`
        when the merchant is owed less than the refund (it was paid out already)."""
        _check_amount(amount_fen)
        check_idempotency_key(idempotency_key)
        self._open_wallet(tx, user_id)
        request = _Request(
            OperationKind.MERCHANT_REFUND, user_id, amount_fen, idempotency_key, None, None
        )
        key = id_to_bytes(user_id)
        earlier = _find_operation(tx.connection, key, idempotency_key)
        if earlier is not None:
            _check_same_request(earlier, request)
            return _outcome(earlier._asdict())
        row = _new_row(self._ids.next_id(), request, APPROVED, self._clock.now_ns())
        _INSERT_OPERATION.run(tx.connection, **row)
        admitted = _outcome(row)
        back = self._transfer(request, _LEG_MOVE, merchant_account, wallet_account_id(user_id))
        (result,) = tx.create_transfers([back])
        if result == CreateTransferResult.EXCEEDS_CREDITS:
            return self._finish(tx, admitted, WalletDeclineCode.MERCHANT_BALANCE_INSUFFICIENT)
        _require_applied(result, back)
        return self._finish(tx, admitted, None)

    def end_merchant_hold_in(
        self, tx: LedgerTransaction, operation_id: int, captured_fen: int
    ) -> None:
        """Record in the user's history how a held merchant payment ended: `captured_fen`
        of it taken (the operation now shows that amount and counts toward the limits
        only for it), or nothing (`canceled`, counted no more). The money itself moves in
        the caller's posting or voiding transfer, in the same transaction."""
        assert captured_fen >= 0
        ops = wallet_operations.c
        if captured_fen == 0:
            values: dict[str, Any] = {"status": OperationStatus.CANCELED.value}
        else:
            values = {"amount_fen": captured_fen}
        done = tx.connection.execute(
            sa.update(wallet_operations)
            .where(
                ops.id == id_to_bytes(operation_id),
                ops.kind == OperationKind.MERCHANT_PAYMENT.value,
                ops.status == OperationStatus.COMPLETED.value,
                ops.amount_fen >= captured_fen,
            )
            .values(values)
        )
        assert done.rowcount == 1, "a merchant hold ends once, for at most what was held"

    # -- recovery -------------------------------------------------------------------

    def resume_pending(self, older_than_s: float = RESUME_AFTER_S) -> Resumed:
        """Finish the top-ups and withdrawals left pending longer than `older_than_s`
        (a crash, or a bank that did not answer, between their steps), exactly as a
        retry with the same key would: the bank answers a repeated reference with its
        first answer, the ledger a repeated transfer id with `exists`. A P2P transfer is
        never pending: it is one transaction. A withdrawal's hold has no timeout on
        purpose: released by expiry after the bank had paid out, it would hand the money
        out twice; this is what resolves it."""
        ops = wallet_operations.c
        cutoff_ns = self._clock.now_ns() - int(older_than_s * NS_PER_S)
        resume = {OperationKind.TOP_UP: self.top_up, OperationKind.WITHDRAW: self.withdraw}
        query = (
            sa.select(
                ops.user_id, ops.kind, ops.amount_fen, ops.linked_account_id, ops.idempotency_key
            )
            .where(
                ops.status == OperationStatus.PENDING.value,
                ops.kind.in_([kind.value for kind in resume]),
                ops.created_at < cutoff_ns,
            )
            .order_by(ops.created_at)
            .limit(RESUME_BATCH_MAX)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        finished = failed = 0
        for row in rows:
            try:
                resume[OperationKind(row.kind)](
                    id_from_bytes(row.user_id),
                    id_from_bytes(row.linked_account_id),
                    row.amount_fen,
                    row.idempotency_key,
                )
            except Exception:  # the bank still does not answer: the next pass tries again
                failed += 1
            else:
                finished += 1
        return Resumed(finished, failed)

    # -- history and statements -----------------------------------------------------

    def history(self, user_id: int, *, limit: int = 20, cursor: str | None = None) -> HistoryPage:
        """The user's operations, newest first, including P2P received; `cursor` is the
        `next_cursor` of the previous page."""
        if not 1 <= limit <= HISTORY_PAGE_LIMIT_MAX:
            raise PageLimitInvalid(f"limit must be between 1 and {HISTORY_PAGE_LIMIT_MAX}")
        key = id_to_bytes(user_id)
        ops = wallet_operations.c
        mine = ops.user_id == key
        received = sa.and_(
            ops.counterparty_user_id == key, ops.status == OperationStatus.COMPLETED.value
        )
        visible = sa.or_(mine, received)
        query = sa.select(wallet_operations).where(visible)
        with self._read() as conn:
            if cursor is not None:
                after = _decode_cursor(cursor)
                # A cursor is the last operation of a page this user was shown.
                shown = sa.select(ops.id).where(ops.id == after, visible)
                if conn.execute(shown).first() is None:
                    raise CursorNotFound("the cursor names no operation in this history")
                query = query.where(ops.id < after)
            rows = conn.execute(query.order_by(ops.id.desc()).limit(limit + 1)).all()
        items = tuple(_history_item(row, key) for row in rows[:limit])
        more = len(rows) > limit
        return HistoryPage(items, _encode_cursor(rows[limit - 1].id) if more else None)

    def statement(self, user_id: int, year: int, month: int) -> Statement:
        """Opening and closing balance, credits and debits of a CST calendar month, from
        the ledger's balance history of the wallet account (posted amounts only)."""
        if not (1 <= month <= 12 and 2000 <= year <= 9998):
            raise MonthInvalid(f"no statement for {year}-{month:02d}")
        start_ns, end_ns = periods.month_bounds_ns(year, month)
        account_id = self.open_wallet(user_id)
        debits_0, credits_0 = self._posted_before(account_id, start_ns)
        debits_1, credits_1 = self._posted_before(account_id, end_ns)
        return Statement(
            year,
            month,
            opening_fen=credits_0 - debits_0,
            credits_fen=credits_1 - credits_0,
            debits_fen=debits_1 - debits_0,
            closing_fen=credits_1 - debits_1,
        )

    def _posted_before(self, account_id: int, instant_ns: int) -> tuple[int, int]:
        """(debits posted, credits posted) of the account just before `instant_ns`."""
        flags = AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS | AccountFilterFlags.REVERSED
        f = AccountFilter(account_id, limit=1, flags=flags, timestamp_max=instant_ns - 1)
        rows = self._ledger.get_account_balances(f)
        return (rows[0].debits_posted, rows[0].credits_posted) if rows else (0, 0)

    # -- the steps ------------------------------------------------------------------
    # Each runs inside the caller's ledger transaction `tx`.

    def _open_wallet(self, tx: LedgerTransaction, user_id: int) -> int:
        """The wallet's account id; the wallet (ledger account, then row) opened if new.
        The wallet row stays locked to the end of `tx`: one writer per user at a time."""
        account_id = wallet_account_id(user_id)
        key = id_to_bytes(user_id)
        if _LOCK_WALLET.run(tx.connection, user=key).first() is not None:
            return account_id
        self._identity.get_user(user_id, conn=tx.connection)  # UserNotFound
        kind = CHART[AccountCode.WALLET]
        _create_account(
            tx, Account(account_id, LEDGER_CNY, kind.code, kind.flags, user_data_128=user_id)
        )
        row = {
            "user_id": key,
            "account_id": id_to_bytes(account_id),
            "created_at": self._clock.now_ns(),
        }
        tx.connection.execute(sa.insert(wallets).values(row))
        return account_id

    def _admit(self, tx: LedgerTransaction, request: _Request) -> Outcome:
        """The operation so far: the earlier attempt under this key, else a new record,
        `pending` if risk approves, `declined` naming the limit if not."""
        _check_amount(request.amount_fen)
        check_idempotency_key(request.idempotency_key)
        conn = tx.connection
        self._open_wallet(tx, request.user_id)  # and lock it: the limits see every row
        key = id_to_bytes(request.user_id)
        earlier = _find_operation(conn, key, request.idempotency_key)
        if earlier is not None:
            _check_same_request(earlier, request)
            return _outcome(earlier._asdict())
        tier = self._identity.current_tier(request.user_id, conn=conn)
        now_ns = self._clock.now_ns()
        decision = decide(
            request.kind,
            tier,
            request.amount_fen,
            count_usage(conn, key, request.kind, tier, now_ns),
        )
        row = _new_row(self._ids.next_id(), request, decision, now_ns)
        _INSERT_OPERATION.run(conn, **row)
        return _outcome(row)

    def _finish(
        self,
        tx: LedgerTransaction,
        admitted: Outcome,
        decline_code: str | None,
        *,
        reason: str | None = None,
    ) -> Outcome:
        status = OperationStatus.DECLINED if decline_code else OperationStatus.COMPLETED
        _FINISH_OPERATION.run(
            tx.connection,
            id=id_to_bytes(admitted.operation_id),
            status=status.value,
            decline_code=decline_code,
            decline_reason=reason,
        )
        return dataclasses.replace(
            admitted, status=status, decline_code=decline_code, reason=reason
        )

    def _transfer(self, request: _Request, leg: int, debit_id: int, credit_id: int) -> Transfer:
        """Leg `leg` of the request, its id derived from the request's idempotency key."""
        return Transfer(
            transfer_id(request.user_id, request.kind, request.idempotency_key, leg),
            debit_id,
            credit_id,
            request.amount_fen,
            LEDGER_CNY,
            _TRANSFER_CODE[request.kind],
            user_data_128=request.user_id,
        )

    def _linked_account(self, request: _Request) -> _Link:
        """The request's linked bank account (after checking the request's input)."""
        _check_amount(request.amount_fen)
        check_idempotency_key(request.idempotency_key)
        assert request.linked_account_id is not None
        row = find_link(self._engine, request.user_id, request.linked_account_id)
        return _Link(row.bank_code, row.agreement)

    def _user_by_phone(self, phone: str, conn: sa.Connection) -> int:
        user_id = self._identity.user_id_by_phone(phone, conn=conn)  # PhoneInvalid
        if user_id is None:
            raise RecipientNotFound(
                f"no Millet Pay user has the phone number {mask_phone(normalize_phone(phone))}"
            )
        return user_id

    def _write(self) -> AbstractContextManager[sa.Connection]:
        return write_transaction(self._engine)

    def _read(self) -> AbstractContextManager[sa.Connection]:
        return read_transaction(self._engine)


# -- pure helpers -------------------------------------------------------------------


def merchant_payment_transfer_id(user_id: int, idempotency_key: str) -> int:
    """The id of the transfer (or hold) of the user's merchant payment under the key."""
    return transfer_id(user_id, OperationKind.MERCHANT_PAYMENT, idempotency_key, _LEG_MOVE)


def _with(transfer: Transfer, **changes: Any) -> Transfer:
    return dataclasses.replace(transfer, **changes)


def _linked_chain(transfers: list[Transfer]) -> list[Transfer]:
    """`transfers` as one linked chain: every one but the last flagged LINKED."""
    return [
        _with(transfer, flags=transfer.flags | TransferFlags.LINKED) for transfer in transfers[:-1]
    ] + transfers[-1:]


def find_link(engine: sa.Engine, user_id: int, linked_account_id: int) -> Any:
    """The user's linked bank account row (bank_code, account_masked, agreement), for the
    wallet and the coins; `LinkedBankAccountNotFound` if the user has no such account."""
    links = linked_bank_accounts.c
    query = sa.select(links.bank_code, links.account_masked, links.agreement).where(
        links.id == id_to_bytes(linked_account_id), links.user_id == id_to_bytes(user_id)
    )
    with read_transaction(engine) as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        raise LinkedBankAccountNotFound(
            f"the user has no linked bank account {linked_account_id:032x}"
        )
    return row


def _send_or_raise(tx: LedgerTransaction, transfers: list[Transfer]) -> None:
    for result, transfer in zip(tx.create_transfers(transfers), transfers, strict=True):
        _require_applied(result, transfer)


def _create_account(tx: LedgerTransaction, account: Account) -> None:
    (result,) = tx.create_accounts([account])
    if result not in (CreateAccountResult.OK, CreateAccountResult.EXISTS):
        raise LedgerRefused(f"account {account.id:032x}: {result.value}")


def _require_applied(result: CreateTransferResult, transfer: Transfer) -> None:
    if result not in _APPLIED:
        raise LedgerRefused(f"transfer {transfer.id:032x}: {result.value}")


def _require_chain_applied(chain: list[Transfer], results: list[CreateTransferResult]) -> None:
    """`_require_applied` for a linked chain: the transfer that failed is named, not
    the others the chain failed with it."""
    for transfer, result in zip(chain, results, strict=True):
        if result is not CreateTransferResult.LINKED_EVENT_FAILED:
            _require_applied(result, transfer)
    for transfer, result in zip(chain, results, strict=True):  # none named its own failure
        _require_applied(result, transfer)


def _reference(request: _Request) -> str:
    """The bank reference of an operation: the same for every retry of it."""
    return f"{transfer_id(request.user_id, request.kind, request.idempotency_key, _LEG_MOVE):032x}"


def _check_amount(amount_fen: object) -> None:
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool):
        raise AmountInvalid(f"amount_fen must be an int of fen, got {type(amount_fen).__name__}")
    if not 0 < amount_fen <= AMOUNT_FEN_MAX:
        raise AmountInvalid(f"amount_fen must be between 1 and {AMOUNT_FEN_MAX}, got {amount_fen}")


def is_idempotency_key(key: object) -> bool:
    """1 to `IDEMPOTENCY_KEY_CHARS_MAX` visible ASCII characters (no spaces): the one
    rule for a key, in the wallet, the coins and the API's Idempotency-Key header."""
    return isinstance(key, str) and _IDEMPOTENCY_KEY.fullmatch(key) is not None


def check_idempotency_key(key: object) -> None:
    if not is_idempotency_key(key):
        raise IdempotencyKeyInvalid(
            f"an idempotency key is 1 to {IDEMPOTENCY_KEY_CHARS_MAX} visible ASCII characters"
        )


def _find_operation(conn: sa.Connection, user_key: bytes, idempotency_key: str) -> Any:
    return _FIND_OPERATION.run(conn, user=user_key, key=idempotency_key).one_or_none()


def _check_same_request(row: Any, request: _Request) -> None:
    linked = (
        id_to_bytes(request.linked_account_id) if request.linked_account_id is not None else None
    )
    counterparty = (
        id_to_bytes(request.counterparty_user_id)
        if request.counterparty_user_id is not None
        else None
    )
    same = (
        row.kind == request.kind.value
        and row.amount_fen == request.amount_fen
        and row.linked_account_id == linked
        and row.counterparty_user_id == counterparty
    )
    if not same:
        raise IdempotencyKeyReused(
            f"idempotency key {request.idempotency_key!r} was used for a {row.kind} of "
            f"{row.amount_fen} fen; a different operation needs a new key"
        )


def _new_row(op_id: int, request: _Request, decision: Decision, now_ns: int) -> dict[str, Any]:
    return {
        "id": id_to_bytes(op_id),
        "user_id": id_to_bytes(request.user_id),
        "idempotency_key": request.idempotency_key,
        "kind": request.kind.value,
        "amount_fen": request.amount_fen,
        "linked_account_id": (
            id_to_bytes(request.linked_account_id)
            if request.linked_account_id is not None
            else None
        ),
        "counterparty_user_id": (
            id_to_bytes(request.counterparty_user_id)
            if request.counterparty_user_id is not None
            else None
        ),
        "status": (
            OperationStatus.PENDING if decision.approved else OperationStatus.DECLINED
        ).value,
        "decline_code": decision.code.value if decision.code is not None else None,
        "decline_limit": None if decision.approved else decision.limit,
        "decline_remaining": None if decision.approved else decision.remaining,
        "decline_reason": None,
        "created_at": now_ns,
    }


def _outcome(row: Mapping[str, Any]) -> Outcome:
    """The outcome recorded in a `wallet_operations` row."""
    return Outcome(
        id_from_bytes(row["id"]),
        OperationKind(row["kind"]),
        row["amount_fen"],
        OperationStatus(row["status"]),
        row["decline_code"],
        row["decline_limit"],
        row["decline_remaining"],
        row["decline_reason"],
    )


def _history_item(row: Any, user_key: bytes) -> HistoryItem:
    kind = OperationKind(row.kind)
    incoming = kind in _INCOMING or row.user_id != user_key
    return HistoryItem(
        id_from_bytes(row.id),
        kind,
        incoming,
        row.amount_fen,
        OperationStatus(row.status),
        row.decline_code,
        row.created_at,
    )


def _encode_cursor(op_id: bytes) -> str:
    return base64.urlsafe_b64encode(op_id).decode().rstrip("=")


def _decode_cursor(cursor: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise CursorInvalid("the cursor is not one this service gave out")
    return raw


def _mask_account_number(number: str) -> str:
    return number[:4] + "*" * (len(number) - 8) + number[-4:]
