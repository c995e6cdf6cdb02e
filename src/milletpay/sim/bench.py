"""The ledger benchmark behind `millet bench ledger`.

Every phase runs on a database of its own, made for the run: SQLite files in a
temporary directory, or temporary databases on the PostgreSQL server named by the
URL (created and dropped here). The figures:

- `transfers_per_s`: the standard workload (random pairs among `accounts`) in
  batches of 8,190, with `batch_latency_ms_p50/p99`;
- `raw_insert_per_s`: the same number of transfer rows inserted with a plain
  `executemany` into the same table (same columns, indexes and durability), one
  transaction per batch: the floor no ledger on that database can beat, and
  `ratio_to_raw` = transfers_per_s / raw_insert_per_s;
- `hot`: the same workload among `hot_accounts` accounts;
- `batcher`: single transfers from `clients` concurrent clients through the
  group-commit batcher;
- `account_transfers_ms_p99`: `get_account_transfers` for the newest 100
  transfers of an account that has `deep_account_transfers` of them.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from milletpay.core.ids import IdGenerator
from milletpay.ledger import (
    BATCH_EVENTS_MAX,
    Account,
    AccountFilter,
    AccountFilterFlags,
    CreateTransferResult,
    Ledger,
    LedgerBatcher,
    Transfer,
)
from milletpay.ledger import storage as S
from milletpay.store import create_engine, resolve_database_url, upgrade

LEDGER = 1
CODE = 1
QUERY_SAMPLES = 200


@dataclass(frozen=True)
class LedgerBenchConfig:
    transfers: int = 500_000
    accounts: int = 10_000
    hot_accounts: int = 100
    batcher_transfers: int = 50_000
    clients: int = 64
    deep_account_transfers: int = 1_000_000
    batch_size: int = BATCH_EVENTS_MAX
    seed: int = 20161125

    def __post_init__(self) -> None:
        for name in ("transfers", "accounts", "batcher_transfers", "clients", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.accounts < 2 or (self.hot_accounts and self.hot_accounts < 2):
            raise ValueError("a workload needs at least 2 accounts")
        if not 1 <= self.batch_size <= BATCH_EVENTS_MAX:
            raise ValueError(f"batch_size must be between 1 and {BATCH_EVENTS_MAX}")


class _Databases:
    """Makes a fresh database per phase on the engine the URL names."""

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self._dir = Path(tempfile.mkdtemp(prefix="millet-bench-")) if self.sqlite else None
        self._made: list[str] = []

    @property
    def engine_name(self) -> str:
        return "sqlite" if self.sqlite else "postgresql"

    def new(self) -> str:
        name = f"millet_bench_{uuid.uuid4().hex[:10]}"
        if self.sqlite:
            assert self._dir is not None
            return f"sqlite:///{self._dir / (name + '.db')}"
        admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        self._made.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._made:
            admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                for name in self._made:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            admin.dispose()


def _percentile_ms(samples_s: list[float], q: float) -> float:
    ordered = sorted(samples_s)
    index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 3)


def _open_accounts(ledger: Ledger, count: int, first_id: int = 1) -> list[int]:
    ids = list(range(first_id, first_id + count))
    for start in range(0, count, BATCH_EVENTS_MAX):
        chunk = ids[start : start + BATCH_EVENTS_MAX]
        results = ledger.create_accounts([Account(i, LEDGER, CODE) for i in chunk])
        assert all(r == "ok" for r in results), set(results)
    return ids


def _workload(
    rng: random.Random, ids: IdGenerator, account_ids: list[int], count: int
) -> list[Transfer]:
    """`count` transfers between random distinct accounts, with time-ordered ids."""
    n = len(account_ids)
    transfers = []
    for _ in range(count):
        debit = rng.randrange(n)
        credit = rng.randrange(n - 1)
        credit += credit >= debit
        transfers.append(
            Transfer(
                ids.next_id(),
                account_ids[debit],
                account_ids[credit],
                rng.randint(1, 100_000),
                LEDGER,
                CODE,
            )
        )
    return transfers


def _batches(items: list[Transfer], size: int) -> Iterator[list[Transfer]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run_batches(
    ledger: Ledger, transfers: list[Transfer], size: int, advance: Callable[[int], None]
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    started = time.perf_counter()
    for batch in _batches(transfers, size):
        t0 = time.perf_counter()
        results = ledger.create_transfers(batch)
        latencies.append(time.perf_counter() - t0)
        assert all(r is CreateTransferResult.OK for r in results), set(results)
        advance(len(batch))
    return time.perf_counter() - started, latencies


def _raw_insert(
    url: str, transfers: list[Transfer], size: int, advance: Callable[[int], None]
) -> float:
    """Plain executemany of the same transfer rows into the ledger's own table."""
    engine = create_engine(url)
    upgrade(engine)
    d = S.Dialect(engine.dialect.name)
    base = time.time_ns()
    rows = [
        d.transfer_row(
            base + i,
            t.id,
            t.debit_account_id,
            t.credit_account_id,
            t.amount,
            t.pending_id,
            t.user_data_128,
            t.user_data_64,
            t.user_data_32,
            t.timeout_s,
            t.ledger,
            t.code,
            int(t.flags),
        )
        for i, t in enumerate(transfers)
    ]
    sql = d.sql(S.INSERT_TRANSFER)
    started = time.perf_counter()
    with engine.connect().execution_options(millet_write_lock=True) as conn:
        for start in range(0, len(rows), size):
            with conn.begin():
                cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                cursor.executemany(sql, rows[start : start + size])
                cursor.close()
            advance(min(size, len(rows) - start))
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


