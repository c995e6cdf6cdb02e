"""In-app card payments through the API: the payer's wallet pays an intent with a
tokenized bank card, and a merchant's refund of it goes back to the card.

- `GET /v1/me/payment-intents/{id}/card-data?client_secret=…`: what the phone's applet
  makes its cryptogram over for this intent's current attempt (amount, currency, date,
  type, the platform's unpredictable number).
- `POST /v1/me/payment-intents/{id}/confirm` with `funding: "card"` and
  `card: {token_id, icc_data}` (field 55 as hex): the payer approves with the PIN or
  quick pay as for the wallet balance; the key is claimed first (`IdempotencyStore.run`),
  since the payment spans the exchange with the card network.
- A refund of a card-funded intent (`POST /v1/payment-intents/{id}/refunds`) goes to
  the card through the network.

A server started without a card network connection answers 409
`card_funding_unavailable` to both.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from milletpay.api.errors import ApiError
from milletpay.api.idempotency import IdempotencyStore, request_digest
from milletpay.api.merchants import CLIENT_SECRET_CHARS_MAX, _intent_id, _run
from milletpay.api.users import SignedIn
from milletpay.api.wallet import Answer, cny_text
from milletpay.checkout.card_funding import CardFunding, CardPaymentRefused
from milletpay.checkout.intents import Confirmation, Refund, public_id, refund_object

router = APIRouter(prefix="/v1/me", tags=["payments"])

#: Field 55 is at most 255 bytes (`network.iso8583.SPEC`): 510 hex digits.
ICC_DATA_HEX_CHARS_MAX = 510
#: How a refusal before anything was sent answers.
_REFUSAL_STATUS = {"card_not_found": 404}


class CardCredentials(BaseModel):
    """The card an intent is paid with: the token's id and the phone's field 55."""

    token_id: str = Field(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$")
    icc_data: str = Field(
        min_length=2, max_length=ICC_DATA_HEX_CHARS_MAX, pattern="^([0-9A-Fa-f]{2})+$"
    )


def card_funding(request: Request) -> CardFunding:
    """The app's card funding, or 409 `card_funding_unavailable`."""
    funding: CardFunding | None = getattr(request.app.state, "card_funding", None)
    if funding is None:
        raise ApiError(
            409,
            "card_funding_unavailable",
            "this server has no connection to the card network: pay from the wallet balance",
            "funding",
        )
    return funding


@router.get("/payment-intents/{intent_id}/card-data")
def card_data(
    intent_id: str,
    request: Request,
    _signed_in: SignedIn,
    client_secret: Annotated[str, Query(min_length=1, max_length=CLIENT_SECRET_CHARS_MAX)],
) -> dict[str, Any]:
    """What the phone's applet signs to pay this intent with a card, now."""
    funding = card_funding(request)
    number = _intent_id(intent_id)
    data = _run(lambda: funding.card_data(number, client_secret))
    return {
        "payment_intent": public_id(number),
        "amount_fen": data.amount_fen,
        "currency_numeric": data.currency_numeric,
        "date": data.date.isoformat(),
        "transaction_type": data.transaction_type,
        "unpredictable_number": data.unpredictable_number.hex().upper(),
    }


def confirm_answer(
    funding: CardFunding,
    user_id: int,
    number: int,
    client_secret: str,
    card: CardCredentials,
) -> Answer:
    """The answer to a card confirmation: 200 paid, 402 declined, 409 expired."""
    try:
        answer: Confirmation = _run(
            lambda: funding.confirm(
                user_id, number, client_secret, int(card.token_id, 16), bytes.fromhex(card.icc_data)
            )
        )
    except CardPaymentRefused as refused:
        status = _REFUSAL_STATUS.get(refused.code, 422)
        raise ApiError(status, refused.code, refused.message, refused.field) from None
    intent = answer.intent
    if answer.decline_code is None:
        return 200, {
            "id": public_id(intent.id),
            "status": str(intent.status),
            "funding": "card",
            "amount_fen": intent.amount_fen,
            "amount": cny_text(intent.amount_fen),
        }
    code = answer.decline_code
    if code == "payment_intent_expired":
        message = f"{public_id(intent.id)} expired; it is canceled"
        return 409, {"error": {"code": code, "message": message, "field": None}}
    error: dict[str, Any] = {"code": code, "message": f"declined: {code}", "field": None}
    if answer.limit_fen is not None:
        remaining = answer.remaining_fen or 0
        error["message"] = (
            f"declined: {code}: the limit is {cny_text(answer.limit_fen)} CNY, "
            f"{cny_text(remaining)} CNY remains"
        )
        error |= {"field": "amount_fen", "limit_fen": answer.limit_fen, "remaining_fen": remaining}
    error["intent_status"] = str(intent.status)
    return 402, {"error": error}


def refund_to_card(
    request: Request,
    store: IdempotencyStore,
    merchant_id: int,
    number: int,
    key: str,
    body: dict[str, Any],
) -> Any:
    """A merchant's refund of a card payment (`body`: `amount_fen`, `reason`): 201 with
    the refund, 402 when it failed (nothing moved); once per key."""
    funding = card_funding(request)
    digest = request_digest(request, json.dumps(body, sort_keys=True).encode())

    def answer() -> Answer:
        made: Refund = _run(
            lambda: funding.refund(merchant_id, number, key, body["amount_fen"], body["reason"])
        )
        if made.failure_code is None:
            return 201, refund_object(made)
        message = f"the refund failed: {made.failure_code}"
        error = {"code": made.failure_code, "message": message, "field": "amount_fen"}
        return 402, {"error": {**error, "refund": refund_object(made)}}

    return store.run(f"merchant:{merchant_id:032x}", key, digest, answer)
