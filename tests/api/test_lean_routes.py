"""The payment's lean routes (`api/lean.py`) answer as FastAPI does: a request their
shortcut leaves (another content type, a refused credential, a body not of the model)
gets FastAPI's answer, in FastAPI's order of checks, and changes nothing more."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from .test_checkout_api import Merchant, funded, new_intent, onboard
from .wallet_world import PIN, World

WITH_CHARSET = {"Content-Type": "application/json; charset=utf-8"}


@pytest.fixture
def merchant(world: World) -> Merchant:
    return onboard(world)


def post_raw(world: World, path: str, body: bytes, headers: dict[str, str]) -> Any:
    return world.client.post(path, content=body, headers=headers)


def test_a_json_body_with_a_charset_is_created_and_paid_like_a_plain_one(
    world: World, merchant: Merchant
) -> None:
    payer = funded(world)
    order = {"amount_fen": 3_900, "merchant_order_id": uuid.uuid4().hex}
    created = post_raw(
        world,
        "/v1/payment-intents",
        json.dumps(order).encode(),
        {**merchant.secret, **WITH_CHARSET},
    )
    assert created.status_code == 201, created.text
    intent = created.json()
    body = {"client_secret": intent["client_secret"], "pin": PIN}
    headers = {**payer.headers, **WITH_CHARSET, "Idempotency-Key": uuid.uuid4().hex}
    path = f"/v1/me/payment-intents/{intent['id']}/confirm"
    paid = post_raw(world, path, json.dumps(body).encode(), headers)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"
    assert world.balance(payer) == 100_000 - 3_900


def test_broken_json_is_422_before_the_key_is_checked(world: World) -> None:
    answer = post_raw(
        world,
        "/v1/payment-intents",
        b'{"amount_fen": ',
        {"Content-Type": "application/json", "Authorization": "Bearer sk_live_nope"},
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_request")


def test_a_bad_key_is_401_before_the_body_is_checked(world: World) -> None:
    answer = world.client.post(
        "/v1/payment-intents",
        json={"amount_fen": -1},
        headers={"Authorization": "Bearer sk_live_nope"},
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "api_key_invalid")


def test_a_body_not_of_the_model_is_422_naming_the_field(world: World, merchant: Merchant) -> None:
    answer = world.client.post(
        "/v1/payment-intents",
        json={"amount_fen": 0, "merchant_order_id": "o-1"},
        headers=merchant.secret,
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "amount_fen"


def test_a_revoked_key_creates_nothing(world: World, merchant: Merchant) -> None:
    made = world.client.post(
        "/v1/merchant/api-keys", json={"kind": "secret"}, headers=merchant.secret
    ).json()
    world.client.delete(f"/v1/merchant/api-keys/{made['id']}", headers=merchant.secret)
    revoked = {"Authorization": f"Bearer {made['key']}"}
    order = {"amount_fen": 100, "merchant_order_id": "o-revoked"}
    answer = world.client.post("/v1/payment-intents", json=order, headers=revoked)
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "api_key_invalid")
    again = world.client.post("/v1/payment-intents", json=order, headers=merchant.secret)
    assert again.status_code == 201  # not 200: the revoked key's request made no intent


def test_a_confirmation_without_a_session_is_401_and_with_a_bad_body_422(
    world: World, merchant: Merchant
) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant)
    path = f"/v1/me/payment-intents/{intent['id']}/confirm"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    unsigned = world.client.post(path, json={"pin": PIN}, headers=key)
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "unauthenticated")
    bad = world.client.post(path, json={"pin": PIN}, headers={**payer.headers, **key})
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "client_secret")
    assert world.balance(payer) == 100_000
