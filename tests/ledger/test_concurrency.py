"""Several processes writing to one ledger at once lose nothing and double nothing.

Four processes (multiprocessing, 'spawn') each send 300 transfers, in batches of 1 to 20
(some linked pairs), between the same ten accounts of one database; three of the accounts
may not go below zero, so some transfers are refused depending on how the processes
interleave. Two of the processes also resend batches they already sent. Afterwards, on
SQLite and PostgreSQL:
- `verify()` is ok;
- every transfer a process was told is `ok` is stored exactly once, and nothing else is;
- each account's balances are exactly what those transfers imply, and the limited
  accounts never went below zero;
- a resent transfer never answered `ok` a second time, and a linked pair was applied whole
  or not at all.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import traceback
from collections import defaultdict
from typing import Any

import pytest

from milletpay.ledger import Ledger
from milletpay.ledger.types import Account, AccountFlags, Transfer, TransferFlags

PROCESSES = 4
TRANSFERS_PER_PROCESS = 300
ACCOUNT_IDS = list(range(1, 11))
LIMITED_IDS = {1, 2, 3}  # DEBITS_MUST_NOT_EXCEED_CREDITS
START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 240

# Results a first attempt may get, besides ok, given how the batches are built.
REFUSALS = {"exceeds_credits", "linked_event_failed"}


def _make_batches(index: int, rng: random.Random) -> list[tuple[list[Transfer], list[list[int]]]]:
    """This process's batches, and the linked chains inside each."""
    transfers_left = TRANSFERS_PER_PROCESS
    next_k = 1
    batches = []
    while transfers_left:
        size = 1 if rng.random() < 0.25 else rng.randint(2, 20)
        size = min(size, transfers_left)
        batch: list[Transfer] = []
        chains: list[list[int]] = []
        while len(batch) < size:
            linked = size - len(batch) >= 2 and rng.random() < 0.2
            hops = 2 if linked else 1
            chain_ids = []
            for hop in range(hops):
                debit, credit = rng.sample(ACCOUNT_IDS, 2)
                tid = ((index + 1) << 32) | next_k
                next_k += 1
                flags = TransferFlags.LINKED if hop < hops - 1 else TransferFlags.NONE
                batch.append(
                    Transfer(
                        id=tid,
                        debit_account_id=debit,
                        credit_account_id=credit,
                        amount=rng.randint(1, 100),
                        ledger=1,
                        code=1 + index,
                        flags=flags,
                    )
                )
                chain_ids.append(tid)
            if linked:
                chains.append(chain_ids)
        transfers_left -= len(batch)
        batches.append((batch, chains))
    return batches


def _worker(url: str, index: int, resend: bool, barrier: Any, out: Any) -> None:
    """Send this process's batches; report what each transfer was answered."""
    try:
        rng = random.Random(1000 + index)
        batches = _make_batches(index, rng)
        ok: dict[int, tuple[int, int, int]] = {}
        anomalies: list[str] = []
        chains: list[list[int]] = []
        resent = 0
        in_chain = {tid for _, batch_chains in batches for chain in batch_chains for tid in chain}

        def record(batch: list[Transfer], results: list[Any], again: bool) -> None:
            if len(results) != len(batch):
                anomalies.append(f"{len(batch)} events got {len(results)} results")
                return
            for t, result in zip(batch, results, strict=True):
                r = str(result)
                if r == "ok":
                    if t.id in ok:
                        anomalies.append(f"transfer {t.id} answered ok twice (moved twice)")
                    ok[t.id] = (t.debit_account_id, t.credit_account_id, t.amount)
                elif t.id in ok:
                    # Stored before: a resend must say so (or fail with its chain).
                    if r not in ("exists", "linked_event_failed"):
                        anomalies.append(f"resent ok transfer {t.id} answered {r}")
                elif r == "linked_event_failed" and t.id not in in_chain:
                    anomalies.append(f"unlinked transfer {t.id} answered linked_event_failed")
                elif r not in REFUSALS:
                    what = "resent" if again else "new"
                    anomalies.append(f"{what} transfer {t.id} answered {r}")

        with Ledger.open(url) as ledger:
            barrier.wait(START_TIMEOUT_S)
            sent: list[list[Transfer]] = []
            for batch, batch_chains in batches:
                record(batch, ledger.create_transfers(batch), again=False)
                chains += batch_chains
                sent.append(batch)
                if resend and rng.random() < 0.3:
                    old = rng.choice(sent)
                    record(old, ledger.create_transfers(old), again=True)
                    resent += 1
        out.put(
            {"index": index, "ok": ok, "anomalies": anomalies, "chains": chains, "resent": resent}
        )
    except BaseException:
        out.put({"index": index, "error": traceback.format_exc()})


