"""The ledger's state machine: the rules of accounts and transfers, with no I/O.

`BatchState` holds the working set of one batch (the accounts and transfers the
batch touches, loaded by the engine beforehand), applies events to it one at a
time in TigerBeetle's order of checks, and records what the engine must write
afterwards. Linked chains are applied under an undo log and rolled back as a
unit. This module never touches the database and never reads the clock: the
engine hands it timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from milletpay.core.clock import NS_PER_S
from milletpay.ledger.types import (
    ACCOUNT_FLAGS_KNOWN,
    AMOUNT_MAX,
    TRANSFER_FLAGS_KNOWN,
    U128_MAX,
    Account,
    CreateAccountResult,
    CreateTransferResult,
    PendingStatus,
    Transfer,
)
from milletpay.ledger.types import AccountFlags as AF
from milletpay.ledger.types import TransferFlags as TF

R = CreateTransferResult
AR = CreateAccountResult
TIMESTAMP_LIMIT = 1 << 63  # timestamps and expiry instants are signed 64-bit in storage

_POST = int(TF.POST_PENDING_TRANSFER)
_VOID = int(TF.VOID_PENDING_TRANSFER)
_PENDING = int(TF.PENDING)
_LINKED = int(TF.LINKED)
_BAL_DEBIT = int(TF.BALANCING_DEBIT)
_BAL_CREDIT = int(TF.BALANCING_CREDIT)
_CLOSE_DEBIT = int(TF.CLOSING_DEBIT)
_CLOSE_CREDIT = int(TF.CLOSING_CREDIT)
_BALANCING = _BAL_DEBIT | _BAL_CREDIT
_CLOSING = _CLOSE_DEBIT | _CLOSE_CREDIT
_DMNEC = int(AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CMNED = int(AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
_HISTORY = int(AF.HISTORY)
_CLOSED = int(AF.CLOSED)


@dataclass(slots=True, eq=False)
class AccountState:
    """An account as the batch sees it; `ix` is its integer key in storage."""

    ix: int
    id: int
    ledger: int
    code: int
    flags: int
    user_data_128: int
    user_data_64: int
    user_data_32: int
    timestamp: int
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def to_account(self) -> Account:
        return Account(
            self.id,
            self.ledger,
            self.code,
            AF(self.flags),
            self.user_data_128,
            self.user_data_64,
            self.user_data_32,
            debits_pending=self.debits_pending,
            debits_posted=self.debits_posted,
            credits_pending=self.credits_pending,
            credits_posted=self.credits_posted,
            timestamp=self.timestamp,
        )


@dataclass(slots=True, eq=False)
class TransferState:
    """A stored transfer (with its pending status, when it is a pending transfer)."""

    timestamp: int
    id: int
    debit: AccountState
    credit: AccountState
    amount: int
    pending_id: int
    user_data_128: int
    user_data_64: int
    user_data_32: int
    timeout_s: int
    ledger: int
    code: int
    flags: int
    status: int = 0  # a PendingStatus for pending transfers, else 0
    expires_at: int = 0  # 0: no timeout, or already resolved
    resolved_at: int = 0
    stored: bool = True  # False while created by the current batch

    def to_transfer(self) -> Transfer:
        return Transfer(
            self.id,
            self.debit.id,
            self.credit.id,
            self.amount,
            self.ledger,
            self.code,
            TF(self.flags),
            self.pending_id,
            self.timeout_s,
            self.user_data_128,
            self.user_data_64,
            self.user_data_32,
            timestamp=self.timestamp,
        )


_Undo = tuple[object, ...]


@dataclass(slots=True)
class BatchState:
    """The working set of one batch and everything it changed."""

    accounts: dict[int, AccountState]  # by id
    transfers: dict[int, TransferState]  # by id: loaded ones, then those created here
    new_transfers: list[TransferState] = field(default_factory=list)
    touched_accounts: dict[int, AccountState] = field(default_factory=dict)  # by ix
    touched_pendings: dict[int, TransferState] = field(default_factory=dict)  # stored before
    history: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    expired: int = 0
    _undo: list[_Undo] | None = None

    # ---- chains -----------------------------------------------------------------

    def _save_account(self, a: AccountState) -> None:
        self.touched_accounts[a.ix] = a
        if self._undo is not None:
            self._undo.append(
                (
                    "a",
                    a,
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted,
                    a.flags,
                )
            )

    def _save_pending(self, p: TransferState) -> None:
        if p.stored:
            self.touched_pendings[p.timestamp] = p
        if self._undo is not None:
            self._undo.append(("p", p, p.status, p.expires_at, p.resolved_at))

    def _rollback(self, mark: tuple[int, int]) -> None:
        assert self._undo is not None
        for entry in reversed(self._undo):
            if entry[0] == "a":
                a = entry[1]
                assert isinstance(a, AccountState)
                (
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted,
                    a.flags,
                ) = entry[2:]  # type: ignore[assignment]
            else:
                p = entry[1]
                assert isinstance(p, TransferState)
                p.status, p.expires_at, p.resolved_at = entry[2:]  # type: ignore[assignment]
        new_count, history_count = mark
        for t in self.new_transfers[new_count:]:
            del self.transfers[t.id]
        del self.new_transfers[new_count:]
        del self.history[history_count:]

    def _record_history(self, ts: int, *accounts: AccountState) -> None:
        for a in accounts:
            if a.flags & _HISTORY:
                self.history.append(
                    (
                        a.ix,
                        ts,
                        a.debits_pending,
                        a.debits_posted,
                        a.credits_pending,
                        a.credits_posted,
                    )
                )

    # ---- expiry -----------------------------------------------------------------

    def expire(self, p: TransferState, ts: int) -> None:
        """Release a live hold whose timeout has passed."""
        assert p.status == PendingStatus.PENDING and p.expires_at and p.expires_at <= ts
        dr, cr = p.debit, p.credit
        self._save_account(dr)
        self._save_account(cr)
        self._save_pending(p)
        dr.debits_pending -= p.amount
        cr.credits_pending -= p.amount
        assert dr.debits_pending >= 0 and cr.credits_pending >= 0
        self._reopen(p)
        p.status, p.expires_at, p.resolved_at = PendingStatus.EXPIRED, 0, ts
        self.expired += 1
        # No balance snapshot: history is one row per transfer, and an expiry is none.
        # The release shows in the snapshot of the account's next transfer.

    def _reopen(self, p: TransferState) -> None:
        if p.flags & _CLOSE_DEBIT:
            p.debit.flags &= ~_CLOSED
        if p.flags & _CLOSE_CREDIT:
            p.credit.flags &= ~_CLOSED

    # ---- transfers --------------------------------------------------------------

    def apply_transfers(self, events: Sequence[Transfer], timestamps: range) -> list[R]:
        """Apply `events` in order; `timestamps[i]` is event i's timestamp."""
        mark = (0, 0)

        def begin() -> None:
            nonlocal mark
            mark = (len(self.new_transfers), len(self.history))
            self._undo = []

        def end() -> None:
            self._undo = None

        return apply_linked(
            events,
            lambda index, t: self.create_transfer(t, timestamps[index]),
            Chain(begin, lambda: self._rollback(mark), end),
            R.OK,
            R.LINKED_EVENT_FAILED,
            R.LINKED_EVENT_CHAIN_OPEN,
        )

    def create_transfer(self, t: Transfer, ts: int) -> R:
        flags = int(t.flags)
        if t.timestamp != 0:
            return R.TIMESTAMP_MUST_BE_ZERO
        if flags & ~TRANSFER_FLAGS_KNOWN:
            return R.RESERVED_FLAG
        if t.id == 0:
            return R.ID_MUST_NOT_BE_ZERO
        if t.id == U128_MAX:
            return R.ID_MUST_NOT_BE_INT_MAX
        existing = self.transfers.get(t.id)
        if existing is not None:
            return _transfer_exists(t, existing)
        if flags & (_POST | _VOID):
            return self._post_or_void(t, flags, ts)
        return self._create_plain(t, flags, ts)

    def _create_plain(self, t: Transfer, flags: int, ts: int) -> R:
        error = _check_plain_fields(t, flags)
        if error is not None:
            return error
        dr = self.accounts.get(t.debit_account_id)
        if dr is None:
            return R.DEBIT_ACCOUNT_NOT_FOUND
        cr = self.accounts.get(t.credit_account_id)
        if cr is None:
            return R.CREDIT_ACCOUNT_NOT_FOUND
        if dr.ledger != cr.ledger:
            return R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if t.ledger != dr.ledger:
            return R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
        if dr.flags & _CLOSED:
            return R.DEBIT_ACCOUNT_ALREADY_CLOSED
        if cr.flags & _CLOSED:
            return R.CREDIT_ACCOUNT_ALREADY_CLOSED
        amount = t.amount
        if flags & _BAL_DEBIT:
            amount = min(amount, max(0, dr.credits_posted - dr.debits_pending - dr.debits_posted))
            if amount == 0:
                return R.EXCEEDS_CREDITS
        if flags & _BAL_CREDIT:
            amount = min(amount, max(0, cr.debits_posted - cr.credits_pending - cr.credits_posted))
            if amount == 0:
                return R.EXCEEDS_DEBITS
        pending = flags & _PENDING
        error = _check_overflows(dr, cr, amount, pending, ts, t.timeout_s)
        if error is not None:
            return error
        if dr.flags & _DMNEC and dr.debits_pending + dr.debits_posted + amount > dr.credits_posted:
            return R.EXCEEDS_CREDITS
        if cr.flags & _CMNED and cr.credits_pending + cr.credits_posted + amount > cr.debits_posted:
            return R.EXCEEDS_DEBITS

        self._save_account(dr)
        self._save_account(cr)
        new = TransferState(
            ts, t.id, dr, cr, amount, 0, t.user_data_128, t.user_data_64, t.user_data_32,
            t.timeout_s, t.ledger, t.code, flags, stored=False,
        )  # fmt: skip
        if pending:
            dr.debits_pending += amount
            cr.credits_pending += amount
            new.status = PendingStatus.PENDING
            new.expires_at = ts + t.timeout_s * NS_PER_S if t.timeout_s else 0
            if flags & _CLOSE_DEBIT:
                dr.flags |= _CLOSED
            if flags & _CLOSE_CREDIT:
                cr.flags |= _CLOSED
        else:
            dr.debits_posted += amount
            cr.credits_posted += amount
        self.new_transfers.append(new)
        self.transfers[t.id] = new
        self._record_history(ts, dr, cr)
        return R.OK

    def _post_or_void(self, t: Transfer, flags: int, ts: int) -> R:
        if flags & _PENDING or (flags & _POST and flags & _VOID) or flags & (_BALANCING | _CLOSING):
            return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if t.pending_id == 0:
            return R.PENDING_ID_MUST_NOT_BE_ZERO
        if t.pending_id == U128_MAX:
            return R.PENDING_ID_MUST_NOT_BE_INT_MAX
        if t.pending_id == t.id:
            return R.PENDING_ID_MUST_BE_DIFFERENT
        if t.timeout_s != 0:
            return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        posting = flags & _POST
        if posting and t.amount == 0:
            return R.AMOUNT_MUST_NOT_BE_ZERO
        p = self.transfers.get(t.pending_id)
        if p is None:
            return R.PENDING_TRANSFER_NOT_FOUND
        if not p.flags & _PENDING:
            return R.PENDING_TRANSFER_NOT_PENDING
        dr, cr = p.debit, p.credit
        if t.debit_account_id and t.debit_account_id != dr.id:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
        if t.credit_account_id and t.credit_account_id != cr.id:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
        if t.ledger and t.ledger != p.ledger:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
        if t.code and t.code != p.code:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_CODE
        if posting:
            amount = p.amount if t.amount == AMOUNT_MAX else t.amount
            if amount > p.amount:
                return R.EXCEEDS_PENDING_TRANSFER_AMOUNT
        else:
            if t.amount not in (0, p.amount, AMOUNT_MAX):
                return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
            amount = p.amount
        if p.status == PendingStatus.PENDING and p.expires_at and p.expires_at <= ts:
            self.expire(p, ts)  # due, but not yet swept: it expires now
        if p.status == PendingStatus.POSTED:
            return R.PENDING_TRANSFER_ALREADY_POSTED
        if p.status == PendingStatus.VOIDED:
            return R.PENDING_TRANSFER_ALREADY_VOIDED
        if p.status == PendingStatus.EXPIRED:
            return R.PENDING_TRANSFER_EXPIRED
        assert p.status == PendingStatus.PENDING
        if posting:
            if dr.debits_posted + amount > U128_MAX:
                return R.OVERFLOWS_DEBITS_POSTED
            if cr.credits_posted + amount > U128_MAX:
                return R.OVERFLOWS_CREDITS_POSTED

        self._save_account(dr)
        self._save_account(cr)
        self._save_pending(p)
        dr.debits_pending -= p.amount
        cr.credits_pending -= p.amount
        assert dr.debits_pending >= 0 and cr.credits_pending >= 0
        if posting:
            dr.debits_posted += amount
            cr.credits_posted += amount
            p.status = PendingStatus.POSTED
        else:
            self._reopen(p)
            p.status = PendingStatus.VOIDED
        p.expires_at, p.resolved_at = 0, ts
        new = TransferState(
            ts, t.id, dr, cr, amount, t.pending_id, t.user_data_128, t.user_data_64,
            t.user_data_32, 0, p.ledger, p.code, flags, stored=False,
        )  # fmt: skip
        self.new_transfers.append(new)
        self.transfers[t.id] = new
        self._record_history(ts, dr, cr)
        return R.OK

    # ---- accounts ---------------------------------------------------------------

    def apply_accounts(
        self, events: Sequence[Account], timestamps: range, next_ix: int
    ) -> tuple[list[AR], list[AccountState]]:
        """Apply account creations; returns the results and the accounts created."""
        created: list[AccountState] = []
        mark = 0

        def create(index: int, a: Account) -> AR:
            result = _check_account(a, self.accounts.get(a.id))
            if result is AR.OK:
                new = AccountState(
                    next_ix + len(created), a.id, a.ledger, a.code, int(a.flags),
                    a.user_data_128, a.user_data_64, a.user_data_32, timestamps[index],
                )  # fmt: skip
                created.append(new)
                self.accounts[a.id] = new
            return result

        def begin() -> None:
            nonlocal mark
            mark = len(created)

        def discard() -> None:
            for undone in created[mark:]:
                del self.accounts[undone.id]
            del created[mark:]

        results = apply_linked(
            events,
            create,
            Chain(begin, discard, lambda: None),
            AR.OK,
            AR.LINKED_EVENT_FAILED,
            AR.LINKED_EVENT_CHAIN_OPEN,
        )
        return results, created


