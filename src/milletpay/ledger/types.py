"""The ledger's data types: accounts, transfers, their flags, results and filters.

The model is TigerBeetle's (docs.tigerbeetle.com, reference/account and
reference/transfer): 128-bit ids and amounts, four balances per account, two-phase
transfers, linked chains, and one result per event. Values are immutable; a value
that cannot be represented (a negative amount, an id over 128 bits, a float) is
refused when it is constructed, so it never reaches the database.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from milletpay.core.errors import MilletError

U128_MAX = (1 << 128) - 1
U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
U16_MAX = (1 << 16) - 1

#: On a post, "post the whole pending amount"; on a balancing transfer, "no upper bound".
AMOUNT_MAX = U128_MAX
#: The most events one `create_accounts` / `create_transfers` call may carry.
BATCH_EVENTS_MAX = 8190
#: The most rows one query may return.
QUERY_LIMIT_MAX = 8190


class LedgerInputError(MilletError, ValueError):
    """A value that the ledger cannot represent; names the field that was wrong."""

    code = "ledger_invalid_input"


class AccountFlags(enum.IntFlag):
    NONE = 0
    LINKED = 1 << 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
    HISTORY = 1 << 3
    CLOSED = 1 << 5


class TransferFlags(enum.IntFlag):
    NONE = 0
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING_TRANSFER = 1 << 2
    VOID_PENDING_TRANSFER = 1 << 3
    BALANCING_DEBIT = 1 << 4
    BALANCING_CREDIT = 1 << 5
    CLOSING_DEBIT = 1 << 6
    CLOSING_CREDIT = 1 << 7


ACCOUNT_FLAGS_KNOWN = int(
    AccountFlags.LINKED
    | AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    | AccountFlags.HISTORY
    | AccountFlags.CLOSED
)
TRANSFER_FLAGS_KNOWN = (1 << 8) - 1


class AccountFilterFlags(enum.IntFlag):
    NONE = 0
    DEBITS = 1 << 0
    CREDITS = 1 << 1
    REVERSED = 1 << 2


class CreateAccountResult(enum.StrEnum):
    """The answer to one account; named as TigerBeetle names them (docs/ledger.md has the
    order in which they are checked)."""

    OK = "ok"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    TIMESTAMP_MUST_BE_ZERO = "timestamp_must_be_zero"
    RESERVED_FLAG = "reserved_flag"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    ID_MUST_NOT_BE_INT_MAX = "id_must_not_be_int_max"
    EXISTS_WITH_DIFFERENT_FLAGS = "exists_with_different_flags"
    EXISTS_WITH_DIFFERENT_USER_DATA_128 = "exists_with_different_user_data_128"
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = "exists_with_different_user_data_64"
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = "exists_with_different_user_data_32"
    EXISTS_WITH_DIFFERENT_LEDGER = "exists_with_different_ledger"
    EXISTS_WITH_DIFFERENT_CODE = "exists_with_different_code"
    EXISTS = "exists"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    DEBITS_PENDING_MUST_BE_ZERO = "debits_pending_must_be_zero"
    DEBITS_POSTED_MUST_BE_ZERO = "debits_posted_must_be_zero"
    CREDITS_PENDING_MUST_BE_ZERO = "credits_pending_must_be_zero"
    CREDITS_POSTED_MUST_BE_ZERO = "credits_posted_must_be_zero"
    LEDGER_MUST_NOT_BE_ZERO = "ledger_must_not_be_zero"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"


class CreateTransferResult(enum.StrEnum):
    """The answer to one transfer; named as TigerBeetle names them (docs/ledger.md has the
    order in which they are checked)."""

    OK = "ok"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    TIMESTAMP_MUST_BE_ZERO = "timestamp_must_be_zero"
    RESERVED_FLAG = "reserved_flag"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    ID_MUST_NOT_BE_INT_MAX = "id_must_not_be_int_max"
    EXISTS_WITH_DIFFERENT_FLAGS = "exists_with_different_flags"
    EXISTS_WITH_DIFFERENT_PENDING_ID = "exists_with_different_pending_id"
    EXISTS_WITH_DIFFERENT_TIMEOUT = "exists_with_different_timeout"
    EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID = "exists_with_different_debit_account_id"
    EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID = "exists_with_different_credit_account_id"
    EXISTS_WITH_DIFFERENT_AMOUNT = "exists_with_different_amount"
    EXISTS_WITH_DIFFERENT_USER_DATA_128 = "exists_with_different_user_data_128"
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = "exists_with_different_user_data_64"
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = "exists_with_different_user_data_32"
    EXISTS_WITH_DIFFERENT_LEDGER = "exists_with_different_ledger"
    EXISTS_WITH_DIFFERENT_CODE = "exists_with_different_code"
    EXISTS = "exists"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "debit_account_id_must_not_be_zero"
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = "debit_account_id_must_not_be_int_max"
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "credit_account_id_must_not_be_zero"
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = "credit_account_id_must_not_be_int_max"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    PENDING_ID_MUST_BE_ZERO = "pending_id_must_be_zero"
    PENDING_ID_MUST_NOT_BE_ZERO = "pending_id_must_not_be_zero"
    PENDING_ID_MUST_NOT_BE_INT_MAX = "pending_id_must_not_be_int_max"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    CLOSING_TRANSFER_MUST_BE_PENDING = "closing_transfer_must_be_pending"
    AMOUNT_MUST_NOT_BE_ZERO = "amount_must_not_be_zero"
    LEDGER_MUST_NOT_BE_ZERO = "ledger_must_not_be_zero"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = "accounts_must_have_the_same_ledger"
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = (
        "transfer_must_have_the_same_ledger_as_accounts"
    )
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = (
        "pending_transfer_has_different_debit_account_id"
    )
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = (
        "pending_transfer_has_different_credit_account_id"
    )
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = "pending_transfer_has_different_ledger"
    PENDING_TRANSFER_HAS_DIFFERENT_CODE = "pending_transfer_has_different_code"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    DEBIT_ACCOUNT_ALREADY_CLOSED = "debit_account_already_closed"
    CREDIT_ACCOUNT_ALREADY_CLOSED = "credit_account_already_closed"
    OVERFLOWS_DEBITS_PENDING = "overflows_debits_pending"
    OVERFLOWS_CREDITS_PENDING = "overflows_credits_pending"
    OVERFLOWS_DEBITS_POSTED = "overflows_debits_posted"
    OVERFLOWS_CREDITS_POSTED = "overflows_credits_posted"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    OVERFLOWS_TIMEOUT = "overflows_timeout"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"


class PendingStatus(enum.IntEnum):
    """What became of a pending transfer."""

    PENDING = 1
    POSTED = 2
    VOIDED = 3
    EXPIRED = 4


def check_uint(owner: str, name: str, value: object, maximum: int) -> None:
    """Refuse anything but an int in [0, maximum] (bool is not a number here), naming the field."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise LedgerInputError(
            f"{owner}.{name} must be an int, got {type(value).__name__} {value!r}",
            code="ledger_invalid_type",
        )
    if not 0 <= value <= maximum:
        raise LedgerInputError(
            f"{owner}.{name} must be between 0 and {maximum}, got {value}",
            code="ledger_out_of_range",
        )


