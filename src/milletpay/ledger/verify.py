"""The ledger's invariants, checked over everything stored.

- Per ledger: Σ debits_posted = Σ credits_posted and Σ debits_pending = Σ credits_pending.
- Per account: each of its four balances equals the sum of its transfers (plain and
  posting transfers count as posted, live holds as pending; voids move nothing).
- No account breaks its limit flags; every transfer names existing accounts of its
  own ledger; every pending transfer has a status.

This reads the stored rows only; it never changes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from milletpay.ledger.storage import Dialect, decode_id
from milletpay.ledger.types import AccountFlags, PendingStatus, TransferFlags, VerifyReport

#: Transfers read per query while verifying.
VERIFY_PAGE_ROWS = 50_000
#: Problems listed in one report; the count of the rest is given.
PROBLEMS_MAX = 100


def verify_ledger(
    cur: Any, d: Dialect, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    dec = d.decode_u128
    problems: list[str] = []

    def problem(text: str) -> None:
        problems.append(text)

    cur.execute(
        "SELECT ix, id, ledger, flags, debits_pending, debits_posted, credits_pending, "
        "credits_posted FROM accounts"
    )
    accounts: dict[int, tuple[int, int, int, list[int]]] = {}
    for ix, raw_id, ledger, flags, dp, dpo, cp, cpo in cur.fetchall():
        accounts[ix] = (decode_id(raw_id), ledger, flags, [dec(dp), dec(dpo), dec(cp), dec(cpo)])
    sums: dict[int, list[int]] = {ix: [0, 0, 0, 0] for ix in accounts}

    cur.execute("SELECT COUNT(*) FROM transfers")
    total = int(cur.fetchone()[0])
    seen = 0
    last_timestamp = -1
    pending_flag = int(TransferFlags.PENDING)
    void_flag = int(TransferFlags.VOID_PENDING_TRANSFER)
    while True:
        cur.execute(
            d.sql(
                "SELECT t.timestamp, t.id, t.debit_ix, t.credit_ix, t.amount, t.flags, t.ledger, "
                "p.status FROM transfers t LEFT JOIN pending_transfers p "
                "ON p.timestamp = t.timestamp WHERE t.timestamp > ? ORDER BY t.timestamp LIMIT ?"
            ),
            (last_timestamp, VERIFY_PAGE_ROWS),
        )
        rows = cur.fetchall()
        if not rows:
            break
        for _timestamp, raw_id, debit_ix, credit_ix, amount, flags, ledger, status in rows:
            debit, credit = sums.get(debit_ix), sums.get(credit_ix)
            if debit is None or credit is None:
                problem(f"transfer {decode_id(raw_id)} names an account that does not exist")
                continue
            if not accounts[debit_ix][1] == accounts[credit_ix][1] == ledger:
                problem(f"transfer {decode_id(raw_id)} crosses ledgers")
            value = dec(amount)
            if flags & pending_flag:
                if status is None:
                    problem(f"pending transfer {decode_id(raw_id)} has no status")
                elif status == PendingStatus.PENDING:
                    debit[0] += value
                    credit[2] += value
            elif not flags & void_flag:
                debit[1] += value
                credit[3] += value
        seen += len(rows)
        last_timestamp = rows[-1][0]
        if progress is not None:
            progress(seen, total)

    names = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    ledgers: dict[int, list[int]] = {}
    for ix, (account_id, ledger, flags, balances) in accounts.items():
        totals = ledgers.setdefault(ledger, [0, 0, 0, 0])
        for i in range(4):
            totals[i] += balances[i]
        for name, stored, summed in zip(names, balances, sums[ix], strict=True):
            if stored != summed:
                problem(
                    f"account {account_id}: {name} is {stored} but its transfers sum to {summed}"
                )
        dp, dpo, cp, cpo = balances
        if flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and dp + dpo > cpo:
            problem(f"account {account_id}: debits {dp + dpo} exceed credits {cpo}")
        if flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and cp + cpo > dpo:
            problem(f"account {account_id}: credits {cp + cpo} exceed debits {dpo}")
    for ledger, (dp, dpo, cp, cpo) in sorted(ledgers.items()):
        if dpo != cpo:
            problem(f"ledger {ledger}: posted debits {dpo} != posted credits {cpo}")
        if dp != cp:
            problem(f"ledger {ledger}: pending debits {dp} != pending credits {cp}")

    shown = problems[:PROBLEMS_MAX]
    if len(problems) > PROBLEMS_MAX:
        shown.append(f"... and {len(problems) - PROBLEMS_MAX} more problems")
    return VerifyReport(tuple(shown), len(ledgers), len(accounts), total)
