"""The merchant API and in-app pay on both engines: onboarding, keys, payment intents
created by the merchant's server, shown and confirmed by the payer's wallet, captured or
canceled; every refusal with its status and stable code."""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from milletpay.checkout.webhooks import verify_signature
from milletpay.emv.qr import AlternateLanguage, decode_cpm, decode_mpm

from .wallet_world import PIN, Person, World

APPLICATION = {
    "legal_name": "Millet Books Co., Ltd.",
    "display_name": "Millet Books",
    "city": "Shanghai",
    "mcc": "5942",
    "settlement_bank_code": "ICBC",
    "settlement_account_number": "6222020099887766",
}


@dataclass
class Merchant:
    id: str
    secret: dict[str, str]  # the Authorization header of its secret key
    publishable: dict[str, str]


def onboard(world: World, **changes: str) -> Merchant:
    answer = world.client.post("/v1/merchants", json={**APPLICATION, **changes})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return Merchant(
        body["merchant"]["id"],
        {"Authorization": f"Bearer {body['secret_key']}"},
        {"Authorization": f"Bearer {body['publishable_key']}"},
    )


@pytest.fixture
def merchant(world: World) -> Iterator[Merchant]:
    yield onboard(world)


def new_intent(world: World, merchant: Merchant, **body: Any) -> dict[str, Any]:
    request = {"amount_fen": 3_900, "merchant_order_id": uuid.uuid4().hex, **body}
    answer = world.client.post("/v1/payment-intents", json=request, headers=merchant.secret)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def confirm(
    world: World, payer: Person, intent: dict[str, Any], key: str | None = None, **body: Any
) -> httpx.Response:
    request = {"client_secret": intent["client_secret"], "pin": PIN, **body}
    path = f"/v1/me/payment-intents/{intent['id']}/confirm"
    return world.post(path, payer, request, key or uuid.uuid4().hex)  # type: ignore[no-any-return]


def funded(world: World, amount_fen: int = 100_000) -> Person:
    payer = world.person()
    assert world.top_up(payer, amount_fen).status_code == 201
    return payer


# -- onboarding and keys ----------------------------------------------------------------


def test_onboarding_answers_the_secret_key_once(world: World, merchant: Merchant) -> None:
    me = world.client.get("/v1/merchant", headers=merchant.secret)
    assert me.status_code == 200, me.text
    assert me.json()["display_name"] == "Millet Books" and me.json()["mdr_bps"] == 60
    assert me.json()["settlement_account_masked"].endswith("7766")
    assert me.json()["balance"] == {"posted_fen": 0, "pending_fen": 0}
    keys = world.client.get("/v1/merchant/api-keys", headers=merchant.secret).json()["items"]
    secret_text = merchant.secret["Authorization"].split()[1]
    assert secret_text not in str(keys)  # only its hint
    assert [k["kind"] for k in keys] == ["secret", "publishable"]


def test_a_bad_application_is_422_naming_the_field(world: World) -> None:
    answer = world.client.post("/v1/merchants", json={**APPLICATION, "settlement_bank_code": "XX"})
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "settlement_bank_code"
    answer = world.client.post("/v1/merchants", json={**APPLICATION, "mcc": "54a1"})
    assert (answer.status_code, answer.json()["error"]["field"]) == (422, "mcc")


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer sk_live_nope", "Basic abc", "Bearer pk_live_nope"]
)
def test_no_valid_key_is_401(world: World, merchant: Merchant, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    assert world.client.get("/v1/merchant", headers=headers).status_code == 401


def test_a_publishable_key_is_not_a_secret_key(world: World, merchant: Merchant) -> None:
    answer = world.client.get("/v1/merchant", headers=merchant.publishable)
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "secret_key_required")
    answer = world.client.post(
        "/v1/payment-intents",
        json={"amount_fen": 100, "merchant_order_id": "o"},
        headers=merchant.publishable,
    )
    assert answer.status_code == 403


