"""A writer killed mid-stream leaves a consistent ledger: whole batches, conserved money.

A subprocess (tests/ledger/crash_writer.py) streams batches of linked chains into the
ledger, each chain moving one amount all the way round a ring of accounts, and prints a
line after each committed batch. The test SIGKILLs it at a random moment after a few
batches, reopens the ledger and checks, three times over on the same database (SQLite
and PostgreSQL):
- `verify()` is ok;
- every batch is stored whole or not at all, every batch the writer reported is stored
  (a committed batch survives the kill), and at most one unreported batch is stored;
- the number of transfers stored is the funding plus a whole number of batches;
- every ring account still holds exactly its funding, so the money is conserved.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from milletpay.ledger import Ledger
from milletpay.ledger.types import Account, AccountFlags, Transfer

WRITER_PATH = Path(__file__).with_name("crash_writer.py")
ROUNDS = 3
READY_TIMEOUT_S = 60
BATCH_TIMEOUT_S = 30


def _load_writer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_writer", WRITER_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


writer = _load_writer()


def _read_lines(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _run_and_kill(url: str, round_: int, rng: random.Random) -> tuple[int, list[str]]:
    """Start the writer, kill it after a random number of batches; batches it reported."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER_PATH), url, str(round_)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    kill_after = rng.randint(2, 6)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while sum(line.startswith("batch ") for line in seen) < kill_after:
            timeout = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(timeout, 0.01))
            except queue.Empty:
                pytest.fail(f"round {round_}: writer too slow; output so far: {seen}")
            if line is None:
                proc.wait()
                assert proc.stderr is not None
                pytest.fail(
                    f"round {round_}: writer exited {proc.returncode} before being killed\n"
                    f"stdout: {seen}\nstderr: {proc.stderr.read()}"
                )
            seen.append(line)
            if line == "ready":
                deadline = time.monotonic() + BATCH_TIMEOUT_S
        time.sleep(rng.uniform(0, 0.05))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    while not lines.empty():
        rest = lines.get_nowait()
        if rest is not None:
            seen.append(rest)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, seen)
    assert not [line for line in seen if line.startswith("error")], seen
    reported = [int(line.split()[1]) for line in seen if line.startswith("batch ")]
    assert reported == list(range(len(reported))), seen
    return len(reported), seen


def _stored_batches(ledger: Ledger, round_: int, reported: int) -> int:
    """How many of this round's batches are stored; fails on a partial batch or a gap."""
    stored = 0
    for batch in range(reported + 3):
        ids = [t.id for t in writer.batch_transfers(round_, batch)]
        found = ledger.lookup_transfers(ids)
        assert len(found) in (0, len(ids)), (
            f"round {round_} batch {batch}: {len(found)} of {len(ids)} transfers stored"
        )
        if found:
            assert stored == batch, f"round {round_}: batch {batch} stored after a missing one"
            stored += 1
    return stored


@pytest.mark.slow
def test_a_killed_writer_leaves_whole_batches_and_conserves_money(database_url: str) -> None:
    ring: list[int] = writer.RING
    funding: int = writer.FUNDING
    with Ledger.open(database_url) as ledger:
        accounts = [Account(id=writer.SOURCE, ledger=1, code=1)] + [
            Account(id=i, ledger=1, code=1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
            for i in ring
        ]
        assert ledger.create_accounts(accounts) == ["ok"] * len(accounts)
        fund = [
            Transfer(
                id=n + 1,
                debit_account_id=writer.SOURCE,
                credit_account_id=i,
                amount=funding,
                ledger=1,
                code=1,
            )
            for n, i in enumerate(ring)
        ]
        assert ledger.create_transfers(fund) == ["ok"] * len(fund)

    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    total_batches = 0
    for round_ in range(1, ROUNDS + 1):
        reported, output = _run_and_kill(database_url, round_, rng)
        context = f"seed {seed}, round {round_}, writer said {output[-3:]}"
        with Ledger.open(database_url) as ledger:
            report = ledger.verify()
            assert report.ok, (context, report.problems)
            stored = _stored_batches(ledger, round_, reported)
            assert reported <= stored <= reported + 1, (context, stored)
            total_batches += stored
            print(f"round {round_}: reported {reported}, stored {stored}")
            assert report.transfers == len(fund) + total_batches * writer.BATCH_SIZE, context

            by_id = {a.id: a for a in ledger.lookup_accounts([writer.SOURCE, *ring])}
            for i in ring:
                a = by_id[i]
                assert (a.debits_pending, a.credits_pending) == (0, 0), context
                assert a.credits_posted - a.debits_posted == funding, (context, i, a)
            assert sum(by_id[i].balance_credit_minus_debit for i in ring) == funding * len(ring)
            assert by_id[writer.SOURCE].debits_posted == funding * len(ring)
