"""The API's conventions: JSON errors with stable codes, idempotency keys, limits, OpenAPI.

A route that moves money is added here for the test: it takes an Idempotency-Key and
makes one ledger transfer, so that "money moves once" is checked on the real ledger.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from fastapi import Header, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from milletpay.api import create_app
from milletpay.api.errors import ApiError
from milletpay.api.idempotency import (
    CLAIM_STALE_S,
    IDEMPOTENCY_RETENTION_S,
    KEY_LENGTH_MAX,
    request_hash,
)
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.ledger import Account, AccountFlags, Ledger, Transfer


class Payment(BaseModel):
    amount_minor: int = Field(gt=0)


@pytest.fixture
def setup(database_url: str) -> Iterator[tuple[TestClient, Ledger, ManualClock]]:
    clock = ManualClock()
    app = create_app(database_url, clock=clock, keyring=KeyRing.generate())
    ledger = Ledger.open(database_url)
    ledger.create_accounts(
        [Account(1, 156, 1), Account(2, 156, 1, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)]
    )
    transfer_ids = itertools.count(100)
    runs: list[int] = []

    @app.post("/v1/test-payments", status_code=201)
    async def pay(
        payment: Payment, request: Request, idempotency_key: str | None = Header(None)
    ) -> object:
        body = await request.body()

        def handler() -> tuple[int, object]:
            runs.append(payment.amount_minor)
            if payment.amount_minor == 13:
                raise RuntimeError("the database went away")
            transfer_id = next(transfer_ids)
            (result,) = ledger.create_transfers(
                [Transfer(transfer_id, 2, 1, payment.amount_minor, 156, 1)]
            )
            if result != "ok":
                raise ApiError(402, "declined", f"declined: {result}")
            return 201, {"transfer_id": transfer_id, "amount_minor": payment.amount_minor}

        store = request.app.state.idempotency
        digest = request_hash(request.method, request.url.path, body)
        return store.run("user-1", idempotency_key, digest, handler)

    app.state.runs = runs
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, ledger, clock
    ledger.close()


def _fund(ledger: Ledger, amount: int) -> None:
    assert ledger.create_transfers([Transfer(10, 1, 2, amount, 156, 1)]) == ["ok"]


def test_a_retry_with_the_same_key_replays_the_first_answer_and_moves_money_once(
    setup: tuple[TestClient, Ledger, ManualClock],
) -> None:
    client, ledger, _ = setup
    _fund(ledger, 1_000)
    first = client.post(
        "/v1/test-payments", json={"amount_minor": 300}, headers={"Idempotency-Key": "k1"}
    )
    again = client.post(
        "/v1/test-payments", json={"amount_minor": 300}, headers={"Idempotency-Key": "k1"}
    )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert client.app.state.runs == [300]  # type: ignore[attr-defined]
    (payer,) = ledger.lookup_accounts([2])
    assert payer.debits_posted == 300


def test_the_same_key_with_another_body_is_a_conflict(
    setup: tuple[TestClient, Ledger, ManualClock],
) -> None:
    client, ledger, _ = setup
    _fund(ledger, 1_000)
    client.post("/v1/test-payments", json={"amount_minor": 300}, headers={"Idempotency-Key": "k2"})
    other = client.post(
        "/v1/test-payments", json={"amount_minor": 301}, headers={"Idempotency-Key": "k2"}
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.json()["error"]["field"] == "Idempotency-Key"
    assert ledger.lookup_accounts([2])[0].debits_posted == 300


def test_a_decline_is_remembered_like_any_answer(
    setup: tuple[TestClient, Ledger, ManualClock],
) -> None:
    client, ledger, _ = setup
    headers = {"Idempotency-Key": "k3"}
    declined = client.post("/v1/test-payments", json={"amount_minor": 50}, headers=headers)
    assert declined.status_code == 402
    assert declined.json()["error"] == {
        "code": "declined",
        "message": "declined: exceeds_credits",
        "field": None,
    }
    _fund(ledger, 1_000)  # the retry still answers the decline: the key is spent
    assert client.post("/v1/test-payments", json={"amount_minor": 50}, headers=headers).json() == (
        declined.json()
    )
    assert ledger.lookup_accounts([2])[0].debits_posted == 0


def test_an_unexpected_failure_frees_the_key_and_leaks_nothing(
    setup: tuple[TestClient, Ledger, ManualClock],
) -> None:
    client, _, _ = setup
    headers = {"Idempotency-Key": "k4"}
    for _ in range(2):
        failed = client.post("/v1/test-payments", json={"amount_minor": 13}, headers=headers)
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "internal_error"
        assert "database" not in failed.text
    assert client.app.state.runs == [13, 13]  # type: ignore[attr-defined]


def test_a_claim_left_by_a_dead_request_is_taken_over_once_stale(
    setup: tuple[TestClient, Ledger, ManualClock],
) -> None:
    """A process that died mid-request leaves its key claimed with no answer: retries are
    told it is in use until `CLAIM_STALE_S`, then one of them runs it."""
    client, ledger, clock = setup
    _fund(ledger, 1_000)
    store = client.app.state.idempotency  # type: ignore[attr-defined]
    body = b'{"amount_minor":9}'
    digest = request_hash("POST", "/v1/test-payments", body)
    assert store.claim("user-1", "k6", digest) is None  # ...and then the process died
    headers = {"Idempotency-Key": "k6", "Content-Type": "application/json"}
    busy = client.post("/v1/test-payments", content=body, headers=headers)
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "idempotency_key_in_use"
    clock.advance(seconds=CLAIM_STALE_S + 1)
    other = request_hash("POST", "/v1/test-payments", b'{"amount_minor":8}')
    with pytest.raises(ApiError):  # a stale claim is still not another request's
        store.claim("user-1", "k6", other)
    ran = client.post("/v1/test-payments", content=body, headers=headers)
    assert ran.status_code == 201
    again = client.post("/v1/test-payments", content=body, headers=headers)
    assert again.json() == ran.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert client.app.state.runs == [9]  # type: ignore[attr-defined]
    assert ledger.lookup_accounts([2])[0].debits_posted == 9


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "idempotency_key_required"),
        ({"Idempotency-Key": ""}, "idempotency_key_required"),
        ({"Idempotency-Key": "x" * (KEY_LENGTH_MAX + 1)}, "idempotency_key_invalid"),
        ({"Idempotency-Key": "has space"}, "idempotency_key_invalid"),
    ],
)
def test_money_moving_posts_need_a_valid_key(
    setup: tuple[TestClient, Ledger, ManualClock], headers: dict[str, str], code: str
) -> None:
    client, ledger, _ = setup
    _fund(ledger, 1_000)
    answer = client.post("/v1/test-payments", json={"amount_minor": 5}, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code
    assert ledger.lookup_accounts([2])[0].debits_posted == 0


def test_keys_are_kept_for_the_retention_period_then_forgotten(
    setup: tuple[TestClient, Ledger, ManualClock],
) -> None:
    client, ledger, clock = setup
    _fund(ledger, 1_000)
    headers = {"Idempotency-Key": "k5"}
    client.post("/v1/test-payments", json={"amount_minor": 7}, headers=headers)
    store = client.app.state.idempotency  # type: ignore[attr-defined]
    clock.advance(seconds=IDEMPOTENCY_RETENTION_S - 1)
    assert store.purge() == 0
    assert (
        client.post("/v1/test-payments", json={"amount_minor": 7}, headers=headers).headers.get(
            "Idempotent-Replayed"
        )
        == "true"
    )
    clock.advance(seconds=2)
    assert store.purge() == 1


def test_validation_errors_name_the_field(setup: tuple[TestClient, Ledger, ManualClock]) -> None:
    client, _, _ = setup
    answer = client.post(
        "/v1/test-payments", json={"amount_minor": -1}, headers={"Idempotency-Key": "k6"}
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["field"] == "amount_minor"
    assert "amount_minor" in error["message"]


def test_unknown_paths_and_methods_answer_json_errors(
    setup: tuple[TestClient, Ledger, ManualClock],
) -> None:
    client, _, _ = setup
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = client.delete("/v1/health")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_an_oversize_body_is_refused_before_it_is_read(
    setup: tuple[TestClient, Ledger, ManualClock],
) -> None:
    client, _, _ = setup
    answer = client.post(
        "/v1/test-payments",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"Idempotency-Key": "k7", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"


def test_health_and_openapi_are_served(setup: tuple[TestClient, Ledger, ManualClock]) -> None:
    client, _, _ = setup
    health = client.get("/v1/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert "/v1/health" in spec["paths"]