def test_a_new_key_works_and_a_revoked_one_does_not(world: World, merchant: Merchant) -> None:
    made = world.client.post(
        "/v1/merchant/api-keys", json={"kind": "secret"}, headers=merchant.secret
    )
    assert made.status_code == 201, made.text
    headers = {"Authorization": f"Bearer {made.json()['key']}"}
    assert world.client.get("/v1/merchant", headers=headers).status_code == 200
    revoked = world.client.delete(
        f"/v1/merchant/api-keys/{made.json()['id']}", headers=merchant.secret
    )
    assert revoked.status_code == 200 and revoked.json()["live"] is False
    assert world.client.get("/v1/merchant", headers=headers).status_code == 401
    other = onboard(world)
    foreign = world.client.delete(
        f"/v1/merchant/api-keys/{made.json()['id']}", headers=other.secret
    )
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "api_key_not_found")


# -- in-app pay ----------------------------------------------------------------------------


def test_in_app_pay_from_the_wallet(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant, description="Two books")
    assert intent["status"] == "requires_confirmation"
    shown = world.client.get(
        f"/v1/me/payment-intents/{intent['id']}",
        params={"client_secret": intent["client_secret"]},
        headers=payer.headers,
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["merchant"]["display_name"] == "Millet Books"
    assert shown.json()["amount_fen"] == 3_900
    paid = confirm(world, payer, intent)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"
    assert world.balance(payer) == 100_000 - 3_900
    seen = world.client.get(f"/v1/payment-intents/{intent['id']}", headers=merchant.secret)
    assert seen.json()["status"] == "succeeded" and seen.json()["fee_fen"] == 23
    me = world.client.get("/v1/merchant", headers=merchant.secret).json()
    assert me["balance"] == {"posted_fen": 3_900 - 23, "pending_fen": 0}


def test_a_retried_confirmation_answers_the_same_and_pays_once(
    world: World, merchant: Merchant
) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant)
    first = confirm(world, payer, intent, key="pay-1")
    again = confirm(world, payer, intent, key="pay-1")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    other_key = confirm(world, payer, intent, key="pay-2")
    assert (other_key.status_code, other_key.json()["error"]["code"]) == (
        409,
        "payment_intent_unexpected_state",
    )
    assert world.balance(payer) == 100_000 - 3_900


def test_a_decline_is_402_and_the_intent_stays_open(world: World, merchant: Merchant) -> None:
    payer = funded(world, 1_000)
    intent = new_intent(world, merchant)
    declined = confirm(world, payer, intent)
    assert (declined.status_code, declined.json()["error"]["code"]) == (
        402,
        "insufficient_balance",
    )
    assert declined.json()["error"]["intent_status"] == "requires_confirmation"
    assert world.top_up(payer, 5_000).status_code == 201
    assert confirm(world, payer, intent).status_code == 200


def test_a_wrong_pin_moves_nothing(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant)
    answer = confirm(world, payer, intent, pin="000000")
    assert answer.status_code == 400 and world.balance(payer) == 100_000


def test_a_wrong_client_secret_is_404(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant)
    other = new_intent(world, merchant)
    answer = confirm(world, payer, intent, client_secret=other["client_secret"])
    assert (answer.status_code, answer.json()["error"]["code"]) == (
        404,
        "payment_intent_not_found",
    )
    shown = world.client.get(
        f"/v1/me/payment-intents/{intent['id']}",
        params={"client_secret": "pi_x_secret_y"},
        headers=payer.headers,
    )
    assert shown.status_code == 404


def test_an_expired_intent_is_409_and_canceled(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant, expires_in_s=60)
    world.clock.advance(seconds=60)
    answer = confirm(world, payer, intent)
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "payment_intent_expired")
    seen = world.client.get(f"/v1/payment-intents/{intent['id']}", headers=merchant.secret)
    assert seen.json()["cancellation_reason"] == "expired"


def test_the_order_id_makes_creating_idempotent(world: World, merchant: Merchant) -> None:
    body = {"amount_fen": 3_900, "merchant_order_id": "order-77"}
    first = world.client.post("/v1/payment-intents", json=body, headers=merchant.secret)
    again = world.client.post("/v1/payment-intents", json=body, headers=merchant.secret)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    reused = world.client.post(
        "/v1/payment-intents", json={**body, "amount_fen": 4_000}, headers=merchant.secret
    )
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "merchant_order_reused")