@dataclass(frozen=True, slots=True)
class Chain:
    """What to do when a linked chain opens, fails, and closes."""

    begin: Callable[[], None]
    discard: Callable[[], None]
    end: Callable[[], None]


Event = TypeVar("Event", Account, Transfer)
Result = TypeVar("Result", AR, R)


def apply_linked(
    events: Sequence[Event],
    execute: Callable[[int, Event], Result],
    chain: Chain,
    ok: Result,
    failed: Result,
    chain_open: Result,
) -> list[Result]:
    """TigerBeetle's linked-event rules, for accounts and transfers alike.

    A chain is a run of events each flagged LINKED but its last. It succeeds or
    fails as a unit: the first failure keeps its own result, the rest of the chain
    answers `failed`, and `chain.discard` undoes what the chain had done. A chain
    left open by the batch's last event answers `chain_open` there.
    """
    results: list[Result] = []
    chain_start = -1
    broken = False
    last = len(events) - 1
    for index, event in enumerate(events):
        linked = int(event.flags) & _LINKED  # LINKED is bit 0 for accounts and transfers
        if linked and chain_start < 0:
            chain_start, broken = index, False
            chain.begin()
        if linked and index == last:
            result = chain_open
        elif broken:
            result = failed
        else:
            result = execute(index, event)
        if result is not ok and chain_start >= 0 and not broken:
            broken = True
            chain.discard()
            for i in range(chain_start, index):
                results[i] = failed
        results.append(result)
        if chain_start >= 0 and (not linked or result is chain_open):
            chain_start, broken = -1, False
            chain.end()
    return results


