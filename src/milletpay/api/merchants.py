"""Merchant endpoints: onboarding, API keys, and payment intents (the merchant's side).

A merchant calls with `Authorization: Bearer <secret key>` (`sk_live_…`). Onboarding
(`POST /v1/merchants`) is open, as a sandbox's sign-up is, and answers the merchant's
first secret key, the only time it is shown, and its publishable key. A publishable key
(`pk_live_…`) reads one intent for the payer's screen, given the intent's client secret;
nothing else. Every id that is not the merchant's answers 404, exactly like one that does
not exist.

Payment intents follow Stripe's shapes: `POST /v1/payment-intents` creates one (the
merchant's order id makes a retry answer the same intent: 200 instead of 201), `GET`
reads it, `/capture` takes a held payment (in full or in part), `/cancel` cancels or
releases it. The payer's side is in `api/payments.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from milletpay.api.errors import ApiError
from milletpay.api.idempotency import check_key, request_digest
from milletpay.api.lean import lean_route, plain_body
from milletpay.api.wallet import Idempotency, IdempotencyKey, committed
from milletpay.checkout.codes import (
    MerchantQrInvalid,
    PaymentCodeRefused,
    PaymentCodes,
    QrNotPayable,
    dynamic_code,
    static_code,
)
from milletpay.checkout.errors import (
    ApiKeyLimitReached,
    ApiKeyNotFound,
    CoinAmountNotWhole,
    CoinsNotAccepted,
    FundingNotAvailable,
    MerchantInvalid,
    MerchantNotActive,
    MerchantOrderReused,
    PaymentIntentConflict,
    PaymentIntentInvalid,
    PaymentIntentNotFound,
)
from milletpay.checkout.intents import (
    DESCRIPTION_CHARS_MAX,
    ORDER_ID_CHARS_MAX,
    REFUND_REASON_CHARS_MAX,
    TTL_S_DEFAULT,
    TTL_S_MAX,
    TTL_S_MIN,
    CaptureMethod,
    Created,
    Funding,
    IntentRequest,
    IntentStatus,
    PaymentIntent,
    PaymentIntents,
    intent_object,
    parse_public_id,
    refund_object,
)
from milletpay.checkout.merchants import (
    ACCOUNT_DIGITS_MAX,
    CITY_CHARS_MAX,
    DISPLAY_NAME_CHARS_MAX,
    LANGUAGE_CHARS,
    LEGAL_NAME_CHARS_MAX,
    ApiKey,
    ApiKeyKind,
    Merchant,
    MerchantApplication,
    MerchantService,
)
from milletpay.checkout.payouts import Payouts, payout_object
from milletpay.checkout.webhooks import (
    EVENT_ID_PREFIX,
    URL_CHARS_MAX,
    Delivery,
    Endpoint,
    EndpointBusy,
    EndpointLimitReached,
    EndpointNotFound,
    EventNotFound,
    ReplayLimitReached,
    WebhookEventTypesInvalid,
    Webhooks,
    WebhookUrlInvalid,
)
from milletpay.core.errors import MilletError
from milletpay.emv.qr import QrError
from milletpay.emv.qr_render import render_svg
from milletpay.ledger.committer import Committer
from milletpay.ledger.engine import LedgerTransaction

router = APIRouter(prefix="/v1", tags=["merchants"])
T = TypeVar("T")

#: The checkout's errors -> HTTP status.
CHECKOUT_STATUS: dict[type[MilletError], int] = {
    WebhookUrlInvalid: 422,
    WebhookEventTypesInvalid: 422,
    EndpointNotFound: 404,
    EventNotFound: 404,
    EndpointLimitReached: 409,
    EndpointBusy: 409,
    ReplayLimitReached: 409,
    MerchantInvalid: 422,
    PaymentCodeRefused: 422,
    QrNotPayable: 422,
    QrError: 422,
    MerchantQrInvalid: 422,
    PaymentIntentInvalid: 422,
    CoinsNotAccepted: 422,
    CoinAmountNotWhole: 422,
    FundingNotAvailable: 422,
    ApiKeyNotFound: 404,
    PaymentIntentNotFound: 404,
    ApiKeyLimitReached: 409,
    MerchantNotActive: 409,
    MerchantOrderReused: 409,
    PaymentIntentConflict: 409,
}
CLIENT_SECRET_CHARS_MAX = 80
#: A CPM payment code's base64 text is about 100 characters; the digits 18.
PAYMENT_CODE_CHARS_MAX = 512


# The dependencies that never block are `async def`: FastAPI runs them on the event loop,
# where a plain `def` costs a trip to a worker thread each. `merchant_key` reads the
# database, so it stays a plain `def`.


async def merchant_service(request: Request) -> MerchantService:
    service: MerchantService = request.app.state.merchants
    return service


async def intent_service(request: Request) -> PaymentIntents:
    service: PaymentIntents = request.app.state.intents
    return service


async def webhook_service(request: Request) -> Webhooks:
    service: Webhooks = request.app.state.webhooks
    return service


Merchants = Annotated[MerchantService, Depends(merchant_service)]
Hooks = Annotated[Webhooks, Depends(webhook_service)]
Intents = Annotated[PaymentIntents, Depends(intent_service)]


def merchant_key(
    service: Merchants, authorization: Annotated[str | None, Header()] = None
) -> tuple[Merchant, ApiKeyKind]:
    """The merchant and key kind an `Authorization: Bearer <key>` proves, or 401."""
    if not authorization or not authorization.startswith("Bearer "):
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <merchant key>")
    found = service.authenticate(authorization[len("Bearer ") :])
    if found is None:
        raise ApiError(401, "api_key_invalid", "the key is unknown, revoked or malformed")
    return found


async def secret_key(
    signed: Annotated[tuple[Merchant, ApiKeyKind], Depends(merchant_key)],
) -> Merchant:
    """The merchant, signed in with a secret key; 403 for a publishable key."""
    merchant, kind = signed
    if kind is not ApiKeyKind.SECRET:
        raise ApiError(403, "secret_key_required", "this call needs a secret key")
    return merchant


SignedMerchant = Annotated[Merchant, Depends(secret_key)]
AnyKey = Annotated[tuple[Merchant, ApiKeyKind], Depends(merchant_key)]


class Application(BaseModel):
    """A merchant's sign-up. A `display_name` or `city` outside printable ASCII (兰亭茶馆,
    Café) needs its Latin form for QR codes (`name_latin`, `city_latin`) and the ISO 639-1
    `name_language` it is written in; a name or city too long is refused, never cut."""

    legal_name: str = Field(min_length=1, max_length=LEGAL_NAME_CHARS_MAX)
    display_name: str = Field(min_length=1, max_length=DISPLAY_NAME_CHARS_MAX)
    city: str = Field(min_length=1, max_length=CITY_CHARS_MAX)
    mcc: str = Field(min_length=4, max_length=4, examples=["5411"])
    settlement_bank_code: str = Field(min_length=1, max_length=16, examples=["ICBC"])
    settlement_account_number: str = Field(min_length=1, max_length=ACCOUNT_DIGITS_MAX)
    name_latin: str | None = Field(
        default=None, min_length=1, max_length=DISPLAY_NAME_CHARS_MAX, examples=["Lanting Teahouse"]
    )
    city_latin: str | None = Field(
        default=None, min_length=1, max_length=CITY_CHARS_MAX, examples=["Hangzhou"]
    )
    name_language: str | None = Field(
        default=None, min_length=LANGUAGE_CHARS, max_length=LANGUAGE_CHARS, examples=["zh"]
    )


class NewKeyRequest(BaseModel):
    kind: Literal["secret", "publishable"]


class NewIntent(BaseModel):
    amount_fen: int = Field(gt=0)
    currency: Literal["CNY"] = "CNY"
    merchant_order_id: str = Field(min_length=1, max_length=ORDER_ID_CHARS_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_CHARS_MAX)
    metadata: dict[str, str] = Field(default_factory=dict)
    capture_method: Literal["automatic", "manual"] = "automatic"
    expires_in_s: int = Field(default=TTL_S_DEFAULT, ge=TTL_S_MIN, le=TTL_S_MAX)


class NewEndpoint(BaseModel):
    url: str = Field(
        min_length=1, max_length=URL_CHARS_MAX, examples=["https://shop.example/hooks"]
    )
    event_types: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=32)


class Collection(BaseModel):
    payment_code: str = Field(min_length=1, max_length=PAYMENT_CODE_CHARS_MAX)


class NewRefund(BaseModel):
    amount_fen: int | None = Field(default=None, gt=0)
    reason: str | None = Field(default=None, max_length=REFUND_REASON_CHARS_MAX)


class Capture(BaseModel):
    amount_fen: int | None = Field(default=None, gt=0)


# -- merchants and keys -------------------------------------------------------------------


@router.post("/merchants", status_code=201)
def onboard(body: Application, service: Merchants) -> dict[str, Any]:
    """Onboard a merchant: its ledger account, a secret key (shown this once) and a
    publishable key."""
    onboarded = _run(lambda: service.onboard(MerchantApplication(**body.model_dump())))
    return {
        "merchant": merchant_json(onboarded.merchant),
        "secret_key": onboarded.secret_key.text,
        "publishable_key": onboarded.publishable_key.text,
    }


@router.get("/merchant")
def get_merchant(merchant: SignedMerchant, service: Merchants) -> dict[str, Any]:
    """The signed-in merchant, and what Millet Pay owes it (posted, and held)."""
    posted, pending = service.balance_fen(merchant.id)
    return {**merchant_json(merchant), "balance": {"posted_fen": posted, "pending_fen": pending}}


@router.get("/merchant/api-keys")
def list_keys(merchant: SignedMerchant, service: Merchants) -> dict[str, Any]:
    """The merchant's keys, live and revoked: secret keys only by their hint."""
    return {"items": [key_json(key) for key in service.keys(merchant.id)]}


