"""Wallet endpoints: balance, linked bank accounts, top-up, withdrawal, P2P, history and
monthly statements.

Every path is under /v1/me, so a request acts on the signed-in user's wallet only. The
three operations that move money each require an `Idempotency-Key` header and run
through `IdempotencyStore.run` (scoped to the user); the key is also the wallet's
idempotency key, so a retry answers the same and moves money once. Each also requires an
approval, checked before the key is claimed: the payment PIN (`pin`), or a quick-pay
assertion (`quick_pay_assertion`) from the bound phone, answering a challenge from
`POST /v1/me/quick-pay/challenges` for exactly this key, kind, target and amount. Every
request, retries included, carries its own approval. A decline is 402 with the code of
the limit (or reason) that declined it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field

from milletpay.api.errors import ApiError
from milletpay.api.idempotency import KEY_LENGTH_MAX, IdempotencyStore, check_key, request_digest
from milletpay.api.users import Identity, SignedIn
from milletpay.core.errors import MilletError
from milletpay.core.ids import id_to_bytes
from milletpay.core.money import Money
from milletpay.identity import IdentityService, PinCheck, PinStatus, PinTry
from milletpay.identity.phone import normalize_phone
from milletpay.identity.quickpay import Payment, QuickPay
from milletpay.ledger.committer import Committer, GroupCommitter
from milletpay.ledger.engine import LedgerTransaction
from milletpay.risk import DeclineCode
from milletpay.wallet import (
    FEN_PER_COIN,
    CoinOutcome,
    LinkedBankAccountNotFound,
    Outcome,
    RecipientNotFound,
    WalletService,
)
from milletpay.wallet.tables import linked_bank_accounts

router = APIRouter(prefix="/v1/me", tags=["wallet"])
T = TypeVar("T")

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")


async def wallet_service(request: Request) -> WalletService:
    service: WalletService = request.app.state.wallet
    return service


async def quick_pay(request: Request) -> QuickPay:
    service: QuickPay = request.app.state.quick_pay
    return service


async def idempotency_store(request: Request) -> IdempotencyStore:
    store: IdempotencyStore = request.app.state.idempotency
    return store


Wallet = Annotated[WalletService, Depends(wallet_service)]
Idempotency = Annotated[IdempotencyStore, Depends(idempotency_store)]
QuickPays = Annotated[QuickPay, Depends(quick_pay)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
#: A handler's answer: the HTTP status and the JSON body.
Answer = tuple[int, dict[str, Any]]


def cny_text(amount_fen: int) -> str:
    """Fen as CNY text with two decimals: 1234 -> "12.34"."""
    return Money(amount_fen, "CNY").decimal_text


class BankLink(BaseModel):
    bank_code: str = Field(min_length=1, max_length=16, examples=["ICBC"])
    account_number: str = Field(min_length=1, max_length=40)


class Approval(BaseModel):
    """How the user approves moving money: the PIN, or a quick-pay assertion."""

    pin: str | None = Field(default=None, min_length=1, max_length=12)
    quick_pay_assertion: dict[str, Any] | None = None


class BankMovement(Approval):
    bank_account_id: str = Field(min_length=1, max_length=64)
    amount_fen: int = Field(gt=0)


class P2pTransfer(Approval):
    recipient_phone: str = Field(min_length=1, max_length=32)
    amount_fen: int = Field(gt=0)


class QuickPayChallenge(BaseModel):
    """The payment a quick-pay challenge is for: the same Idempotency-Key, kind, target
    (`_target_field`) and amount (`coins` for coin kinds, `amount_fen` otherwise) as the
    request that will carry the assertion."""

    device_id: str = Field(min_length=1, max_length=64)
    idempotency_key: str = Field(min_length=1, max_length=KEY_LENGTH_MAX)
    kind: Literal[
        "top_up",
        "withdrawal",
        "p2p",
        "coin_purchase",
        "coin_spend",
        "payment_intent",
        "merchant_qr",
    ]
    amount_fen: int | None = Field(default=None, gt=0)
    coins: int | None = Field(default=None, gt=0)
    recipient_phone: str | None = Field(default=None, min_length=1, max_length=32)
    bank_account_id: str | None = Field(default=None, min_length=1, max_length=64)
    merchant_id: str | None = Field(default=None, min_length=1, max_length=64)
    payment_intent_id: str | None = Field(default=None, min_length=1, max_length=64)
    source: Literal["balance", "bank_account"] | None = None


#: The request field naming a payment's target, by quick-pay kind (a coin purchase's
#: depends on its source: see `_target_field`).
_TARGET_FIELDS = {
    "top_up": "bank_account_id",
    "withdrawal": "bank_account_id",
    "p2p": "recipient_phone",
    "coin_spend": "merchant_id",
    "payment_intent": "payment_intent_id",
    "merchant_qr": "merchant_id",
}
_COIN_KINDS = frozenset({"coin_purchase", "coin_spend"})


def _target_field(kind: str, source: str | None = None) -> str:
    """A coin purchase from a bank account is approved for that account, one from the
    balance for `source` "balance"; every other kind's target is in `_TARGET_FIELDS`."""
    if kind == "coin_purchase":
        return "bank_account_id" if source == "bank_account" else "source"
    return _TARGET_FIELDS[kind]