def test_manual_capture_in_part(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant, amount_fen=10_000, capture_method="manual")
    held = confirm(world, payer, intent)
    assert held.json()["status"] == "requires_capture"
    path = f"/v1/payment-intents/{intent['id']}/capture"
    too_much = world.client.post(path, json={"amount_fen": 10_001}, headers=merchant.secret)
    assert (too_much.status_code, too_much.json()["error"]["field"]) == (422, "amount_fen")
    taken = world.client.post(path, json={"amount_fen": 7_000}, headers=merchant.secret)
    assert taken.status_code == 200, taken.text
    assert taken.json()["amount_received_fen"] == 7_000
    assert world.balance(payer) == 100_000 - 7_000


def test_cancel_releases_a_hold(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant, capture_method="manual")
    confirm(world, payer, intent)
    path = f"/v1/payment-intents/{intent['id']}/cancel"
    canceled = world.client.post(path, headers=merchant.secret)
    assert canceled.json()["status"] == "canceled"
    wallet = world.client.get("/v1/me/wallet", headers=payer.headers).json()
    assert wallet["available_fen"] == 100_000
    again = world.client.post(path, headers=merchant.secret)
    assert (again.status_code, again.json()["error"]["code"]) == (
        409,
        "payment_intent_unexpected_state",
    )


def test_another_merchants_intent_is_404(world: World, merchant: Merchant) -> None:
    intent = new_intent(world, merchant)
    other = onboard(world)
    for method, suffix in (("GET", ""), ("POST", "/capture"), ("POST", "/cancel")):
        answer = world.client.request(
            method, f"/v1/payment-intents/{intent['id']}{suffix}", headers=other.secret
        )
        assert (answer.status_code, answer.json()["error"]["code"]) == (
            404,
            "payment_intent_not_found",
        )


def test_the_publishable_key_reads_the_payers_view(world: World, merchant: Merchant) -> None:
    intent = new_intent(world, merchant)
    path = f"/v1/payment-intents/{intent['id']}"
    without = world.client.get(path, headers=merchant.publishable)
    assert without.status_code == 400
    view = world.client.get(
        path, params={"client_secret": intent["client_secret"]}, headers=merchant.publishable
    )
    assert view.status_code == 200 and "client_secret" not in view.json()
    assert view.json()["merchant"]["display_name"] == "Millet Books"


# -- webhooks ------------------------------------------------------------------------------


def wait_for(world: World, count: int) -> list[httpx.Request]:
    """The webhook requests received, once `count` have come (the server's delivery
    thread sends them within a second or two)."""
    deadline = time.monotonic() + 15
    while len(world.webhooks_received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(world.webhooks_received) >= count, world.webhooks_received
    return world.webhooks_received


def delivered(world: World, merchant: Merchant, event_id: str) -> dict[str, Any]:
    """The event's one delivery once the worker has recorded how it went (it records
    the answer just after the receiver got the request)."""
    deadline = time.monotonic() + 15
    while True:
        log = world.client.get(f"/v1/merchant/events/{event_id}", headers=merchant.secret)
        assert log.status_code == 200, log.text
        (delivery,) = log.json()["deliveries"]
        if delivery["status"] != "pending" or time.monotonic() > deadline:
            return dict(delivery)
        time.sleep(0.05)


def test_a_payment_is_announced_by_a_signed_webhook(world: World, merchant: Merchant) -> None:
    made = world.client.post(
        "/v1/merchant/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["payment_intent.succeeded"]},
        headers=merchant.secret,
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    listed = world.client.get("/v1/merchant/webhook-endpoints", headers=merchant.secret)
    assert secret not in listed.text
    payer = funded(world)
    intent = new_intent(world, merchant)
    assert confirm(world, payer, intent).status_code == 200
    (request,) = wait_for(world, 1)
    body = request.content
    signed_at = verify_signature(
        request.headers["Millet-Signature"], body, secret, now_s=world.clock.now_ns() // 10**9
    )
    assert signed_at == world.clock.now_ns() // 10**9
    event = json.loads(body)
    assert event["type"] == "payment_intent.succeeded"
    assert event["data"]["object"]["id"] == intent["id"]
    assert request.headers["Millet-Event-Id"] == event["id"]
    delivery = delivered(world, merchant, event["id"])
    assert delivery["status"] == "succeeded" and delivery["log"][0]["status_code"] == 200
    replayed = world.client.post(
        f"/v1/merchant/events/{event['id']}/replay", headers=merchant.secret
    )
    assert replayed.status_code == 202
    again = wait_for(world, 2)[1]
    assert json.loads(again.content)["id"] == event["id"]  # the same event, to deduplicate


def test_webhook_endpoints_are_the_merchants_own(world: World, merchant: Merchant) -> None:
    made = world.client.post(
        "/v1/merchant/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hooks"},
        headers=merchant.secret,
    ).json()
    other = onboard(world)
    path = f"/v1/merchant/webhook-endpoints/{made['id']}"
    for method, suffix in (("POST", "/disable"), ("POST", "/enable"), ("DELETE", "")):
        answer = world.client.request(method, path + suffix, headers=other.secret)
        assert (answer.status_code, answer.json()["error"]["code"]) == (
            404,
            "webhook_endpoint_not_found",
        )
    assert world.client.post(path + "/disable", headers=merchant.secret).json()["status"] == (
        "disabled"
    )
    assert world.client.delete(path, headers=merchant.secret).status_code == 204


@pytest.mark.parametrize(
    ("body", "field_code"),
    [
        ({"url": "ftp://example.com/x"}, "webhook_url_invalid"),
        ({"url": "http://127.0.0.1/x", "event_types": ["nope"]}, "webhook_event_types_invalid"),
    ],
)
def test_a_bad_endpoint_is_422(
    world: World, merchant: Merchant, body: dict[str, Any], field_code: str
) -> None:
    answer = world.client.post("/v1/merchant/webhook-endpoints", json=body, headers=merchant.secret)
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, field_code)


