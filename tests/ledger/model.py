"""A reference model of the ledger, written from the semantics brief alone.

This module owns the *meaning* of `create_accounts` / `create_transfers`: which result
each event gets, what it does to the four balances, holds and their expiry, closing
and reopening accounts, linked chains, idempotent retries and the per-account history.
It is an independent check on `milletpay.ledger.Ledger` and was written without
reading the engine: plain Python, no storage, and deliberately slow and literal (a
chain runs against a deep copy of the whole state that is thrown away if the chain
fails) so that each rule can be checked against the brief by reading.

Timestamps are the one thing the model cannot know exactly (the ledger picks them).
It records the clock reading at the call instead, which is exact enough as long as
the ledger's timestamps stay within a millisecond of its clock and the test moves
the clock by whole seconds plus one millisecond (see tests/ledger/test_stateful.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from milletpay.ledger.types import (
    ACCOUNT_FLAGS_KNOWN,
    AMOUNT_MAX,
    U128_MAX,
    Account,
    AccountFlags,
    PendingStatus,
    Transfer,
    TransferFlags,
)
from milletpay.ledger.types import CreateAccountResult as AR
from milletpay.ledger.types import CreateTransferResult as TR

NS_PER_S = 1_000_000_000
TIMESTAMP_LIMIT = 1 << 63
TRANSFER_FLAGS_LIMIT = 1 << 8

PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING_TRANSFER
VOID = TransferFlags.VOID_PENDING_TRANSFER
BALANCING = TransferFlags.BALANCING_DEBIT | TransferFlags.BALANCING_CREDIT
CLOSING = TransferFlags.CLOSING_DEBIT | TransferFlags.CLOSING_CREDIT
CLOSED = int(AccountFlags.CLOSED)


@dataclass
class ModelAccount:
    id: int
    ledger: int
    code: int
    flags: int
    user_data_128: int
    user_data_64: int
    user_data_32: int
    created_at_ns: int
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    #: (transfer id, debits_pending, debits_posted, credits_pending, credits_posted)
    #: after each transfer that touched the account, kept only with HISTORY. An expiring
    #: hold is not a transfer, so it adds no snapshot; its release shows in the next one.
    history: list[tuple[int | None, int, int, int, int]] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        return bool(self.flags & CLOSED)

    def balances(self) -> tuple[int, int, int, int]:
        return (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)


@dataclass
class ModelTransfer:
    """A stored transfer, as the ledger should give it back from `lookup_transfers`."""

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    ledger: int
    code: int
    flags: int
    pending_id: int
    timeout_s: int
    user_data_128: int
    user_data_64: int
    user_data_32: int
    created_at_ns: int
    #: Only for PENDING transfers: what became of the hold, and when it runs out.
    status: PendingStatus | None = None
    expires_at_ns: int | None = None


def _has(flags: int, flag: int) -> bool:
    return bool(flags & flag)


class LedgerModel:
    """The whole ledger in a few dicts; every public method mirrors one `Ledger` call."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns
        self.accounts: dict[int, ModelAccount] = {}
        #: Insertion order is creation order.
        self.transfers: dict[int, ModelTransfer] = {}

    # -- time ---------------------------------------------------------------------

    def advance(self, ns: int) -> int:
        """Move the clock; holds whose timeout has passed expire. Returns how many."""
        assert ns >= 0
        self.now_ns += ns
        return self.expire_pending()

    def expire_pending(self) -> int:
        expired = 0
        for t in self.transfers.values():
            if (
                t.status is PendingStatus.PENDING
                and t.expires_at_ns is not None
                and self.now_ns >= t.expires_at_ns
            ):
                t.status = PendingStatus.EXPIRED
                self._release_hold(t)
                expired += 1
        return expired

    def _release_hold(self, pending: ModelTransfer) -> None:
        """Take a hold off both accounts; a closing hold reopens what it closed."""
        dr = self.accounts[pending.debit_account_id]
        cr = self.accounts[pending.credit_account_id]
        dr.debits_pending -= pending.amount
        cr.credits_pending -= pending.amount
        if _has(pending.flags, TransferFlags.CLOSING_DEBIT):
            dr.flags &= ~CLOSED
        if _has(pending.flags, TransferFlags.CLOSING_CREDIT):
            cr.flags &= ~CLOSED

    # -- batches and linked chains ------------------------------------------------

    def _run_batch(
        self,
        events: Sequence[Any],
        linked_flag: int,
        ok: Any,
        create_one: Callable[[Any], Any],
    ) -> list[Any]:
        """One result per event; a failing chain is rolled back as a unit."""
        results: list[Any] = []
        chain_start: int | None = None
        chain_broken = False
        saved = None
        last = len(events) - 1
        for index, event in enumerate(events):
            linked = _has(event.flags, linked_flag)
            if linked and chain_start is None:
                chain_start = index
                chain_broken = False
                saved = copy.deepcopy((self.accounts, self.transfers))
            # The brief: the last event of an open chain gets linked_event_chain_open,
            # even when an earlier event of the chain already failed.
            if linked and index == last:
                result = type(ok).LINKED_EVENT_CHAIN_OPEN
            elif chain_broken:
                result = type(ok).LINKED_EVENT_FAILED
            else:
                result = create_one(event)
            if result != ok and chain_start is not None and not chain_broken:
                chain_broken = True
                assert saved is not None
                self.accounts, self.transfers = saved
                for earlier in range(chain_start, index):
                    results[earlier] = type(ok).LINKED_EVENT_FAILED
            results.append(result)
            if not linked:
                chain_start = None
                chain_broken = False
                saved = None
        return results

    # -- accounts -----------------------------------------------------------------

    def create_accounts(self, accounts: list[Account]) -> list[AR]:
        return self._run_batch(accounts, AccountFlags.LINKED, AR.OK, self._create_account)

    def _create_account(self, a: Account) -> AR:
        flags = int(a.flags)
        if a.timestamp != 0:
            return AR.TIMESTAMP_MUST_BE_ZERO
        if flags & ~ACCOUNT_FLAGS_KNOWN:
            return AR.RESERVED_FLAG
        if a.id == 0:
            return AR.ID_MUST_NOT_BE_ZERO
        if a.id == U128_MAX:
            return AR.ID_MUST_NOT_BE_INT_MAX
        existing = self.accounts.get(a.id)
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
        if _has(flags, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS) and _has(
            flags, AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
        ):
            return AR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if a.debits_pending != 0:
            return AR.DEBITS_PENDING_MUST_BE_ZERO
        if a.debits_posted != 0:
            return AR.DEBITS_POSTED_MUST_BE_ZERO
        if a.credits_pending != 0:
            return AR.CREDITS_PENDING_MUST_BE_ZERO
        if a.credits_posted != 0:
            return AR.CREDITS_POSTED_MUST_BE_ZERO
        if a.ledger == 0:
            return AR.LEDGER_MUST_NOT_BE_ZERO
        if a.code == 0:
            return AR.CODE_MUST_NOT_BE_ZERO
        self.accounts[a.id] = ModelAccount(
            id=a.id,
            ledger=a.ledger,
            code=a.code,
            flags=flags,
            user_data_128=a.user_data_128,
            user_data_64=a.user_data_64,
            user_data_32=a.user_data_32,
            created_at_ns=self.now_ns,
        )
        return AR.OK

    # -- transfers ----------------------------------------------------------------

    def create_transfers(self, transfers: list[Transfer]) -> list[TR]:
        self.expire_pending()
        return self._run_batch(transfers, TransferFlags.LINKED, TR.OK, self._create_transfer)

    def _create_transfer(self, t: Transfer) -> TR:
        flags = int(t.flags)
        if t.timestamp != 0:
            return TR.TIMESTAMP_MUST_BE_ZERO
        if flags >= TRANSFER_FLAGS_LIMIT:
            return TR.RESERVED_FLAG
        if t.id == 0:
            return TR.ID_MUST_NOT_BE_ZERO
        if t.id == U128_MAX:
            return TR.ID_MUST_NOT_BE_INT_MAX
        existing = self.transfers.get(t.id)
        if existing is not None:
            return self._transfer_exists(t, existing)
        post, void = _has(flags, POST), _has(flags, VOID)
        if _has(flags, PENDING) and (post or void):
            return TR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if post and void:
            return TR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if (post or void) and flags & (BALANCING | CLOSING):
            return TR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if post or void:
            return self._post_or_void(t)
        return self._plain_or_pending(t)

    def _transfer_exists(self, t: Transfer, e: ModelTransfer) -> TR:
        flags = int(t.flags)
        if flags != e.flags:
            return TR.EXISTS_WITH_DIFFERENT_FLAGS
        if t.pending_id != e.pending_id:
            return TR.EXISTS_WITH_DIFFERENT_PENDING_ID
        if t.timeout_s != e.timeout_s:
            return TR.EXISTS_WITH_DIFFERENT_TIMEOUT
        post, void = _has(flags, POST), _has(flags, VOID)

        def differs(requested: int, stored: int) -> bool:
            # For post/void, 0 in debit/credit/ledger/code means "the pending's".
            return requested != stored and not ((post or void) and requested == 0)

        if differs(t.debit_account_id, e.debit_account_id):
            return TR.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
        if differs(t.credit_account_id, e.credit_account_id):
            return TR.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
        if post:
            same_amount = t.amount in (AMOUNT_MAX, e.amount)
        elif void:
            same_amount = t.amount in (0, AMOUNT_MAX, e.amount)
        elif flags & BALANCING:
            same_amount = e.amount <= t.amount
        else:
            same_amount = t.amount == e.amount
        if not same_amount:
            return TR.EXISTS_WITH_DIFFERENT_AMOUNT
        if t.user_data_128 != e.user_data_128:
            return TR.EXISTS_WITH_DIFFERENT_USER_DATA_128
        if t.user_data_64 != e.user_data_64:
            return TR.EXISTS_WITH_DIFFERENT_USER_DATA_64
        if t.user_data_32 != e.user_data_32:
            return TR.EXISTS_WITH_DIFFERENT_USER_DATA_32
        if differs(t.ledger, e.ledger):
            return TR.EXISTS_WITH_DIFFERENT_LEDGER
        if differs(t.code, e.code):
            return TR.EXISTS_WITH_DIFFERENT_CODE
        return TR.EXISTS

    def _plain_or_pending(self, t: Transfer) -> TR:
        flags = int(t.flags)
        pending = _has(flags, PENDING)
        closing = bool(flags & CLOSING)
        if t.debit_account_id == 0:
            return TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if t.debit_account_id == U128_MAX:
            return TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if t.credit_account_id == 0:
            return TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if t.credit_account_id == U128_MAX:
            return TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if t.debit_account_id == t.credit_account_id:
            return TR.ACCOUNTS_MUST_BE_DIFFERENT
        if t.pending_id != 0:
            return TR.PENDING_ID_MUST_BE_ZERO
        if t.timeout_s != 0 and not pending:
            return TR.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        if closing and not pending:
            return TR.CLOSING_TRANSFER_MUST_BE_PENDING
        if t.amount == 0 and not closing:
            return TR.AMOUNT_MUST_NOT_BE_ZERO
        if t.ledger == 0:
            return TR.LEDGER_MUST_NOT_BE_ZERO
        if t.code == 0:
            return TR.CODE_MUST_NOT_BE_ZERO
        dr = self.accounts.get(t.debit_account_id)
        if dr is None:
            return TR.DEBIT_ACCOUNT_NOT_FOUND
        cr = self.accounts.get(t.credit_account_id)
        if cr is None:
            return TR.CREDIT_ACCOUNT_NOT_FOUND
        if dr.ledger != cr.ledger:
            return TR.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if t.ledger != dr.ledger:
            return TR.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
        if dr.closed:
            return TR.DEBIT_ACCOUNT_ALREADY_CLOSED
        if cr.closed:
            return TR.CREDIT_ACCOUNT_ALREADY_CLOSED

        amount = t.amount
        if _has(flags, TransferFlags.BALANCING_DEBIT):
            room = max(0, dr.credits_posted - dr.debits_pending - dr.debits_posted)
            amount = min(amount, room)
            if amount == 0:
                return TR.EXCEEDS_CREDITS
        if _has(flags, TransferFlags.BALANCING_CREDIT):
            room = max(0, cr.debits_posted - cr.credits_pending - cr.credits_posted)
            amount = min(amount, room)
            if amount == 0:
                return TR.EXCEEDS_DEBITS

        if pending:
            if dr.debits_pending + amount > U128_MAX:
                return TR.OVERFLOWS_DEBITS_PENDING
            if cr.credits_pending + amount > U128_MAX:
                return TR.OVERFLOWS_CREDITS_PENDING
        else:
            if dr.debits_posted + amount > U128_MAX:
                return TR.OVERFLOWS_DEBITS_POSTED
            if cr.credits_posted + amount > U128_MAX:
                return TR.OVERFLOWS_CREDITS_POSTED
        if dr.debits_pending + dr.debits_posted + amount > U128_MAX:
            return TR.OVERFLOWS_DEBITS
        if cr.credits_pending + cr.credits_posted + amount > U128_MAX:
            return TR.OVERFLOWS_CREDITS
        if self.now_ns + t.timeout_s * NS_PER_S >= TIMESTAMP_LIMIT:
            return TR.OVERFLOWS_TIMEOUT
        if (
            _has(dr.flags, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
            and dr.debits_pending + dr.debits_posted + amount > dr.credits_posted
        ):
            return TR.EXCEEDS_CREDITS
        if (
            _has(cr.flags, AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
            and cr.credits_pending + cr.credits_posted + amount > cr.debits_posted
        ):
            return TR.EXCEEDS_DEBITS

        stored = ModelTransfer(
            id=t.id,
            debit_account_id=t.debit_account_id,
            credit_account_id=t.credit_account_id,
            amount=amount,
            ledger=t.ledger,
            code=t.code,
            flags=flags,
            pending_id=0,
            timeout_s=t.timeout_s,
            user_data_128=t.user_data_128,
            user_data_64=t.user_data_64,
            user_data_32=t.user_data_32,
            created_at_ns=self.now_ns,
        )
        if pending:
            dr.debits_pending += amount
            cr.credits_pending += amount
            stored.status = PendingStatus.PENDING
            if t.timeout_s > 0:
                stored.expires_at_ns = self.now_ns + t.timeout_s * NS_PER_S
            if _has(flags, TransferFlags.CLOSING_DEBIT):
                dr.flags |= CLOSED
            if _has(flags, TransferFlags.CLOSING_CREDIT):
                cr.flags |= CLOSED
        else:
            dr.debits_posted += amount
            cr.credits_posted += amount
        self._store(stored, dr, cr)
        return TR.OK

    def _post_or_void(self, t: Transfer) -> TR:
        post = _has(t.flags, POST)
        if t.pending_id == 0:
            return TR.PENDING_ID_MUST_NOT_BE_ZERO
        if t.pending_id == U128_MAX:
            return TR.PENDING_ID_MUST_NOT_BE_INT_MAX
        if t.pending_id == t.id:
            return TR.PENDING_ID_MUST_BE_DIFFERENT
        if t.timeout_s != 0:
            return TR.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        if post and t.amount == 0:
            return TR.AMOUNT_MUST_NOT_BE_ZERO
        p = self.transfers.get(t.pending_id)
        if p is None:
            return TR.PENDING_TRANSFER_NOT_FOUND
        if not _has(p.flags, PENDING):
            return TR.PENDING_TRANSFER_NOT_PENDING
        if t.debit_account_id not in (0, p.debit_account_id):
            return TR.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
        if t.credit_account_id not in (0, p.credit_account_id):
            return TR.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
        if t.ledger not in (0, p.ledger):
            return TR.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
        if t.code not in (0, p.code):
            return TR.PENDING_TRANSFER_HAS_DIFFERENT_CODE
        if post and t.amount != AMOUNT_MAX and t.amount > p.amount:
            return TR.EXCEEDS_PENDING_TRANSFER_AMOUNT
        if not post and t.amount not in (0, p.amount, AMOUNT_MAX):
            return TR.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
        if p.status is PendingStatus.POSTED:
            return TR.PENDING_TRANSFER_ALREADY_POSTED
        if p.status is PendingStatus.VOIDED:
            return TR.PENDING_TRANSFER_ALREADY_VOIDED
        if p.status is PendingStatus.EXPIRED:
            return TR.PENDING_TRANSFER_EXPIRED
        assert p.status is PendingStatus.PENDING

        amount = p.amount if (not post or t.amount == AMOUNT_MAX) else t.amount
        dr = self.accounts[p.debit_account_id]
        cr = self.accounts[p.credit_account_id]
        if post:
            if dr.debits_posted + amount > U128_MAX:
                return TR.OVERFLOWS_DEBITS_POSTED
            if cr.credits_posted + amount > U128_MAX:
                return TR.OVERFLOWS_CREDITS_POSTED

        if post:
            # The hold goes away whole; only `amount` of it becomes posted, and a
            # closing transfer that is posted leaves its accounts closed.
            dr.debits_pending -= p.amount
            cr.credits_pending -= p.amount
            dr.debits_posted += amount
            cr.credits_posted += amount
            p.status = PendingStatus.POSTED
        else:
            self._release_hold(p)
            p.status = PendingStatus.VOIDED
        stored = ModelTransfer(
            id=t.id,
            debit_account_id=p.debit_account_id,
            credit_account_id=p.credit_account_id,
            amount=amount,
            ledger=p.ledger,
            code=p.code,
            flags=int(t.flags),
            pending_id=t.pending_id,
            timeout_s=0,
            user_data_128=t.user_data_128,
            user_data_64=t.user_data_64,
            user_data_32=t.user_data_32,
            created_at_ns=self.now_ns,
        )
        self._store(stored, dr, cr)
        return TR.OK

    def _store(self, stored: ModelTransfer, dr: ModelAccount, cr: ModelAccount) -> None:
        self.transfers[stored.id] = stored
        self._record_history(stored.id, dr.id, cr.id)

    def _record_history(self, transfer_id: int | None, *account_ids: int) -> None:
        for account_id in account_ids:
            account = self.accounts[account_id]
            if _has(account.flags, AccountFlags.HISTORY):
                account.history.append((transfer_id, *account.balances()))

    # -- queries ------------------------------------------------------------------

    def account_transfer_ids(self, account_id: int) -> list[int]:
        """Ids of the transfers that touch an account, oldest first."""
        return [
            t.id
            for t in self.transfers.values()
            if account_id in (t.debit_account_id, t.credit_account_id)
        ]
