"""Webhook fixtures: a migrated database on each engine, the webhook service and a
worker over it, and a real HTTP receiver on 127.0.0.1 that records every request and
answers as a test tells it to (a status code, or hang past the worker's timeout)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from milletpay.checkout.webhooks import EventType, Webhooks, WebhookWorker
from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.store import create_engine, upgrade, write_transaction

MERCHANT = 0x0A0A_0000_0000_0000_0000_0000_0000_0001
OTHER_MERCHANT = 0x0B0B_0000_0000_0000_0000_0000_0000_0002
#: The worker's timeout in the tests; a hanging receiver holds a request longer.
TIMEOUT_S = 0.5
HANG_S = 3.0
HANG = "hang"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A merchant's server: `url(path)`; `answer(path, ...)` queues the answers to the
    next requests on that path (an HTTP status, or `HANG`); then 200."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.release = threading.Event()
        self._answers: dict[str, deque[int | str]] = {}
        self._always: dict[str, int | str] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def answer(self, path: str, *answers: int | str) -> None:
        with self._lock:
            self._answers.setdefault(path, deque()).extend(answers)

    def always(self, path: str, answer: int | str) -> None:
        with self._lock:
            self._always[path] = answer

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def record_and_answer(self, request: Received) -> int | str:
        with self._lock:
            self.requests.append(request)
            queued = self._answers.get(request.path)
            if queued:
                return queued.popleft()
            return self._always.get(request.path, 200)

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    # Room for every sender of two workers connecting at once (the default is 5).
    request_queue_size = 64
    daemon_threads = True


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            request = Received(self.path, {k: v for k, v in self.headers.items()}, body)
            answer = receiver.record_and_answer(request)
            if answer == HANG:
                receiver.release.wait(HANG_S)
                answer = 200
            try:
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the worker gave up waiting
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def webhooks(engine: sa.Engine, keyring: KeyRing, clock: ManualClock) -> Webhooks:
    return Webhooks(engine, keyring, clock, allow_http=True)


def no_jitter(_bound: int) -> int:
    return 0


@pytest.fixture
def worker(engine: sa.Engine, keyring: KeyRing, clock: ManualClock) -> Iterator[WebhookWorker]:
    with WebhookWorker(engine, keyring, clock, randbelow=no_jitter, timeout_s=TIMEOUT_S) as w:
        yield w


def emit_committed(
    webhooks: Webhooks,
    engine: sa.Engine,
    event_type: EventType = EventType.PAYMENT_INTENT_SUCCEEDED,
    merchant_id: int = MERCHANT,
    data: dict[str, Any] | None = None,
) -> int:
    """An event emitted in a transaction that commits (as a payment's change would)."""
    with write_transaction(engine) as conn:
        return webhooks.emit(conn, merchant_id, event_type, data or {"id": "pi_1"})


def now_s(clock: ManualClock) -> int:
    return clock.now_ns() // NS_PER_S