@router.post("/merchant/api-keys", status_code=201)
def create_key(body: NewKeyRequest, merchant: SignedMerchant, service: Merchants) -> dict[str, Any]:
    """Another key; a secret key's text is shown this once."""
    made = _run(lambda: service.create_key(merchant.id, ApiKeyKind(body.kind)))
    return {**key_json(made.key), "key": made.text}


@router.delete("/merchant/api-keys/{key_id}")
def revoke_key(key_id: str, merchant: SignedMerchant, service: Merchants) -> dict[str, Any]:
    """Revoke a key: it signs nothing from now on (the key signing this call too)."""
    number = _hex_id(key_id, "api_key_not_found", "no such key")
    return key_json(_run(lambda: service.revoke_key(merchant.id, number)))


# -- payment intents ------------------------------------------------------------------------


async def create_intent(
    body: NewIntent, merchant: SignedMerchant, request: Request
) -> JSONResponse:
    """A payment intent for the merchant's order: 201, or 200 with the intent the order
    already has (same amount and capture method; 409 `merchant_order_reused` if not)."""
    return await _create_intent(request, merchant, body)


async def _create_intent_shortcut(request: Request) -> JSONResponse | None:
    """`create_intent` for a plain request (`api/lean.py`): a body of `NewIntent` and a
    live secret key; None for any other, which FastAPI answers. The key is looked up on
    the event loop (one indexed read of the SQLite file or the database, no trip to a
    worker thread), and its merchant taken into the unit as read: outside the write
    gate, which every payment's units queue for. (A merchant no longer active since is
    refused where money moves: the confirmation reads the merchant in its unit.)"""
    body = await plain_body(request, NewIntent)
    authorization = request.headers.get("authorization")
    if body is None or not authorization or not authorization.startswith("Bearer "):
        return None
    service: MerchantService = request.app.state.merchants
    found = service.authenticate(authorization[len("Bearer ") :])
    if found is None or found[1] is not ApiKeyKind.SECRET:
        return None
    merchant = found[0]
    intents: PaymentIntents = request.app.state.intents
    wanted = _intent_request(body)
    created = await _committed(request, lambda tx: intents.create_for_in(tx, merchant, wanted))
    return _created_answer(created)


