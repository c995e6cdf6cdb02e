"""Idempotency keys: a retried POST gets the first answer, and money moves once.

A request's answer is stored with its key, error answers included: a decline stays a
decline on retry. A retry with the same key and the same request gets that stored answer
again; with a different request, 409 `idempotency_key_reused`. Keys are kept at least
`IDEMPOTENCY_RETENTION_S`.

Two ways to run a request. `run`, for work that spans transactions (a bank call in
between): the first request claims the key (a row with no answer yet), runs, and stores
its answer; a retry while it runs gets 409 `idempotency_key_in_use`; if it fails
unexpectedly its claim is dropped so that a retry can run, and if its process died, a
retry after `CLAIM_STALE_S` takes the claim over. `run_in`, for work inside one
ledger transaction: look the key up, run, and store the answer in that transaction, so
that the work and its answer commit together or not at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi.responses import JSONResponse
from starlette.requests import Request

from milletpay.api.errors import ApiError, error_response
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.ledger.engine import LedgerTransaction
from milletpay.store.sql import Sql
from milletpay.wallet.service import IDEMPOTENCY_KEY_CHARS_MAX, is_idempotency_key

HEADER = "Idempotency-Key"
#: The wallet's limit: the header's key is the operation's key.
KEY_LENGTH_MAX = IDEMPOTENCY_KEY_CHARS_MAX
IDEMPOTENCY_RETENTION_S = 24 * 60 * 60
#: A claim with no answer this old was left by a request that died (a crash mid-way):
#: a retry takes it over and runs, which the wallet's own keys make safe.
CLAIM_STALE_S = 120
#: Keys older than the retention are purged once every this many new keys.
PURGE_EVERY_KEYS = 1_000

_STORED = Sql(
    "SELECT request_hash, status_code, response_body FROM api_idempotency_keys "
    "WHERE scope = :scope AND key = :key"
)
_TAKE_OVER = Sql(
    "UPDATE api_idempotency_keys SET created_at_ns = :now WHERE scope = :scope AND key = :key "
    "AND request_hash = :hash AND status_code IS NULL AND created_at_ns < :stale"
)
_STORE_ANSWERED = Sql(
    "INSERT INTO api_idempotency_keys (scope, key, request_hash, created_at_ns, "
    "status_code, response_body) VALUES (:scope, :key, :hash, :now, :status, :body)"
)


def request_digest(request: Request, body: bytes) -> bytes:
    """`request_hash` of `request` with this (canonical) body: its path as routed (the
    scope's, rather than the URL parsed again)."""
    return request_hash(request.method, request.scope["path"], body)


def request_hash(method: str, path: str, body: bytes) -> bytes:
    """The identity of a request for its Idempotency-Key."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def check_key(key: str | None) -> str:
    if key is None or key == "":
        raise ApiError(
            400,
            "idempotency_key_required",
            f"this request moves money: send an {HEADER} header",
            HEADER,
        )
    if not is_idempotency_key(key):
        raise ApiError(
            400,
            "idempotency_key_invalid",
            f"{HEADER} must be 1 to {KEY_LENGTH_MAX} visible ASCII characters",
            HEADER,
        )
    return key


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes


class IdempotencyStore:
    def __init__(self, engine: sa.Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._claims = 0

    def claim(self, scope: str, key: str, digest: bytes) -> StoredResponse | None:
        """Claim `key` for this request: None if it is ours to run, else the stored answer."""
        now_ns = self._clock.now_ns()
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO api_idempotency_keys (scope, key, request_hash, "
                        "created_at_ns) VALUES (:scope, :key, :hash, :now)"
                    ),
                    {"scope": scope, "key": key, "hash": digest, "now": now_ns},
                )
        except sa.exc.IntegrityError:
            with self._engine.begin() as conn:
                stale_ns = now_ns - CLAIM_STALE_S * NS_PER_S
                params = {"scope": scope, "key": key, "hash": digest}
                if _TAKE_OVER.run(conn, now=now_ns, stale=stale_ns, **params).rowcount == 1:
                    return None  # its first request died unanswered: this one runs it
                return self._stored(conn, scope, key, digest, missing_ok=False)
        if self._count_claim():
            self.purge()
        return None

    def _count_claim(self) -> bool:
        """Count a new key; True when it is time to purge old ones."""
        self._claims += 1
        return self._claims % PURGE_EVERY_KEYS == 0

    def _stored(
        self, conn: sa.Connection, scope: str, key: str, digest: bytes, *, missing_ok: bool
    ) -> StoredResponse | None:
        """The answer stored for `key`; 409 if it was for another request or is not
        ready. None if there is no such key and `missing_ok`."""
        row = _STORED.run(conn, scope=scope, key=key).first()
        if row is None:
            if missing_ok:
                return None
            # claimed and abandoned in between: the caller may simply retry
            raise ApiError(409, "idempotency_key_in_use", "retry this request", HEADER)
        stored_hash, status_code, body = tuple(row)
        if bytes(stored_hash) != digest:
            raise ApiError(
                409,
                "idempotency_key_reused",
                f"this {HEADER} was used for a different request",
                HEADER,
            )
        if status_code is None:
            raise ApiError(
                409,
                "idempotency_key_in_use",
                f"a request with this {HEADER} is still being handled",
                HEADER,
            )
        return StoredResponse(int(status_code), bytes(body))

    def finish(self, scope: str, key: str, status_code: int, body: bytes) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE api_idempotency_keys SET status_code = :status, response_body = :body "
                    "WHERE scope = :scope AND key = :key"
                ),
                {"status": status_code, "body": body, "scope": scope, "key": key},
            )

    def abandon(self, scope: str, key: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM api_idempotency_keys WHERE scope = :scope AND key = :key"),
                {"scope": scope, "key": key},
            )

    def purge(self) -> int:
        """Forget keys older than the retention; returns how many."""
        with self._engine.begin() as conn:
            return self._purge(conn)

    def _purge(self, conn: sa.Connection) -> int:
        cutoff_ns = self._clock.now_ns() - IDEMPOTENCY_RETENTION_S * NS_PER_S
        result = conn.execute(
            sa.text("DELETE FROM api_idempotency_keys WHERE created_at_ns < :cutoff"),
            {"cutoff": cutoff_ns},
        )
        return int(result.rowcount)

    def run(
        self,
        scope: str,
        key: str | None,
        digest: bytes,
        handler: Callable[[], tuple[int, Any]],
    ) -> JSONResponse:
        """Run `handler` once per key; it returns (status, JSON body) or raises ApiError."""
        key = check_key(key)
        stored = self.claim(scope, key, digest)
        if stored is not None:
            return _replay(stored)
        try:
            response = _respond(handler)
        except BaseException:
            self.abandon(scope, key)
            raise
        self.finish(scope, key, response.status_code, bytes(response.body))
        return response

    def run_in(
        self,
        tx: LedgerTransaction,
        scope: str,
        key: str | None,
        digest: bytes,
        handler: Callable[[], tuple[int, Any]],
    ) -> JSONResponse:
        """`run` inside the caller's ledger transaction `tx`: the key, the handler's work
        and the answer commit together, so there is never a claim without an answer. An
        `ApiError` of the handler undoes the handler's work and is the stored answer."""
        key = check_key(key)
        stored = self._stored(tx.connection, scope, key, digest, missing_ok=True)
        if stored is not None:
            return _replay(stored)
        try:
            with tx.savepoint():
                status_code, body = handler()
            response = JSONResponse(body, status_code=status_code)
        except ApiError as error:
            response = error_response(error.status, error.code, error.message, error.field)
        _STORE_ANSWERED.run(
            tx.connection,
            scope=scope,
            key=key,
            hash=digest,
            now=self._clock.now_ns(),
            status=response.status_code,
            body=bytes(response.body),
        )
        if self._count_claim():
            self._purge(tx.connection)
        return response


def _replay(stored: StoredResponse) -> JSONResponse:
    return JSONResponse(
        json.loads(stored.body),
        status_code=stored.status_code,
        headers={"Idempotent-Replayed": "true"},
    )


def _respond(handler: Callable[[], tuple[int, Any]]) -> JSONResponse:
    try:
        status_code, body = handler()
    except ApiError as error:
        return error_response(error.status, error.code, error.message, error.field)
    return JSONResponse(body, status_code=status_code)