# -- refunds -------------------------------------------------------------------------------


def test_refunds_in_part_then_the_rest_and_a_retry_refunds_once(
    world: World, merchant: Merchant
) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant, amount_fen=10_000)
    assert confirm(world, payer, intent).status_code == 200
    path = f"/v1/payment-intents/{intent['id']}/refunds"
    headers = {**merchant.secret, "Idempotency-Key": "refund-1"}
    first = world.client.post(
        path, json={"amount_fen": 4_000, "reason": "one book"}, headers=headers
    )
    assert first.status_code == 201, first.text
    again = world.client.post(
        path, json={"amount_fen": 4_000, "reason": "one book"}, headers=headers
    )
    assert again.json() == first.json()
    assert world.balance(payer) == 100_000 - 10_000 + 4_000
    rest = world.client.post(path, headers={**merchant.secret, "Idempotency-Key": "refund-2"})
    assert rest.status_code == 201 and rest.json()["amount_fen"] == 6_000
    assert world.balance(payer) == 100_000
    more = world.client.post(
        path, json={"amount_fen": 1}, headers={**merchant.secret, "Idempotency-Key": "refund-3"}
    )
    assert (more.status_code, more.json()["error"]["field"]) == (422, "amount_fen")
    listed = world.client.get(path, headers=merchant.secret).json()["items"]
    assert [r["amount_fen"] for r in listed] == [4_000, 6_000]
    me = world.client.get("/v1/merchant", headers=merchant.secret).json()
    assert me["balance"]["posted_fen"] == 0  # the fee came back with the refunds