async def _batcher_run(
    ledger: Ledger, transfers: list[Transfer], clients: int, advance: Callable[[int], None]
) -> float:
    async with LedgerBatcher(ledger) as batcher:
        per_client = [transfers[i::clients] for i in range(clients)]

        async def client(mine: list[Transfer]) -> None:
            for t in mine:
                (result,) = await batcher.submit(t)
                assert result is CreateTransferResult.OK, result
                advance(1)

        started = time.perf_counter()
        await asyncio.gather(*(client(mine) for mine in per_client))
        return time.perf_counter() - started


@contextmanager
def _progress(console: Console) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:

        def phase(description: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        yield phase


def run_ledger_bench(
    database_url: str | None, config: LedgerBenchConfig, console: Console
) -> dict[str, Any]:
    url = resolve_database_url(database_url or "sqlite:///bench.db")
    dbs = _Databases(url)
    rng = random.Random(config.seed)
    ids = IdGenerator()
    result: dict[str, Any] = {
        "benchmark": "ledger",
        "database": dbs.engine_name,
        "workload": {
            "name": "standard",
            "transfers": config.transfers,
            "accounts": config.accounts,
            "account_choice": "uniform random pair",
            "batch_size": config.batch_size,
            "ids": "time-ordered",
        },
    }
    try:
        with _progress(console) as phase:
            result.update(_standard(dbs, config, rng, ids, phase))
            if config.hot_accounts:
                result["hot"] = _hot(dbs, config, rng, ids, phase)
            result["batcher"] = _batcher(dbs, config, rng, ids, phase)
            if config.deep_account_transfers:
                result.update(_deep_account(dbs, config, rng, ids, phase))
    finally:
        dbs.cleanup()
    result["config"] = asdict(config)
    return result


def _standard(
    dbs: _Databases, config: LedgerBenchConfig, rng: random.Random, ids: IdGenerator, phase: Any
) -> dict[str, Any]:
    url = dbs.new()
    with Ledger.open(url) as ledger:
        account_ids = _open_accounts(ledger, config.accounts)
        transfers = _workload(rng, ids, account_ids, config.transfers)
        elapsed, latencies = _run_batches(
            ledger, transfers, config.batch_size, phase("ledger, batch 8190", len(transfers))
        )
        assert ledger.verify().ok
    raw_elapsed = _raw_insert(
        dbs.new(), transfers, config.batch_size, phase("raw executemany", len(transfers))
    )
    transfers_per_s = len(transfers) / elapsed
    raw_per_s = len(transfers) / raw_elapsed
    return {
        "transfers_per_s": round(transfers_per_s),
        "batch_latency_ms_p50": _percentile_ms(latencies, 0.50),
        "batch_latency_ms_p99": _percentile_ms(latencies, 0.99),
        "raw_insert_per_s": round(raw_per_s),
        "ratio_to_raw": round(transfers_per_s / raw_per_s, 3),
    }


def _hot(
    dbs: _Databases, config: LedgerBenchConfig, rng: random.Random, ids: IdGenerator, phase: Any
) -> dict[str, Any]:
    with Ledger.open(dbs.new()) as ledger:
        account_ids = _open_accounts(ledger, config.hot_accounts)
        transfers = _workload(rng, ids, account_ids, config.transfers)
        elapsed, latencies = _run_batches(
            ledger,
            transfers,
            config.batch_size,
            phase(f"ledger, {config.hot_accounts} hot accounts", len(transfers)),
        )
        assert ledger.verify().ok
    return {
        "accounts": config.hot_accounts,
        "transfers": len(transfers),
        "transfers_per_s": round(len(transfers) / elapsed),
        "batch_latency_ms_p50": _percentile_ms(latencies, 0.50),
        "batch_latency_ms_p99": _percentile_ms(latencies, 0.99),
    }


def _batcher(
    dbs: _Databases, config: LedgerBenchConfig, rng: random.Random, ids: IdGenerator, phase: Any
) -> dict[str, Any]:
    with Ledger.open(dbs.new()) as ledger:
        account_ids = _open_accounts(ledger, config.accounts)
        transfers = _workload(rng, ids, account_ids, config.batcher_transfers)
        advance = phase(f"batcher, {config.clients} clients", len(transfers))
        elapsed = asyncio.run(_batcher_run(ledger, transfers, config.clients, advance))
        assert ledger.verify().ok
    return {
        "clients": config.clients,
        "transfers": len(transfers),
        "transfers_per_s": round(len(transfers) / elapsed),
    }


def _deep_account(
    dbs: _Databases, config: LedgerBenchConfig, rng: random.Random, ids: IdGenerator, phase: Any
) -> dict[str, Any]:
    """One account with `deep_account_transfers` transfers; time reads of its newest 100."""
    with Ledger.open(dbs.new()) as ledger:
        account_ids = _open_accounts(ledger, 1_001)
        deep, others = account_ids[0], account_ids[1:]
        advance = phase("deep account history", config.deep_account_transfers)
        remaining = config.deep_account_transfers
        while remaining:
            count = min(config.batch_size, remaining)
            batch = []
            for i in range(count):
                other = others[rng.randrange(len(others))]
                debit, credit = (deep, other) if i % 2 else (other, deep)
                batch.append(
                    Transfer(ids.next_id(), debit, credit, rng.randint(1, 1000), LEDGER, CODE)
                )
            results = ledger.create_transfers(batch)
            assert all(r is CreateTransferResult.OK for r in results)
            remaining -= count
            advance(count)
        newest = AccountFilter(
            deep,
            limit=100,
            flags=AccountFilterFlags.DEBITS
            | AccountFilterFlags.CREDITS
            | AccountFilterFlags.REVERSED,
        )
        samples: list[float] = []
        for _ in range(QUERY_SAMPLES):
            t0 = time.perf_counter()
            page = ledger.get_account_transfers(newest)
            samples.append(time.perf_counter() - t0)
            assert len(page) == 100
        # Pages further back, by timestamp cursor: what paging through history costs.
        page_samples: list[float] = []
        oldest = ledger.get_account_transfers(AccountFilter(deep, limit=1))[0].timestamp
        newest_ts = ledger.get_account_transfers(newest)[0].timestamp
        for _ in range(QUERY_SAMPLES):
            cursor = rng.randint(oldest, newest_ts)
            f = AccountFilter(
                deep,
                limit=100,
                timestamp_max=cursor,
                flags=AccountFilterFlags.DEBITS
                | AccountFilterFlags.CREDITS
                | AccountFilterFlags.REVERSED,
            )
            t0 = time.perf_counter()
            ledger.get_account_transfers(f)
            page_samples.append(time.perf_counter() - t0)
    return {
        "account_transfers_ms_p50": _percentile_ms(samples, 0.50),
        "account_transfers_ms_p99": _percentile_ms(samples, 0.99),
        "account_transfers_page_ms_p99": _percentile_ms(page_samples, 0.99),
        "account_transfers_account_size": config.deep_account_transfers,
        "account_transfers_mean_ms": round(statistics.fmean(samples) * 1000, 3),
    }