_ACCOUNT_LIMITS: dict[str, int] = {
    "id": U128_MAX,
    "ledger": U32_MAX,
    "code": U16_MAX,
    "flags": U16_MAX,
    "user_data_128": U128_MAX,
    "user_data_64": U64_MAX,
    "user_data_32": U32_MAX,
    "debits_pending": U128_MAX,
    "debits_posted": U128_MAX,
    "credits_pending": U128_MAX,
    "credits_posted": U128_MAX,
    "timestamp": U64_MAX,
}

_TRANSFER_LIMITS: dict[str, int] = {
    "id": U128_MAX,
    "debit_account_id": U128_MAX,
    "credit_account_id": U128_MAX,
    "amount": U128_MAX,
    "ledger": U32_MAX,
    "code": U16_MAX,
    "flags": U16_MAX,
    "pending_id": U128_MAX,
    "timeout_s": U32_MAX,
    "user_data_128": U128_MAX,
    "user_data_64": U64_MAX,
    "user_data_32": U32_MAX,
    "timestamp": U64_MAX,
}


def _check_fields(value: object, owner: str, limits: dict[str, int]) -> None:
    for name, maximum in limits.items():
        v = getattr(value, name)
        if type(v) is not int or not 0 <= v <= maximum:  # the fast path is one test per field
            check_uint(owner, name, v, maximum)
            if name != "flags":  # an IntEnum code, say: keep the plain number
                object.__setattr__(value, name, int(v))