@pytest.mark.slow
def test_concurrent_writers_lose_nothing_and_double_nothing(database_url: str) -> None:
    with Ledger.open(database_url) as ledger:
        accounts = [
            Account(
                id=i,
                ledger=1,
                code=1,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
                if i in LIMITED_IDS
                else AccountFlags.NONE,
            )
            for i in ACCOUNT_IDS
        ]
        assert ledger.create_accounts(accounts) == ["ok"] * len(accounts)

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(database_url, i, i % 2 == 0, barrier, out))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    reports: dict[int, dict[str, Any]] = {}
    try:
        for _ in range(PROCESSES):
            try:
                report = out.get(timeout=RUN_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"writers did not finish in {RUN_TIMEOUT_S}s: {sorted(reports)} did")
            reports[report["index"]] = report
        for p in procs:
            p.join(30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    errors = [r["error"] for r in reports.values() if "error" in r]
    assert not errors, "a writer raised:\n" + "\n".join(errors)
    assert sum(r["resent"] for r in reports.values()) > 0

    ok: dict[int, tuple[int, int, int]] = {}
    for r in reports.values():
        ok.update(r["ok"])
    all_ids = [((i + 1) << 32) | k for i in range(PROCESSES) for k in range(1, 301)]
    refused = len(all_ids) - len(ok)
    assert ok, "no transfer succeeded"

    for r in reports.values():
        for chain in r["chains"]:
            applied = [tid in ok for tid in chain]
            assert all(applied) or not any(applied), f"chain {chain} half applied: {applied}"

    expected: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for debit, credit, amount in ok.values():
        expected[debit][0] += amount
        expected[credit][1] += amount

    with Ledger.open(database_url) as ledger:
        report = ledger.verify()
        assert report.ok, report.problems
        stored = {t.id: t for t in ledger.lookup_transfers(all_ids)}
        assert set(stored) == set(ok), (
            f"stored but not ok: {sorted(set(stored) - set(ok))[:10]}, "
            f"ok but not stored: {sorted(set(ok) - set(stored))[:10]}"
        )
        for tid, (debit, credit, amount) in ok.items():
            t = stored[tid]
            assert (t.debit_account_id, t.credit_account_id, t.amount) == (debit, credit, amount)
        assert report.transfers == len(ok)
        stamps = [t.timestamp for t in stored.values()]
        assert len(set(stamps)) == len(stamps), "two transfers share a timestamp"

        total = sum(amount for _, _, amount in ok.values())
        by_id = {a.id: a for a in ledger.lookup_accounts(ACCOUNT_IDS)}
        assert sum(a.debits_posted for a in by_id.values()) == total
        assert sum(a.credits_posted for a in by_id.values()) == total
        for i in ACCOUNT_IDS:
            a = by_id[i]
            assert (a.debits_pending, a.credits_pending) == (0, 0), f"account {i}"
            assert [a.debits_posted, a.credits_posted] == expected[i], f"account {i}"
            if i in LIMITED_IDS:
                assert a.debits_posted <= a.credits_posted, f"limited account {i} overdrawn"
    # Checked last, so that a wrong answer does not hide the state of the money above.
    anomalies = [a for r in reports.values() for a in r["anomalies"]]
    assert not anomalies, f"{len(anomalies)} wrong answers:\n" + "\n".join(anomalies[:20])
    # Not a correctness condition, but the test is only interesting if both happen.
    print(f"{len(ok)} transfers ok, {refused} refused")