async def _create_intent(request: Request, merchant: Merchant, body: NewIntent) -> JSONResponse:
    intents: PaymentIntents = request.app.state.intents
    wanted = _intent_request(body)
    # `PaymentIntents.create`'s unit, awaited here rather than waited for on a worker
    # thread: nothing else in this request blocks.
    created = await _committed(request, lambda tx: intents.create_in(tx, merchant.id, wanted))
    return _created_answer(created)


def _intent_request(body: NewIntent) -> IntentRequest:
    return IntentRequest(
        amount_fen=body.amount_fen,
        merchant_order_id=body.merchant_order_id,
        currency=body.currency,
        description=body.description,
        metadata=body.metadata,
        capture_method=CaptureMethod(body.capture_method),
        expires_in_s=body.expires_in_s,
    )


def _created_answer(created: Created) -> JSONResponse:
    answer = {**intent_object(created.intent), "client_secret": created.client_secret}
    return JSONResponse(answer, status_code=201 if created.created else 200)


router.add_api_route(
    "/payment-intents",
    create_intent,
    methods=["POST"],
    status_code=201,
    responses={200: {"description": "the intent the merchant's order already has"}},
    route_class_override=lean_route(_create_intent_shortcut),
)


@router.get("/payment-intents/{intent_id}")
def get_intent(
    intent_id: str,
    signed: AnyKey,
    intents: Intents,
    client_secret: Annotated[str | None, Query(max_length=CLIENT_SECRET_CHARS_MAX)] = None,
) -> dict[str, Any]:
    """The intent with a secret key; with a publishable key, the payer's view of it, given
    its client secret."""
    merchant, kind = signed
    number = _intent_id(intent_id)
    if kind is ApiKeyKind.SECRET:
        intent = _run(lambda: intents.get(merchant.id, number))
        return {
            **intent_object(intent),
            "client_secret": intents.client_secret(merchant.id, number),
        }
    if client_secret is None:
        raise ApiError(
            400,
            "client_secret_required",
            "a publishable key reads an intent with its client_secret",
            "client_secret",
        )
    intent, owner = _run(lambda: intents.for_payer(number, client_secret))
    if owner.id != merchant.id:
        raise ApiError(404, "payment_intent_not_found", f"no payment intent {intent_id}")
    return payer_view(intent, owner)