def _check_plain_fields(t: Transfer, flags: int) -> R | None:
    if t.debit_account_id == 0:
        return R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if t.debit_account_id == U128_MAX:
        return R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if t.credit_account_id == 0:
        return R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if t.credit_account_id == U128_MAX:
        return R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if t.debit_account_id == t.credit_account_id:
        return R.ACCOUNTS_MUST_BE_DIFFERENT
    if t.pending_id != 0:
        return R.PENDING_ID_MUST_BE_ZERO
    if not flags & _PENDING:
        if t.timeout_s != 0:
            return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        if flags & _CLOSING:
            return R.CLOSING_TRANSFER_MUST_BE_PENDING
    if t.amount == 0 and not flags & _CLOSING:
        return R.AMOUNT_MUST_NOT_BE_ZERO
    if t.ledger == 0:
        return R.LEDGER_MUST_NOT_BE_ZERO
    if t.code == 0:
        return R.CODE_MUST_NOT_BE_ZERO
    return None


def _check_overflows(
    dr: AccountState, cr: AccountState, amount: int, pending: int, ts: int, timeout_s: int
) -> R | None:
    if pending:
        if dr.debits_pending + amount > U128_MAX:
            return R.OVERFLOWS_DEBITS_PENDING
        if cr.credits_pending + amount > U128_MAX:
            return R.OVERFLOWS_CREDITS_PENDING
    else:
        if dr.debits_posted + amount > U128_MAX:
            return R.OVERFLOWS_DEBITS_POSTED
        if cr.credits_posted + amount > U128_MAX:
            return R.OVERFLOWS_CREDITS_POSTED
    if dr.debits_pending + dr.debits_posted + amount > U128_MAX:
        return R.OVERFLOWS_DEBITS
    if cr.credits_pending + cr.credits_posted + amount > U128_MAX:
        return R.OVERFLOWS_CREDITS
    if timeout_s and ts + timeout_s * NS_PER_S >= TIMESTAMP_LIMIT:
        return R.OVERFLOWS_TIMEOUT
    return None