@dataclass(frozen=True, slots=True)
class Account:
    """An account: created by the caller, balances maintained by the ledger only.

    The balances and `timestamp` are set by the ledger; an account handed to
    `create_accounts` must leave them at zero (the ledger answers
    `debits_pending_must_be_zero` and so on otherwise).
    """

    id: int
    ledger: int
    code: int
    flags: AccountFlags = AccountFlags.NONE
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    debits_pending: int = field(default=0, kw_only=True)
    debits_posted: int = field(default=0, kw_only=True)
    credits_pending: int = field(default=0, kw_only=True)
    credits_posted: int = field(default=0, kw_only=True)
    timestamp: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        _check_fields(self, "Account", _ACCOUNT_LIMITS)

    @property
    def balance_debit_minus_credit(self) -> int:
        """Posted debits less posted credits: the balance of an asset-side account."""
        return self.debits_posted - self.credits_posted

    @property
    def balance_credit_minus_debit(self) -> int:
        """Posted credits less posted debits: the balance of a liability-side account."""
        return self.credits_posted - self.debits_posted


@dataclass(frozen=True, slots=True)
class Transfer:
    """A movement of `amount` from the debit account to the credit account.

    With PENDING it is a hold, released by a later transfer with
    POST_PENDING_TRANSFER (capture; partial posts release the remainder) or
    VOID_PENDING_TRANSFER, or by its `timeout_s` running out. `timestamp` is set by
    the ledger and must be zero on creation.
    """

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    ledger: int
    code: int
    flags: TransferFlags = TransferFlags.NONE
    pending_id: int = 0
    timeout_s: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    timestamp: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        _check_fields(self, "Transfer", _TRANSFER_LIMITS)


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's balances just after the transfer at `timestamp` (HISTORY accounts)."""

    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class AccountFilter:
    """Which of an account's transfers to read, oldest first unless REVERSED.

    `timestamp_min` / `timestamp_max` bound the range (inclusive, 0 = open); to page,
    pass the last timestamp seen plus one as `timestamp_min` (or minus one as
    `timestamp_max` when reversed). `limit` is at most `QUERY_LIMIT_MAX`.
    """

    account_id: int
    limit: int = 100
    flags: AccountFilterFlags = AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS
    timestamp_min: int = 0
    timestamp_max: int = 0
    code: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0

    def __post_init__(self) -> None:
        check_uint("AccountFilter", "account_id", self.account_id, U128_MAX)
        check_uint("AccountFilter", "timestamp_min", self.timestamp_min, U64_MAX)
        check_uint("AccountFilter", "timestamp_max", self.timestamp_max, U64_MAX)
        check_uint("AccountFilter", "code", self.code, U16_MAX)
        check_uint("AccountFilter", "user_data_128", self.user_data_128, U128_MAX)
        check_uint("AccountFilter", "user_data_64", self.user_data_64, U64_MAX)
        check_uint("AccountFilter", "user_data_32", self.user_data_32, U32_MAX)
        check_uint("AccountFilter", "flags", self.flags, 7)
        if not 1 <= self.limit <= QUERY_LIMIT_MAX:
            raise LedgerInputError(
                f"AccountFilter.limit must be between 1 and {QUERY_LIMIT_MAX}, got {self.limit}",
                code="ledger_out_of_range",
            )
        if not self.flags & (AccountFilterFlags.DEBITS | AccountFilterFlags.CREDITS):
            raise LedgerInputError(
                "AccountFilter.flags must include DEBITS, CREDITS or both",
                code="ledger_invalid_filter",
            )
        if self.timestamp_max and self.timestamp_min > self.timestamp_max:
            raise LedgerInputError(
                "AccountFilter.timestamp_min is after timestamp_max", code="ledger_invalid_filter"
            )


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of `Ledger.verify()`: `ok` when `problems` is empty."""

    problems: tuple[str, ...]
    ledgers: int
    accounts: int
    transfers: int

    @property
    def ok(self) -> bool:
        return not self.problems


E = TypeVar("E", Account, Transfer)


def check_batch(events: Sequence[E], kind: type[E], limit: int = BATCH_EVENTS_MAX) -> list[E]:
    """Refuse a batch that is not a list of `kind`, or longer than `limit`."""
    if not isinstance(events, (list, tuple)):
        raise LedgerInputError(
            f"expected a list of {kind.__name__}, got {type(events).__name__}",
            code="ledger_invalid_type",
        )
    if len(events) > limit:
        raise LedgerInputError(
            f"a batch carries at most {limit} events, got {len(events)}",
            code="ledger_batch_too_large",
        )
    for index, event in enumerate(events):
        if type(event) is not kind:
            raise LedgerInputError(
                f"event {index} is a {type(event).__name__}, not a {kind.__name__}",
                code="ledger_invalid_type",
            )
    return list(events)
