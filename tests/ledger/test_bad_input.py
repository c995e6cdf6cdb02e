"""Bad input is refused precisely, and the basic flows behave as specified.

Checks, on SQLite and PostgreSQL:
- values the ledger cannot represent (negative, over 128/64/32/16 bits, floats, bools,
  strings) are refused by the Account/Transfer constructors with a LedgerInputError that
  names the field;
- malformed batches (too many events, an element that is not an Account/Transfer) raise
  LedgerInputError and write nothing, not even their valid events;
- every refused event gets its own result code, in the documented order of precedence,
  and leaves balances, transfers and `verify()` exactly as they were;
- the happy paths as specifications: two-phase transfers (partial post, void, expiry),
  idempotent retries, balance limits, linked chains, 128-bit balances, paging through an
  account's transfers and the balance history of HISTORY accounts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest

from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.ledger import Ledger
from milletpay.ledger.types import (
    AMOUNT_MAX,
    BATCH_EVENTS_MAX,
    U16_MAX,
    U32_MAX,
    U64_MAX,
    U128_MAX,
    Account,
    AccountFilter,
    AccountFilterFlags,
    AccountFlags,
    LedgerInputError,
    Transfer,
    TransferFlags,
)

# Accounts every ledger fixture starts with.
A, B, C = 1, 2, 3  # ledger 1, no limits
LIMITED = 4  # ledger 1, DEBITS_MUST_NOT_EXCEED_CREDITS
CAPPED = 5  # ledger 1, CREDITS_MUST_NOT_EXCEED_DEBITS
OTHER_LEDGER = 9  # ledger 2
MISSING = 404  # never created
ACCOUNT_IDS = [A, B, C, LIMITED, CAPPED, OTHER_LEDGER]

LINKED = TransferFlags.LINKED
PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING_TRANSFER
VOID = TransferFlags.VOID_PENDING_TRANSFER
DEBITS = AccountFilterFlags.DEBITS
CREDITS = AccountFilterFlags.CREDITS
REVERSED = AccountFilterFlags.REVERSED

GOOD_TRANSFER: dict[str, Any] = {
    "id": 1,
    "debit_account_id": A,
    "credit_account_id": B,
    "amount": 10,
    "ledger": 1,
    "code": 1,
}
GOOD_ACCOUNT: dict[str, Any] = {"id": 1, "ledger": 1, "code": 1}


def tx(id: int, debit: int = A, credit: int = B, amount: int = 10, **fields: Any) -> Transfer:
    """A transfer on ledger 1, code 1, unless `fields` say otherwise."""
    fields.setdefault("ledger", 1)
    fields.setdefault("code", 1)
    return Transfer(
        id=id, debit_account_id=debit, credit_account_id=credit, amount=amount, **fields
    )


def balances(ledger: Ledger, account_id: int) -> tuple[int, int, int, int]:
    """(debits_pending, debits_posted, credits_pending, credits_posted)."""
    (account,) = ledger.lookup_accounts([account_id])
    return (
        account.debits_pending,
        account.debits_posted,
        account.credits_pending,
        account.credits_posted,
    )


def state(ledger: Ledger, transfer_ids: Sequence[int] = ()) -> tuple[Any, ...]:
    """Everything a refused call must leave untouched."""
    report = ledger.verify()
    return (
        tuple(ledger.lookup_accounts(ACCOUNT_IDS)),
        tuple(ledger.lookup_transfers([i for i in transfer_ids if 0 < i < U128_MAX])),
        report.accounts,
        report.transfers,
        report.problems,
    )


def assert_refused(ledger: Ledger, cases: Sequence[tuple[str, Transfer, str]]) -> None:
    """Send each case alone; each must get its result and change nothing."""
    wrong = []
    for name, transfer, expected in cases:
        before = state(ledger, [transfer.id])
        results = ledger.create_transfers([transfer])
        if [str(r) for r in results] != [expected]:
            wrong.append(f"{name}: expected {expected}, got {[str(r) for r in results]}")
        after = state(ledger, [transfer.id])
        if after != before:
            wrong.append(f"{name}: refused transfer changed the ledger: {before} -> {after}")
        if not ledger.verify().ok:
            wrong.append(f"{name}: verify() failed: {ledger.verify().problems}")
    assert not wrong, "\n".join(wrong)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    led = Ledger.open(database_url, clock=clock)
    try:
        results = led.create_accounts(
            [
                Account(id=A, ledger=1, code=10),
                Account(id=B, ledger=1, code=10),
                Account(id=C, ledger=1, code=10),
                Account(
                    id=LIMITED, ledger=1, code=10, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
                ),
                Account(
                    id=CAPPED, ledger=1, code=10, flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
                ),
                Account(id=OTHER_LEDGER, ledger=2, code=10),
            ]
        )
        assert [str(r) for r in results] == ["ok"] * 6
        yield led
    finally:
        led.close()


# --- Values the constructors refuse ------------------------------------------------------

TRANSFER_LIMITS = {
    "id": U128_MAX,
    "debit_account_id": U128_MAX,
    "credit_account_id": U128_MAX,
    "amount": U128_MAX,
    "pending_id": U128_MAX,
    "user_data_128": U128_MAX,
    "user_data_64": U64_MAX,
    "user_data_32": U32_MAX,
    "timeout_s": U32_MAX,
    "ledger": U32_MAX,
    "code": U16_MAX,
    "flags": U16_MAX,
    "timestamp": U64_MAX,
}
ACCOUNT_LIMITS = {
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
WRONG_TYPES = [1.0, 10.5, float("nan"), True, False, "10", b"10", None, Decimal(10), [10]]


def naming(owner: str, field: str) -> str:
    return rf"{re.escape(owner)}\.{field}\b"


@pytest.mark.parametrize("field", sorted(TRANSFER_LIMITS))
def test_transfer_refuses_negative_and_oversized_values_naming_the_field(field: str) -> None:
    for value in (-1, -(1 << 128), TRANSFER_LIMITS[field] + 1, 1 << 200):
        with pytest.raises(LedgerInputError, match=naming("Transfer", field)):
            Transfer(**{**GOOD_TRANSFER, field: value})
    Transfer(**{**GOOD_TRANSFER, field: TRANSFER_LIMITS[field]})  # the maximum itself is fine


@pytest.mark.parametrize("field", ["amount", "id", "debit_account_id", "ledger", "timeout_s"])
@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
def test_transfer_refuses_floats_bools_and_strings(field: str, value: object) -> None:
    with pytest.raises(LedgerInputError, match=naming("Transfer", field)):
        Transfer(**{**GOOD_TRANSFER, field: value})


@pytest.mark.parametrize("field", sorted(ACCOUNT_LIMITS))
def test_account_refuses_negative_and_oversized_values_naming_the_field(field: str) -> None:
    for value in (-1, ACCOUNT_LIMITS[field] + 1):
        with pytest.raises(LedgerInputError, match=naming("Account", field)):
            Account(**{**GOOD_ACCOUNT, field: value})


@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
def test_account_refuses_floats_bools_and_strings(value: object) -> None:
    for field in ("id", "ledger", "debits_posted"):
        with pytest.raises(LedgerInputError, match=naming("Account", field)):
            Account(**{**GOOD_ACCOUNT, field: value})


def test_ledger_input_error_is_a_value_error_with_a_code() -> None:
    with pytest.raises(ValueError) as caught:
        Transfer(**{**GOOD_TRANSFER, "amount": -5})
    assert isinstance(caught.value, LedgerInputError)
    assert caught.value.code
    assert "Transfer.amount" in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 8191}, "limit"),
        ({"account_id": -1}, "account_id"),
        ({"timestamp_min": 1.5}, "timestamp_min"),
        ({"code": 1 << 16}, "code"),
        ({"flags": 8}, "flags"),
        ({"flags": REVERSED}, "flags"),
        ({"timestamp_min": 10, "timestamp_max": 9}, "timestamp_min"),
    ],
)
def test_account_filter_refuses_what_it_cannot_mean(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(LedgerInputError, match=naming("AccountFilter", field)):
        AccountFilter(**{"account_id": 1, **changes})


# --- Malformed batches ------------------------------------------------------------------


def test_an_empty_batch_answers_nothing_and_writes_nothing(ledger: Ledger) -> None:
    before = state(ledger)
    assert ledger.create_transfers([]) == []
    assert ledger.create_accounts([]) == []
    assert state(ledger) == before


def test_a_batch_that_is_not_a_list_raises(ledger: Ledger) -> None:
    before = state(ledger, [1])
    for batch in (tx(id=1), (t for t in [tx(id=1)]), {tx(id=1)}):
        with pytest.raises(LedgerInputError):
            ledger.create_transfers(batch)  # type: ignore[arg-type]
    assert state(ledger, [1]) == before


def test_oversized_batch_raises_and_writes_none_of_its_events(ledger: Ledger) -> None:
    transfers = [tx(id=i, amount=1) for i in range(1, BATCH_EVENTS_MAX + 2)]
    assert len(transfers) == BATCH_EVENTS_MAX + 1
    before = state(ledger)
    with pytest.raises(LedgerInputError):
        ledger.create_transfers(transfers)
    assert state(ledger) == before
    assert ledger.lookup_transfers([t.id for t in transfers[:BATCH_EVENTS_MAX]]) == []
    assert balances(ledger, A) == (0, 0, 0, 0)
    assert ledger.verify().ok


def test_oversized_account_batch_raises_and_creates_nothing(ledger: Ledger) -> None:
    accounts = [Account(id=1000 + i, ledger=1, code=1) for i in range(BATCH_EVENTS_MAX + 1)]
    before = state(ledger)
    with pytest.raises(LedgerInputError):
        ledger.create_accounts(accounts)
    assert state(ledger) == before
    assert ledger.lookup_accounts([a.id for a in accounts[:100]]) == []


def test_a_full_batch_of_batch_events_max_is_accepted(ledger: Ledger) -> None:
    transfers = [tx(id=i, amount=1) for i in range(1, BATCH_EVENTS_MAX + 1)]
    results = ledger.create_transfers(transfers)
    assert [str(r) for r in results] == ["ok"] * BATCH_EVENTS_MAX
    assert balances(ledger, A) == (0, BATCH_EVENTS_MAX, 0, 0)
    assert balances(ledger, B) == (0, 0, 0, BATCH_EVENTS_MAX)
    assert len(ledger.lookup_transfers([t.id for t in transfers])) == BATCH_EVENTS_MAX
    assert ledger.verify().ok


@pytest.mark.parametrize(
    "intruder",
    [
        {"id": 2, "debit_account_id": A, "credit_account_id": B, "amount": 1},
        Account(id=77, ledger=1, code=1),
        None,
        7,
        (2, A, B, 1, 1, 1),
    ],
    ids=["dict", "account", "none", "int", "tuple"],
)
def test_a_non_transfer_in_the_batch_raises_and_writes_nothing(
    ledger: Ledger, intruder: object
) -> None:
    before = state(ledger, [1, 3])
    with pytest.raises(LedgerInputError):
        ledger.create_transfers([tx(id=1), intruder, tx(id=3)])  # type: ignore[list-item]
    assert state(ledger, [1, 3]) == before
    assert ledger.lookup_transfers([1, 3]) == []
    assert ledger.verify().ok


def test_a_non_account_in_the_batch_raises_and_creates_nothing(ledger: Ledger) -> None:
    before = state(ledger)
    with pytest.raises(LedgerInputError):
        ledger.create_accounts([Account(id=100, ledger=1, code=1), tx(id=1)])  # type: ignore[list-item]
    assert state(ledger) == before
    assert ledger.lookup_accounts([100]) == []


# --- Refused transfers: each gets its result code and writes nothing ----------------------

MUTUALLY_EXCLUSIVE = [
    PENDING | POST,
    PENDING | VOID,
    POST | VOID,
    POST | TransferFlags.BALANCING_DEBIT,
    POST | TransferFlags.BALANCING_CREDIT,
    VOID | TransferFlags.BALANCING_DEBIT,
    POST | TransferFlags.CLOSING_DEBIT,
    VOID | TransferFlags.CLOSING_CREDIT,
]


def test_invalid_transfers_get_their_specific_result_and_write_nothing(ledger: Ledger) -> None:
    cases: list[tuple[str, Transfer, str]] = [
        ("timestamp set", tx(100, timestamp=1), "timestamp_must_be_zero"),
        ("flag bit 8", tx(101, flags=1 << 8), "reserved_flag"),
        ("flag bit 15", tx(102, flags=1 << 15), "reserved_flag"),
        ("id 0", tx(0), "id_must_not_be_zero"),
        ("id int max", tx(U128_MAX), "id_must_not_be_int_max"),
        ("debit 0", tx(103, debit=0), "debit_account_id_must_not_be_zero"),
        ("debit int max", tx(104, debit=U128_MAX), "debit_account_id_must_not_be_int_max"),
        ("credit 0", tx(105, credit=0), "credit_account_id_must_not_be_zero"),
        ("credit int max", tx(106, credit=U128_MAX), "credit_account_id_must_not_be_int_max"),
        ("self-transfer", tx(107, debit=A, credit=A), "accounts_must_be_different"),
        ("pending_id on plain", tx(108, pending_id=5), "pending_id_must_be_zero"),
        ("timeout on plain", tx(109, timeout_s=10), "timeout_reserved_for_pending_transfer"),
        (
            "closing without pending",
            tx(110, flags=TransferFlags.CLOSING_DEBIT),
            "closing_transfer_must_be_pending",
        ),
        ("amount 0", tx(111, amount=0), "amount_must_not_be_zero"),
        ("pending amount 0", tx(112, amount=0, flags=PENDING), "amount_must_not_be_zero"),
        ("ledger 0", tx(113, ledger=0), "ledger_must_not_be_zero"),
        ("code 0", tx(114, code=0), "code_must_not_be_zero"),
        ("unknown debit", tx(115, debit=MISSING), "debit_account_not_found"),
        ("unknown credit", tx(116, credit=MISSING), "credit_account_not_found"),
        ("both unknown", tx(117, debit=MISSING, credit=MISSING + 1), "debit_account_not_found"),
        (
            "accounts on two ledgers",
            tx(118, credit=OTHER_LEDGER),
            "accounts_must_have_the_same_ledger",
        ),
        (
            "transfer on another ledger",
            tx(119, ledger=2),
            "transfer_must_have_the_same_ledger_as_accounts",
        ),
        ("limited debit", tx(120, debit=LIMITED, amount=1), "exceeds_credits"),
        ("limited pending debit", tx(121, debit=LIMITED, flags=PENDING), "exceeds_credits"),
        ("capped credit", tx(122, credit=CAPPED, amount=1), "exceeds_debits"),
    ]
    cases += [
        (f"flags {int(flags)}", tx(130 + i, flags=flags), "flags_are_mutually_exclusive")
        for i, flags in enumerate(MUTUALLY_EXCLUSIVE)
    ]
    assert_refused(ledger, cases)
    assert balances(ledger, A) == (0, 0, 0, 0)


def test_the_first_failing_check_wins(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        [
            ("timestamp before id", tx(0, timestamp=5, flags=1 << 9), "timestamp_must_be_zero"),
            ("reserved flag before id", tx(0, flags=1 << 9), "reserved_flag"),
            ("id before amount", tx(0, amount=0), "id_must_not_be_zero"),
            (
                "exclusive flags before accounts",
                tx(200, debit=0, flags=PENDING | VOID),
                "flags_are_mutually_exclusive",
            ),
            (
                "debit 0 before credit 0",
                tx(201, debit=0, credit=0),
                "debit_account_id_must_not_be_zero",
            ),
            (
                "same accounts before amount",
                tx(202, debit=A, credit=A, amount=0),
                "accounts_must_be_different",
            ),
            (
                "pending_id before timeout",
                tx(203, pending_id=9, timeout_s=9),
                "pending_id_must_be_zero",
            ),
            ("amount before ledger", tx(204, amount=0, ledger=0), "amount_must_not_be_zero"),
            ("ledger before code", tx(205, ledger=0, code=0), "ledger_must_not_be_zero"),
            ("code before lookup", tx(206, code=0, debit=MISSING), "code_must_not_be_zero"),
            (
                "missing before ledgers",
                tx(207, debit=MISSING, credit=OTHER_LEDGER),
                "debit_account_not_found",
            ),
            (
                "account ledgers before transfer ledger",
                tx(208, credit=OTHER_LEDGER, ledger=3),
                "accounts_must_have_the_same_ledger",
            ),
        ],
    )


def test_post_and_void_checks_get_their_result_and_write_nothing(ledger: Ledger) -> None:
    assert ledger.create_transfers([tx(1, amount=50, flags=PENDING), tx(2, amount=5)]) == [
        "ok",
        "ok",
    ]
    before_balances = balances(ledger, A)

    def post(id: int, pending_id: int = 1, amount: int = AMOUNT_MAX, **kw: Any) -> Transfer:
        kw.setdefault("flags", POST)
        return Transfer(
            id=id,
            debit_account_id=kw.pop("debit", 0),
            credit_account_id=kw.pop("credit", 0),
            amount=amount,
            ledger=kw.pop("ledger", 0),
            code=kw.pop("code", 0),
            pending_id=pending_id,
            **kw,
        )

    assert_refused(
        ledger,
        [
            ("pending_id 0", post(10, pending_id=0), "pending_id_must_not_be_zero"),
            ("pending_id int max", post(11, pending_id=U128_MAX), "pending_id_must_not_be_int_max"),
            ("pending_id is own id", post(12, pending_id=12), "pending_id_must_be_different"),
            ("timeout on post", post(13, timeout_s=1), "timeout_reserved_for_pending_transfer"),
            ("post amount 0", post(14, amount=0), "amount_must_not_be_zero"),
            ("unknown pending", post(15, pending_id=999), "pending_transfer_not_found"),
            ("not a pending", post(16, pending_id=2), "pending_transfer_not_pending"),
            (
                "other debit",
                post(17, debit=C),
                "pending_transfer_has_different_debit_account_id",
            ),
            (
                "other credit",
                post(18, credit=C),
                "pending_transfer_has_different_credit_account_id",
            ),
            ("other ledger", post(19, ledger=2), "pending_transfer_has_different_ledger"),
            ("other code", post(20, code=99), "pending_transfer_has_different_code"),
            ("post too much", post(21, amount=51), "exceeds_pending_transfer_amount"),
            (
                "void a different amount",
                post(22, amount=20, flags=VOID),
                "pending_transfer_has_different_amount",
            ),
            ("void unknown", post(23, pending_id=998, flags=VOID), "pending_transfer_not_found"),
        ],
    )
    assert balances(ledger, A) == before_balances == (50, 5, 0, 0)
    # The hold is intact after all that: it can still be posted in full.
    assert ledger.create_transfers([post(30)]) == ["ok"]
    assert balances(ledger, A) == (0, 55, 0, 0)


def test_a_retry_that_differs_gets_exists_with_different_field(ledger: Ledger) -> None:
    original = tx(1, amount=10, user_data_128=1, user_data_64=2, user_data_32=3)
    assert ledger.create_transfers([original]) == ["ok"]
    same = {
        "id": 1,
        "debit": A,
        "credit": B,
        "amount": 10,
        "user_data_128": 1,
        "user_data_64": 2,
        "user_data_32": 3,
    }

    def retry(**changes: Any) -> Transfer:
        return tx(**{**same, **changes})

    assert_refused(
        ledger,
        [
            ("flags", retry(flags=PENDING), "exists_with_different_flags"),
            ("pending_id", retry(pending_id=7), "exists_with_different_pending_id"),
            ("timeout", retry(timeout_s=7), "exists_with_different_timeout"),
            ("debit", retry(debit=C), "exists_with_different_debit_account_id"),
            ("credit", retry(credit=C), "exists_with_different_credit_account_id"),
            ("amount", retry(amount=11), "exists_with_different_amount"),
            ("user_data_128", retry(user_data_128=9), "exists_with_different_user_data_128"),
            ("user_data_64", retry(user_data_64=9), "exists_with_different_user_data_64"),
            ("user_data_32", retry(user_data_32=9), "exists_with_different_user_data_32"),
            ("ledger", retry(ledger=2), "exists_with_different_ledger"),
            ("code", retry(code=2), "exists_with_different_code"),
            ("amount before code", retry(amount=12, code=2), "exists_with_different_amount"),
            ("timestamp before exists", retry(timestamp=3), "timestamp_must_be_zero"),
            ("identical", retry(), "exists"),
        ],
    )
    (stored,) = ledger.lookup_transfers([1])
    assert (stored.amount, stored.user_data_32) == (10, 3)
    assert balances(ledger, A) == (0, 10, 0, 0)


def test_a_duplicate_inside_one_batch_moves_money_once(ledger: Ledger) -> None:
    results = ledger.create_transfers([tx(1), tx(1), tx(1, amount=11)])
    assert [str(r) for r in results] == ["ok", "exists", "exists_with_different_amount"]
    assert balances(ledger, A) == (0, 10, 0, 0)
    assert ledger.verify().ok


def test_invalid_accounts_get_their_specific_result_and_are_not_created(ledger: Ledger) -> None:
    DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    CMNED = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    cases: list[tuple[str, Account, str]] = [
        ("timestamp", Account(id=100, ledger=1, code=1, timestamp=1), "timestamp_must_be_zero"),
        ("flag bit 4", Account(id=101, ledger=1, code=1, flags=1 << 4), "reserved_flag"),  # type: ignore[arg-type]
        ("flag bit 6", Account(id=102, ledger=1, code=1, flags=1 << 6), "reserved_flag"),  # type: ignore[arg-type]
        ("id 0", Account(id=0, ledger=1, code=1), "id_must_not_be_zero"),
        ("id int max", Account(id=U128_MAX, ledger=1, code=1), "id_must_not_be_int_max"),
        (
            "both limits",
            Account(id=103, ledger=1, code=1, flags=DMNEC | CMNED),
            "flags_are_mutually_exclusive",
        ),
        (
            "debits_pending",
            Account(id=104, ledger=1, code=1, debits_pending=1),
            "debits_pending_must_be_zero",
        ),
        (
            "debits_posted",
            Account(id=105, ledger=1, code=1, debits_posted=1),
            "debits_posted_must_be_zero",
        ),
        (
            "credits_pending",
            Account(id=106, ledger=1, code=1, credits_pending=1),
            "credits_pending_must_be_zero",
        ),
        (
            "credits_posted",
            Account(id=107, ledger=1, code=1, credits_posted=1),
            "credits_posted_must_be_zero",
        ),
        ("ledger 0", Account(id=108, ledger=0, code=1), "ledger_must_not_be_zero"),
        ("code 0", Account(id=109, ledger=1, code=0), "code_must_not_be_zero"),
        (
            "exists: flags",
            Account(id=A, ledger=1, code=10, flags=DMNEC),
            "exists_with_different_flags",
        ),
        (
            "exists: user_data_128",
            Account(id=A, ledger=1, code=10, user_data_128=1),
            "exists_with_different_user_data_128",
        ),
        (
            "exists: user_data_64",
            Account(id=A, ledger=1, code=10, user_data_64=1),
            "exists_with_different_user_data_64",
        ),
        (
            "exists: user_data_32",
            Account(id=A, ledger=1, code=10, user_data_32=1),
            "exists_with_different_user_data_32",
        ),
        ("exists: ledger", Account(id=A, ledger=2, code=10), "exists_with_different_ledger"),
        ("exists: code", Account(id=A, ledger=1, code=11), "exists_with_different_code"),
        ("exists", Account(id=A, ledger=1, code=10), "exists"),
    ]
    wrong = []
    for name, account, expected in cases:
        before = state(ledger)
        got = [str(r) for r in ledger.create_accounts([account])]
        if got != [expected]:
            wrong.append(f"{name}: expected {expected}, got {got}")
        if state(ledger) != before:
            wrong.append(f"{name}: refused account changed the ledger")
        if 0 < account.id < U128_MAX and account.id != A and ledger.lookup_accounts([account.id]):
            wrong.append(f"{name}: account {account.id} was created")
    assert not wrong, "\n".join(wrong)
    assert ledger.verify().ok


def test_pending_timeout_that_overflows_the_clock_is_refused(
    database_url_factory: Callable[[], str],
) -> None:
    clock = ManualClock(start_ns=(1 << 63) - 10 * NS_PER_S)
    with Ledger.open(database_url_factory(), clock=clock) as led:
        assert led.create_accounts(
            [Account(id=A, ledger=1, code=1), Account(id=B, ledger=1, code=1)]
        ) == [
            "ok",
            "ok",
        ]
        before = state(led, [1])
        assert led.create_transfers([tx(1, flags=PENDING, timeout_s=10)]) == ["overflows_timeout"]
        assert state(led, [1]) == before
        assert led.create_transfers([tx(2, flags=PENDING, timeout_s=9)]) == ["ok"]
        assert led.verify().ok


# --- 128-bit balances ---------------------------------------------------------------------


def test_balances_hold_full_128_bit_values_and_refuse_overflow(ledger: Ledger) -> None:
    assert ledger.create_transfers([tx(1, amount=U128_MAX)]) == ["ok"]
    assert balances(ledger, A) == (0, U128_MAX, 0, 0)
    assert balances(ledger, B) == (0, 0, 0, U128_MAX)
    assert ledger.lookup_transfers([1])[0].amount == U128_MAX
    assert_refused(
        ledger,
        [
            ("debit side", tx(2, debit=A, credit=C, amount=1), "overflows_debits_posted"),
            ("credit side", tx(3, debit=C, credit=B, amount=1), "overflows_credits_posted"),
            (
                "debit side pending",
                tx(4, debit=A, credit=C, amount=1, flags=PENDING),
                "overflows_debits",
            ),
        ],
    )
    assert balances(ledger, C) == (0, 0, 0, 0)


def test_pending_plus_posted_may_not_overflow(ledger: Ledger) -> None:
    half = 1 << 127
    assert ledger.create_transfers([tx(1, amount=half, flags=PENDING)]) == ["ok"]
    assert_refused(
        ledger,
        [
            ("posted + pending", tx(2, debit=A, credit=C, amount=half), "overflows_debits"),
            ("credits too", tx(3, debit=C, credit=B, amount=half), "overflows_credits"),
        ],
    )
    assert ledger.create_transfers([tx(4, debit=A, credit=C, amount=half - 1)]) == ["ok"]
    assert balances(ledger, A) == (half, half - 1, 0, 0)
    assert ledger.verify().ok


def test_balances_cross_the_63_and_64_bit_boundaries_exactly(ledger: Ledger) -> None:
    amounts = [(1 << 63) - 1, 1, 1, (1 << 64) - (1 << 63) - 2, 1, 12345]
    running = 0
    for i, amount in enumerate(amounts, start=1):
        assert ledger.create_transfers([tx(i, amount=amount)]) == ["ok"]
        running += amount
        assert balances(ledger, A) == (0, running, 0, 0), f"after adding {amount}"
    assert running == (1 << 64) + 12345
    # And back down across the same boundaries.
    assert ledger.create_transfers([tx(100, debit=B, credit=A, amount=(1 << 64) + 12345)]) == ["ok"]
    (account,) = ledger.lookup_accounts([A])
    assert account.balance_debit_minus_credit == 0
    assert ledger.verify().ok


# --- Two-phase transfers ------------------------------------------------------------------


def test_partial_post_releases_the_remainder(ledger: Ledger) -> None:
    assert ledger.create_transfers([tx(1, amount=100, flags=PENDING)]) == ["ok"]
    assert balances(ledger, A) == (100, 0, 0, 0)
    assert balances(ledger, B) == (0, 0, 100, 0)

    post = Transfer(
        id=2,
        debit_account_id=0,
        credit_account_id=0,
        amount=60,
        ledger=0,
        code=0,
        flags=POST,
        pending_id=1,
    )
    assert ledger.create_transfers([post]) == ["ok"]
    assert balances(ledger, A) == (0, 60, 0, 0)
    assert balances(ledger, B) == (0, 0, 0, 60)

    (stored,) = ledger.lookup_transfers([2])
    assert (stored.debit_account_id, stored.credit_account_id) == (A, B)
    assert (stored.amount, stored.ledger, stored.code) == (60, 1, 1)
    assert stored.flags & POST and stored.pending_id == 1

    # The remainder is gone: it cannot be posted later, and the hold cannot be voided.
    assert_refused(
        ledger,
        [
            (
                "post the rest",
                tx(3, amount=40, flags=POST, pending_id=1),
                "pending_transfer_already_posted",
            ),
            ("void", tx(4, amount=0, flags=VOID, pending_id=1), "pending_transfer_already_posted"),
        ],
    )
    assert ledger.verify().ok


def test_void_releases_the_hold(ledger: Ledger) -> None:
    assert ledger.create_transfers([tx(1, amount=100, flags=PENDING)]) == ["ok"]
    void = Transfer(
        id=2,
        debit_account_id=0,
        credit_account_id=0,
        amount=0,
        ledger=0,
        code=0,
        flags=VOID,
        pending_id=1,
    )
    assert ledger.create_transfers([void]) == ["ok"]
    assert balances(ledger, A) == (0, 0, 0, 0)
    assert balances(ledger, B) == (0, 0, 0, 0)
    (stored,) = ledger.lookup_transfers([2])
    assert (stored.debit_account_id, stored.credit_account_id, stored.amount) == (A, B, 100)
    assert_refused(
        ledger,
        [
            (
                "post",
                tx(3, amount=AMOUNT_MAX, flags=POST, pending_id=1),
                "pending_transfer_already_voided",
            ),
            (
                "void again",
                tx(4, amount=0, flags=VOID, pending_id=1),
                "pending_transfer_already_voided",
            ),
        ],
    )
    assert ledger.verify().ok


def test_expired_hold_cannot_be_posted(ledger: Ledger, clock: ManualClock) -> None:
    assert ledger.create_transfers([tx(1, amount=100, flags=PENDING, timeout_s=10)]) == ["ok"]
    (pending,) = ledger.lookup_transfers([1])
    expires_at = pending.timestamp + 10 * NS_PER_S
    assert pending.timestamp >= clock.now_ns()

    clock.advance(nanoseconds=expires_at - 1 - clock.now_ns())
    assert ledger.expire_pending() == 0
    assert balances(ledger, A) == (100, 0, 0, 0), "the hold expired a nanosecond early"

    clock.advance(nanoseconds=1)
    assert ledger.expire_pending() == 1
    assert balances(ledger, A) == (0, 0, 0, 0)
    assert balances(ledger, B) == (0, 0, 0, 0)
    assert ledger.expire_pending() == 0

    assert_refused(
        ledger,
        [
            (
                "post",
                tx(2, amount=AMOUNT_MAX, flags=POST, pending_id=1),
                "pending_transfer_expired",
            ),
            ("void", tx(3, amount=0, flags=VOID, pending_id=1), "pending_transfer_expired"),
        ],
    )
    assert ledger.verify().ok


def test_holds_expire_on_their_own_before_the_next_transfer(
    ledger: Ledger, clock: ManualClock
) -> None:
    assert ledger.create_transfers([tx(1, amount=100, flags=PENDING, timeout_s=1)]) == ["ok"]
    clock.advance(seconds=2)
    # No explicit expire_pending(): create_transfers expires first, so the post fails.
    assert ledger.create_transfers([tx(2, amount=AMOUNT_MAX, flags=POST, pending_id=1)]) == [
        "pending_transfer_expired"
    ]
    assert balances(ledger, A) == (0, 0, 0, 0)


# --- Idempotency, limits, chains ------------------------------------------------------------


def test_retry_answers_exists_and_moves_nothing(ledger: Ledger) -> None:
    batch = [tx(1, amount=10), tx(2, debit=A, credit=C, amount=20), tx(3, B, C, 5, flags=PENDING)]
    assert ledger.create_transfers(batch) == ["ok"] * 3
    after_first = [balances(ledger, i) for i in (A, B, C)]
    assert ledger.create_transfers(batch) == ["exists"] * 3
    assert [balances(ledger, i) for i in (A, B, C)] == after_first

    post = tx(4, debit=0, credit=0, amount=AMOUNT_MAX, ledger=0, code=0, flags=POST, pending_id=3)
    assert ledger.create_transfers([post]) == ["ok"]
    after_post = [balances(ledger, i) for i in (A, B, C)]
    assert after_post[1] == (0, 5, 0, 10)
    # A retried post is `exists`, not `pending_transfer_already_posted`, whether it names the
    # accounts or leaves them zero, asks for AMOUNT_MAX or the amount actually posted.
    assert ledger.create_transfers([post]) == ["exists"]
    assert ledger.create_transfers([tx(4, B, C, 5, flags=POST, pending_id=3)]) == ["exists"]
    assert ledger.create_transfers([tx(4, B, C, 6, flags=POST, pending_id=3)]) == [
        "exists_with_different_amount"
    ]
    # A retry mixed with new work: the new work happens, the old does not happen again.
    assert ledger.create_transfers([tx(5, amount=1), *batch]) == [
        "ok",
        "exists",
        "exists",
        "exists",
    ]
    assert [balances(ledger, i) for i in (A, B, C)] == [
        (0, 31, 0, 0),
        (0, 5, 0, 11),
        (0, 0, 0, 25),
    ]
    assert ledger.verify().ok


def test_exceeds_credits_when_debits_must_not_exceed_credits(ledger: Ledger) -> None:
    assert ledger.create_transfers([tx(1, debit=B, credit=LIMITED, amount=100)]) == ["ok"]
    assert_refused(ledger, [("more than funded", tx(2, LIMITED, C, 101), "exceeds_credits")])
    assert ledger.create_transfers([tx(3, LIMITED, C, 60, flags=PENDING)]) == ["ok"]
    # The hold counts against the limit.
    assert_refused(ledger, [("hold counts", tx(4, LIMITED, C, 41), "exceeds_credits")])
    assert ledger.create_transfers([tx(5, LIMITED, C, 40)]) == ["ok"]
    assert balances(ledger, LIMITED) == (60, 40, 0, 100)
    assert_refused(ledger, [("nothing left", tx(6, LIMITED, C, 1), "exceeds_credits")])
    # Voiding the hold frees it.
    assert ledger.create_transfers([tx(7, 0, 0, 0, flags=VOID, pending_id=3)]) == ["ok"]
    assert ledger.create_transfers([tx(8, LIMITED, C, 60)]) == ["ok"]
    assert balances(ledger, LIMITED) == (0, 100, 0, 100)
    assert_refused(ledger, [("exactly spent", tx(9, LIMITED, C, 1), "exceeds_credits")])
    assert ledger.verify().ok


def test_exceeds_debits_when_credits_must_not_exceed_debits(ledger: Ledger) -> None:
    assert ledger.create_transfers([tx(1, debit=CAPPED, credit=B, amount=50)]) == ["ok"]
    assert_refused(ledger, [("over the cap", tx(2, A, CAPPED, 51), "exceeds_debits")])
    assert ledger.create_transfers([tx(3, A, CAPPED, 50)]) == ["ok"]
    assert balances(ledger, CAPPED) == (0, 50, 0, 50)
    assert ledger.verify().ok


def test_linked_chain_fails_as_a_unit(ledger: Ledger) -> None:
    batch = [
        tx(1, A, B, 10, flags=LINKED),
        tx(2, A, MISSING, 10, flags=LINKED),
        tx(3, B, C, 10),  # closes the chain
        tx(4, A, C, 7),  # independent
    ]
    before = state(ledger, [1, 2, 3])
    results = ledger.create_transfers(batch)
    assert [str(r) for r in results] == [
        "linked_event_failed",
        "credit_account_not_found",
        "linked_event_failed",
        "ok",
    ]
    assert ledger.lookup_transfers([1, 2, 3]) == []
    assert balances(ledger, A) == (0, 7, 0, 0)
    assert balances(ledger, B) == (0, 0, 0, 0)
    assert balances(ledger, C) == (0, 0, 0, 7)
    assert state(ledger, [1, 2, 3])[2:4] == (before[2], before[3] + 1)

    # Nothing of the failed chain was kept, so its ids are free; a chain sees its own effects.
    chain = [
        tx(1, B, LIMITED, 50, flags=LINKED),
        tx(2, LIMITED, C, 50, flags=LINKED | PENDING),
        tx(3, 0, 0, 0, flags=VOID, pending_id=2, ledger=0, code=0),
    ]
    assert ledger.create_transfers(chain) == ["ok", "ok", "ok"]
    assert balances(ledger, LIMITED) == (0, 0, 0, 50)

    # A later event does not see a failed chain's effects.
    results = ledger.create_transfers(
        [
            tx(10, B, LIMITED, 500, flags=LINKED),
            tx(11, A, B, 0),  # amount 0: the chain fails
            tx(12, LIMITED, C, 500),  # would only fit if event 10 had been applied
        ]
    )
    assert [str(r) for r in results] == [
        "linked_event_failed",
        "amount_must_not_be_zero",
        "exceeds_credits",
    ]
    assert balances(ledger, LIMITED) == (0, 0, 0, 50)
    assert ledger.verify().ok


def test_open_chain_is_refused(ledger: Ledger) -> None:
    before = state(ledger, [1, 2, 3])
    assert ledger.create_transfers([tx(1, flags=LINKED)]) == ["linked_event_chain_open"]
    assert state(ledger, [1, 2, 3]) == before

    results = ledger.create_transfers([tx(1), tx(2, flags=LINKED), tx(3, flags=LINKED)])
    assert [str(r) for r in results] == ["ok", "linked_event_failed", "linked_event_chain_open"]
    assert ledger.lookup_transfers([2, 3]) == []
    assert balances(ledger, A) == (0, 10, 0, 0)

    assert ledger.create_accounts(
        [Account(id=50, ledger=1, code=1, flags=AccountFlags.LINKED)]
    ) == ["linked_event_chain_open"]
    assert ledger.lookup_accounts([50]) == []
    assert ledger.verify().ok


def test_linked_accounts_are_created_as_a_unit(ledger: Ledger) -> None:
    results = ledger.create_accounts(
        [
            Account(id=60, ledger=1, code=1, flags=AccountFlags.LINKED),
            Account(id=61, ledger=0, code=1),
            Account(id=62, ledger=1, code=1),
        ]
    )
    assert [str(r) for r in results] == ["linked_event_failed", "ledger_must_not_be_zero", "ok"]
    assert [a.id for a in ledger.lookup_accounts([60, 61, 62])] == [62]


# --- Reading an account's transfers and balances --------------------------------------------


def test_get_account_transfers_pages_by_timestamp(ledger: Ledger) -> None:
    # 12 transfers touch A (alternately debit and credit, codes 1 and 2); 4 do not.
    touching: list[Transfer] = []
    batch: list[Transfer] = []
    for i in range(1, 17):
        if i % 4 == 0:
            batch.append(tx(i, B, C, i))
            continue
        debit, credit = (A, B) if i % 2 else (C, A)
        t = tx(i, debit, credit, i, code=1 + i % 3 % 2, user_data_64=U64_MAX if i == 6 else 0)
        batch.append(t)
        touching.append(t)
    assert ledger.create_transfers(batch[:9]) == ["ok"] * 9
    assert ledger.create_transfers(batch[9:]) == ["ok"] * 7
    assert ledger.create_transfers([tx(99, A, A, 1)]) == ["accounts_must_be_different"]
    ids = [t.id for t in touching]

    everything = ledger.get_account_transfers(AccountFilter(account_id=A, limit=100))
    assert [t.id for t in everything] == ids
    stamps = [t.timestamp for t in everything]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)

    def page_through(flags: AccountFilterFlags) -> list[int]:
        seen: list[int] = []
        lo, hi = 0, 0
        for _ in range(20):
            page = ledger.get_account_transfers(
                AccountFilter(
                    account_id=A, limit=5, flags=flags, timestamp_min=lo, timestamp_max=hi
                )
            )
            assert len(page) <= 5
            seen += [t.id for t in page]
            if len(page) < 5:
                return seen
            if flags & REVERSED:
                hi = page[-1].timestamp - 1
            else:
                lo = page[-1].timestamp + 1
        raise AssertionError("paging never ended")

    assert page_through(DEBITS | CREDITS) == ids
    assert page_through(DEBITS | CREDITS | REVERSED) == ids[::-1]

    debits = ledger.get_account_transfers(AccountFilter(account_id=A, flags=DEBITS))
    assert [t.id for t in debits] == [t.id for t in touching if t.debit_account_id == A]
    credits = ledger.get_account_transfers(AccountFilter(account_id=A, flags=CREDITS | REVERSED))
    assert [t.id for t in credits] == [t.id for t in touching if t.credit_account_id == A][::-1]

    code2 = ledger.get_account_transfers(AccountFilter(account_id=A, code=2))
    assert [t.id for t in code2] == [t.id for t in touching if t.code == 2]
    assert code2, "the code filter case is empty: fix the test data"

    big = ledger.get_account_transfers(AccountFilter(account_id=A, user_data_64=U64_MAX))
    assert [t.id for t in big] == [6]

    # Bounds are inclusive.
    window = ledger.get_account_transfers(
        AccountFilter(account_id=A, timestamp_min=stamps[2], timestamp_max=stamps[4])
    )
    assert [t.id for t in window] == ids[2:5]
    assert ledger.get_account_transfers(AccountFilter(account_id=MISSING)) == []
    assert ledger.get_account_transfers(AccountFilter(account_id=LIMITED)) == []


def test_history_account_keeps_balances(database_url: str) -> None:
    H, X, Y = 70, 71, 72
    with Ledger.open(database_url, clock=ManualClock()) as led:
        assert (
            led.create_accounts(
                [
                    Account(id=H, ledger=1, code=1, flags=AccountFlags.HISTORY),
                    Account(id=X, ledger=1, code=1),
                    Account(id=Y, ledger=1, code=1),
                ]
            )
            == ["ok"] * 3
        )
        assert led.create_transfers([tx(1, X, H, 100)]) == ["ok"]
        assert led.create_transfers([tx(2, H, X, 30, flags=PENDING), tx(3, X, Y, 5)]) == ["ok"] * 2
        assert led.create_transfers([tx(4, H, X, 1, ledger=2)]) == [
            "transfer_must_have_the_same_ledger_as_accounts"
        ]
        assert led.create_transfers([tx(5, H, X, 20, flags=POST, pending_id=2)]) == ["ok"]

    with Ledger.open(database_url, clock=ManualClock()) as led:  # history survives a reopen
        stamps = [t.timestamp for t in led.lookup_transfers([1, 2, 5])]
        history = led.get_account_balances(AccountFilter(account_id=H))
        assert [
            (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted)
            for b in history
        ] == [
            (0, 0, 0, 100),
            (30, 0, 0, 100),
            (0, 20, 0, 100),
        ]
        assert [b.timestamp for b in history] == stamps
        assert balances(led, H) == (0, 20, 0, 100)
        newest_first = led.get_account_balances(
            AccountFilter(account_id=H, flags=DEBITS | CREDITS | REVERSED)
        )
        assert newest_first == history[::-1]
        assert led.get_account_balances(AccountFilter(account_id=X)) == []
        assert led.verify().ok


def test_account_balances_honour_the_debits_and_credits_filter(ledger: Ledger) -> None:
    H = 70
    assert ledger.create_accounts(
        [Account(id=H, ledger=1, code=1, flags=AccountFlags.HISTORY)]
    ) == ["ok"]
    assert (
        ledger.create_transfers([tx(1, A, H, 100), tx(2, H, B, 30), tx(3, C, H, 5)]) == ["ok"] * 3
    )
    stamps = [t.timestamp for t in ledger.lookup_transfers([1, 2, 3])]
    only_debits = ledger.get_account_balances(AccountFilter(account_id=H, flags=DEBITS))
    assert [b.timestamp for b in only_debits] == [stamps[1]]
    only_credits = ledger.get_account_balances(AccountFilter(account_id=H, flags=CREDITS))
    assert [b.timestamp for b in only_credits] == [stamps[0], stamps[2]]