def test_a_refund_needs_a_key_and_a_succeeded_intent(world: World, merchant: Merchant) -> None:
    intent = new_intent(world, merchant)
    path = f"/v1/payment-intents/{intent['id']}/refunds"
    assert world.client.post(path, headers=merchant.secret).status_code == 400
    answer = world.client.post(path, headers={**merchant.secret, "Idempotency-Key": "k"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (
        409,
        "payment_intent_unexpected_state",
    )


# -- QR codes ------------------------------------------------------------------------------


def test_a_dynamic_code_is_scanned_and_paid(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant, amount_fen=2_370)
    code = world.client.post(f"/v1/payment-intents/{intent['id']}/qr", headers=merchant.secret)
    assert code.status_code == 200, code.text
    payload = code.json()["payload"]
    assert code.json()["svg"].startswith("<svg")
    decoded = decode_mpm(payload)  # what any EMV QR reader sees
    assert (decoded.amount_minor, decoded.merchant_name) == (2_370, "Millet Books")
    scanned = world.client.post("/v1/me/qr/scans", json={"payload": payload}, headers=payer.headers)
    assert scanned.status_code == 200, scanned.text
    assert scanned.json()["kind"] == "payment_intent"
    assert scanned.json()["payment_intent"]["amount_fen"] == 2_370
    shown = {"client_secret": scanned.json()["client_secret"]}
    paid = confirm(world, payer, {**intent, **shown})
    assert paid.json()["status"] == "succeeded"
    again = world.client.post(f"/v1/payment-intents/{intent['id']}/qr", headers=merchant.secret)
    assert again.status_code == 409  # a paid intent has no code to show


def test_a_static_code_is_paid_the_amount_typed(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    code = world.client.get("/v1/merchant/qr", headers=merchant.secret).json()["payload"]
    scanned = world.client.post("/v1/me/qr/scans", json={"payload": code}, headers=payer.headers)
    assert scanned.json()["kind"] == "merchant"
    assert scanned.json()["merchant"]["id"] == merchant.id
    body = {"payload": code, "amount_fen": 1_500, "pin": PIN}
    paid = world.post("/v1/me/qr/payments", payer, body, "qr-pay-1")
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"
    again = world.post("/v1/me/qr/payments", payer, body, "qr-pay-1")
    assert again.json() == paid.json()
    assert world.balance(payer) == 100_000 - 1_500


def test_a_code_of_another_network_or_a_broken_one_is_422(world: World) -> None:
    payer = world.person()
    # The EMVCo specification's example code, with its CRC as published in
    # ericsalim/exemvi test/mpm_test.exs and dongri/emv-qrcode README.md: well-formed,
    # but not a Millet Pay merchant's.
    emvco = (
        "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
        "520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京"
        "540523.7253031565502016233030412340603***0708A60086670902ME"
        "91320016A0112233449988770708123456786304A13A"
    )
    answer = world.client.post("/v1/me/qr/scans", json={"payload": emvco}, headers=payer.headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "qr_not_payable")
    broken = emvco[:-4] + "0000"  # the CRC no longer matches
    answer = world.client.post("/v1/me/qr/scans", json={"payload": broken}, headers=payer.headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "qr_invalid")
    assert "63" in answer.json()["error"]["message"]


# A teahouse whose name and city are in Chinese: tags 59 and 60 carry the Latin form
# (printable ASCII only), the language template (64) the Chinese one (EMV QRCPS MPM,
# Merchant Information—Language Template).
TEAHOUSE = {
    "display_name": "兰亭茶馆",
    "city": "杭州",
    "name_latin": "Lanting Teahouse",
    "city_latin": "Hangzhou",
    "name_language": "zh",
}


def merchant_count(world: World) -> int:
    with world.ledger.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM merchants")).scalar_one())


def test_a_chinese_name_is_in_the_language_template_and_the_wallet_shows_it(
    world: World,
) -> None:
    teahouse = onboard(world, **TEAHOUSE)
    me = world.client.get("/v1/merchant", headers=teahouse.secret).json()
    assert (me["display_name"], me["name_latin"], me["name_language"]) == (
        "兰亭茶馆",
        "Lanting Teahouse",
        "zh",
    )
    code = world.client.get("/v1/merchant/qr", headers=teahouse.secret)
    assert code.status_code == 200, code.text
    decoded = decode_mpm(code.json()["payload"])
    assert (decoded.merchant_name, decoded.merchant_city) == ("Lanting Teahouse", "Hangzhou")
    assert decoded.alternate_language == AlternateLanguage("ZH", "兰亭茶馆", "杭州")
    payer = funded(world)
    scanned = world.client.post(
        "/v1/me/qr/scans", json={"payload": code.json()["payload"]}, headers=payer.headers
    )
    assert scanned.status_code == 200, scanned.text
    shown = scanned.json()["merchant"]
    assert (shown["display_name"], shown["city"]) == ("兰亭茶馆", "杭州")
    assert (shown["name_latin"], shown["city_latin"]) == ("Lanting Teahouse", "Hangzhou")
    body = {"payload": code.json()["payload"], "amount_fen": 1_200, "pin": PIN}
    paid = world.post("/v1/me/qr/payments", payer, body, "tea-1")
    assert paid.status_code == 200, paid.text


def test_a_chinese_named_merchants_dynamic_code_is_scanned_with_its_chinese_name(
    world: World,
) -> None:
    teahouse = onboard(world, **TEAHOUSE)
    intent = new_intent(world, teahouse, amount_fen=3_800)
    code = world.client.post(f"/v1/payment-intents/{intent['id']}/qr", headers=teahouse.secret)
    assert code.status_code == 200, code.text
    decoded = decode_mpm(code.json()["payload"])
    assert (decoded.merchant_name, decoded.amount_minor) == ("Lanting Teahouse", 3_800)
    assert decoded.alternate_language == AlternateLanguage("ZH", "兰亭茶馆", "杭州")
    payer = funded(world)
    scanned = world.client.post(
        "/v1/me/qr/scans", json={"payload": code.json()["payload"]}, headers=payer.headers
    )
    assert scanned.json()["payment_intent"]["merchant"]["display_name"] == "兰亭茶馆"


def test_only_the_part_outside_ascii_needs_a_latin_form(world: World) -> None:
    cafe = onboard(
        world, display_name="Lantern Café", name_latin="Lantern Cafe", name_language="en"
    )
    decoded = decode_mpm(world.client.get("/v1/merchant/qr", headers=cafe.secret).json()["payload"])
    assert (decoded.merchant_name, decoded.merchant_city) == ("Lantern Cafe", "Shanghai")
    # The city is printable ASCII already: it is tag 60, and 64 has the name alone.
    assert decoded.alternate_language == AlternateLanguage("EN", "Lantern Café")


def test_an_ascii_merchants_code_has_no_language_template(world: World, merchant: Merchant) -> None:
    me = world.client.get("/v1/merchant", headers=merchant.secret).json()
    assert (me["name_latin"], me["city_latin"], me["name_language"]) == (None, None, None)
    code = world.client.get("/v1/merchant/qr", headers=merchant.secret).json()["payload"]
    assert decode_mpm(code).alternate_language is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"display_name": "兰亭茶馆", "name_language": "zh"}, "name_latin"),
        ({"display_name": "Lantern Café", "name_language": "en"}, "name_latin"),
        ({"city": "杭州", "name_language": "zh"}, "city_latin"),
        ({"display_name": "兰亭茶馆", "name_latin": "Lanting Teahouse"}, "name_language"),
        ({**TEAHOUSE, "name_latin": "兰亭 Teahouse"}, "name_latin"),
        ({**TEAHOUSE, "name_language": "z1"}, "name_language"),
        ({"name_latin": "Millet Books Ltd"}, "name_latin"),
        ({"name_language": "zh"}, "name_language"),
    ],
)
def test_a_name_or_city_for_qr_codes_missing_or_wrong_is_422_and_creates_nothing(
    world: World, changes: dict[str, str], field: str
) -> None:
    before = merchant_count(world)
    answer = world.client.post("/v1/merchants", json={**APPLICATION, **changes})
    assert answer.status_code == 422, answer.text
    assert (answer.json()["error"]["code"], answer.json()["error"]["field"]) == (
        "merchant_invalid",
        field,
    )
    assert merchant_count(world) == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({**TEAHOUSE, "name_latin": "Lanting Teahouse of Hangzhou"}, "name_latin"),
        ({**TEAHOUSE, "city_latin": "Hangzhou Xihu District"}, "city_latin"),
        ({**TEAHOUSE, "display_name": "兰" * 26}, "display_name"),
    ],
)
def test_a_name_too_long_for_a_qr_code_is_refused_never_cut(
    world: World, changes: dict[str, str], field: str
) -> None:
    before = merchant_count(world)
    answer = world.client.post("/v1/merchants", json={**APPLICATION, **changes})
    assert (answer.status_code, answer.json()["error"]["field"]) == (422, field)
    assert merchant_count(world) == before


