"""The payer's side of a payment intent: the wallet shows it, then pays it.

The merchant's app hands the wallet the intent's id and client secret (in-app pay); the
wallet reads whom it pays and how much (`GET /v1/me/payment-intents/{id}`), and the user
approves with the PIN or a quick-pay assertion for kind `payment_intent` (target: the
intent's id). The confirmation runs like a P2P transfer: the PIN try, the
`Idempotency-Key` and its answer, the payment and the intent's new status commit in one
transaction. The body's `funding` chooses what pays: `wallet` (the balance, the default)
or `coins` (digital-goods merchants only, whole coins only: 422 `coins_not_accepted` or
`coin_amount_not_whole` otherwise, nothing changed). A decline is 402 naming the limit
or reason; the intent stays open for another try unless it had its attempts. An intent
that expired is 409 `payment_intent_expired` (and is canceled). With
`funding: "card"` and the body's `card` the intent is paid with a tokenized bank card
through the card network instead (`api/card_payments.py`): an authorization the issuer
answers, so not one transaction with the intent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from milletpay.api import card_payments
from milletpay.api.card_payments import CardCredentials
from milletpay.api.errors import ApiError
from milletpay.api.idempotency import HEADER, check_key
from milletpay.api.lean import lean_route, plain_body
from milletpay.api.merchants import (
    CLIENT_SECRET_CHARS_MAX,
    Intents,
    _intent_id,
    _run,
    merchant_view,
    payer_view,
)
from milletpay.api.sessions import SessionTokens
from milletpay.api.users import Identity, SignedIn
from milletpay.api.wallet import (
    Approval,
    Idempotency,
    IdempotencyKey,
    _approve,
    _digest,
    _move,
    _payment,
    cny_text,
    committed,
    off_loop,
    pay_in_one_transaction,
    paying_unit,
)
from milletpay.checkout.codes import PaymentCodes, read_merchant_code
from milletpay.checkout.errors import MerchantNotFound
from milletpay.checkout.intents import (
    Confirmation,
    Funding,
    IntentRequest,
    PaymentIntent,
    PaymentIntents,
    public_id,
)
from milletpay.checkout.merchants import MerchantService
from milletpay.identity import IdentityService, PinTry
from milletpay.identity.quickpay import Payment
from milletpay.ledger.engine import LedgerTransaction

router = APIRouter(prefix="/v1/me", tags=["payments"])

#: The longest QR text read (EMV QR codes are at most 512 characters).
QR_TEXT_CHARS_MAX = 1024


class IntentConfirmation(Approval):
    client_secret: str = Field(min_length=1, max_length=CLIENT_SECRET_CHARS_MAX)
    #: `wallet` (the default), `coins`, or `card`: a tokenized bank card through the card
    #: network (`api/card_payments.py`), with `card` its credentials.
    funding: Funding = Funding.WALLET
    card: CardCredentials | None = None


@router.get("/payment-intents/{intent_id}")
def show_intent(
    intent_id: str,
    _signed_in: SignedIn,
    intents: Intents,
    client_secret: Annotated[str, Query(min_length=1, max_length=CLIENT_SECRET_CHARS_MAX)],
) -> dict[str, Any]:
    """Whom the user is about to pay, for what and how much."""
    number = _intent_id(intent_id)
    intent, merchant = _run(lambda: intents.for_payer(number, client_secret))
    return payer_view(intent, merchant)


async def confirm_intent(
    intent_id: str,
    body: IntentConfirmation,
    request: Request,
    signed_in: SignedIn,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Pay the intent from the `funding` source, the wallet balance by default, or with
    `funding: "card"` and `card` from a tokenized bank card (key and approval required):
    200 with the intent, 402 declined, 409 expired or not waiting for confirmation, 422
    for a source that cannot pay this intent."""
    return await _confirm_intent(request, signed_in.user_id, idempotency_key, intent_id, body)