def _transfer_exists(t: Transfer, e: TransferState) -> R:
    flags = int(t.flags)
    if flags != e.flags:
        return R.EXISTS_WITH_DIFFERENT_FLAGS
    if t.pending_id != e.pending_id:
        return R.EXISTS_WITH_DIFFERENT_PENDING_ID
    if t.timeout_s != e.timeout_s:
        return R.EXISTS_WITH_DIFFERENT_TIMEOUT
    resolving = flags & (_POST | _VOID)
    if t.debit_account_id != e.debit.id and not (resolving and t.debit_account_id == 0):
        return R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id != e.credit.id and not (resolving and t.credit_account_id == 0):
        return R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    if not _same_amount(t.amount, e.amount, flags):
        return R.EXISTS_WITH_DIFFERENT_AMOUNT
    if t.user_data_128 != e.user_data_128:
        return R.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if t.user_data_64 != e.user_data_64:
        return R.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if t.user_data_32 != e.user_data_32:
        return R.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if t.ledger != e.ledger and not (resolving and t.ledger == 0):
        return R.EXISTS_WITH_DIFFERENT_LEDGER
    if t.code != e.code and not (resolving and t.code == 0):
        return R.EXISTS_WITH_DIFFERENT_CODE
    return R.EXISTS


def _same_amount(requested: int, stored: int, flags: int) -> bool:
    if requested == stored:
        return True
    if flags & _POST:
        return requested == AMOUNT_MAX
    if flags & _VOID:
        return requested in (0, AMOUNT_MAX)
    if flags & _BALANCING:
        return stored <= requested
    return False