def test_a_merchant_record_that_cannot_make_a_code_is_422_naming_the_field(
    world: World,
) -> None:
    teahouse = onboard(world, **TEAHOUSE)
    intent = new_intent(world, teahouse)
    # As a merchant onboarded before Latin forms were asked for is stored.
    with world.ledger.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE merchants SET name_latin = NULL, city_latin = NULL, name_language = NULL"
            )
        )
    for answer in (
        world.client.get("/v1/merchant/qr", headers=teahouse.secret),
        world.client.post(f"/v1/payment-intents/{intent['id']}/qr", headers=teahouse.secret),
    ):
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == ("qr_invalid", "display_name")
        assert error["message"].startswith("tag 59 (merchant name)")


def test_a_payment_code_is_collected_once(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    issued = world.client.post("/v1/me/payment-codes", headers=payer.headers)
    assert issued.status_code == 201, issued.text
    numeric, cpm = issued.json()["numeric"], issued.json()["cpm"]
    assert len(numeric) == 18 and numeric.startswith("28")
    assert decode_cpm(cpm).applications[0].pan == numeric
    intent = new_intent(world, merchant, amount_fen=4_200)
    path = f"/v1/payment-intents/{intent['id']}/collect"
    headers = {**merchant.secret, "Idempotency-Key": "collect-1"}
    collected = world.client.post(path, json={"payment_code": cpm}, headers=headers)
    assert collected.status_code == 200, collected.text
    assert collected.json()["status"] == "succeeded"
    assert world.balance(payer) == 100_000 - 4_200
    other = new_intent(world, merchant)
    reused = world.client.post(
        f"/v1/payment-intents/{other['id']}/collect",
        json={"payment_code": numeric},
        headers={**merchant.secret, "Idempotency-Key": "collect-2"},
    )
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "payment_code_used")


