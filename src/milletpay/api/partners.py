"""Partner endpoints: a registered payment provider asks the user's bound phone to approve
one of the partner's own payments with Millet Pay's device key, as Huawei opened its
fingerprint pay to Alipay.

A partner (`identity.quickpay.PARTNERS`) signs in with its API key,
`Authorization: Bearer <key>`. The key is derived from the key ring for that partner
(`partner_api_key`), so any server with the key ring checks it without a database read,
and it is handed to the partner out of band (`millet partner-key <partner id>`). The
partner names the user by phone number and the bound phone by its device id; the
challenge commits to the partner's payment (its id and payee namespaced by the partner
id, so that it can never stand for a Millet Pay payment), and the phone's assertion is
accepted only from the partner's own origins. This approves; it moves no Millet Pay money.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from milletpay.api.errors import ApiError
from milletpay.core.errors import MilletError
from milletpay.core.keyring import KeyRing
from milletpay.core.money import Money
from milletpay.identity import IdentityService
from milletpay.identity.quickpay import PARTNERS, Payment, QuickPay

router = APIRouter(prefix="/v1/partners", tags=["partners"])

_KEY_PURPOSE = b"partner api key"
#: Characters of a partner's payment id or payee, before the partner's prefix.
PARTNER_TEXT_CHARS_MAX = 64


def partner_api_key(keyring: KeyRing, partner_id: str) -> str:
    """The API key of a registered partner: its id and a MAC of it under the key ring."""
    mac = hmac.new(keyring.derive(_KEY_PURPOSE), partner_id.encode(), hashlib.sha256).digest()
    return f"{partner_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


async def partner(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The partner id an `Authorization: Bearer <partner key>` header proves, or 401."""
    if not authorization or not authorization.startswith("Bearer "):
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <partner key>")
    key = authorization[len("Bearer ") :]
    partner_id = key.rpartition(".")[0]
    keyring: KeyRing = request.app.state.keyring
    if partner_id not in PARTNERS or not hmac.compare_digest(
        key.encode(), partner_api_key(keyring, partner_id).encode()
    ):
        raise ApiError(401, "partner_key_invalid", "the partner key is not valid")
    return partner_id


Partner = Annotated[str, Depends(partner)]


class PartnerPayment(BaseModel):
    """The partner's payment the user approves: the partner's own id and payee for it."""

    phone: str = Field(min_length=1, max_length=32)
    payment_id: str = Field(min_length=1, max_length=PARTNER_TEXT_CHARS_MAX)
    payee: str = Field(min_length=1, max_length=PARTNER_TEXT_CHARS_MAX)
    amount_fen: int = Field(gt=0, le=10**13)


class PartnerChallenge(PartnerPayment):
    device_id: str = Field(min_length=1, max_length=64)


class PartnerApproval(PartnerPayment):
    assertion: dict[str, Any]


def _user_id(request: Request, phone: str) -> int:
    identity: IdentityService = request.app.state.identity
    user_id = identity.user_id_by_phone(phone)
    if user_id is None:
        raise ApiError(404, "user_not_found", "no Millet Pay user has this phone number", "phone")
    return user_id


def _payment(partner_id: str, body: PartnerPayment) -> Payment:
    return Payment(
        f"{partner_id}:{body.payment_id}",
        f"{partner_id}:{body.payee}",
        Money(body.amount_fen, "CNY"),
    )


def _refused(error: MilletError, field: str | None) -> ApiError:
    status = 404 if error.code in ("device_not_found", "user_not_found") else 403
    return ApiError(status, error.code, f"quick pay refused: {error.message}", field)


@router.post("/quick-pay/challenges", status_code=201)
def partner_challenge(body: PartnerChallenge, request: Request, partner_id: Partner) -> Any:
    """WebAuthn request options for the user's bound phone to approve the partner's
    payment; the partner's app hands them to the phone, which signs on the partner's
    origin after a fingerprint match."""
    user_id = _user_id(request, body.phone)
    service: QuickPay = request.app.state.quick_pay
    try:
        options = service.begin_payment(
            user_id, body.device_id, _payment(partner_id, body), partner_id=partner_id
        )
    except MilletError as error:
        raise _refused(error, "device_id") from None
    return json.loads(options)


@router.post("/quick-pay/approvals", status_code=201)
def partner_approval(body: PartnerApproval, request: Request, partner_id: Partner) -> Any:
    """Check the phone's assertion for exactly this payment (once, in time, fingerprint
    verified, from the partner's origin); 201 when the user approved it."""
    user_id = _user_id(request, body.phone)
    service: QuickPay = request.app.state.quick_pay
    try:
        approval = service.finish_payment(
            user_id, _payment(partner_id, body), json.dumps(body.assertion)
        )
    except MilletError as error:
        raise _refused(error, "assertion") from None
    if approval.partner_id != partner_id:  # a challenge another partner (or Millet) asked
        raise ApiError(403, "payment_mismatch", "this approval was not asked by this partner")
    return {
        "approved": True,
        "payment_id": body.payment_id,
        "device_id": approval.device_id,
        "approved_at_ns": approval.approved_at_ns,
    }