def _balance_json(service: WalletService, user_id: int) -> dict[str, Any]:
    balance = service.balance(user_id)
    return {
        "currency": "CNY",
        "posted_fen": balance.posted_fen,
        "available_fen": balance.available_fen,
        "posted": cny_text(balance.posted_fen),
        "available": cny_text(balance.available_fen),
    }


def _linked_id(text: str) -> int:
    if not _HEX_ID.match(text):
        raise ApiError(
            404, "linked_bank_account_not_found", "no such linked bank account", "bank_account_id"
        )
    return int(text, 16)


def _require_pin_ok(check: PinCheck) -> None:
    if check.status is PinStatus.OK:
        return
    raise ApiError(
        403 if check.status is PinStatus.LOCKED else 400,
        str(check.status),
        f"PIN check: {check.status} ({check.tries_left} tries left); nothing was moved",
        "pin",
    )


def _payment(key: str, kind: str, target: str, amount: int) -> Payment:
    """What a quick-pay approval is for: this key's operation, target and amount (fen, or
    coins for coin kinds: a purchase approves its price in CNY, a spend its coins)."""
    if kind == "p2p":
        target = normalize_phone(target)
    if kind == "coin_spend":
        money = Money(amount, "XCN")
    elif kind == "coin_purchase":
        money = Money(amount * FEN_PER_COIN, "CNY")
    else:
        money = Money(amount, "CNY")
    return Payment(key, f"{kind}:{target}", money)


def _approve(
    request: Request,
    identity: IdentityService,
    user_id: int,
    key: str,
    body: Approval,
    describe: Callable[[str], Payment] | None = None,
) -> PinTry | None:
    """Check the approval of this very payment, or ApiError; `describe(key)` gives the
    payment (by default, the wallet operation `body` asks for). A quick-pay assertion is
    verified and spent here; a PIN is compared here (a wrong one counted), and the right
    try returned, for `_confirm` in the transaction that moves the money."""
    if (body.pin is None) == (body.quick_pay_assertion is None):
        raise ApiError(
            400,
            "approval_required",
            "moving money needs exactly one of `pin` or `quick_pay_assertion`",
            "pin",
        )
    if body.pin is not None:
        tried = identity.try_pin(user_id, body.pin)
        _require_pin_ok(tried.check)
        return tried
    if describe is not None:
        payment = describe(key)
    elif isinstance(body, P2pTransfer):
        payment = _payment(key, "p2p", body.recipient_phone, body.amount_fen)
    else:
        assert isinstance(body, BankMovement)
        kind = "top_up" if request.url.path.endswith("/top-ups") else "withdrawal"
        payment = _payment(key, kind, body.bank_account_id, body.amount_fen)
    service: QuickPay = request.app.state.quick_pay
    try:
        service.finish_payment(user_id, payment, json.dumps(body.quick_pay_assertion))
    except MilletError as error:
        raise ApiError(
            403, error.code, f"quick pay refused: {error.message}", "quick_pay_assertion"
        ) from None
    return None