@router.post("/payment-intents/{intent_id}/capture")
def capture_intent(
    intent_id: str,
    request: Request,
    merchant: SignedMerchant,
    intents: Intents,
    body: Capture | None = None,
) -> dict[str, Any]:
    """Take a held payment, all of it or `amount_fen` (the rest goes back to the payer;
    a card's hold is completed through the card network)."""
    number = _intent_id(intent_id)
    amount = None if body is None else body.amount_fen
    if _run(lambda: intents.get(merchant.id, number)).funding is Funding.CARD:
        funding = _card_funding(request)
        return intent_object(_run(lambda: funding.capture(merchant.id, number, amount)))
    return intent_object(_run(lambda: intents.capture(merchant.id, number, amount)))


@router.post("/payment-intents/{intent_id}/cancel")
def cancel_intent(
    intent_id: str, request: Request, merchant: SignedMerchant, intents: Intents
) -> dict[str, Any]:
    """Cancel an intent not yet paid, or release a held payment (a card's hold is
    reversed through the card network)."""
    number = _intent_id(intent_id)
    if _run(lambda: intents.get(merchant.id, number)).funding is Funding.CARD:
        funding = _card_funding(request)
        return intent_object(_run(lambda: funding.cancel(merchant.id, number)))
    return intent_object(_run(lambda: intents.cancel(merchant.id, number)))