def test_a_payment_code_lapses_and_is_replaced(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    first = world.client.post("/v1/me/payment-codes", headers=payer.headers).json()["numeric"]
    second = world.client.post("/v1/me/payment-codes", headers=payer.headers).json()["numeric"]
    intent = new_intent(world, merchant)
    path = f"/v1/payment-intents/{intent['id']}/collect"

    def collect(code: str, key: str) -> httpx.Response:
        headers = {**merchant.secret, "Idempotency-Key": key}
        return world.client.post(path, json={"payment_code": code}, headers=headers)

    assert collect(first, "c1").json()["error"]["code"] == "payment_code_revoked"
    world.clock.advance(seconds=60)
    assert collect(second, "c2").json()["error"]["code"] == "payment_code_expired"
    mistyped = second[:-1] + str((int(second[-1]) + 1) % 10)
    assert collect(mistyped, "c3").json()["error"]["code"] == "payment_code_invalid"
    assert world.balance(payer) == 100_000


def test_a_large_amount_needs_the_payer_on_the_phone(world: World, merchant: Merchant) -> None:
    payer = funded(world, 200_000)
    code = world.client.post("/v1/me/payment-codes", headers=payer.headers).json()["numeric"]
    intent = new_intent(world, merchant, amount_fen=100_001)
    answer = world.client.post(
        f"/v1/payment-intents/{intent['id']}/collect",
        json={"payment_code": code},
        headers={**merchant.secret, "Idempotency-Key": "big"},
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (
        402,
        "payer_confirmation_required",
    )
    assert world.balance(payer) == 200_000


def test_the_merchant_reads_its_payouts(world: World, merchant: Merchant) -> None:
    payer = funded(world)
    intent = new_intent(world, merchant, amount_fen=10_000)
    assert confirm(world, payer, intent).status_code == 200
    world.bank.open_account(
        "ICBC", APPLICATION["settlement_account_number"], APPLICATION["legal_name"]
    )
    payouts = world.client.app.state.payouts  # type: ignore[attr-defined]
    assert len(payouts.run_day(datetime.date(2026, 11, 26))) == 1
    listed = world.client.get("/v1/merchant/payouts", headers=merchant.secret)
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert (item["status"], item["amount_fen"]) == ("paid", 10_000 - 60)
    events = [json.loads(r.content)["type"] for r in world.webhooks_received]
    assert events == []  # no endpoint: nothing delivered


# -- coins as the funding source ---------------------------------------------------------


def with_coins(world: World, coins: int) -> Person:
    """A payer whose wallet bought `coins` coins."""
    payer = funded(world)
    body = {"coins": coins, "source": "balance", "pin": PIN}
    bought = world.post("/v1/me/coins/purchases", payer, body, uuid.uuid4().hex)
    assert bought.status_code == 201, bought.text
    return payer


def coins_of(world: World, payer: Person) -> int:
    answer = world.client.get("/v1/me/coins", headers=payer.headers)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["coins"])


def test_a_digital_goods_merchant_is_paid_in_coins_and_refunds_coins(world: World) -> None:
    games = onboard(world, display_name="Dragon Games", mcc="5816")
    made = world.client.post(
        "/v1/merchant/webhook-endpoints",
        json={
            "url": "http://127.0.0.1:9/hooks",
            "event_types": ["payment_intent.succeeded", "refund.succeeded"],
        },
        headers=games.secret,
    )
    assert made.status_code == 201, made.text
    payer = with_coins(world, 100)
    intent = new_intent(world, games, amount_fen=6_000)

    paid = confirm(world, payer, intent, key="coins-1", funding="coins")
    again = confirm(world, payer, intent, key="coins-1", funding="coins")

    assert paid.status_code == 200, paid.text
    assert again.json() == paid.json()  # the retry answers the same and pays once
    assert paid.json()["funding"] == "coins" and paid.json()["status"] == "succeeded"
    assert coins_of(world, payer) == 40
    assert world.balance(payer) == 100_000 - 10_000  # the wallet paid only for the coins
    seen = world.client.get(f"/v1/payment-intents/{intent['id']}", headers=games.secret).json()
    assert (seen["funding"], seen["fee_fen"]) == ("coins", 60)
    me = world.client.get("/v1/merchant", headers=games.secret).json()
    assert me["balance"] == {"posted_fen": 6_000 - 60, "pending_fen": 0}
    (event,) = [json.loads(r.content) for r in wait_for(world, 1)]
    assert event["type"] == "payment_intent.succeeded"
    assert event["data"]["object"]["funding"] == "coins"

    path = f"/v1/payment-intents/{intent['id']}/refunds"
    headers = {**games.secret, "Idempotency-Key": "refund-1"}
    part = world.client.post(path, json={"amount_fen": 2_000}, headers=headers)
    part_again = world.client.post(path, json={"amount_fen": 2_000}, headers=headers)
    assert part.status_code == 201, part.text
    assert part_again.json() == part.json()
    assert coins_of(world, payer) == 60
    odd = world.client.post(
        path, json={"amount_fen": 150}, headers={**games.secret, "Idempotency-Key": "refund-2"}
    )
    assert (odd.status_code, odd.json()["error"]["code"]) == (422, "coin_amount_not_whole")
    rest = world.client.post(path, headers={**games.secret, "Idempotency-Key": "refund-3"})
    assert rest.status_code == 201 and rest.json()["amount_fen"] == 4_000
    assert coins_of(world, payer) == 100
    assert world.balance(payer) == 100_000 - 10_000  # coins come back as coins, never cash
    me = world.client.get("/v1/merchant", headers=games.secret).json()
    assert me["balance"]["posted_fen"] == 0
    refunds = [json.loads(r.content) for r in wait_for(world, 3)[1:]]
    assert [e["type"] for e in refunds] == ["refund.succeeded", "refund.succeeded"]


def test_coins_are_refused_by_a_merchant_outside_digital_goods(
    world: World, merchant: Merchant
) -> None:
    payer = with_coins(world, 100)
    intent = new_intent(world, merchant, amount_fen=3_000)

    refused = confirm(world, payer, intent, funding="coins")

    assert refused.status_code == 422
    assert (refused.json()["error"]["code"], refused.json()["error"]["field"]) == (
        "coins_not_accepted",
        "funding",
    )
    assert coins_of(world, payer) == 100
    seen = world.client.get(f"/v1/payment-intents/{intent['id']}", headers=merchant.secret)
    assert seen.json()["status"] == "requires_confirmation"
    assert seen.json()["confirm_attempts"] == 0
    unknown = confirm(world, payer, intent, funding="gold")
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (422, "funding")
    assert confirm(world, payer, intent).status_code == 200  # the wallet still pays it


def test_coins_for_an_amount_of_part_coins_or_too_few_coins(world: World) -> None:
    games = onboard(world, display_name="Dragon Games", mcc="5816")
    payer = with_coins(world, 10)
    odd = new_intent(world, games, amount_fen=3_050)
    refused = confirm(world, payer, odd, funding="coins")
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "coin_amount_not_whole")

    intent = new_intent(world, games, amount_fen=3_000)
    declined = confirm(world, payer, intent, funding="coins")

    assert (declined.status_code, declined.json()["error"]["code"]) == (402, "insufficient_coins")
    assert declined.json()["error"]["intent_status"] == "requires_confirmation"
    assert coins_of(world, payer) == 10
