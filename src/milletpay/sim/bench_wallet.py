"""`millet bench wallet`: P2P transfers per second through the HTTP API.

It serves the API with uvicorn on 127.0.0.1 (a free port, in a thread of this process)
over a fresh SQLite file in a temporary directory, prepares `users` Class II users
(wallet opened, bank linked, topped up, PIN set) directly through the services, then
lets `clients` concurrent HTTP clients send P2P transfers with the PIN and an
Idempotency-Key until `transfers` are done or `duration_s` has passed.

The PIN is hashed with the cheap `PIN_HASHING_FAST` setting, and the JSON says so: with
the production argon2id setting (64 MiB, t=3) each request's PIN check alone costs tens
of milliseconds of CPU and dominates. The velocity limit (20 operations an hour per
user, the top-up included) caps each user at 19 transfers, so the work is spread over
many users.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from stdnum.cn import ric

from milletpay.api import create_app
from milletpay.core.keyring import KeyRing
from milletpay.identity import PIN_HASHING_FAST, Channel, SimulatedSms
from milletpay.ledger import Ledger
from milletpay.risk.limits import VELOCITY_OPERATIONS_PER_HOUR_MAX
from milletpay.wallet import SimulatedBankGateway, WalletService

PIN = "135790"
BANK = "ICBC"
TOP_UP_FEN = 1_000_000
TRANSFER_FEN = 100


@dataclass(frozen=True)
class WalletBenchConfig:
    users: int = 256
    clients: int = 32
    transfers: int = 4_000
    duration_s: float = 60.0


@dataclass(frozen=True)
class _User:
    phone: str
    token: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _national_id(sequence: int) -> str:
    body = f"1101051990{1 + sequence // 28_000 % 12:02d}{1 + sequence // 1000 % 28:02d}"
    body += f"{sequence % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def _prepare_users(app: Any, bank: SimulatedBankGateway, count: int) -> list[_User]:
    identity = app.state.identity
    wallet: WalletService = app.state.wallet
    users = []
    for n in range(count):
        phone, name = f"1390000{n:04d}", f"Bench User {n}"
        user = identity.register(phone, name, _national_id(n))
        for channel in (Channel.BANK_CARD, Channel.PUBLIC_SECURITY_ID, Channel.TELECOM):
            identity.verify_channel(user.id, channel)
        identity.set_pin(user.id, PIN)
        account_number = f"62220300{n:08d}"
        bank.open_account(BANK, account_number, name, 10 * TOP_UP_FEN)
        linked = wallet.link_bank_account(user.id, BANK, account_number)
        outcome = wallet.top_up(user.id, linked.id, TOP_UP_FEN, f"bench-top-up-{n}")
        assert outcome.approved, outcome
        token, _ = app.state.sessions.issue(user.id)
        users.append(_User(phone, token))
    return users


async def _drive(
    base_url: str, users: list[_User], config: WalletBenchConfig
) -> tuple[list[float], int, float]:
    per_user = VELOCITY_OPERATIONS_PER_HOUR_MAX - 1  # the top-up counted once
    jobs: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for r in range(per_user):
        for u in range(len(users)):
            if jobs.qsize() < config.transfers:
                jobs.put_nowait((u, (u + 1 + r) % len(users)))
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + config.duration_s

    async def client() -> None:
        nonlocal errors
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
            while time.perf_counter() < deadline:
                try:
                    sender, recipient = jobs.get_nowait()
                except asyncio.QueueEmpty:
                    return
                headers = {
                    "Authorization": f"Bearer {users[sender].token}",
                    "Idempotency-Key": uuid.uuid4().hex,
                }
                body = {
                    "recipient_phone": users[recipient].phone,
                    "amount_fen": TRANSFER_FEN,
                    "pin": PIN,
                }
                start = time.perf_counter()
                try:
                    answer = await http.post("/v1/me/p2p-transfers", json=body, headers=headers)
                    ok = answer.status_code == 201
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += 0 if ok else 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(config.clients)))
    return latencies, errors, time.perf_counter() - start


def run_wallet_bench(config: WalletBenchConfig) -> dict[str, Any]:
    """Run the benchmark; the figures as one JSON-ready dict."""
    with tempfile.TemporaryDirectory(prefix="millet-bench-wallet-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'wallet.db'}"
        bank = SimulatedBankGateway()
        app = create_app(
            url,
            keyring=KeyRing.generate(),
            sms=SimulatedSms(),
            pin_hashing=PIN_HASHING_FAST,
            bank_gateway=bank,
        )
        prepare_start = time.perf_counter()
        users = _prepare_users(app, bank, config.users)
        prepare_s = time.perf_counter() - prepare_start
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, name="bench-wallet-api", daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        try:
            latencies, errors, elapsed = asyncio.run(
                _drive(f"http://127.0.0.1:{port}", users, config)
            )
        finally:
            server.should_exit = True
            thread.join(timeout=30)
        ledger: Ledger = app.state.ledger
        verified = ledger.verify().ok
        ledger.close()
    done = len(latencies)
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        if not ordered:
            return 0.0
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {
        "transfers_per_s": round((done - errors) / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms_p50": percentile(0.50),
        "latency_ms_p99": percentile(0.99),
        "latency_ms_mean": round(statistics.fmean(latencies) * 1000, 2) if latencies else 0.0,
        "clients": config.clients,
        "transfers": done - errors,
        "errors": errors,
        "users": config.users,
        "elapsed_s": round(elapsed, 3),
        "prepare_s": round(prepare_s, 3),
        "database": "sqlite (temporary file)",
        "pin_hashing": "fast: argon2id t=1, 8 KiB (not the production setting)",
        "ledger_verify_ok": verified,
    }
