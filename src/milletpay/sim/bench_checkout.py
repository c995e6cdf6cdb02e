"""`millet bench checkout`: in-app payments per second through the HTTP API.

Over a fresh SQLite file in a temporary directory it prepares Class II users with a
topped-up wallet and one merchant (as `bench wallet` does its users), serves the API
with uvicorn in `workers` processes of its own (two by default: one per core of the
machine the target is set on), each on a port of its own with the clients spread evenly
over them as a load balancer would, and lets `clients` concurrent keep-alive
connections pay: each payment is the merchant's server creating a payment intent with
its secret key (`POST /v1/payment-intents`) and the payer's wallet confirming it with
the PIN and an Idempotency-Key (`POST /v1/me/payment-intents/{id}/confirm`). A payment's
latency is both requests; each client's first payment (its connection's first) warms
up and is not measured. The servers and this process share the machine's cores; the
servers' writes to the one SQLite file take turns at its write gate
(`store.engine.write_gate`). PINs are hashed with the cheap setting, as in `bench
wallet`, and the velocity limit caps each user at 19 payments, so the work is spread
over many users.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

from milletpay.checkout.merchants import MerchantApplication
from milletpay.ledger import Ledger
from milletpay.risk.limits import VELOCITY_OPERATIONS_PER_HOUR_MAX
from milletpay.sim.bench_wallet import (
    PIN,
    BenchUser,
    KeepAliveConnection,
    bench_database,
    cpu_seconds,
    percentiles,
    prepare_users,
    served_api,
)

PAYMENT_FEN = 1_990
SHOP = MerchantApplication(
    "Millet Bench Shop Co., Ltd.", "Bench Shop", "Beijing", "5311", "ICBC", "6222020077776666"
)


@dataclass(frozen=True)
class CheckoutBenchConfig:
    users: int = 256
    clients: int = 32
    payments: int = 3_000
    duration_s: float = 60.0
    workers: int = 2


def run_checkout_bench(config: CheckoutBenchConfig) -> dict[str, Any]:
    """Run the benchmark; the figures as one JSON-ready dict."""
    with bench_database("checkout") as bench:
        url, keys_json = bench.url, bench.keys_json
        prepare_start = time.perf_counter()
        users = prepare_users(bench.app, bench.bank, config.users)
        secret_key = bench.app.state.merchants.onboard(SHOP).secret_key.text
        prepare_s = time.perf_counter() - prepare_start
        bench.release()
        with served_api(url, keys_json, config.workers) as (ports, pids):
            cpu_before_s = cpu_seconds(*pids)
            client_before_s = time.process_time()
            latencies, errors, elapsed = asyncio.run(_drive(ports, users, secret_key, config))
            server_cpu_s = cpu_seconds(*pids) - cpu_before_s
            client_cpu_s = time.process_time() - client_before_s
        with Ledger.open(url) as ledger:
            verified = ledger.verify().ok
    done = len(latencies)
    percentile = percentiles(latencies)
    return {
        "benchmark": "checkout",
        "intents_per_s": round(done / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms_p50": percentile(0.50),
        "latency_ms_p99": percentile(0.99),
        "latency_ms_mean": round(statistics.fmean(latencies) * 1000, 2) if latencies else 0.0,
        "clients": config.clients,
        "payments": done,
        "errors": errors,
        "warm_up_payments": config.clients,
        "users": config.users,
        "elapsed_s": round(elapsed, 3),
        "server_cpu_ms_per_payment": round(server_cpu_s * 1000 / done, 3) if done else None,
        "client_cpu_ms_per_payment": round(client_cpu_s * 1000 / done, 3) if done else None,
        "requests_per_payment": 2,
        "prepare_s": round(prepare_s, 3),
        "database": "sqlite (temporary file)",
        "server": f"uvicorn, {config.workers} process(es), a port each, clients spread evenly",
        "workers": config.workers,
        "pin_hashing": "fast: argon2id t=1, 8 KiB (not the production setting)",
        "ledger_verify_ok": verified,
    }


async def _drive(
    ports: list[int], users: list[BenchUser], secret_key: str, config: CheckoutBenchConfig
) -> tuple[list[float], int, float]:
    """Each client first makes one payment that is not measured (its connection's and
    its server's first), then all start together and pay, measured, until `payments`
    are made or `duration_s` has passed."""
    per_user = VELOCITY_OPERATIONS_PER_HOUR_MAX - 1  # the top-up counted once
    jobs: asyncio.Queue[int] = asyncio.Queue()
    for _ in range(per_user):
        for u in range(len(users)):
            if jobs.qsize() < config.payments + config.clients:
                jobs.put_nowait(u)
    latencies: list[float] = []
    errors = 0
    warmed = 0
    measuring = asyncio.Event()
    start = deadline = 0.0
    merchant = {"Authorization": f"Bearer {secret_key}"}
    measured = config.payments

    async def pay(connection: KeepAliveConnection, payer: BenchUser) -> bool:
        order = {"amount_fen": PAYMENT_FEN, "merchant_order_id": uuid.uuid4().hex}
        status, body = await connection.post(
            "/v1/payment-intents", merchant, json.dumps(order).encode()
        )
        if status != 201:
            return False
        intent = json.loads(body)
        confirm = {"client_secret": intent["client_secret"], "pin": PIN}
        headers = {"Authorization": f"Bearer {payer.token}", "Idempotency-Key": uuid.uuid4().hex}
        status, _ = await connection.post(
            f"/v1/me/payment-intents/{intent['id']}/confirm", headers, json.dumps(confirm).encode()
        )
        return status == 200

    async def client(port: int) -> None:
        nonlocal errors, warmed, measured, start, deadline
        connection = await KeepAliveConnection.open(port)
        try:
            if not jobs.empty():  # the warm-up payment
                errors += 0 if await pay(connection, users[jobs.get_nowait()]) else 1
            warmed += 1
            if warmed == config.clients:  # the last one in starts the clock
                start = time.perf_counter()
                deadline = start + config.duration_s
                measuring.set()
            await measuring.wait()
            while time.perf_counter() < deadline and measured > 0 and not jobs.empty():
                measured -= 1
                began = time.perf_counter()
                ok = await pay(connection, users[jobs.get_nowait()])
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1
        finally:
            connection.close()

    clients = [asyncio.create_task(client(ports[n % len(ports)])) for n in range(config.clients)]
    await asyncio.gather(*clients)
    return latencies, errors, time.perf_counter() - start
