"""Coin endpoints: the merchants coins buy at, the user's coins, buying and spending coins.

`GET /v1/coin-merchants` is public (no session): the same list for everyone. The paths
under /v1/me/coins act on the signed-in user's coin purse only. Buying and spending move
value, so each runs exactly like the wallet's money-moving POSTs (`api.wallet._move`): an
`Idempotency-Key`, an approval (the PIN or a quick-pay assertion for kind `coin_purchase`
or `coin_spend`), and a decline is 402 naming the limit or reason. Coins are never
redeemable for cash: no endpoint here, or anywhere, turns coins into CNY.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from pydantic import Field

from milletpay.api.errors import ApiError
from milletpay.api.users import Identity, SignedIn
from milletpay.api.wallet import (
    Answer,
    Approval,
    Idempotency,
    IdempotencyKey,
    _decline_answer,
    _linked_id,
    _move,
    _payment,
    _target_field,
    cny_text,
)
from milletpay.core.errors import MilletError
from milletpay.wallet import (
    AMOUNT_COINS_MAX,
    FEN_PER_COIN,
    MERCHANTS,
    CoinMerchantNotDigitalGoods,
    CoinMerchantShutDown,
    CoinMerchantUnknown,
    CoinOperationKind,
    CoinOutcome,
    CoinService,
    MerchantCategory,
)
from milletpay.wallet.tables import coin_merchant_shutdowns

router = APIRouter(prefix="/v1", tags=["coins"])


async def coin_service(request: Request) -> CoinService:
    service: CoinService = request.app.state.coins
    return service


Coins = Annotated[CoinService, Depends(coin_service)]

#: A spend's domain errors -> (HTTP status, the request field at fault).
_SPEND_ERRORS: dict[type[MilletError], tuple[int, str]] = {
    CoinMerchantUnknown: (404, "merchant_id"),
    CoinMerchantNotDigitalGoods: (400, "merchant_id"),
    CoinMerchantShutDown: (409, "merchant_id"),
}
#: How a purchase was paid for, as the request names it.
_SOURCE_OF_KIND = {
    CoinOperationKind.PURCHASE_FROM_BALANCE: "balance",
    CoinOperationKind.PURCHASE_BY_CARD: "bank_account",
}


class CoinPurchase(Approval):
    coins: int = Field(gt=0, le=AMOUNT_COINS_MAX)
    source: Literal["balance", "bank_account"]
    bank_account_id: str | None = Field(default=None, min_length=1, max_length=64)


class CoinSpend(Approval):
    merchant_id: str = Field(min_length=1, max_length=64, examples=["theme_store"])
    coins: int = Field(gt=0, le=AMOUNT_COINS_MAX)


def _coin_answer(outcome: CoinOutcome) -> Answer:
    """201 with the operation (a purchase with the CNY paid), or 402 naming the decline."""
    if outcome.decline_code is not None:
        return _decline_answer(outcome, "coins")
    answer: dict[str, Any] = {
        "operation_id": f"{outcome.operation_id:032x}",
        "coins": outcome.amount_coins,
        "status": str(outcome.status),
    }
    if outcome.kind is CoinOperationKind.SPEND:
        answer["merchant_id"] = outcome.merchant_id
    else:
        paid_fen = outcome.amount_coins * FEN_PER_COIN
        answer |= {
            "source": _SOURCE_OF_KIND[outcome.kind],
            "paid_fen": paid_fen,
            "paid": cny_text(paid_fen),
        }
    return 201, answer


def _coin_operation(run: Callable[[str], CoinOutcome]) -> Callable[[str], Answer]:
    """`run(key)` answered as JSON, its merchant errors naming `merchant_id`."""

    def operation(key: str) -> Answer:
        try:
            return _coin_answer(run(key))
        except MilletError as error:
            mapped = _SPEND_ERRORS.get(type(error))
            if mapped is None:
                raise
            status, field = mapped
            raise ApiError(status, error.code, error.message, field) from None

    return operation


def _purchase_run(
    service: CoinService, user_id: int, body: CoinPurchase
) -> Callable[[str], CoinOutcome]:
    """The purchase `body` asks for, by its source; ApiError if the source is misnamed."""
    if body.source == "balance":
        if body.bank_account_id is not None:
            message = "bank_account_id: only with source bank_account"
            raise ApiError(422, "invalid_request", message, "bank_account_id")
        return lambda key: service.buy_with_balance(user_id, body.coins, key)
    if body.bank_account_id is None:
        message = "bank_account_id: required with source bank_account"
        raise ApiError(422, "invalid_request", message, "bank_account_id")
    linked = _linked_id(body.bank_account_id)
    return lambda key: service.buy_with_card(user_id, linked, body.coins, key)


@router.get("/coin-merchants")
def list_coin_merchants(request: Request) -> list[dict[str, str]]:
    """The merchants coins can be spent at now: digital goods, not shut down. Public."""
    engine: sa.Engine = request.app.state.engine
    with engine.connect() as conn:
        closed = set(conn.execute(sa.select(coin_merchant_shutdowns.c.merchant_id)).scalars())
    digital_goods = frozenset(MerchantCategory)
    return [
        {"id": m.merchant_id, "name": m.name, "category": m.category}
        for m in MERCHANTS.values()
        if m.category in digital_goods and m.merchant_id not in closed
    ]


@router.get("/me/coins")
def get_coins(signed_in: SignedIn, service: Coins) -> dict[str, int]:
    """The user's coins (0 before the first purchase)."""
    return {"coins": service.coins(signed_in.user_id)}


@router.post("/me/coins/purchases", status_code=201)
def buy_coins(
    body: CoinPurchase,
    request: Request,
    signed_in: SignedIn,
    identity: Identity,
    store: Idempotency,
    service: Coins,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Buy coins (1 coin = 1 CNY) with the wallet balance or a linked bank account (key
    and approval required). From the balance it is a balance payment: it counts toward
    the KYC tier's limit."""
    run = _purchase_run(service, signed_in.user_id, body)
    target: str = getattr(body, _target_field("coin_purchase", body.source))
    return _move(
        request,
        signed_in.user_id,
        identity,
        store,
        idempotency_key,
        body,
        _coin_operation(run),
        lambda key: _payment(key, "coin_purchase", target, body.coins),
    )


@router.post("/me/coins/spends", status_code=201)
def spend_coins(
    body: CoinSpend,
    request: Request,
    signed_in: SignedIn,
    identity: Identity,
    store: Idempotency,
    service: Coins,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Spend coins at a merchant of `GET /v1/coin-merchants` (key and approval required)."""
    user_id = signed_in.user_id
    return _move(
        request,
        signed_in.user_id,
        identity,
        store,
        idempotency_key,
        body,
        _coin_operation(lambda key: service.spend(user_id, body.merchant_id, body.coins, key)),
        lambda key: _payment(key, "coin_spend", body.merchant_id, body.coins),
    )