def _check_account(a: Account, existing: AccountState | None) -> AR:
    flags = int(a.flags)
    if a.timestamp != 0:
        return AR.TIMESTAMP_MUST_BE_ZERO
    if flags & ~ACCOUNT_FLAGS_KNOWN:
        return AR.RESERVED_FLAG
    if a.id == 0:
        return AR.ID_MUST_NOT_BE_ZERO
    if a.id == U128_MAX:
        return AR.ID_MUST_NOT_BE_INT_MAX
    if existing is not None:
        if flags != existing.flags:
            return AR.EXISTS_WITH_DIFFERENT_FLAGS
        if a.user_data_128 != existing.user_data_128:
            return AR.EXISTS_WITH_DIFFERENT_USER_DATA_128
        if a.user_data_64 != existing.user_data_64:
            return AR.EXISTS_WITH_DIFFERENT_USER_DATA_64
        if a.user_data_32 != existing.user_data_32:
            return AR.EXISTS_WITH_DIFFERENT_USER_DATA_32
        if a.ledger != existing.ledger:
            return AR.EXISTS_WITH_DIFFERENT_LEDGER
        if a.code != existing.code:
            return AR.EXISTS_WITH_DIFFERENT_CODE
        return AR.EXISTS
    if flags & _DMNEC and flags & _CMNED:
        return AR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if a.debits_pending:
        return AR.DEBITS_PENDING_MUST_BE_ZERO
    if a.debits_posted:
        return AR.DEBITS_POSTED_MUST_BE_ZERO
    if a.credits_pending:
        return AR.CREDITS_PENDING_MUST_BE_ZERO
    if a.credits_posted:
        return AR.CREDITS_POSTED_MUST_BE_ZERO
    if a.ledger == 0:
        return AR.LEDGER_MUST_NOT_BE_ZERO
    if a.code == 0:
        return AR.CODE_MUST_NOT_BE_ZERO
    return AR.OK