def _confirm(
    identity: IdentityService, tx: LedgerTransaction, user_id: int, tried: PinTry | None
) -> None:
    """Count the right PIN try of `_approve` in `tx`; 403 if the PIN was locked since."""
    if tried is not None:
        _require_pin_ok(identity.confirm_pin(tx.connection, user_id, tried))


def _digest(request: Request, body: Approval) -> bytes:
    """The request's identity for its Idempotency-Key. The approval is not part of it: a
    retry carries a new one."""
    approval = {"pin", "quick_pay_assertion"}
    canonical = json.dumps(body.model_dump(exclude=approval), sort_keys=True).encode()
    return request_digest(request, canonical)


def _answer(operation: Callable[[], Outcome | Answer]) -> Answer:
    """The HTTP answer to an operation (its own, or a wallet `Outcome`'s), its not-found
    errors naming the field."""
    try:
        answer = operation()
        return answer if isinstance(answer, tuple) else _outcome_answer(answer)
    except LinkedBankAccountNotFound as error:
        raise ApiError(404, error.code, error.message, "bank_account_id") from None
    except RecipientNotFound as error:
        raise ApiError(404, error.code, error.message, "recipient_phone") from None


def _outcome_answer(outcome: Outcome) -> Answer:
    """201 with the operation, or 402 naming what declined it."""
    if outcome.decline_code is None:
        return 201, {
            "operation_id": f"{outcome.operation_id:032x}",
            "kind": str(outcome.kind),
            "amount_fen": outcome.amount_fen,
            "amount": cny_text(outcome.amount_fen),
            "status": str(outcome.status),
        }
    return _decline_answer(outcome, "amount_fen")


def _decline_answer(outcome: Outcome | CoinOutcome, field: str) -> Answer:
    """402 naming the limit (or reason) that declined the operation; `field` carries the
    amount."""
    code = outcome.decline_code
    assert code is not None
    error: dict[str, Any] = {
        "code": code,
        "message": f"declined: {code}",
        "field": field,
        "operation_id": f"{outcome.operation_id:032x}",
    }
    if code == DeclineCode.VELOCITY_EXCEEDED:
        error["message"] = (
            f"declined: {code}: at most {outcome.limit} operations an hour "
            f"({outcome.remaining} left)"
        )
        error["limit_operations"] = outcome.limit
        error["remaining_operations"] = outcome.remaining
        error["field"] = None
    elif outcome.limit is not None:
        remaining = outcome.remaining if outcome.remaining is not None else 0
        error["message"] = (
            f"declined: {code}: the limit is {cny_text(outcome.limit)} CNY, "
            f"{cny_text(remaining)} CNY remains"
        )
        error["limit_fen"] = outcome.limit
        error["remaining_fen"] = remaining
    elif outcome.reason is not None:
        error["message"] = f"declined: {code} ({outcome.reason})"
        error["reason"] = outcome.reason
    return 402, {"error": error}


def _move(
    request: Request,
    user_id: int,
    identity: IdentityService,
    store: IdempotencyStore,
    key: str | None,
    body: Approval,
    operation: Callable[[str], Outcome | Answer],
    describe: Callable[[str], Payment] | None = None,
) -> Any:
    """Key present, payment approved (`describe`, as for `_approve`), then
    `operation(key)` once per key: a wallet `Outcome`, or an answer of its own. For
    work that calls a bank between transactions, so the key is claimed first."""
    key = check_key(key)
    tried = _approve(request, identity, user_id, key, body, describe)
    committer: Committer = request.app.state.committer
    committer.run(lambda tx: _confirm(identity, tx, user_id, tried))
    return store.run(
        f"{user_id:032x}",
        key,
        _digest(request, body),
        lambda: _answer(lambda: operation(key)),
    )


@router.get("/wallet")
def get_wallet(signed_in: SignedIn, service: Wallet) -> dict[str, Any]:
    """The balance: posted, and available (less withdrawals in flight), in fen and CNY."""
    return _balance_json(service, signed_in.user_id)


