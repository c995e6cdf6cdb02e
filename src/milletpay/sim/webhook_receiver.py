"""A merchant's webhook receiver, as a merchant's server runs one: HTTP on 127.0.0.1.

Each merchant's endpoint is a path of its own (`/hooks/<merchant>`); the receiver knows
the path's signing secret and checks every delivery's `Millet-Signature` against the raw
body with it (`verify_signature`, the documented check) before it believes a word. A
verified event is recorded once: delivery is at least once, so a repeat of an event id
is answered 200 and dropped. A delivery that fails the check is answered 400 and recorded
as refused. It never changes anything but its own records.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from milletpay.checkout.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    verify_signature,
)
from milletpay.core.clock import NS_PER_S, Clock

#: The path under which each merchant's endpoint lives.
HOOKS_PATH: Final = "/hooks/"
#: The largest delivery the receiver reads (an event is at most 65,536 characters of
#: UTF-8, so at most four bytes each).
BODY_MAX_BYTES: Final = 4 * 65_536
#: Deliveries one receiver records (verified, repeated or refused), at most.
DELIVERIES_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class Received:
    """One verified event, as the merchant's server records it."""

    merchant: str  # the endpoint's path under HOOKS_PATH
    event_id: str
    type: str
    object_id: str


@dataclass(frozen=True, slots=True)
class Refused:
    merchant: str
    reason: str  # the signature error's code, or what else was wrong


class WebhookReceiver:
    """The merchants' servers' webhook endpoints on one HTTP server; thread-safe."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._secrets: dict[str, str] = {}
        self._events: dict[str, Received] = {}  # by event id: each once
        self.duplicates: list[Received] = []
        self.refused: list[Refused] = []
        self._server: ThreadingHTTPServer | None = None

    # -- what the merchants' servers set up and read --------------------------------

    def url(self, merchant: str) -> str:
        assert self._server is not None, "the receiver is not serving"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{HOOKS_PATH}{merchant}"

    def set_secret(self, merchant: str, secret: str) -> None:
        with self._lock:
            self._secrets[merchant] = secret

    @property
    def events(self) -> list[Received]:
        with self._lock:
            return list(self._events.values())

    def wait_for(self, wanted: Iterable[tuple[str, str, str]], timeout_s: float) -> bool:
        """Wait until every (merchant, type, object id) in `wanted` was received and
        verified, for at most `timeout_s`; True if they all were."""
        wanted = set(wanted)
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not wanted <= self._seen():
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    return False
                self._lock.wait(left_s)
        return True

    def _seen(self) -> set[tuple[str, str, str]]:
        return {(e.merchant, e.type, e.object_id) for e in self._events.values()}

    # -- serving --------------------------------------------------------------------

    @contextmanager
    def serving(self) -> Iterator[WebhookReceiver]:
        """Serve on a free port of 127.0.0.1 while the block runs."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._receive))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="webhook-receiver")
        thread.start()
        self._server = server
        try:
            yield self
        finally:
            server.shutdown()
            thread.join()
            server.server_close()
            self._server = None

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """The answer's status to one delivery (`headers` by lower-case name); records it."""
        merchant = path.removeprefix(HOOKS_PATH)
        with self._lock:
            secret = self._secrets.get(merchant) if path.startswith(HOOKS_PATH) else None
        if secret is None:
            return self._refuse(merchant, "no such endpoint", 404)
        try:
            verify_signature(
                headers.get(SIGNATURE_HEADER.lower(), ""),
                body,
                secret,
                now_s=self._clock.now_ns() // NS_PER_S,
            )
        except SignatureError as error:
            return self._refuse(merchant, error.code, 400)
        event = json.loads(body)
        if headers.get(EVENT_ID_HEADER.lower()) != event["id"]:
            return self._refuse(merchant, "event id header differs from the body", 400)
        received = Received(merchant, event["id"], event["type"], event["data"]["object"]["id"])
        with self._lock:
            if len(self._events) + len(self.duplicates) >= DELIVERIES_MAX:
                return 503
            if received.event_id in self._events:
                self.duplicates.append(received)
            else:
                self._events[received.event_id] = received
            self._lock.notify_all()
        return 200

    def _refuse(self, merchant: str, reason: str, status: int) -> int:
        with self._lock:
            if len(self.refused) < DELIVERIES_MAX:
                self.refused.append(Refused(merchant, reason))
        return status


Receive = Callable[[str, dict[str, str], bytes], int]


def _handler(receive: Receive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= BODY_MAX_BYTES:
                self._answer(413)
                return
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            self._answer(receive(self.path, headers, body))

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the scene prints what arrived; no access log on the console

    return Handler
