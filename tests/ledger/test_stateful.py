"""The ledger against its reference model, step by random step, on SQLite and PostgreSQL.

This file owns the random exploration of the ledger API. A hypothesis state machine
drives a real `Ledger` (fresh database per example, `ManualClock`) and the in-memory
`LedgerModel` (tests/ledger/model.py) side by side: accounts with random flags, plain,
pending, post (full, partial, AMOUNT_MAX), void, balancing and closing transfers,
linked chains that succeed, fail midway or are left open, clock advances that make
holds expire, retries of earlier batches (`exists`) and retries with one field changed
(`exists_with_different_*`). After every step both must give the same results and the
same accounts; transfers, history and `verify()` are compared as well.

Time: the clock starts at 5e18 ns so that a `timeout_s` of 2^32-1 overflows 2^63 and
one of 4e9 never expires, and it moves by whole seconds plus one millisecond, so a
hold's expiry never hinges on the exact nanosecond the ledger stamped it with (the
ledger's timestamps must stay within a millisecond of its clock; that is asserted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.ledger import Ledger
from milletpay.ledger.types import (
    AMOUNT_MAX,
    QUERY_LIMIT_MAX,
    U16_MAX,
    U32_MAX,
    U64_MAX,
    U128_MAX,
    Account,
    AccountFilter,
    AccountFilterFlags,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
)

from .model import LedgerModel, ModelAccount, ModelTransfer

START_NS = 5_000_000_000 * NS_PER_S
#: Every clock advance adds this on top of whole seconds; also the most a ledger
#: timestamp may run ahead of the clock reading at the call.
TICK_NS = 1_000_000

ACCOUNT_IDS = (1, 2, 3, 4, 5, 6)
LATE_ACCOUNT_IDS = (7, 8)  # only ever created by the create_accounts rule
NEVER_AN_ACCOUNT = 9
ODD_ACCOUNT_IDS = (0, NEVER_AN_ACCOUNT, U128_MAX, *LATE_ACCOUNT_IDS)
NEVER_A_TRANSFER = 999_999
BIG_AMOUNTS = (1 << 127, (1 << 127) + 3, U128_MAX - (1 << 64), U128_MAX - 1, U128_MAX)
TIMEOUTS = (0, 0, 1, 2, 3, 5, 10, 60)
TIMEOUT_NEVER_EXPIRES = 4_000_000_000  # 5e18 + 4e18 ns < 2^63
TIMEOUT_OVERFLOWS = U32_MAX  # 5e18 + 4.29e18 ns >= 2^63

LINKED = TransferFlags.LINKED
PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING_TRANSFER
VOID = TransferFlags.VOID_PENDING_TRANSFER
BAL_D = TransferFlags.BALANCING_DEBIT
BAL_C = TransferFlags.BALANCING_CREDIT
CLOSE_D = TransferFlags.CLOSING_DEBIT
CLOSE_C = TransferFlags.CLOSING_CREDIT
DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
CMNED = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS

#: How often each kind of transfer is drawn (relative weights; "plain" shrinks first).
TRANSFER_KIND_WEIGHTS = {
    "plain": 6,
    "pending": 4,
    "post": 4,
    "void": 2,
    "balancing": 2,
    "big": 2,
    "closing": 1,
    "invalid": 1,
}
TRANSFER_KINDS = tuple(kind for kind, n in TRANSFER_KIND_WEIGHTS.items() for _ in range(n))
#: Inside a chain, no deliberately malformed events: chains should often succeed.
CHAIN_KINDS = tuple(kind for kind in TRANSFER_KINDS if kind != "invalid")
TRANSFER_FIELDS = (
    "flags",
    "pending_id",
    "timeout_s",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "ledger",
    "code",
)
ACCOUNT_FIELDS = ("flags", "user_data_128", "user_data_64", "user_data_32", "ledger", "code")
FIELD_MAX = {
    "pending_id": U128_MAX,
    "timeout_s": U32_MAX,
    "debit_account_id": U128_MAX,
    "credit_account_id": U128_MAX,
    "amount": U128_MAX,
    "user_data_128": U128_MAX,
    "user_data_64": U64_MAX,
    "user_data_32": U32_MAX,
    "ledger": U32_MAX,
    "code": U16_MAX,
}


def _bump(value: int, maximum: int) -> int:
    """A different value in range: one more, or one less at the top."""
    return value + 1 if value < maximum else value - 1


class LedgerVersusModel(RuleBasedStateMachine):
    """One example: a fresh database, a ledger on it, and a model that must agree."""

    #: Set by the test function: makes a fresh, empty database and gives its URL.
    make_database_url: ClassVar[Callable[[], str]]

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(start_ns=START_NS)
        self.ledger = Ledger.open(type(self).make_database_url(), clock=self.clock)
        self.model = LedgerModel(START_NS)
        self.next_transfer_id = 100
        self.account_batches: list[list[Account]] = []
        self.transfer_batches: list[list[Transfer]] = []
        self.accepted_accounts: list[Account] = []
        self.accepted_transfers: list[Transfer] = []
        self.failed_transfer_ids: set[int] = set()

    # -- drawing helpers ------------------------------------------------------------

    @staticmethod
    def _one_in(data: st.DataObject, n: int) -> bool:
        """True about once in n draws; shrinks to False."""
        return data.draw(st.integers(0, n - 1)) == n - 1

    def _fresh_transfer_id(self) -> int:
        self.next_transfer_id += 1
        return self.next_transfer_id

    def _account_ref(self, data: st.DataObject, other: int | None = None) -> int:
        """Mostly one of the usual accounts (not `other`), rarely a missing or bad id."""
        if self._one_in(data, 20):
            return data.draw(st.sampled_from(ODD_ACCOUNT_IDS))
        usual = [i for i in self.model.accounts if i != other] or [
            i for i in ACCOUNT_IDS if i != other
        ]
        return data.draw(st.sampled_from(sorted(usual)))

    def _amount(self, data: st.DataObject) -> int:
        kind = data.draw(st.integers(0, 19))
        if kind <= 15:
            return data.draw(st.integers(1, 12))
        if kind == 16:
            return 0
        return data.draw(st.sampled_from(BIG_AMOUNTS))

    def _ledger_and_code(self, data: st.DataObject) -> tuple[int, int]:
        ledger = data.draw(st.sampled_from((1, 2, 0))) if self._one_in(data, 20) else 1
        code = data.draw(st.sampled_from((2, 0))) if self._one_in(data, 20) else 1
        return ledger, code

    def _user_data(self, data: st.DataObject, *, nonzero: bool = False) -> dict[str, int]:
        low = 1 if nonzero else 0
        return {
            "user_data_128": data.draw(st.integers(low, 3)),
            "user_data_64": data.draw(st.integers(low, 3)),
            "user_data_32": data.draw(st.integers(low, 3)),
        }

    def _draw_account(self, data: st.DataObject, account_id: int | None = None) -> Account:
        odd = account_id is None and self._one_in(data, 8)
        if account_id is None:
            # A faulty account mostly gets an id that is never created, so that its
            # fault is reported rather than `exists_*`.
            choices = (*ACCOUNT_IDS, 10, 11, 12) if odd else ACCOUNT_IDS + LATE_ACCOUNT_IDS
            account_id = data.draw(st.sampled_from(choices))
        flags = data.draw(st.sampled_from((0, 0, 0, 0, int(DMNEC), int(CMNED))))
        if data.draw(st.booleans()):
            flags |= AccountFlags.HISTORY
        if self._one_in(data, 25):
            flags |= AccountFlags.CLOSED
        ledger = 2 if self._one_in(data, 16) else 1
        code = data.draw(st.sampled_from((1, 1, 2)))
        extra: dict[str, int] = {}
        if odd:
            change = data.draw(
                st.sampled_from(
                    (
                        "both_limits",
                        "reserved_flag",
                        "timestamp",
                        "id_zero",
                        "id_max",
                        "ledger_zero",
                        "code_zero",
                        "debits_pending",
                        "debits_posted",
                        "credits_pending",
                        "credits_posted",
                    )
                )
            )
            if change == "both_limits":
                flags |= DMNEC | CMNED
            elif change == "reserved_flag":
                flags |= data.draw(st.sampled_from((1 << 4, 1 << 6, 1 << 15)))
            elif change == "id_zero":
                account_id = 0
            elif change == "id_max":
                account_id = U128_MAX
            elif change == "ledger_zero":
                ledger = 0
            elif change == "code_zero":
                code = 0
            else:
                extra[change] = 1
        return Account(
            account_id,
            ledger,
            code,
            AccountFlags(flags),
            **self._user_data(data),
            **extra,
        )

    def _pending_targets(self, batch: list[Transfer]) -> tuple[list[int], list[int]]:
        """Ids of pending transfers: (in the ledger, earlier in this batch)."""
        stored = [t.id for t in self.model.transfers.values() if t.flags & PENDING]
        local = [t.id for t in batch if t.flags & PENDING and not t.flags & (POST | VOID)]
        return stored, local

    def _known_amount(self, transfer_id: int, batch: list[Transfer]) -> int | None:
        stored = self.model.transfers.get(transfer_id)
        if stored is not None:
            return stored.amount
        for t in reversed(batch):
            if t.id == transfer_id:
                return t.amount
        return None

    def _draw_transfer_id(self, data: st.DataObject, batch: list[Transfer]) -> int:
        if self._one_in(data, 10):
            known = sorted({*self.model.transfers, *(t.id for t in batch)})
            if known:
                return data.draw(st.sampled_from(known))
        return self._fresh_transfer_id()

    def _draw_transfer(
        self,
        data: st.DataObject,
        batch: list[Transfer],
        *,
        kind: str | None = None,
        in_chain: bool = False,
    ) -> Transfer:
        if kind is None:
            kind = data.draw(st.sampled_from(CHAIN_KINDS if in_chain else TRANSFER_KINDS))
        if kind in ("post", "void") and not any(self._pending_targets(batch)):
            kind = "pending" if not self._one_in(data, 8) else kind
        transfer_id = self._draw_transfer_id(data, batch)
        if kind in ("post", "void"):
            return self._draw_post_or_void(data, batch, transfer_id, post=kind == "post")
        debit = self._account_ref(data)
        credit = self._account_ref(data, other=debit)
        amount = self._amount(data)
        if kind == "big":
            amount = data.draw(st.sampled_from(BIG_AMOUNTS))
        ledger, code = self._ledger_and_code(data)
        flags = TransferFlags.NONE
        timeout_s = 0
        pending_id = 0
        if kind in ("pending", "closing") or (kind == "big" and data.draw(st.booleans())):
            flags |= PENDING
            timeout_s = data.draw(st.sampled_from(TIMEOUTS))
            if self._one_in(data, 8):
                timeout_s = data.draw(st.sampled_from((TIMEOUT_NEVER_EXPIRES, TIMEOUT_OVERFLOWS)))
        if kind == "closing":
            flags |= data.draw(st.sampled_from((CLOSE_D, CLOSE_C, CLOSE_D | CLOSE_C)))
            amount = data.draw(st.sampled_from((0, amount)))
        if kind == "balancing" or (kind == "pending" and self._one_in(data, 6)):
            flags |= data.draw(st.sampled_from((BAL_D, BAL_C, BAL_D | BAL_C)))
            amount = data.draw(st.sampled_from((amount, AMOUNT_MAX, U128_MAX - 1)))
        if kind == "plain" and self._one_in(data, 8):
            misuse = data.draw(st.sampled_from(("timeout", "pending_id", "closing")))
            if misuse == "timeout":
                timeout_s = 5
            elif misuse == "pending_id":
                pending_id = data.draw(st.sampled_from((1, transfer_id)))
            else:
                flags |= CLOSE_D
        raw_flags = int(flags)
        timestamp = 0
        if kind == "invalid":
            misuse = data.draw(
                st.sampled_from(
                    ("timestamp", "reserved_flag", "id_zero", "id_max", "same_accounts")
                )
            )
            if misuse == "timestamp":
                timestamp = 1
            elif misuse == "reserved_flag":
                raw_flags |= data.draw(st.sampled_from((1 << 8, 1 << 13)))
            elif misuse == "id_zero":
                transfer_id = 0
            elif misuse == "id_max":
                transfer_id = U128_MAX
            else:
                credit = debit
        return Transfer(
            transfer_id,
            debit,
            credit,
            amount,
            ledger,
            code,
            TransferFlags(raw_flags),
            pending_id,
            timeout_s,
            **self._user_data(data),
            timestamp=timestamp,
        )

    def _draw_post_or_void(
        self, data: st.DataObject, batch: list[Transfer], transfer_id: int, *, post: bool
    ) -> Transfer:
        stored, local = self._pending_targets(batch)
        if local and data.draw(st.booleans()):
            pending_id = data.draw(st.sampled_from(local))
        elif stored and not self._one_in(data, 8):
            pending_id = data.draw(st.sampled_from(stored))
        else:
            not_pending = [t.id for t in self.model.transfers.values() if not t.flags & PENDING]
            pending_id = data.draw(
                st.sampled_from(
                    (0, U128_MAX, transfer_id, NEVER_A_TRANSFER, *not_pending[-3:], *stored[-3:])
                )
            )
        target_amount = self._known_amount(pending_id, batch)
        target = self.model.transfers.get(pending_id)
        full = target_amount if target_amount is not None else data.draw(st.integers(1, 12))
        if post:
            how = data.draw(st.sampled_from(("max", "full", "partial", "over", "zero")))
        else:
            how = data.draw(st.sampled_from(("zero", "full", "max", "over")))
        if how == "max":
            amount = AMOUNT_MAX
        elif how == "full":
            amount = full
        elif how == "partial":
            amount = data.draw(st.integers(1, max(1, full)))
        elif how == "over":
            amount = min(full + 1, U128_MAX - 1)
        else:
            amount = 0
        fields = {"debit_account_id": 0, "credit_account_id": 0, "ledger": 0, "code": 0}
        echo = data.draw(st.sampled_from(("none", "none", "same", "other")))
        if echo != "none" and target is not None:
            fields = {
                "debit_account_id": target.debit_account_id,
                "credit_account_id": target.credit_account_id,
                "ledger": target.ledger,
                "code": target.code,
            }
        if echo == "other":
            name = data.draw(st.sampled_from(sorted(fields)))
            fields[name] = _bump(fields[name] or 1, FIELD_MAX[name])
        flags = POST if post else VOID
        timeout_s = 0
        if self._one_in(data, 10):
            misuse = data.draw(st.sampled_from(("timeout", "flags")))
            if misuse == "timeout":
                timeout_s = 1
            else:
                flags |= data.draw(
                    st.sampled_from((PENDING, VOID if post else POST, BAL_D, CLOSE_C))
                )
        # Post/void user data is never 0 here: whether a 0 would inherit the
        # pending's user data is not specified, so the test does not depend on it.
        return Transfer(
            transfer_id,
            fields["debit_account_id"],
            fields["credit_account_id"],
            amount,
            fields["ledger"],
            fields["code"],
            flags,
            pending_id,
            timeout_s,
            **self._user_data(data, nonzero=True),
        )

    def _link_groups(self, items: list[Any], sizes: list[int], open_chain: bool) -> list[Any]:
        """Set LINKED on all but the last event of each group (and on the very last
        event too when the batch should end with an open chain)."""
        out: list[Any] = []
        position = 0
        for size in sizes:
            group = items[position : position + size]
            position += size
            for index, item in enumerate(group):
                linked = index < size - 1
                out.append(self._with_linked(item) if linked else item)
        if open_chain and out:
            out[-1] = self._with_linked(out[-1])
        return out

    @staticmethod
    def _with_linked(item: Any) -> Any:
        if isinstance(item, Transfer):
            return dataclasses.replace(item, flags=TransferFlags(int(item.flags) | LINKED))
        return dataclasses.replace(item, flags=AccountFlags(int(item.flags) | AccountFlags.LINKED))

    # -- submitting to both ---------------------------------------------------------

    def _submit_accounts(self, batch: list[Account]) -> None:
        expected = self.model.create_accounts(batch)
        actual = self.ledger.create_accounts(batch)
        note(f"create_accounts {_brief(batch)} -> {[str(r) for r in expected]}")
        _same([str(r) for r in actual], [str(r) for r in expected], "create_accounts results")
        for account, result in zip(batch, expected, strict=True):
            if result is CreateAccountResult.OK:
                self.accepted_accounts.append(account)

    def _submit_transfers(self, batch: list[Transfer]) -> None:
        expected = self.model.create_transfers(batch)
        actual = self.ledger.create_transfers(batch)
        note(f"create_transfers {_brief(batch)} -> {[str(r) for r in expected]}")
        _same([str(r) for r in actual], [str(r) for r in expected], "create_transfers results")
        for transfer, result in zip(batch, expected, strict=True):
            if result is CreateTransferResult.OK:
                self.accepted_transfers.append(transfer)
            elif transfer.id not in self.model.transfers:
                self.failed_transfer_ids.add(transfer.id)

    # -- rules ----------------------------------------------------------------------

    @initialize(data=st.data())
    def open_some_accounts_and_move_some_money(self, data: st.DataObject) -> None:
        count = data.draw(st.integers(3, len(ACCOUNT_IDS)), label="accounts")
        batch = [self._draw_account(data, account_id) for account_id in range(1, count + 1)]
        self._submit_accounts(batch)
        self.account_batches.append(batch)
        # Give accounts some posted debits and credits so that limits, balancing
        # transfers and big amounts have something to work against.
        ids = [account.id for account in batch]
        funding = [
            Transfer(self._fresh_transfer_id(), debit, credit, data.draw(st.integers(1, 20)), 1, 1)
            for credit in ids
            for debit in [data.draw(st.sampled_from([i for i in ids if i != credit]))]
        ]
        self._submit_transfers(funding)
        self.transfer_batches.append(funding)

    @rule(data=st.data())
    def create_accounts(self, data: st.DataObject) -> None:
        sizes = data.draw(st.lists(st.sampled_from((1, 1, 2, 3)), min_size=1, max_size=3))
        items = [self._draw_account(data) for _ in range(sum(sizes))]
        batch = self._link_groups(items, sizes, open_chain=self._one_in(data, 10))
        self._submit_accounts(batch)
        self.account_batches.append(batch)

    @rule(data=st.data())
    def create_a_mixed_batch_of_transfers_and_chains(self, data: st.DataObject) -> None:
        sizes = data.draw(
            st.lists(st.sampled_from((1, 1, 1, 2, 3, 4)), min_size=1, max_size=4), label="groups"
        )
        batch: list[Transfer] = []
        for size in sizes:
            for _ in range(size):
                batch.append(self._draw_transfer(data, batch, in_chain=size > 1))
        batch = self._link_groups(batch, sizes, open_chain=self._one_in(data, 10))
        self._submit_transfers(batch)
        self.transfer_batches.append(batch)

    @rule(data=st.data())
    def create_independent_transfers(self, data: st.DataObject) -> None:
        batch: list[Transfer] = []
        for _ in range(data.draw(st.integers(1, 3), label="events")):
            batch.append(self._draw_transfer(data, batch))
        self._submit_transfers(batch)
        self.transfer_batches.append(batch)

    @rule(data=st.data())
    def create_a_hold_and_settle_it_in_one_chain(self, data: st.DataObject) -> None:
        """pending -> post or void of it (-> a plain transfer), linked."""
        batch = [self._draw_transfer(data, [], kind="pending")]
        batch.append(
            self._draw_transfer(data, batch, kind=data.draw(st.sampled_from(("post", "void"))))
        )
        if data.draw(st.booleans()):
            batch.append(self._draw_transfer(data, batch, kind="plain"))
        batch = self._link_groups(batch, [len(batch)], open_chain=self._one_in(data, 10))
        self._submit_transfers(batch)
        self.transfer_batches.append(batch)

    @precondition(lambda self: self.transfer_batches)
    @rule(data=st.data())
    def retry_transfers(self, data: st.DataObject) -> None:
        """A whole earlier batch again, or one accepted transfer with one field changed."""
        if not self.accepted_transfers or data.draw(st.booleans(), label="verbatim"):
            index = data.draw(st.integers(0, len(self.transfer_batches) - 1), label="batch")
            self._submit_transfers(self.transfer_batches[index])
            return
        original = data.draw(st.sampled_from(self.accepted_transfers), label="transfer")
        name = data.draw(st.sampled_from(TRANSFER_FIELDS), label="field")
        value = getattr(original, name)
        if name == "flags":
            bit = data.draw(st.sampled_from([1 << i for i in range(8)]), label="bit")
            changed = dataclasses.replace(original, flags=TransferFlags(int(value) ^ bit))
        elif name == "amount":
            options = sorted({_bump(value, U128_MAX), max(value - 1, 0), AMOUNT_MAX, 1} - {value})
            new = data.draw(st.sampled_from(options), label="amount")
            changed = dataclasses.replace(original, amount=new)
        elif name in ("debit_account_id", "credit_account_id"):
            options = [i for i in (0, *ACCOUNT_IDS) if i != value]
            changed = dataclasses.replace(original, **{name: data.draw(st.sampled_from(options))})
        else:
            changed = dataclasses.replace(original, **{name: _bump(value, FIELD_MAX[name])})
        batch = [changed]
        if changed.flags & LINKED:  # close the chain so the answer is not chain_open
            batch.append(Transfer(self._fresh_transfer_id(), 1, 2, 1, 1, 1))
        self._submit_transfers(batch)

    @precondition(lambda self: self.account_batches)
    @rule(data=st.data())
    def retry_accounts(self, data: st.DataObject) -> None:
        """A whole earlier batch again, or one accepted account with one field changed."""
        if not self.accepted_accounts or data.draw(st.booleans(), label="verbatim"):
            index = data.draw(st.integers(0, len(self.account_batches) - 1), label="batch")
            self._submit_accounts(self.account_batches[index])
            return
        original = data.draw(st.sampled_from(self.accepted_accounts), label="account")
        name = data.draw(st.sampled_from(ACCOUNT_FIELDS), label="field")
        value = getattr(original, name)
        if name == "flags":
            bit = data.draw(
                st.sampled_from(
                    [AccountFlags.LINKED, DMNEC, CMNED, AccountFlags.HISTORY, AccountFlags.CLOSED]
                ),
                label="bit",
            )
            changed = dataclasses.replace(original, flags=AccountFlags(int(value) ^ bit))
        else:
            changed = dataclasses.replace(original, **{name: _bump(value, FIELD_MAX[name])})
        batch = [changed]
        if changed.flags & AccountFlags.LINKED:
            batch.append(Account(NEVER_AN_ACCOUNT, 1, 0))  # closes the chain; always fails
        self._submit_accounts(batch)

    @rule(
        seconds=st.sampled_from((1, 2, 3, 5, 10, 59, 60, 61)),
        expire_explicitly=st.booleans(),
    )
    def advance_the_clock(self, seconds: int, expire_explicitly: bool) -> None:
        self.clock.advance(seconds=seconds, nanoseconds=TICK_NS)
        expired = self.model.advance(seconds * NS_PER_S + TICK_NS)
        note(f"clock +{seconds}s: {expired} hold(s) expire")
        if expire_explicitly:
            _same(self.ledger.expire_pending(), expired, "expire_pending()")

    @rule(data=st.data())
    def read_back_transfers_and_history(self, data: st.DataObject) -> None:
        candidates = sorted(
            {*self.model.transfers, *self.failed_transfer_ids, NEVER_A_TRANSFER, 0, U128_MAX}
        )
        ids = data.draw(st.lists(st.sampled_from(candidates), max_size=8), label="ids")
        self._compare_transfers(ids)
        self._compare_history()

    # -- what must hold -------------------------------------------------------------

    @invariant()
    def every_account_matches_the_model(self) -> None:
        ids = [*reversed(LATE_ACCOUNT_IDS + ACCOUNT_IDS), NEVER_AN_ACCOUNT]
        got = self.ledger.lookup_accounts(ids)
        want = [self.model.accounts[i] for i in ids if i in self.model.accounts]
        _same([a.id for a in got], [a.id for a in want], "lookup_accounts ids")
        for account, expected in zip(got, want, strict=True):
            _same(_account_view(account), _account_view(expected), f"account {account.id}")
            _stamped_near(account.timestamp, expected.created_at_ns, f"account {account.id}")
        order = list(self.model.accounts)
        stamps = [a.timestamp for a in sorted(got, key=lambda a: order.index(a.id))]
        _same(stamps, sorted(set(stamps)), "account timestamps, in creation order")

    def _compare_transfers(self, ids: list[int]) -> None:
        got = self.ledger.lookup_transfers(ids)
        want = [self.model.transfers[i] for i in ids if i in self.model.transfers]
        _same([t.id for t in got], [t.id for t in want], f"lookup_transfers({ids}) ids")
        for transfer, expected in zip(got, want, strict=True):
            _same(_transfer_view(transfer), _transfer_view(expected), f"transfer {transfer.id}")
            _stamped_near(transfer.timestamp, expected.created_at_ns, f"transfer {transfer.id}")
        for transfer_id in ids:
            stored = self.model.transfers.get(transfer_id)
            _same(
                self.ledger.pending_status(transfer_id),
                stored.status if stored is not None else None,
                f"pending_status({transfer_id})",
            )

    def _compare_history(self) -> None:
        both = AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS
        for account in self.model.accounts.values():
            ids = self.model.account_transfer_ids(account.id)

            def query(flags: AccountFilterFlags, account_id: int = account.id) -> list[Transfer]:
                return self.ledger.get_account_transfers(
                    AccountFilter(account_id, limit=QUERY_LIMIT_MAX, flags=flags)
                )

            got = query(both)
            _same([t.id for t in got], ids, f"get_account_transfers({account.id})")
            _same(
                [t.id for t in query(both | AccountFilterFlags.REVERSED)],
                ids[::-1],
                f"get_account_transfers({account.id}, REVERSED)",
            )
            _same(
                [t.id for t in query(AccountFilterFlags.DEBITS)],
                [i for i in ids if self.model.transfers[i].debit_account_id == account.id],
                f"get_account_transfers({account.id}, DEBITS)",
            )
            balances = self.ledger.get_account_balances(
                AccountFilter(account.id, limit=QUERY_LIMIT_MAX)
            )
            if not account.flags & AccountFlags.HISTORY:
                _same(balances, [], f"get_account_balances({account.id}) without HISTORY")
                continue
            actual = [
                (
                    b.timestamp,
                    b.debits_pending,
                    b.debits_posted,
                    b.credits_pending,
                    b.credits_posted,
                )
                for b in balances
            ]
            # A snapshot carries its transfer's timestamp; an expiry's (when the model
            # expects one at all) is the ledger's choice, so it is taken as given.
            stamps = {t.id: t.timestamp for t in got}
            expected = []
            for index, (transfer_id, *four) in enumerate(account.history):
                if transfer_id is not None:
                    stamp = stamps[transfer_id]
                else:
                    stamp = actual[index][0] if index < len(actual) else -1
                expected.append((stamp, *four))
            _same(actual, expected, f"get_account_balances({account.id})")

    def teardown(self) -> None:
        try:
            self._compare_transfers(list(self.model.transfers))
            stamps = [t.timestamp for t in self.ledger.lookup_transfers(list(self.model.transfers))]
            _same(stamps, sorted(set(stamps)), "transfer timestamps, in creation order")
            self._compare_history()
            report = self.ledger.verify()
            assert report.ok, report.problems
        finally:
            self.ledger.close()


_ACCOUNT_VIEW = (
    "id",
    "ledger",
    "code",
    "flags",
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
)
_TRANSFER_VIEW = (
    "id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "ledger",
    "code",
    "flags",
    "pending_id",
    "timeout_s",
    "user_data_128",
    "user_data_64",
    "user_data_32",
)


def _same(actual: object, expected: object, what: str) -> None:
    assert actual == expected, f"{what}:\n  ledger: {actual!r}\n  model:  {expected!r}"


def _stamped_near(timestamp: int, clock_at_call: int, what: str) -> None:
    assert 0 <= timestamp - clock_at_call < TICK_NS, (
        f"{what}: timestamp {timestamp} is not within {TICK_NS} ns after the clock "
        f"reading {clock_at_call} at the call that created it"
    )


def _account_view(a: Account | ModelAccount) -> dict[str, int]:
    return {name: int(getattr(a, name)) for name in _ACCOUNT_VIEW}


def _transfer_view(t: Transfer | ModelTransfer) -> dict[str, int]:
    return {name: int(getattr(t, name)) for name in _TRANSFER_VIEW}


def _brief(batch: list[Any]) -> str:
    """A short, readable rendering of a batch for failure notes."""
    parts = []
    for item in batch:
        shown = {
            f.name: getattr(item, f.name)
            for f in dataclasses.fields(item)
            if getattr(item, f.name) != f.default
        }
        parts.append(
            f"{type(item).__name__}(" + ", ".join(f"{k}={_show(v)}" for k, v in shown.items()) + ")"
        )
    return "[" + ", ".join(parts) + "]"


def _show(value: Any) -> str:
    if isinstance(value, TransferFlags | AccountFlags):
        return str(int(value)) if not value else f"{type(value).__name__}({int(value)})"
    if isinstance(value, int) and value > 1 << 60:
        return f"2**128-{U128_MAX + 1 - value}" if value > 1 << 127 else hex(value)
    return repr(value)


_COMMON = {
    "stateful_step_count": 30,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
SETTINGS = {
    "sqlite": settings(max_examples=40, **_COMMON),
    # Shrinking a failure here would outlast the test timeout (each example makes a new
    # database): a PostgreSQL failure is reported as found, and the SQLite run, which
    # drives the same model, shrinks any disagreement the two engines share.
    "postgresql": settings(
        max_examples=15,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        **_COMMON,
    ),
}


def test_ledger_gives_the_same_results_and_balances_as_the_reference_model(
    database_url_factory: Callable[[], str], request: pytest.FixtureRequest
) -> None:
    engine = request.node.callspec.params["database_url_factory"]
    machine = type(
        f"LedgerVersusModel_{engine}",
        (LedgerVersusModel,),
        {"make_database_url": staticmethod(database_url_factory)},
    )
    run_state_machine_as_test(machine, settings=SETTINGS[engine])