async def _confirm_intent_shortcut(request: Request) -> Response | None:
    """`confirm_intent` for a plain request (`api/lean.py`): a body of
    `IntentConfirmation` and a live session; None for any other, which FastAPI answers."""
    body = await plain_body(request, IntentConfirmation)
    if body is None:
        return None
    tokens: SessionTokens = request.app.state.sessions
    try:
        session = tokens.check(request.headers.get("authorization"))
    except ApiError:
        return None
    key, intent_id = request.headers.get(HEADER), request.path_params["intent_id"]
    return await _confirm_intent(request, session.user_id, key, intent_id, body)


async def _confirm_intent(
    request: Request, user_id: int, key_text: str | None, intent_id: str, body: IntentConfirmation
) -> Response:
    """`confirm_intent`: what blocks (the intent read, the PIN's hash) on a worker
    thread, then the payment's unit awaited on the committer."""
    key = check_key(key_text)
    number = _intent_id(intent_id)
    if body.funding is Funding.CARD:
        card: Response = await run_in_threadpool(
            _confirm_by_card, request, user_id, key, number, body
        )
        return card
    identity: IdentityService = request.app.state.identity
    intents: PaymentIntents = request.app.state.intents

    def approve() -> PinTry | None:
        intent, _merchant = _run(lambda: intents.for_payer(number, body.client_secret))
        return _approve(request, identity, user_id, key, body, _describe(intent))

    tried = await off_loop(request, approve)
    unit = paying_unit(
        identity,
        request.app.state.idempotency,
        user_id,
        key,
        _digest(request, body),
        tried,
        lambda tx: _answer(intents, tx, user_id, number, body.client_secret, body.funding),
    )
    return await committed(request, unit)


def _confirm_by_card(
    request: Request, user_id: int, key: str, number: int, body: IntentConfirmation
) -> Any:
    """`confirm_intent` with `funding: "card"`: the issuer's authorization between
    transactions, so the key is claimed first (`_move`)."""
    intents: PaymentIntents = request.app.state.intents
    intent, _merchant = _run(lambda: intents.for_payer(number, body.client_secret))
    funding = card_payments.card_funding(request)
    card = body.card
    if card is None:
        raise ApiError(422, "invalid_request", "card: required for card funding", "card")
    secret = body.client_secret
    return _move(
        request,
        user_id,
        request.app.state.identity,
        request.app.state.idempotency,
        key,
        body,
        lambda _k: card_payments.confirm_answer(funding, user_id, number, secret, card),
        _describe(intent),
    )


def _describe(intent: PaymentIntent) -> Callable[[str], Payment]:
    """The quick-pay payment confirming `intent` is."""
    target = public_id(intent.id)
    return lambda key: _payment(key, "payment_intent", target, intent.amount_fen)


router.add_api_route(
    "/payment-intents/{intent_id}/confirm",
    confirm_intent,
    methods=["POST"],
    route_class_override=lean_route(_confirm_intent_shortcut),
)


class Scan(BaseModel):
    payload: str = Field(min_length=1, max_length=QR_TEXT_CHARS_MAX)


class QrPayment(Approval):
    payload: str = Field(min_length=1, max_length=QR_TEXT_CHARS_MAX)
    amount_fen: int = Field(gt=0)


@router.post("/qr/scans")
def scan(body: Scan, _signed_in: SignedIn, request: Request, intents: Intents) -> dict[str, Any]:
    """What a scanned merchant code asks: one intent (a dynamic code: its payer's view
    and client secret, to confirm), or a merchant (a static code: the user types the
    amount and pays at `POST /v1/me/qr/payments`). 422 `qr_invalid` naming the tag, or
    `qr_not_payable` for another network's code."""
    code = _run(lambda: read_merchant_code(body.payload))
    if code.client_secret is not None:
        number = _intent_id(code.client_secret.partition("_secret_")[0])
        intent, merchant = _run(lambda: intents.for_payer(number, code.client_secret))
        return {
            "kind": "payment_intent",
            "payment_intent": payer_view(intent, merchant),
            "client_secret": code.client_secret,
        }
    assert code.merchant_id is not None
    merchants: MerchantService = request.app.state.merchants
    try:
        merchant = merchants.merchant(code.merchant_id)
    except MerchantNotFound:
        raise ApiError(422, "qr_not_payable", "the code's merchant is unknown") from None
    return {
        "kind": "merchant",
        "merchant": {"id": f"{merchant.id:032x}", **merchant_view(merchant)},
    }


