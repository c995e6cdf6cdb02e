"""`millet bench wallet`: P2P transfers per second through the HTTP API.

Over a fresh SQLite file in a temporary directory it prepares `users` Class II users
(wallet opened, bank linked, topped up, PIN set) directly through the services, then
serves the API with uvicorn on 127.0.0.1 in a process of its own, and from this process
lets `clients` concurrent HTTP/1.1 keep-alive connections send P2P transfers with the
PIN and an Idempotency-Key until `transfers` are done or `duration_s` has passed. Both
processes share the machine's cores. The client is a few lines of asyncio streams, not a
full HTTP library, so that it takes as little of the shared CPU as it can.

The PIN is hashed with the cheap `PIN_HASHING_FAST` setting, and the JSON says so: with
the production argon2id setting (64 MiB, t=3) each request's PIN check alone costs tens
of milliseconds of CPU and dominates. The velocity limit (20 operations an hour per
user, the top-up included) caps each user at 19 transfers, so the work is spread over
many users.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
class BenchUser:
    phone: str
    token: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _national_id(sequence: int) -> str:
    body = f"1101051990{1 + sequence // 28_000 % 12:02d}{1 + sequence // 1000 % 28:02d}"
    body += f"{sequence % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def prepare_users(app: Any, bank: SimulatedBankGateway, count: int) -> list[BenchUser]:
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
        users.append(BenchUser(phone, token))
    return users


def serve_api(url: str, keys_json: str, listening: socket.socket, ready: Any) -> None:
    """An API server process: the production app, but the fast PIN hashing, serving
    the connections it accepts on `listening`. Sets the `ready` event once it serves
    (its socket listens before that: a client connecting early would wait on it)."""
    import uvicorn

    app = create_app(
        url,
        keyring=KeyRing.from_json(keys_json, source="the benchmark"),
        sms=SimulatedSms(),
        pin_hashing=PIN_HASHING_FAST,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    def tell_when_serving() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.01)
        ready.set()

    threading.Thread(target=tell_when_serving, daemon=True).start()
    server.run(sockets=[listening])


@contextmanager
def served_api(url: str, keys_json: str, workers: int = 1) -> Iterator[tuple[list[int], list[int]]]:
    """The API on `url` in `workers` uvicorn processes of its own, each on a free port of
    127.0.0.1 of its own: (ports, process ids) once every one serves; stopped after the
    block. A client spreads its connections over the ports, as a load balancer in front
    of the processes would (processes sharing one listening socket take connections as
    the kernel wakes them, often two to one)."""
    sockets = []
    for _ in range(workers):
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.bind(("127.0.0.1", 0))
        sockets.append(listening)
    ports = [int(listening.getsockname()[1]) for listening in sockets]
    context = multiprocessing.get_context("spawn")
    started = [context.Event() for _ in range(workers)]
    servers = [
        context.Process(
            target=serve_api, args=(url, keys_json, listening, ready), name=f"bench-api-{n}"
        )
        for n, (listening, ready) in enumerate(zip(sockets, started, strict=True))
    ]
    try:
        for server in servers:
            server.start()
        deadline = time.monotonic() + 60
        for server, ready in zip(servers, started, strict=True):
            while not ready.wait(0.1):
                if not server.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("an API server process did not start")
        yield ports, [server.pid for server in servers if server.pid is not None]
    finally:
        for listening in sockets:
            listening.close()
        for server in servers:
            server.terminate()  # SIGTERM: uvicorn finishes what it has and stops
        for server in servers:
            server.join(timeout=30)


def percentiles(latencies_s: list[float]) -> Callable[[float], float]:
    """p -> the p-th quantile of `latencies_s` in milliseconds (0 for none)."""
    ordered = sorted(latencies_s)

    def percentile(p: float) -> float:
        if not ordered:
            return 0.0
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return percentile


def cpu_seconds(*pids: int) -> float:
    """CPU time (user and system) processes have used so far, from /proc (Linux)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class KeepAliveConnection:
    """One HTTP/1.1 keep-alive connection: POST a JSON body, read status and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> KeepAliveConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


async def _drive(
    port: int, users: list[BenchUser], config: WalletBenchConfig
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
        connection = await KeepAliveConnection.open(port)
        try:
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
                status, _ = await connection.post(
                    "/v1/me/p2p-transfers", headers, json.dumps(body).encode()
                )
                latencies.append(time.perf_counter() - start)
                errors += 0 if status == 201 else 1
        finally:
            connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(config.clients)))
    return latencies, errors, time.perf_counter() - start


@dataclass(frozen=True)
class BenchDatabase:
    """A fresh SQLite file with the key ring its server is given, and the app (in this
    process) that prepares it through the services."""

    url: str
    keys_json: str
    app: Any
    bank: SimulatedBankGateway

    def release(self) -> None:
        """Done preparing: the app lets go of the file before the server opens it."""
        self.app.state.committer.close()
        self.app.state.engine.dispose()


@contextmanager
def bench_database(name: str) -> Iterator[BenchDatabase]:
    keys_json = json.dumps({"1": base64.b64encode(os.urandom(32)).decode()})
    with tempfile.TemporaryDirectory(prefix=f"millet-bench-{name}-") as tmp:
        url = f"sqlite:///{Path(tmp) / f'{name}.db'}"
        bank = SimulatedBankGateway()
        app = create_app(
            url,
            keyring=KeyRing.from_json(keys_json, source="the benchmark"),
            sms=SimulatedSms(),
            pin_hashing=PIN_HASHING_FAST,
            bank_gateway=bank,
        )
        yield BenchDatabase(url, keys_json, app, bank)


def run_wallet_bench(config: WalletBenchConfig) -> dict[str, Any]:
    """Run the benchmark; the figures as one JSON-ready dict."""
    with bench_database("wallet") as bench:
        url, keys_json = bench.url, bench.keys_json
        prepare_start = time.perf_counter()
        users = prepare_users(bench.app, bench.bank, config.users)
        prepare_s = time.perf_counter() - prepare_start
        bench.release()
        with served_api(url, keys_json) as ((port,), pids):
            cpu_before_s = cpu_seconds(*pids)
            client_before = time.process_time()
            latencies, errors, elapsed = asyncio.run(_drive(port, users, config))
            server_cpu_s = cpu_seconds(*pids) - cpu_before_s
            client_cpu_s = time.process_time() - client_before
        with Ledger.open(url) as ledger:
            verified = ledger.verify().ok
    done = len(latencies)
    percentile = percentiles(latencies)

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
        "server_cpu_ms_per_transfer": round(server_cpu_s * 1000 / done, 3) if done else None,
        "client_cpu_ms_per_transfer": round(client_cpu_s * 1000 / done, 3) if done else None,
        "prepare_s": round(prepare_s, 3),
        "database": "sqlite (temporary file)",
        "server": "uvicorn, one process of its own",
        "pin_hashing": "fast: argon2id t=1, 8 KiB (not the production setting)",
        "ledger_verify_ok": verified,
    }