@router.post("/payment-intents/{intent_id}/refunds", status_code=201)
def refund_intent(
    intent_id: str,
    request: Request,
    merchant: SignedMerchant,
    intents: Intents,
    store: Idempotency,
    body: NewRefund | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Refund a succeeded payment to the payer, all that is left or `amount_fen`
    (`Idempotency-Key` required): 201 with the refund; 402
    `merchant_balance_insufficient` when the merchant is owed less than the refund (the
    refund is recorded as failed, nothing moves). A card payment's refund goes back to
    the card through the card network (`api/card_payments.py`)."""
    number = _intent_id(intent_id)
    key = check_key(idempotency_key)
    wanted = body or NewRefund()
    if _run(lambda: intents.get(merchant.id, number)).funding is Funding.CARD:
        from milletpay.api import card_payments  # it builds on this module's helpers

        return card_payments.refund_to_card(
            request, store, merchant.id, number, key, wanted.model_dump()
        )
    digest = request_digest(request, json.dumps(wanted.model_dump(), sort_keys=True).encode())

    def answer(tx: LedgerTransaction) -> tuple[int, dict[str, Any]]:
        made = _run(
            lambda: intents.refund_in(tx, merchant.id, number, wanted.amount_fen, wanted.reason)
        )
        if made.failure_code is None:
            return 201, refund_object(made)
        message = f"the refund failed: {made.failure_code}"
        error = {"code": made.failure_code, "message": message, "field": "amount_fen"}
        return 402, {"error": {**error, "refund": refund_object(made)}}

    committer: Committer = request.app.state.committer
    return committer.run(
        lambda tx: store.run_in(tx, f"merchant:{merchant.id:032x}", key, digest, lambda: answer(tx))
    )


@router.get("/payment-intents/{intent_id}/refunds")
def list_refunds(intent_id: str, merchant: SignedMerchant, intents: Intents) -> dict[str, Any]:
    number = _intent_id(intent_id)
    return {"items": [refund_object(r) for r in _run(lambda: intents.refunds(merchant.id, number))]}


@router.get("/merchant/payouts")
def list_payouts(merchant: SignedMerchant, request: Request) -> dict[str, Any]:
    """The merchant's daily payouts to its bank account, newest first."""
    payouts: Payouts = request.app.state.payouts
    return {"items": [payout_object(p) for p in payouts.payouts(merchant.id)]}


# -- QR codes -------------------------------------------------------------------------------


@router.get("/merchant/qr")
def merchant_qr(merchant: SignedMerchant) -> dict[str, Any]:
    """The merchant's static code for the till: the payer scans it and types the amount.
    422 `qr_invalid` naming the merchant's field when its record cannot make a code."""
    return qr_json(_run(lambda: static_code(merchant)))


@router.post("/payment-intents/{intent_id}/qr")
def intent_qr(intent_id: str, merchant: SignedMerchant, intents: Intents) -> dict[str, Any]:
    """A dynamic code for one intent waiting for confirmation: the payer's wallet scans
    it, shows the amount and pays it."""
    number = _intent_id(intent_id)
    intent = _run(lambda: intents.get(merchant.id, number))
    if intent.status is not IntentStatus.REQUIRES_CONFIRMATION:
        raise ApiError(409, "payment_intent_unexpected_state", f"{intent_id} is {intent.status}")
    secret = intents.client_secret(merchant.id, number)
    return qr_json(
        _run(lambda: dynamic_code(merchant, secret, intent.amount_fen, intent.merchant_order_id))
    )


@router.post("/payment-intents/{intent_id}/collect")
def collect_intent(
    intent_id: str,
    body: Collection,
    request: Request,
    merchant: SignedMerchant,
    intents: Intents,
    store: Idempotency,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Collect the intent with the payer's one-time payment code (18 digits, or the
    scanned CPM text), `Idempotency-Key` required: 200 with the intent; 402 declined (or
    `payer_confirmation_required` above the code's limit); 422 `payment_code_*`."""
    number = _intent_id(intent_id)
    key = check_key(idempotency_key)
    codes: PaymentCodes = request.app.state.payment_codes
    digest = request_digest(request, body.payment_code.encode())

    def answer(tx: LedgerTransaction) -> tuple[int, dict[str, Any]]:
        done = _run(
            lambda: intents.collect_with_code_in(tx, merchant.id, number, codes, body.payment_code)
        )
        if done.decline_code is None:
            return 200, intent_object(done.intent)
        code = done.decline_code
        error = {"code": code, "message": f"declined: {code}", "field": "payment_code"}
        return 402, {"error": {**error, "intent_status": str(done.intent.status)}}

    committer: Committer = request.app.state.committer
    return committer.run(
        lambda tx: store.run_in(tx, f"merchant:{merchant.id:032x}", key, digest, lambda: answer(tx))
    )


# -- webhooks ---------------------------------------------------------------------------------


@router.post("/merchant/webhook-endpoints", status_code=201)
def create_endpoint(body: NewEndpoint, merchant: SignedMerchant, hooks: Hooks) -> dict[str, Any]:
    """A webhook endpoint for the event types named (`*`: all); its signing secret
    (`whsec_…`) is shown this once."""
    endpoint, secret = _run(lambda: hooks.create_endpoint(merchant.id, body.url, body.event_types))
    return {**endpoint_json(endpoint), "secret": secret}


@router.get("/merchant/webhook-endpoints")
def list_endpoints(merchant: SignedMerchant, hooks: Hooks) -> dict[str, Any]:
    return {"items": [endpoint_json(e) for e in hooks.endpoints(merchant.id)]}


@router.post("/merchant/webhook-endpoints/{endpoint_id}/disable")
def disable_endpoint(endpoint_id: str, merchant: SignedMerchant, hooks: Hooks) -> dict[str, Any]:
    """Stop sending to the endpoint; its pending deliveries fail (replay sends them)."""
    number = _hex_id(endpoint_id, "webhook_endpoint_not_found", "no such endpoint")
    return endpoint_json(_run(lambda: hooks.disable_endpoint(merchant.id, number)))


@router.post("/merchant/webhook-endpoints/{endpoint_id}/enable")
def enable_endpoint(endpoint_id: str, merchant: SignedMerchant, hooks: Hooks) -> dict[str, Any]:
    number = _hex_id(endpoint_id, "webhook_endpoint_not_found", "no such endpoint")
    return endpoint_json(_run(lambda: hooks.enable_endpoint(merchant.id, number)))


@router.delete("/merchant/webhook-endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(endpoint_id: str, merchant: SignedMerchant, hooks: Hooks) -> Response:
    number = _hex_id(endpoint_id, "webhook_endpoint_not_found", "no such endpoint")
    _run(lambda: hooks.delete_endpoint(merchant.id, number))
    return Response(status_code=204)


@router.get("/merchant/events/{event_id}")
def get_event(event_id: str, merchant: SignedMerchant, hooks: Hooks) -> dict[str, Any]:
    """The event as it was signed and sent, and the log of its deliveries."""
    number = _event_id(event_id)
    event = _run(lambda: hooks.event(merchant.id, number))
    deliveries = hooks.deliveries(merchant.id, number)
    return {
        "id": event.public_id,
        "type": str(event.type),
        "created_at_ns": event.created_at_ns,
        "payload": json.loads(event.payload),
        "deliveries": [delivery_json(d) for d in deliveries],
    }


@router.post("/merchant/events/{event_id}/replay", status_code=202)
def replay_event(event_id: str, merchant: SignedMerchant, hooks: Hooks) -> dict[str, Any]:
    """Send the event again to every enabled endpoint subscribed to it (same event id)."""
    number = _event_id(event_id)
    made = _run(lambda: hooks.replay(merchant.id, number))
    return {"deliveries": [f"{d:032x}" for d in made]}


# -- rendering -------------------------------------------------------------------------------


def merchant_json(merchant: Merchant) -> dict[str, Any]:
    return {
        "id": f"{merchant.id:032x}",
        "legal_name": merchant.legal_name,
        **merchant_view(merchant),
        "mdr_bps": merchant.mdr_bps,
        "digital_goods": merchant.digital_goods,
        "settlement_bank_code": merchant.settlement_bank_code,
        "settlement_account_masked": merchant.settlement_account_masked,
        "status": str(merchant.status),
    }


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": f"{key.id:032x}",
        "kind": str(key.kind),
        "hint": key.hint,
        "publishable_key": key.publishable_key,
        "live": key.live,
        "created_at_ns": key.created_at_ns,
        "revoked_at_ns": key.revoked_at_ns,
    }


def endpoint_json(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": f"{endpoint.id:032x}",
        "url": endpoint.url,
        "event_types": sorted(str(t) for t in endpoint.event_types) or ["*"],
        "status": str(endpoint.status),
        "created_at_ns": endpoint.created_at_ns,
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": f"{delivery.id:032x}",
        "endpoint_id": f"{delivery.endpoint_id:032x}",
        "status": str(delivery.status),
        "attempts": delivery.attempts,
        "next_attempt_at_ns": delivery.next_attempt_at_ns,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "delivered_at_ns": delivery.delivered_at_ns,
        "log": [
            {
                "number": a.number,
                "at_ns": a.at_ns,
                "status_code": a.status_code,
                "duration_ms": a.duration_ms,
                "error": a.error,
            }
            for a in delivery.log
        ],
    }


def qr_json(payload: str) -> dict[str, Any]:
    """A code as its text (what the QR symbol encodes) and as an SVG image."""
    return {"payload": payload, "svg": render_svg(payload)}


def merchant_view(merchant: Merchant) -> dict[str, Any]:
    """Whom the payer pays: the name and city as the merchant shows them (in its own
    script: what a code's language template, tag 64, carries), their Latin form when
    it differs (tags 59 and 60), the MCC."""
    return {
        "display_name": merchant.display_name,
        "city": merchant.city,
        "name_latin": merchant.name_latin,
        "city_latin": merchant.city_latin,
        "name_language": merchant.name_language,
        "mcc": merchant.mcc,
    }


def payer_view(intent: PaymentIntent, merchant: Merchant) -> dict[str, Any]:
    """What the payer's screen shows: whom they pay, what for, how much."""
    return {
        "id": intent_object(intent)["id"],
        "merchant": merchant_view(merchant),
        "amount_fen": intent.amount_fen,
        "currency": intent.currency,
        "description": intent.description,
        "capture_method": str(intent.capture_method),
        "status": str(intent.status),
        "expires_at_ns": intent.expires_at_ns,
        "last_error_code": intent.last_error_code,
    }


def _run(call: Any) -> Any:
    """`call()`, its checkout errors as HTTP answers naming the field."""
    try:
        return call()
    except tuple(CHECKOUT_STATUS) as error:
        raise _api_error(error) from None


async def _committed(request: Request, work: Callable[[LedgerTransaction], T]) -> T:
    """`work` committed by the app's committer, awaited on the event loop (`committed`);
    its checkout errors as HTTP answers naming the field."""
    try:
        return await committed(request, work)
    except tuple(CHECKOUT_STATUS) as error:
        raise _api_error(error) from None


def _api_error(error: MilletError) -> ApiError:
    field = getattr(error, "field", None)
    return ApiError(CHECKOUT_STATUS[type(error)], error.code, error.message, field)


def _card_funding(request: Request) -> Any:
    """The app's card funding (`api/card_payments.py`), or 409."""
    from milletpay.api import card_payments  # it builds on this module's helpers

    return card_payments.card_funding(request)


def _intent_id(text: str) -> int:
    number = parse_public_id(text)
    if number is None:
        raise ApiError(404, "payment_intent_not_found", f"no payment intent {text[:40]!r}")
    return number


def _event_id(text: str) -> int:
    prefix = EVENT_ID_PREFIX
    if not text.startswith(prefix):
        raise ApiError(404, "webhook_event_not_found", "no such event")
    return _hex_id(text[len(prefix) :], "webhook_event_not_found", "no such event")


def _hex_id(text: str, code: str, message: str) -> int:
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise ApiError(404, code, message)
    return int(text, 16)