@router.post("/qr/payments")
def pay_static_code(
    body: QrPayment,
    request: Request,
    signed_in: SignedIn,
    identity: Identity,
    store: Idempotency,
    intents: Intents,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Pay a merchant's static code the amount the user typed (key and approval
    required; quick pay: kind `merchant_qr`, `merchant_id`): an intent for it is created
    and paid in one transaction. 200, 402 declined, 422 for a code that is not a static
    Millet Pay merchant's."""
    key = check_key(idempotency_key)
    user_id = signed_in.user_id
    code = _run(lambda: read_merchant_code(body.payload))
    if code.merchant_id is None:
        raise ApiError(
            422, "qr_not_static", "a dynamic code is paid by confirming its intent", "payload"
        )
    merchant_id = code.merchant_id
    order = hashlib.sha256(f"{user_id:032x}:{key}".encode()).hexdigest()[:40]
    wanted = IntentRequest(body.amount_fen, f"qr-{order}", description="QR payment")

    def work(tx: LedgerTransaction) -> tuple[int, dict[str, Any]]:
        try:
            created = intents.create_in(tx, merchant_id, wanted)
        except MerchantNotFound:
            raise ApiError(422, "qr_not_payable", "the code's merchant is unknown") from None
        return _answer(intents, tx, user_id, created.intent.id, created.client_secret)

    return pay_in_one_transaction(
        request,
        identity,
        store,
        user_id,
        key,
        body,
        lambda tx: _run(lambda: work(tx)),
        lambda k: _payment(k, "merchant_qr", f"{merchant_id:032x}", body.amount_fen),
    )


@router.post("/payment-codes", status_code=201)
def new_payment_code(signed_in: SignedIn, request: Request) -> dict[str, Any]:
    """A one-time payment code for the till's scanner, valid for a minute and once; it
    replaces the user's earlier ones. `numeric` (18 digits, for a barcode or typing) and
    `cpm` (EMV consumer-presented QR text) are the same code."""
    codes: PaymentCodes = request.app.state.payment_codes
    issued = codes.issue(signed_in.user_id)
    return {"numeric": issued.numeric, "cpm": issued.cpm, "expires_at_ns": issued.expires_at_ns}


def _answer(
    intents: PaymentIntents,
    tx: LedgerTransaction,
    user_id: int,
    number: int,
    secret: str,
    funding: Funding = Funding.WALLET,
) -> tuple[int, dict[str, Any]]:
    answer: Confirmation = _run(lambda: intents.confirm_in(tx, user_id, number, secret, funding))
    intent = answer.intent
    merchant_view = {"id": public_id(intent.id), "status": str(intent.status)}
    if answer.decline_code is None:
        return 200, {
            **merchant_view,
            "amount_fen": intent.amount_fen,
            "amount": cny_text(intent.amount_fen),
            "funding": str(funding),
            "operation_id": f"{answer.operation_id:032x}",
        }
    code = answer.decline_code
    if code == "payment_intent_expired":
        message = f"{public_id(intent.id)} expired; it is canceled"
        return 409, {"error": {"code": code, "message": message, "field": None}}
    error: dict[str, Any] = {"code": code, "message": f"declined: {code}", "field": "amount_fen"}
    if answer.limit_fen is not None:
        remaining = answer.remaining_fen or 0
        error["message"] = (
            f"declined: {code}: the limit is {cny_text(answer.limit_fen)} CNY, "
            f"{cny_text(remaining)} CNY remains"
        )
        error["limit_fen"], error["remaining_fen"] = answer.limit_fen, remaining
    error["intent_status"] = str(intent.status)
    return 402, {"error": error}