@router.post("/wallet", status_code=201)
def open_wallet(signed_in: SignedIn, service: Wallet) -> dict[str, Any]:
    """Open the wallet; opening it again answers the same."""
    service.open_wallet(signed_in.user_id)
    return _balance_json(service, signed_in.user_id)


@router.post("/bank-accounts", status_code=201)
def link_bank_account(body: BankLink, signed_in: SignedIn, service: Wallet) -> dict[str, Any]:
    """Link a bank account in the user's real name; only the masked number is kept."""
    linked = service.link_bank_account(signed_in.user_id, body.bank_code, body.account_number)
    return {
        "id": f"{linked.id:032x}",
        "bank_code": linked.bank_code,
        "account_masked": linked.account_masked,
    }


@router.get("/bank-accounts")
def list_bank_accounts(request: Request, signed_in: SignedIn) -> list[dict[str, Any]]:
    engine: sa.Engine = request.app.state.engine
    c = linked_bank_accounts.c
    query = (
        sa.select(c.id, c.bank_code, c.account_masked)
        .where(c.user_id == id_to_bytes(signed_in.user_id))
        .order_by(c.created_at, c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {"id": bytes(r.id).hex(), "bank_code": r.bank_code, "account_masked": r.account_masked}
        for r in rows
    ]


@router.post("/top-ups", status_code=201)
def top_up(
    body: BankMovement,
    request: Request,
    signed_in: SignedIn,
    identity: Identity,
    store: Idempotency,
    service: Wallet,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Move money from a linked bank account into the wallet (PIN and key required)."""
    linked = _linked_id(body.bank_account_id)
    return _move(
        request,
        signed_in.user_id,
        identity,
        store,
        idempotency_key,
        body,
        lambda key: service.top_up(signed_in.user_id, linked, body.amount_fen, key),
    )


@router.post("/withdrawals", status_code=201)
def withdraw(
    body: BankMovement,
    request: Request,
    signed_in: SignedIn,
    identity: Identity,
    store: Idempotency,
    service: Wallet,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Move money from the wallet to a linked bank account (PIN and key required)."""
    linked = _linked_id(body.bank_account_id)
    return _move(
        request,
        signed_in.user_id,
        identity,
        store,
        idempotency_key,
        body,
        lambda key: service.withdraw(signed_in.user_id, linked, body.amount_fen, key),
    )


@router.post("/p2p-transfers", status_code=201)
def p2p_transfer(
    body: P2pTransfer,
    request: Request,
    signed_in: SignedIn,
    identity: Identity,
    store: Idempotency,
    service: Wallet,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Send money from the wallet to the Millet Pay user with that phone number. The PIN
    try, the key, the transfer and the answer commit in one transaction."""
    key = check_key(idempotency_key)
    user_id = signed_in.user_id
    return pay_in_one_transaction(
        request,
        identity,
        store,
        user_id,
        key,
        body,
        lambda tx: _answer(
            lambda: service.p2p_in(tx, user_id, body.recipient_phone, body.amount_fen, key)
        ),
    )


def pay_in_one_transaction(
    request: Request,
    identity: IdentityService,
    store: IdempotencyStore,
    user_id: int,
    key: str,
    body: Approval,
    work: Callable[[LedgerTransaction], Answer],
    describe: Callable[[str], Payment] | None = None,
) -> Any:
    """The payment approved (`_approve`: the PIN compared, or the quick-pay assertion
    for `describe(key)` verified), then one transaction on the app's committer: the PIN
    try counted, the key claimed, `work(tx)` done and its answer stored with the key. A
    retry with the key answers the stored answer and does nothing again."""
    tried = _approve(request, identity, user_id, key, body, describe)
    unit = paying_unit(identity, store, user_id, key, _digest(request, body), tried, work)
    committer: Committer = request.app.state.committer
    return committer.run(unit)


def paying_unit(
    identity: IdentityService,
    store: IdempotencyStore,
    user_id: int,
    key: str,
    digest: bytes,
    tried: PinTry | None,
    work: Callable[[LedgerTransaction], Answer],
) -> Callable[[LedgerTransaction], Response]:
    """`pay_in_one_transaction`'s unit of work, once the payment is approved (`tried`):
    the PIN try counted, the key claimed, `work(tx)` done and its answer stored."""

    def unit(tx: LedgerTransaction) -> Response:
        _confirm(identity, tx, user_id, tried)
        return store.run_in(tx, f"{user_id:032x}", key, digest, lambda: work(tx))

    return unit


async def off_loop(request: Request, call: Callable[[], T]) -> T:
    """`call()` on the app's threads for blocking work (`app.state.blocking`), awaited: a
    plain executor, cheaper a trip than Starlette's thread pool."""
    executor: ThreadPoolExecutor = request.app.state.blocking
    return await asyncio.get_running_loop().run_in_executor(executor, call)


async def committed(request: Request, work: Callable[[LedgerTransaction], T]) -> T:
    """`work` committed by the app's committer, as `Committer.run` would, but awaited on
    the event loop rather than waited for on a worker thread. Shielded: a request
    cancelled while its unit waits leaves the unit to run and be answered (a cancelled
    future would refuse the committer's answer)."""
    committer: GroupCommitter[LedgerTransaction] = request.app.state.committer
    return await asyncio.shield(asyncio.wrap_future(committer.submit(work)))


@router.post("/quick-pay/challenges", status_code=201)
def quick_pay_challenge(
    body: QuickPayChallenge, signed_in: SignedIn, service: QuickPays, wallet: Wallet
) -> Any:
    """WebAuthn request options for the bound phone to approve one payment; the request
    that moves the money then carries the phone's answer as `quick_pay_assertion`."""
    field = _target_field(body.kind, body.source)
    target: str | None = getattr(body, field)
    if target is None:
        raise ApiError(422, "invalid_request", f"{field}: required for {body.kind}", field)
    if field == "bank_account_id":  # only the user's own account: 404 like the payment
        try:
            wallet.linked_bank_account(signed_in.user_id, _linked_id(target))
        except LinkedBankAccountNotFound as error:
            raise ApiError(404, error.code, error.message, field) from None
    amount_field = "coins" if body.kind in _COIN_KINDS else "amount_fen"
    amount: int | None = getattr(body, amount_field)
    if amount is None:
        message = f"{amount_field}: required for {body.kind}"
        raise ApiError(422, "invalid_request", message, amount_field)
    key = check_key(body.idempotency_key)
    payment = _payment(key, body.kind, target, amount)
    return json.loads(service.begin_payment(signed_in.user_id, body.device_id, payment))


@router.get("/history")
def history(
    signed_in: SignedIn,
    service: Wallet,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """The user's operations newest first; pass `next_cursor` back for the next page."""
    page = service.history(signed_in.user_id, limit=limit, cursor=cursor)
    return {
        "items": [
            {
                "operation_id": f"{item.operation_id:032x}",
                "kind": str(item.kind),
                "direction": "in" if item.incoming else "out",
                "amount_fen": item.amount_fen,
                "amount": cny_text(item.amount_fen),
                "status": str(item.status),
                "decline_code": item.decline_code,
                "created_at_ns": item.created_at_ns,
            }
            for item in page.items
        ],
        "next_cursor": page.next_cursor,
    }


@router.get("/statements/{month}")
def statement(month: str, signed_in: SignedIn, service: Wallet) -> dict[str, Any]:
    """The statement of a China-time calendar month, `yyyy-mm`."""
    match = _MONTH.match(month)
    if match is None:
        raise ApiError(400, "month_invalid", "a month is written yyyy-mm", "month")
    result = service.statement(signed_in.user_id, int(match[1]), int(match[2]))
    names = ("opening", "credits", "debits", "closing")
    answer: dict[str, Any] = {"month": f"{result.year:04d}-{result.month:02d}", "currency": "CNY"}
    for name in names:
        fen = getattr(result, f"{name}_fen")
        answer[f"{name}_fen"] = fen
        answer[name] = cny_text(fen)
    return answer
